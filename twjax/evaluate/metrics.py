"""Per-turn fidelity metrics and their aggregation (overall, per turn, non-empty turns, copyable
turns, per command).

A prediction of one terminal span is `Prediction(output, exit_code, cwd)`; it is scored against the
real `episode.Turn`. Text metrics other than raw exact match are computed on normalised text
(normalize.normalize_output), so volatile fields do not count as errors. A turn is `correct` when its
normalised output, exit code and cwd all match: this is the event whose absence is an "error" in the
survival and exposure-bias curves.

A turn is `copyable` when every line of its real output already appeared in the session: a model
that copies perfectly could write it. The other non-empty turns need a computation (`wc`, `sort`)
or show state the session never printed (the first `cat` of a file made by the task's setup);
only the former are within a terminal model's reach, so exact match on non-empty turns is read
beside the share that is copyable.
"""
import collections
import dataclasses
import functools
import math
import re
from typing import Iterable

import numpy as np
import scipy.stats
from rapidfuzz.distance import Levenshtein

from twjax.episode import Episode, Turn
from twjax.evaluate.normalize import command_word, normalize_output

VERIFY_WORD = "<verify>"  # the command word of a verifier probe (turn_word)
# Metrics that are means of per-turn values, in report order; xent is added where a model scores turns.
TURN_METRICS = ("exact", "exact_norm", "edit_sim", "line_f1", "exit_acc", "cwd_acc", "correct")


@dataclasses.dataclass(frozen=True)
class Prediction:
    output: str
    exit_code: int | None
    cwd: str | None
    pass_probability: float | None = None  # a learned verifier's P(exit 0) (fidelity.pass_probabilities)


@dataclasses.dataclass
class TurnRecord:
    """One scored turn: where it is, what it was, and its metric values (floats in [0, 1]; xent in nats/token)."""
    episode_id: str
    turn: int
    context_tokens: int
    command_word: str
    nonempty: bool
    metrics: dict[str, float]
    prediction: Prediction | None = None
    copyable: bool = False
    real_exit_code: int | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def edit_similarity(predicted: str, real: str) -> float:
    """1 - Levenshtein(predicted, real) / max(len): 1.0 for identical (including two empty strings)."""
    return float(Levenshtein.normalized_similarity(predicted, real))


