"""Does the model copy? Its accuracy on synthetic copy examples [A, B, A] (twjax.data.CopyExample,
from a seed no training run uses): the share of the second A's tokens, after its first, that the
model's argmax gets right. Copying names and file contents from the session needs this ability
(induction); a model that has it scores near 1, one that does not near 0."""
from typing import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from twjax import data
from twjax.tokenizer import Tokenizer

PROBE_SEED = 2**31 - 1  # training copy examples use config.data.seed (small numbers)

# Module level, so that a trainer probing every evaluation compiles it once per model shape.
_argmax = nnx.jit(lambda model, inputs_BxT: model(inputs_BxT).argmax(-1))


def _model_argmax(model: nnx.Module) -> Callable[[np.ndarray], np.ndarray]:
    return lambda inputs_BxT: np.asarray(_argmax(model, jnp.asarray(inputs_BxT)))


def copy_accuracy(model: nnx.Module, tok: Tokenizer, n_examples: int = 32,
                  predict: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """`predict(inputs_BxT) -> predicted_BxT` defaults to the model's argmax."""
    make = data.CopyExample(data.copy_token_ids(tok), min(model.config.max_len, 512), PROBE_SEED)
    inputs_BxT, targets_BxT, weights_BxT = _probe_batch(make, n_examples)
    predict = predict or _model_argmax(model)
    hits = float(((predict(inputs_BxT) == targets_BxT) * weights_BxT).sum())
    return {"accuracy": hits / float(weights_BxT.sum()), "examples": n_examples, "targets": int(weights_BxT.sum())}


def _probe_batch(make, n_examples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs_BxT, targets_BxT, weights_BxT) of examples 0..n_examples-1 of a data Map (CopyExample,
    RecallExample), right-padded: padding follows each example, so causal attention keeps it out of
    every scored position."""
    examples = [make.map(i)[0] for i in range(n_examples)]
    width = max(len(e["inputs"]) for e in examples)
    return tuple(np.stack([np.pad(e[key], (0, width - len(e[key]))) for e in examples]).astype(dtype)
                 for key, dtype in (("inputs", np.int32), ("targets", np.int32), ("weights", np.float32)))


def line_copy_accuracy(model: nnx.Module, tok: Tokenizer, shared_prefix: bool, names_only: bool = False,
                       n_examples: int = 32, predict: Callable[[np.ndarray], np.ndarray] | None = None,
                       session: bool = False, headers: bool = False) -> dict:
    """Copying lines, as a listing repeated later in a session: six lines of [prefix (6 tokens),
    name, newline], 10 filler tokens, the six lines again. Scored on the second copy's names only.
    With `shared_prefix` every line opens with the same prefix, as `ls -l` lines do: the token
    before each name is the same, so one-token induction is at chance among the six names (1/6)
    and only a match on the line so far (or on the previous line) picks the right one.
    `names_only` repeats the names column instead, opened by the names cue (data.selection_cues),
    [name, newline] a line, as plain `ls` lists what `ls -l` did, and scores the names after the
    first: the token before each is a newline, so one-token induction repeats the name just written.
    `predicted` says what the argmax wrote in each scored place, as shares: the right name, the
    previous line's name, another name of the listing, the newline, a prefix token, or other;
    `by_line` and `by_header_lines` the accuracy by the listing's line and by its header's lines.
    A model that counts lines (line_embeddings) sees them end in the newline it counts by, as in a
    session, and no other token of the probe is one; otherwise a token drawn per example ends them.
    `session` shapes it as data.CopyExample's copy_sessions do: the listing opens with `<out>`, and
    the repeat is [cue, `<out>`, ...], so that line k of the repeat is line k of the listing. With
    `headers` too, example i's listing opens with 1 + i % 3 header lines (data.header_lines, as
    `total N`, `.` and `..` open `ls -la`'s), which the names column skips."""
    ids, rng = data.copy_token_ids(tok), np.random.default_rng(PROBE_SEED)
    real_newline = model.config.line_embeddings > 0
    if real_newline:
        ids = ids[ids != model.config.newline_id]
    n_lines, prefix_len, line_len = 6, 6, 8
    rows, names, listings, header_counts = [], [], [], []
    for example in range(n_examples):
        shared, newline = rng.choice(ids, prefix_len), rng.choice(ids)
        if real_newline:
            newline = model.config.newline_id
        lines = []
        for _ in range(n_lines):
            prefix = shared if shared_prefix else rng.choice(ids, prefix_len)
            lines.append(np.concatenate([prefix, rng.choice(ids, 1), [newline]]))
        listing_LxW = np.stack(lines)
        opened = [tok.out_id] if session else []
        header = [np.concatenate([shared, [name], [newline]])
                  for name in rng.choice(data.header_names(ids), 1 + example % 3)] if headers else []
        header_counts.append(len(header))
        second = len(opened) + (len(header) + len(lines)) * line_len + 10
        if names_only:
            repeated = np.concatenate([[data.selection_cues(ids)[0]], opened, listing_LxW[:, prefix_len:].ravel()])
            names.append([second + 1 + len(opened) + line * 2 for line in range(1, n_lines)])
        else:
            repeated = np.concatenate([opened, listing_LxW.ravel()])
            names.append([second + len(opened) + line * line_len + prefix_len for line in range(n_lines)])
        rows.append(np.concatenate([opened, *header, listing_LxW.ravel(), rng.choice(ids, 10), repeated]))
        listings.append(listing_LxW)
    # Padding follows each example, so causal attention keeps it out of every scored position.
    tokens_BxT = np.stack([np.pad(row, (0, max(map(len, rows)) - len(row))) for row in rows]).astype(np.int32)
    predicted_BxT = (predict or _model_argmax(model))(tokens_BxT[:, :-1])
    first_line = 1 if names_only else 0  # a names column is scored from its second name
    scored = [(row, line, _kind_of(int(predicted_BxT[row, pos - 1]), listings[row], line, prefix_len))
              for row, positions in enumerate(names) for line, pos in enumerate(positions, start=first_line)]
    kinds = [kind for _, _, kind in scored]
    shares = {kind: kinds.count(kind) / len(kinds) for kind in _KINDS}

    def right_by(group) -> dict[str, float]:
        hits: dict[str, list[bool]] = {}
        for row, line, kind in scored:
            hits.setdefault(str(group(row, line)), []).append(kind == "right")
        return {key: float(np.mean(values)) for key, values in sorted(hits.items())}

    return {"accuracy": shares["right"], "examples": n_examples, "targets": len(kinds), "predicted": shares,
            "by_line": right_by(lambda row, line: line),
            "by_header_lines": right_by(lambda row, line: header_counts[row])}


def recall_accuracy(model: nnx.Module, tok: Tokenizer, n_examples: int = 32,
                    predict: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Recalling one file's lines by its name, as `cat NAME` after an observation of the files'
    heads (data.RecallExample, from the probe's seed): the share of the file's tokens the argmax
    gets right ("accuracy"), and of its first tokens alone ("first_token"), where one-token
    induction copies the first file's header instead and only a match on the name finds the file."""
    newline_id = model.config.newline_id if model.config.line_embeddings > 0 else -1
    make = data.RecallExample(data.copy_token_ids(tok), min(model.config.max_len, 512), PROBE_SEED, tok.out_id,
                              newline_id)
    inputs_BxT, targets_BxT, weights_BxT = _probe_batch(make, n_examples)
    hits_BxT = (predict or _model_argmax(model))(inputs_BxT) == targets_BxT
    first_B = weights_BxT.argmax(1)  # the first weighted position of each row
    return {"accuracy": float((hits_BxT * weights_BxT).sum() / weights_BxT.sum()),
            "first_token": float(hits_BxT[np.arange(n_examples), first_B].mean()),
            "examples": n_examples, "targets": int(weights_BxT.sum())}


_KINDS = ("right", "previous_name", "other_name", "newline", "prefix", "other")


def _kind_of(token: int, listing_LxW: np.ndarray, line: int, prefix_len: int) -> str:
    names_L = listing_LxW[:, prefix_len]
    if token == names_L[line]:
        return "right"
    if line > 0 and token == names_L[line - 1]:
        return "previous_name"
    if token in names_L:
        return "other_name"
    if token == listing_LxW[0, -1]:
        return "newline"
    return "prefix" if token in listing_LxW[:, :prefix_len] else "other"


def copy_probes(model: nnx.Module, tok: Tokenizer) -> dict:
    """copy_accuracy's result with the line-copy probe's accuracies under "line_names", and what the
    model wrote instead of the names column's names under "names_column_predicted" (in a session's
    shape: "names_column_session_predicted"), and the session-shaped accuracies by line and by the
    header's lines under "names_column_session_by_line" and "names_column_session_headers_by_count",
    and recall_accuracy's result under "recall"."""
    names_column = line_copy_accuracy(model, tok, shared_prefix=True, names_only=True)
    in_session = line_copy_accuracy(model, tok, shared_prefix=True, names_only=True, session=True)
    after_headers = line_copy_accuracy(model, tok, shared_prefix=True, names_only=True, session=True, headers=True)
    return copy_accuracy(model, tok) | {"recall": recall_accuracy(model, tok), "line_names": {
        "shared_prefix": line_copy_accuracy(model, tok, shared_prefix=True)["accuracy"],
        "unique_prefix": line_copy_accuracy(model, tok, shared_prefix=False)["accuracy"],
        "names_column": names_column["accuracy"], "names_column_session": in_session["accuracy"],
        "names_column_session_headers": after_headers["accuracy"]},
        "names_column_predicted": names_column["predicted"], "names_column_session_predicted": in_session["predicted"],
        "names_column_session_by_line": in_session["by_line"],
        "names_column_session_headers_by_count": after_headers["by_header_lines"]}
