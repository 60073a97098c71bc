"""Fidelity of a learned terminal under three conditioning regimes, and the report that puts them
beside the baselines.

Regimes (each scores the model's span for every turn of every episode against the real turn, but
the given ones that open it, Episode.n_given, which every regime's prompts hold as recorded, and
imagined ones, a learned terminal's outputs, which every regime's history holds as recorded):
  teacher_forced    the history holds the real outputs;
  self_conditioned  the real commands, but the model's own earlier spans in the history (exactly the
                    tokens it generated), so errors can feed on themselves;
  closed_loop       an agent acts on the learned terminal while the real harness replays the same
                    commands; the rollout engine produces the (learned, real) episode pairs and
                    `closed_loop_records` scores them (evaluate_model takes them as `closed_loop_pairs`).

Generation: for turn t the prompt is the history (task + turns, truncated like the tokenizer: the
pinned prefix of task and given turns, then the most recent whole turns that fit) + `<cmd> COMMAND
</cmd> <out>`, leaving `max_new_tokens` of room; the span is decoded greedily until </out> (twjax.decode), batched over
episodes, and parsed with tokenizer.parse_terminal_span. Cross-entropy (nats per token) of the
real span `OUTPUT <exit> CODE <cwd> CWD </out>` is scored on the same prompt.
"""
import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from twjax import decode
from twjax import model as model_lib
from twjax.episode import IMAGINED_LABELS, Episode, Turn
from twjax.evaluate import curves, metrics
from twjax.evaluate.metrics import Prediction, TurnRecord

REGIMES = ("teacher_forced", "self_conditioned")
CURVE_METRICS = metrics.TURN_METRICS + ("xent",)
# A side-branch probe of the file system: one line per entry (type, size, path), then md5 of files.
PROBE_ROOT = "/root"
PROBE_COMMAND = (f"find {PROBE_ROOT} -xdev -printf '%y %s %p\\n' 2>/dev/null | LC_ALL=C sort; "
                 f"find {PROBE_ROOT} -xdev -type f -exec md5sum {{}} + 2>/dev/null | LC_ALL=C sort -k2")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    max_new_tokens: int = 256
    batch_size: int = 16
    n_boot: int = 500
    probe_every: int = 0  # 0: no file-system probes; k: probe after turns k-1, 2k-1, ... and the last
    seed: int = 0  # of the bootstrap resampling


# ---- prompts ------------------------------------------------------------------------------
def assemble(head: np.ndarray, segments: Sequence[np.ndarray], tail: np.ndarray, max_len: int,
             pinned: Callable[[int], np.ndarray]) -> np.ndarray:
    """head (the task and the given turns) + history segments + tail in at most max_len tokens. Over
    budget, the tokenizer's policy applies to the rest: pinned(room) (Tokenizer.pinned_prefix of the
    episode for the room the tail leaves), then the most recent whole segments that fit; the tail
    (command and <out>) is always kept."""
    whole = np.concatenate([head, *segments, tail]).astype(np.int32)
    if len(whole) <= max_len:
        return whole
    tail = tail[-max(1, max_len - 1):]
    room = max_len - len(tail)
    prefix = pinned(room)
    budget, kept = room - len(prefix), []
    for segment in reversed(segments):
        if len(segment) > budget:
            break
        kept.insert(0, segment)
        budget -= len(segment)
    return np.concatenate([prefix, *kept, tail]).astype(np.int32)