def line_f1(predicted: str, real: str) -> float:
    """F1 between the multisets of lines. Two empty outputs score 1, exactly one empty scores 0."""
    predicted_lines = collections.Counter(predicted.splitlines())
    real_lines = collections.Counter(real.splitlines())
    total_predicted, total_real = sum(predicted_lines.values()), sum(real_lines.values())
    if total_predicted == 0 and total_real == 0:
        return 1.0
    overlap = sum((predicted_lines & real_lines).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / total_predicted, overlap / total_real
    return 2 * precision * recall / (precision + recall)


def set_f1(predicted: set, real: set) -> float:
    """F1 between two sets; two empty sets score 1."""
    if not predicted and not real:
        return 1.0
    overlap = len(predicted & real)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(real)
    return 2 * precision * recall / (precision + recall)


def score_turn(prediction: Prediction, real: Turn) -> dict[str, float]:
    predicted_norm = normalize_output(prediction.output, real.command)
    real_norm = normalize_output(real.output, real.command)
    exact_norm = float(predicted_norm == real_norm)
    exit_ok = float(prediction.exit_code is not None and prediction.exit_code == real.exit_code)
    cwd_ok = float(prediction.cwd is not None and prediction.cwd == real.cwd)
    return {
        "exact": float(prediction.output == real.output),
        "exact_norm": exact_norm,
        "edit_sim": edit_similarity(predicted_norm, real_norm),
        "line_f1": line_f1(predicted_norm, real_norm),
        "exit_acc": exit_ok,
        "cwd_acc": cwd_ok,
        "correct": float(exact_norm and exit_ok and cwd_ok),
    }


def turn_word(turn: Turn) -> str:
    """What a turn is broken down by: its command's first word; the task's verifier (a multi-line
    script starting with `cd`) is its own bucket, "<verify>", so it neither hides in nor skews `cd`."""
    return VERIFY_WORD if turn.label == "verify" else command_word(turn.command)


def copyable_turns(episode: Episode) -> list[bool]:
    """Per turn: the real output is not empty and each of its non-blank lines, normalised, occurs
    verbatim in the task text or in an earlier turn's command, output (raw or normalised) or cwd
    (normalised, so that an `ls -l` line's timestamp does not make it new), not inside a longer
    word (a line "a" is not copied from "abc"). Runs of spaces and tabs count as one space (`ls`
    pads its columns to the widest entry it lists). Commands count also with their `\\n` and `\\t`
    escapes expanded, as printf and echo -e write them."""
    squeeze = functools.partial(re.sub, r"[ \t]+", " ")
    seen = squeeze(episode.task)
    flags = []
    for turn in episode.turns:
        output = squeeze(normalize_output(turn.output, turn.command))
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        flags.append(bool(lines) and all(re.search(rf"(?<!\w){re.escape(line)}(?!\w)", seen) for line in lines))
        expanded = turn.command.replace("\\n", "\n").replace("\\t", "\t")
        seen += "\n" + squeeze(f"{turn.command}\n{expanded}\n{turn.output}") + "\n" + output + "\n" + turn.cwd
    return flags


def make_record(episode_id: str, turn_index: int, real: Turn, prediction: Prediction,
                context_tokens: int = 0, extra_metrics: dict[str, float] | None = None,
                copyable: bool = False) -> TurnRecord:
    metrics = score_turn(prediction, real)
    metrics.update(extra_metrics or {})
    return TurnRecord(episode_id=episode_id, turn=turn_index, context_tokens=context_tokens,
                      command_word=turn_word(real), nonempty=bool(real.output.strip()),
                      metrics=metrics, prediction=prediction, copyable=copyable, real_exit_code=real.exit_code)


def _means(records: list[TurnRecord]) -> dict[str, float]:
    names = [m for m in records[0].metrics] if records else list(TURN_METRICS)
    out: dict[str, float] = {}
    for name in names:
        values = [r.metrics[name] for r in records if name in r.metrics and not math.isnan(r.metrics[name])]
        out[name] = float(np.mean(values)) if values else float("nan")
    out["n"] = len(records)
    return out


def summarize(records: Iterable[TurnRecord], min_command_count: int = 1) -> dict:
    """{metric: mean, n, by_turn: [{turn, n, metric...}], nonempty: {...}, copyable: {...},
    by_command: {word: {...}}}.

    `nonempty` and every by_command entry are themselves {metric: mean, n, nonempty: {...}}; commands
    seen fewer than `min_command_count` times are pooled under "<other>"."""
    records = list(records)
    summary = _means(records)
    by_turn = collections.defaultdict(list)
    for record in records:
        by_turn[record.turn].append(record)
    summary["by_turn"] = [{"turn": t, **_means(by_turn[t])} for t in sorted(by_turn)]
    nonempty = [r for r in records if r.nonempty]
    summary["nonempty"] = _means(nonempty)
    summary["copyable"] = _means([r for r in records if r.copyable])
    by_word = collections.defaultdict(list)
    for record in records:
        by_word[record.command_word].append(record)
    by_command = {}
    for word, group in sorted(by_word.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        key = word if len(group) >= min_command_count else "<other>"
        by_command.setdefault(key, []).extend(group)
    summary["by_command"] = {word: {**_means(group), "nonempty": _means([r for r in group if r.nonempty])}
                             for word, group in by_command.items()}
    summary["verdicts"] = verdicts(records)
    return summary


def verdicts(records: Iterable[TurnRecord]) -> dict | None:
    """The verifier probes read as a pass / fail classifier (pass: exit code 0), the learned reward's
    quality. Most sessions fail, so always answering "fail" scores the fail share in `accuracy`;
    `balanced_accuracy` (the mean of the two recalls) scores it 0.5. `pass_precision`, the share of
    predicted passes that are real, is what selecting sessions by the verdict (regime C) keeps. A
    recall with no real case of its class, or a precision with no predicted pass, is None. None
    without scored probes."""
    probes = [r for r in records if r.command_word == VERIFY_WORD and r.real_exit_code is not None
              and r.prediction is not None]
    if not probes:
        return None
    real_N = np.array([r.real_exit_code == 0 for r in probes])
    predicted_N = np.array([r.prediction.exit_code == 0 for r in probes])
    recalls = {name: float(np.mean(predicted_N[cases_N] == want)) if cases_N.any() else None
               for name, cases_N, want in (("pass_recall", real_N, True), ("fail_recall", ~real_N, False))}
    known = [v for v in recalls.values() if v is not None]
    probability_N = np.array([r.prediction.pass_probability for r in probes], float)  # None -> nan
    return {"n": len(probes), "real_pass_rate": float(real_N.mean()), "predicted_pass_rate": float(predicted_N.mean()),
            "accuracy": float(np.mean(real_N == predicted_N)), **recalls,
            "pass_precision": float(real_N[predicted_N].mean()) if predicted_N.any() else None,
            "balanced_accuracy": float(np.mean(known)) if len(known) == 2 else None,
            "pass_auc": pass_auc(real_N, probability_N),
            "passes_by_probability": passes_by_probability(predicted_N, real_N, probability_N)}


def pass_auc(real_N: np.ndarray, probability_N: np.ndarray) -> float | None:
    """How well the pass probability ranks real passes over real failures: the chance that a random
    real pass gets a higher probability than a random real failure (ties count half; 0.5 for a
    constant). Over the probes that have one; None without a pass or a failure among them."""
    known_N = ~np.isnan(probability_N)
    passes, failures = probability_N[known_N & real_N], probability_N[known_N & ~real_N]
    if not (len(passes) and len(failures)):
        return None
    return float(scipy.stats.mannwhitneyu(passes, failures).statistic / (len(passes) * len(failures)))


PASS_PROBABILITY_BARS = (0.5, 0.8, 0.9, 0.95, 0.99)


def sure_passes(predicted_N: np.ndarray, probability_N: np.ndarray, bar: float) -> np.ndarray:
    """The predicted passes whose pass probability reaches `bar`; a missing one (nan) counts as 0,
    so at bar 0 every predicted pass."""
    return predicted_N & (np.nan_to_num(probability_N) >= bar)


def passes_by_probability(predicted_N: np.ndarray, real_N: np.ndarray, probability_N: np.ndarray) -> dict:
    """For each bar: the predicted passes whose pass probability reaches it, how many of them are
    real, and that share (precision): what regime C keeps with agent.min_pass_probability there."""
    table = {}
    for bar in PASS_PROBABILITY_BARS:
        kept_N = sure_passes(predicted_N, probability_N, bar)
        table[str(bar)] = {"passes": int(kept_N.sum()), "real": int(real_N[kept_N].sum()),
                           "precision": float(real_N[kept_N].mean()) if kept_N.any() else None}
    return table