def pad_rows(rows: Sequence[np.ndarray], batch: int | None = None, max_width: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded [batch, T] ids and lengths (extra rows are empty). T is the next power of two
    (at least 64, at most max_width) so that only a few shapes get compiled."""
    width = 64
    while width < max(len(r) for r in rows):
        width *= 2
    width = min(width, max_width) if max_width else width
    ids = np.zeros((max(batch or 0, len(rows)), width), np.int32)
    lengths = np.zeros(len(ids), np.int32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        lengths[i] = len(row)
    return ids, lengths


# ---- model calls --------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("graphdef",))
def _span_nll(graphdef, state, tokens_BxT, lengths_B, span_start_B):
    """Per-row summed negative log-likelihood of tokens [span_start, length) and their count."""
    model = nnx.merge(graphdef, state)
    batch, width = tokens_BxT.shape
    positions_BxT = jnp.broadcast_to(jnp.arange(width, dtype=jnp.int32), (batch, width))
    segment_ids_BxT = (positions_BxT < lengths_B[:, None]).astype(jnp.int32)
    logits_BxTxV = model(tokens_BxT, positions_BxT, segment_ids_BxT)
    nll_BxT1 = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV[:, :-1], tokens_BxT[:, 1:])
    target_pos_BxT1 = positions_BxT[:, 1:]
    weight_BxT1 = ((target_pos_BxT1 >= span_start_B[:, None]) & (target_pos_BxT1 < lengths_B[:, None]))
    return (nll_BxT1 * weight_BxT1).sum(1), weight_BxT1.sum(1)


def span_cross_entropy(graphdef, state, prompts: Sequence[np.ndarray], spans: Sequence[np.ndarray],
                       max_len: int, batch: int | None = None) -> list[tuple[float, int]]:
    """(mean nats per token, tokens scored) of each real span after its prompt; a span that does not
    fit in max_len is scored on its first tokens. `batch` pads the row count to a fixed size."""
    rows = [np.concatenate([p, s])[:max_len] for p, s in zip(prompts, spans)]
    ids, lengths = pad_rows(rows, batch, max_len)
    starts = np.zeros(len(ids), np.int32)
    starts[:len(prompts)] = [len(p) for p in prompts]
    nll, count = jax.device_get(_span_nll(graphdef, state, ids, lengths, starts))
    return [(float(n / c) if c else float("nan"), int(c)) for n, c in zip(nll[:len(rows)], count[:len(rows)])]


PASS_PROBABILITY_ROWS = 32  # rows scored per forward pass: [32, T, V] float32 logits at most


def pass_probabilities(graphdef, state, tok, prompts: Sequence[np.ndarray], spans: Sequence[np.ndarray],
                       max_len: int, batch: int = PASS_PROBABILITY_ROWS) -> list[float | None]:
    """How sure a learned verifier is of a pass: the terminal's probability that the exit code
    after <exit> is 0, given the prompt (the session and the verifier command) and the output it
    wrote itself (each span up to its <exit>). A greedy "0" can come with any probability down to
    just over 1 / vocab, so regime C can keep only the sure ones. None where a span has no <exit>,
    or no room after it. Rows are scored `batch` at a time (padded to it: one compiled shape)."""
    zero = np.array(tok.encode_text("0"), np.int32)
    scored_rows, contexts = [], []
    for row, (prompt, span) in enumerate(zip(prompts, spans)):
        at_exit = np.flatnonzero(np.asarray(span) == tok.exit_id)
        if at_exit.size and len(prompt) + at_exit[0] + 1 + len(zero) <= max_len:
            scored_rows.append(row)
            contexts.append(np.concatenate([prompt, span[:at_exit[0] + 1]]).astype(np.int32))
    probabilities = [None] * len(prompts)
    for first in range(0, len(contexts), batch):
        chunk = contexts[first:first + batch]
        scored = span_cross_entropy(graphdef, state, chunk, [zero] * len(chunk), max_len, batch)
        for row, (nats, count) in zip(scored_rows[first:], scored):
            probabilities[row] = float(np.exp(-nats * count))
    return probabilities


def verdict_probabilities(graphdef, state, tok, turns: Sequence[Turn], prompts, spans, max_len: int,
                          batch: int) -> list[float | None]:
    """pass_probabilities of the verifier probes among `turns` (None for the other turns, whose
    spans are left out as empty: no <exit> to score)."""
    probe_spans = [span if metrics.turn_word(turn) == metrics.VERIFY_WORD else []
                   for turn, span in zip(turns, spans)]
    return pass_probabilities(graphdef, state, tok, prompts, probe_spans, max_len, batch)


def generate_spans(graphdef, state, tok, prompts: Sequence[np.ndarray], max_new_tokens: int, *,
                   config, batch: int | None = None) -> list[np.ndarray]:
    """Greedy terminal spans (up to and including </out>, or cut at max_new_tokens) after each
    prompt: the prompts but their last tokens are prefilled into a fresh KV cache, then
    twjax.decode samples every row until </out>. Rows are padded to `batch` (inactive) so that
    repeated calls reuse one compiled program."""
    ids, lengths = pad_rows([p[:-1] for p in prompts], batch, config.max_len)
    rows = len(ids)
    last = np.zeros(rows, np.int32)
    last[:len(prompts)] = [p[-1] for p in prompts]
    active = np.arange(rows) < len(prompts)
    cache = model_lib.init_cache(config, rows, config.max_len)
    cache = decode.prefill_jit(graphdef, state, ids, lengths, cache)
    sampler = decode.SpanSampler(max_new_tokens=max_new_tokens, stop_ids=(tok.id_of("</out>"),))
    span = decode.sample_span(graphdef, state, cache, last, jax.random.key(0), active, sampler=sampler)
    tokens, counts = jax.device_get((span.tokens_BxN, span.lengths_B))
    return [tokens[i, :counts[i]].astype(np.int32) for i in range(len(prompts))]


def parse_span(tok, span: np.ndarray) -> tuple[str, int | None, str | None]:
    """tokenizer.parse_terminal_span, after mapping ids past the tokenizer's vocabulary (the model's
    embedding is padded to a multiple of 128) to the unknown piece, which reads as U+FFFD."""
    span = np.asarray(span)
    return tok.parse_terminal_span(np.where(span < tok.vocab_size, span, tok.sp.unk_id()))


# ---- regimes ------------------------------------------------------------------------------
@dataclasses.dataclass
class RegimeRun:
    records: list[TurnRecord]
    prompts: dict[tuple[str, int], np.ndarray]  # (episode id, turn) -> the prompt the model saw
    spans: dict[tuple[str, int], np.ndarray]    # (episode id, turn) -> the span it generated
    probes: dict[tuple[str, int], str]          # (episode id, turn) -> learned probe output


def probe_turns(n_turns: int, every: int) -> list[int]:
    if every <= 0 or n_turns == 0:
        return []
    return sorted(set(range(every - 1, n_turns, every)) | {n_turns - 1})


def run_regime(model, tok, episodes: Sequence[Episode], regime: str, settings: EvalSettings = EvalSettings(),
               generate: Callable | None = None) -> RegimeRun:
    """Generates and scores every turn under `regime` ("teacher_forced" | "self_conditioned").
    `generate(graphdef, state, tok, prompts, max_new_tokens, config=, batch=)` defaults to generate_spans."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; one of {REGIMES}")
    graphdef, state = nnx.split(model)
    generate = generate or generate_spans
    max_len = model.config.max_len
    max_new = min(settings.max_new_tokens, max_len // 2)
    prompt_len = max_len - max_new
    out_id = tok.id_of("<out>")
    end_out = tok.id_of("</out>")
    heads = [np.concatenate([tok.encode_task(e.task)] + [tok.encode_turn(turn)[0] for turn in e.turns[:e.n_given]])
             for e in episodes]
    pinned = [functools.partial(tok.pinned_prefix, e) for e in episodes]
    history: list[list[np.ndarray]] = [[] for _ in episodes]
    full_context = [len(h) for h in heads]
    copyable = [metrics.copyable_turns(e) for e in episodes]
    run = RegimeRun([], {}, {}, {})
    for t in range(max((len(e.turns) for e in episodes), default=0)):
        active = [i for i, e in enumerate(episodes) if len(e.turns) > t]
        after_given = [i for i in active if t >= episodes[i].n_given]
        scored = [i for i in after_given if episodes[i].turns[t].label not in IMAGINED_LABELS]
        for i in sorted(set(after_given) - set(scored)):  # Imagined turns: history as recorded.
            history[i].append(tok.encode_turn(episodes[i].turns[t])[0])
            full_context[i] += len(history[i][-1])
        for start in range(0, len(scored), settings.batch_size):
            rows = scored[start:start + settings.batch_size]
            tails = [np.concatenate([tok.encode_command(episodes[i].turns[t].command), [out_id]]) for i in rows]
            prompts = [assemble(heads[i], history[i], tail, prompt_len, pinned[i]) for i, tail in zip(rows, tails)]
            spans = generate(graphdef, state, tok, prompts, max_new, config=model.config, batch=settings.batch_size)
            real_spans = [tok.encode_terminal(episodes[i].turns[t].output, episodes[i].turns[t].exit_code,
                                              episodes[i].turns[t].cwd) for i in rows]
            xents = span_cross_entropy(graphdef, state, prompts, real_spans, max_len, settings.batch_size)
            verdicts = verdict_probabilities(graphdef, state, tok, [episodes[i].turns[t] for i in rows], prompts,
                                             spans, max_len, settings.batch_size)
            for i, tail, prompt, span, (xent, _), pass_probability in zip(rows, tails, prompts, spans, xents, verdicts):
                episode, turn = episodes[i], episodes[i].turns[t]
                output, exit_code, cwd = parse_span(tok, span)
                run.records.append(metrics.make_record(
                    episode.id, t, turn, Prediction(output, exit_code, cwd, pass_probability),
                    context_tokens=full_context[i] + len(tail), extra_metrics={"xent": xent},
                    copyable=copyable[i][t]))
                run.prompts[(episode.id, t)] = prompt
                run.spans[(episode.id, t)] = np.asarray(span, np.int32)
                if regime == "teacher_forced":
                    segment = tok.encode_turn(turn)[0]
                else:
                    closed = span if len(span) and span[-1] == end_out else np.append(span, end_out)
                    segment = np.concatenate([tail, closed]).astype(np.int32)
                history[i].append(segment)
                full_context[i] += len(segment)
        probe_rows = [i for i in active if t in probe_turns(len(episodes[i].turns), settings.probe_every)]
        for start in range(0, len(probe_rows), settings.batch_size):
            rows = probe_rows[start:start + settings.batch_size]
            tail = np.concatenate([tok.encode_command(PROBE_COMMAND), [out_id]])
            prompts = [assemble(heads[i], history[i], tail, prompt_len, pinned[i]) for i in rows]
            for i, span in zip(rows, generate(graphdef, state, tok, prompts, max_new, config=model.config,
                                                      batch=settings.batch_size)):
                run.probes[(episodes[i].id, t)] = parse_span(tok, span)[0]
    return run


def closed_loop_records(pairs: Sequence[tuple[Episode, Episode]]) -> list[TurnRecord]:
    """Scores closed-loop rollouts: each pair is (episode in the learned terminal, the same commands
    replayed in the real harness). Turns are matched by index and must carry the same command;
    the given turns that open an episode (Episode.n_given) are not scored."""
    records = []
    for learned, real in pairs:
        copyable = metrics.copyable_turns(real)
        for t, (imagined, actual) in enumerate(zip(learned.turns, real.turns)):
            if t < real.n_given:
                continue
            if imagined.command != actual.command:
                raise ValueError(f"closed-loop pair {real.id} turn {t}: commands differ "
                                 f"({imagined.command!r} vs {actual.command!r})")
            records.append(metrics.make_record(real.id, t, actual,
                                               Prediction(imagined.output, imagined.exit_code, imagined.cwd),
                                               copyable=copyable[t]))
    return records


# ---- file-system faithfulness -------------------------------------------------------------
def probe_entries(text: str) -> set[tuple]:
    """Entries (path, type, size, md5 or None) from PROBE_COMMAND's output; junk lines are ignored."""
    kinds, hashes = {}, {}
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and len(parts[0]) == 1 and parts[1].isdigit():
            kinds[parts[2]] = (parts[0], int(parts[1]))
            continue
        digest, _, path = line.partition("  ")
        if len(digest) == 32 and path:
            hashes[path] = digest
    return {(path, kind, size, hashes.get(path)) for path, (kind, size) in kinds.items()}


def changes(before: set[tuple], after: set[tuple]) -> set[tuple]:
    return {("+",) + e for e in after - before} | {("-",) + e for e in before - after}


def fs_scores(learned: dict[tuple[str, int], str], real: dict[tuple[str, int], str]) -> dict:
    """F1 over probe entries at each probed turn; F1 over the change since the episode's previous
    probe (each side against its own previous probe) on the intervals where the real file system
    changed; and how often the learned side invents a change where the real one had none. Keys
    present on one side only are skipped."""
    entry_f1, delta_f1, spurious, previous = [], [], [], {}
    for key in sorted(set(learned) & set(real)):
        episode_id, _ = key
        mine, theirs = probe_entries(learned[key]), probe_entries(real[key])
        entry_f1.append(metrics.set_f1(mine, theirs))
        if episode_id in previous:
            before_mine, before_theirs = previous[episode_id]
            real_change, learned_change = changes(before_theirs, theirs), changes(before_mine, mine)
            if real_change:
                delta_f1.append(metrics.set_f1(learned_change, real_change))
            else:
                spurious.append(float(bool(learned_change)))
        previous[episode_id] = (mine, theirs)
    mean = lambda values: float(np.mean(values)) if values else None  # noqa: E731
    return {"entries_f1": mean(entry_f1), "delta_f1": mean(delta_f1), "spurious_change_rate": mean(spurious),
            "probes": len(entry_f1), "deltas": len(delta_f1), "unchanged_intervals": len(spurious)}


def reconstruct_task(episode: Episode):
    """The task an episode was recorded on, regenerated from Episode.extra (family, seed,
    difficulty) and checked against extra["task_id"]; None when the episode does not say."""
    from twjax.tasks import registry

    extra = episode.extra
    if not all(k in extra for k in ("family", "seed")) or extra["family"] not in registry.FAMILIES:
        return None
    task = registry.generate(extra["family"], int(extra["seed"]), int(extra.get("difficulty", 1)))
    if "task_id" in extra and task.id != extra["task_id"]:
        return None
    return task


def harness_probes(episodes: Sequence[Episode], wanted: dict[str, list[int]], backend: str = "auto",
                   timeout: float = 20.0) -> dict[tuple[str, int], str]:
    """The real side of the file-system probes: for each episode whose task can be regenerated, a
    fresh sandbox runs the task's setup, replays the episode's commands and runs PROBE_COMMAND after
    each wanted turn (the probe only reads, so the session goes on as if it had not run)."""
    from twjax.harness.session import open_session
    from twjax.tasks import episodes as task_episodes

    probes = {}
    for episode in episodes:
        turns = set(wanted.get(episode.id, ()))
        task = reconstruct_task(episode) if turns else None
        if task is None:
            continue
        with open_session(backend=backend) as session:
            task_episodes.prepare(session, task)
            for t, turn in enumerate(episode.turns[:max(turns) + 1]):
                session.replay(turn, timeout=timeout)
                if t in turns:
                    probes[(episode.id, t)] = session.run(PROBE_COMMAND, timeout=timeout).output
    return probes


# ---- the report ---------------------------------------------------------------------------
MIN_COMMAND_COUNT = 3  # commands seen fewer times are pooled under "<other>" in by_command


def regime_section(records: Sequence[TurnRecord], n_boot: int, seed: int = 0) -> dict:
    section = metrics.summarize(records, min_command_count=MIN_COMMAND_COUNT)
    section["curves"] = curves.regime_curves(records, CURVE_METRICS, n_boot=n_boot, seed=seed)
    return section


def build_report(records: dict[str, list[TurnRecord]], baselines: dict[str, list[TurnRecord]] | None = None,
                 fs: dict[str, dict] | None = None, n_boot: int = 500, meta: dict | None = None,
                 seed: int = 0) -> dict:
    """The fidelity report from scored records: one section per regime and baseline, the
    exposure-bias comparison when both teacher-forced and self-conditioned records are given, and
    file-system faithfulness (fs_f1: the self-conditioned entry F1, else teacher-forced's)."""
    report: dict = {name: regime_section(recs, n_boot, seed) for name, recs in records.items() if recs}
    if "teacher_forced" in report and "self_conditioned" in report:
        report["exposure_bias"] = curves.exposure_bias(
            report["teacher_forced"]["curves"], report["self_conditioned"]["curves"],
            records["teacher_forced"], records["self_conditioned"])
    report["baselines"] = {name: regime_section(recs, n_boot, seed) for name, recs in (baselines or {}).items()}
    fs = fs or {}
    report["fs"] = fs
    chosen = fs.get("self_conditioned") or fs.get("teacher_forced") or {}
    report["fs_f1"] = chosen.get("entries_f1")
    report["meta"] = meta or {}
    return report


def evaluate_model(model, tokenizer, episodes: Sequence[Episode], settings: EvalSettings = EvalSettings(),
                   regimes: Sequence[str] = REGIMES, baselines: dict[str, list[TurnRecord]] | None = None,
                   real_probes: Callable[[Sequence[Episode], dict[str, list[int]]], dict] | None = None,
                   closed_loop_pairs: Sequence[tuple[Episode, Episode]] | None = None,
                   generate: Callable | None = None) -> tuple[dict, dict[str, RegimeRun]]:
    """Runs the regimes and builds the report; callable periodically from a training loop.

    `real_probes(episodes, {episode id: turns})` -> {(episode id, turn): probe output} runs
    PROBE_COMMAND in the real harness (fidelity needs it only when settings.probe_every > 0).
    Returns (report, runs) where runs[regime] holds the records, prompts and learned probes."""
    runs = {regime: run_regime(model, tokenizer, episodes, regime, settings, generate) for regime in regimes}
    records = {regime: run.records for regime, run in runs.items()}
    if closed_loop_pairs:
        records["closed_loop"] = closed_loop_records(closed_loop_pairs)
    fs = {}
    if settings.probe_every > 0 and real_probes is not None:
        wanted = {e.id: probe_turns(len(e.turns), settings.probe_every) for e in episodes}
        real = real_probes(episodes, wanted)
        fs = {regime: fs_scores(run.probes, real) for regime, run in runs.items()}
    meta = {"episodes": len(episodes), "turns": sum(len(e.turns) for e in episodes),
            "settings": dataclasses.asdict(settings)}
    return build_report(records, baselines, fs, settings.n_boot, meta, settings.seed), runs
