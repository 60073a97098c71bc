"""The trainer's input: episodes -> token windows -> loss weights per regime -> packed batches (grain).

    records of this process (every process_count-th line of the sorted episode files)
      -> shuffled per epoch (seeded), repeated forever
      -> tokenizer windows (task + consecutive turns, <= seq_len + 1 tokens; see tokenizer.py)
      -> example: inputs = ids[:-1], targets = ids[1:], roles/weights of the targets
      -> first-fit packing into rows of seq_len: segment ids 1, 2, ... per window (0 = padding),
         positions restart at 0 in every window, so attention never crosses episodes
      -> batches of batch_size // process_count rows (CONTRACTS.md: inputs_BxT, targets_BxT,
         segment_ids_BxT, positions_BxT, roles_BxT, weights_BxT)

Regimes (weights of each target token; padding is always 0):
  terminal  1 on terminal-role targets (the learned terminal)
  agent     1 on agent-role targets (assistant-masked SFT)
  full      1 on every target, lambda_obs on terminal-role targets (ECHO in SFT)
A session longer than seq_len + 1 becomes several windows (Tokenizer.encode_windows); a target
that a window holds only as history (already trained in an earlier window) weighs 0 there, so
each token is trained once a pass.

Copy examples (optional config.data.copy_fraction, the fraction of training records): synthetic
windows [A, B, A] of random ordinary tokens, weighted on the second A but its first token, with
the terminal role. Only attending back to the first A and copying predicts them: they install
induction heads, which the transcripts alone (a few million tokens) do not grow, and which copying
names and file contents from the session needs. Never in the valid split. With
config.data.copy_lines_fraction some of them are listings whose lines share most of their prefix
(line_listing): copying those needs induction that matches on more than the previous token. With
config.data.copy_select_fraction some listings are followed by a selection from them instead of
all of them (line_selection): a run of lines, or (a fraction config.data.copy_names_fraction of
them, 0.5 by default) the names of a run of lines.

The training iterator is a grain DatasetIterator: `get_state()` is a JSON-able dict, and
`set_state(state)` resumes at exactly the next batch. In orbax, save it with
`grain.checkpoint.CheckpointSave(iterator)` / restore with `grain.checkpoint.CheckpointRestore(iterator)`
(items of an `ocp.args.Composite`), which writes one JSON file per process. Batches are made
in a background thread (two ahead) while the train step runs; the state is that of the last
batch handed out, not of the prefetched ones.
"""
import argparse
import dataclasses
import os
import time
from typing import Any, Iterator

import grain
import numpy as np

from twjax import episode as episode_lib
from twjax import tokenizer as tokenizer_lib
from twjax.cli import print_result

REGIMES = ("terminal", "agent", "full")
BATCH_KEYS = ("inputs", "targets", "segment_ids", "positions", "roles", "weights")
_EXAMPLE_KEYS = ("inputs", "targets", "roles", "weights")
_INDEX_CHUNK_BYTES = 1 << 24


class EpisodeLines:
    """Random access to the episodes of JSONL files, one record a non-blank line.

    Only the byte offsets of lines are held in memory; a record is read and parsed when asked
    for, and a malformed one raises EpisodeFormatError naming file:line.
    """

    def __init__(self, paths: list[str]):
        self.paths = list(paths)
        file_ids, starts, ends, numbers = [], [], [], []
        for file_id, path in enumerate(self.paths):
            line_starts, line_ends, line_numbers = _line_offsets(path)
            file_ids.append(np.full(len(line_starts), file_id, np.int32))
            starts.append(line_starts)
            ends.append(line_ends)
            numbers.append(line_numbers)
        self._file_ids = np.concatenate(file_ids) if file_ids else np.zeros(0, np.int32)
        self._starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self._ends = np.concatenate(ends) if ends else np.zeros(0, np.int64)
        self._numbers = np.concatenate(numbers) if numbers else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self._starts)

    def location(self, index: int) -> str:
        return f"{self.paths[self._file_ids[index]]}:{self._numbers[index]}"

    def __getitem__(self, index: int) -> episode_lib.Episode:
        index = int(index)
        with open(self.paths[self._file_ids[index]], "rb") as handle:
            handle.seek(int(self._starts[index]))
            raw = handle.read(int(self._ends[index] - self._starts[index]))
        where = self.location(index)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise episode_lib.EpisodeFormatError(f"{where}: not UTF-8 (byte {error.start})") from None
        return episode_lib.parse_line(line, where)

    def __repr__(self) -> str:
        return f"EpisodeLines({len(self.paths)} files, {len(self)} records)"


def _line_offsets(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, 1-based line number) of every non-blank line; end excludes the newline."""
    newlines = []
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        offset = 0
        while chunk := handle.read(_INDEX_CHUNK_BYTES):
            newlines.append(np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10) + offset)
            offset += len(chunk)
    newline_at = np.concatenate(newlines) if newlines else np.zeros(0, np.int64)
    ends_with_newline = size == 0 or (len(newline_at) and newline_at[-1] == size - 1)
    ends = newline_at if ends_with_newline else np.append(newline_at, size)
    starts = np.concatenate([[0], newline_at + 1])[:len(ends)]
    numbers = np.arange(1, len(ends) + 1)
    keep = ends - starts > 0
    short = np.flatnonzero(keep & (ends - starts <= 8))
    if len(short):
        with open(path, "rb") as handle:
            for i in short:
                handle.seek(int(starts[i]))
                keep[i] = bool(handle.read(int(ends[i] - starts[i])).strip())
    return starts[keep].astype(np.int64), ends[keep].astype(np.int64), numbers[keep]


def regime_weights(target_roles: np.ndarray, regime: str, lambda_obs: float = 1.0) -> np.ndarray:
    """Loss weight of each target token under a regime (module doc)."""
    if regime == "terminal":
        return (target_roles == tokenizer_lib.ROLE_TERMINAL).astype(np.float32)
    if regime == "agent":
        return (target_roles == tokenizer_lib.ROLE_AGENT).astype(np.float32)
    if regime == "full":
        return np.where(target_roles == tokenizer_lib.ROLE_TERMINAL, lambda_obs, 1.0).astype(np.float32)
    raise ValueError(f"unknown regime {regime!r}; expected one of {REGIMES}")


@dataclasses.dataclass
class EncodeEpisode(grain.transforms.Map):
    """Episode -> list of examples (one per training window). Turns labelled one of drop_labels
    leave the transcript; the agent tokens of turns labelled one of unimitated_labels stay as
    context but weigh 0 (Tokenizer.encode_windows). The tokenizer loads lazily, once per process,
    so the transform pickles cheaply."""
    tokenizer_path: str
    seq_len: int
    regime: str
    lambda_obs: float = 1.0
    drop_labels: tuple[str, ...] = ()
    unimitated_labels: tuple[str, ...] = ()

    def __post_init__(self):
        if self.regime not in REGIMES:
            raise ValueError(f"unknown regime {self.regime!r}; expected one of {REGIMES}")
        self._tokenizer = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_tokenizer"} | {"_tokenizer": None}

    @property
    def tokenizer(self) -> tokenizer_lib.Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = tokenizer_lib.Tokenizer.load(self.tokenizer_path)
        return self._tokenizer

    def map(self, ep: episode_lib.Episode) -> list[dict[str, np.ndarray]]:
        if self.drop_labels:
            ep = dataclasses.replace(ep, turns=[t for t in ep.turns if t.label not in self.drop_labels])
        examples = []
        for ids, roles, fresh in self.tokenizer.encode_windows(ep, self.seq_len + 1, self.unimitated_labels):
            if len(ids) < 2:
                continue
            weights = regime_weights(roles[1:], self.regime, self.lambda_obs) * fresh[1:]
            examples.append({"inputs": ids[:-1], "targets": ids[1:], "roles": roles[1:], "weights": weights})
        return examples


@dataclasses.dataclass
class CopyExample(grain.transforms.Map):
    """Record index -> [one synthetic copy example] of at most seq_len + 1 tokens, a pure function
    of (seed, index): A of 8..min(128, seq_len/3) tokens drawn from `token_ids`, B of
    0..min(64, seq_len/6), then A. Short: what grows induction is the number of examples.
    A fraction `lines_fraction` of them are listings instead (line_listing), and a fraction
    `select_fraction` of those repeat a selection from the listing (line_selection), not all of it,
    a fraction `names_fraction` of the selections its names column. A listing's lines end in a
    token drawn per listing, or in `newline_id` where that is set (>= 0): the tokenizer's newline,
    for a model that counts lines by it (model.line_embeddings). Where `session_marker_id` is set (>= 0),
    listings are shaped as in a session: the listing and the second part each open with that marker
    (`<out>`; a selection's cue stands before it, as the command does), and a names column lists the
    listing from its first line, as `ls` after `ls -l` prints it. Line k of the names column is then
    line k of the listing, counted from each marker. There `header_max` (0-3) opens a listing with up
    to that many header lines (header_lines), as `total N`, `.` and `..` open `ls -la`'s: the names
    column skips them, so that its line k is the listing's line k + the header's lines."""
    token_ids: np.ndarray
    seq_len: int
    seed: int
    lines_fraction: float = 0.0
    select_fraction: float = 0.0
    names_fraction: float = 0.5
    prefix_max: int = 8
    newline_id: int = -1
    name_max: int = 3
    session_marker_id: int = -1
    header_max: int = 0

    def map(self, index: int) -> list[dict[str, np.ndarray]]:
        # Listings and selections draw from their own streams, so that a fraction of 0 keeps every
        # example as it was.
        lines_rng = np.random.default_rng((self.seed, int(index), 1))
        unweighted = 1
        if self.lines_fraction > 0 and lines_rng.random() < self.lines_fraction:
            lines_NxW, prefix_len, filler = line_listing(lines_rng, self.token_ids, self.seq_len, self.prefix_max,
                                                         self.newline_id, self.name_max)
            copied = second = lines_NxW.ravel()
            select_rng = np.random.default_rng((self.seed, int(index), 2))
            selected = self.select_fraction > 0 and select_rng.random() < self.select_fraction
            if selected:
                second = line_selection(select_rng, lines_NxW, prefix_len, selection_cues(self.token_ids),
                                        self.names_fraction, names_from_first=self.session_marker_id >= 0)
            if self.session_marker_id >= 0:
                marker = [self.session_marker_id]
                header_rng = np.random.default_rng((self.seed, int(index), 3))
                header_len = (prefix_len + 2) * (1 if selected else 2)  # a whole repeat holds the header twice
                room = (self.seq_len - 1 - len(filler) - len(copied) - len(second)) // header_len
                header = header_lines(header_rng, lines_NxW, prefix_len,
                                      min(int(header_rng.integers(0, self.header_max + 1)), room),
                                      header_names(self.token_ids))
                copied = np.concatenate([marker, header, copied])
                second = np.concatenate([second[:1], marker, second[1:]] if selected else [marker, header, second])
                unweighted = 2 if selected else 1  # the selection's first target is its first token after the marker
        else:
            rng = np.random.default_rng((self.seed, int(index)))
            copied = second = rng.choice(self.token_ids, rng.integers(8, min(128, self.seq_len // 3) + 1))
            filler = rng.choice(self.token_ids, rng.integers(0, min(64, self.seq_len // 6) + 1))
        # The two markers of a session's shape can pass seq_len + 1 by a token or two: the end goes.
        ids = np.concatenate([copied, filler, second]).astype(np.int32)[:self.seq_len + 1]
        # The second part's targets but its first token (for a selection, its cue), or in a session
        # shape those after its marker.
        return [synthetic_example(ids, len(copied) + len(filler) + unweighted - 1)]


def synthetic_example(ids: np.ndarray, first_weighted: int) -> dict[str, np.ndarray]:
    """A synthetic example of `ids` (terminal role, so it counts in loss_terminal), weighted on the
    targets from index `first_weighted` on."""
    weights = np.zeros(len(ids) - 1, np.float32)
    weights[first_weighted:] = 1.0
    return {"inputs": ids[:-1], "targets": ids[1:], "weights": weights,
            "roles": np.full(len(ids) - 1, tokenizer_lib.ROLE_TERMINAL, np.int32)}


@dataclasses.dataclass
class RecallExample(grain.transforms.Map):
    """Record index -> [one synthetic recall example] of at most seq_len + 1 tokens, a pure function
    of (seed, index), shaped as `cat NAME` after an observation that showed the files' heads:
    `<out>`, then 2..6 files one after another as `head -v` shows them ([open, key, close, newline],
    1..6 lines of 1..8 tokens and a newline, fewer and shorter below 288 and 128 tokens, a blank line
    between files; the last go where they do not fit, down to two), a filler, then
    [cue, key of one of them, `<out>`] and that file's lines, the targets. The first target is
    where induction fails: what followed the latest `<out>` is the first file's header; finding
    the file takes matching the key (1-3 tokens of its own, no two files alike, then a suffix of 0-2
    tokens that all the example's keys share, as `.txt` ends names) behind the header.
    open, close and the lines' newline (where `newline_id` is < 0) are drawn per example; the cue
    is the rarest ordinary piece not taken by another cue (recall_cue)."""
    token_ids: np.ndarray
    seq_len: int
    seed: int
    marker_id: int
    newline_id: int = -1

    def parts(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(the prompt up to and with the second `<out>`, the named file's lines)."""
        rng = np.random.default_rng((self.seed, int(index), 4))
        ordinary = self.token_ids[self.token_ids != recall_cue(self.token_ids)]
        newline = rng.choice(ordinary, 1) if self.newline_id < 0 else np.array([self.newline_id])
        open_close = rng.choice(ordinary[ordinary != newline[0]], 2, replace=False)
        content = ordinary[~np.isin(ordinary, np.concatenate([newline, open_close]))]
        # Files shrink with the window (at 128 tokens: 1-2 lines of 1-8 tokens), so that several fit.
        max_lines, max_width = int(np.clip(self.seq_len // 48, 1, 6)), int(np.clip(self.seq_len // 16, 2, 8))
        # Names often end alike (`.txt`): a suffix of 0-2 tokens shared by every key of the example,
        # so that the key's last token does not tell the files apart.
        n_files, keys, files = int(rng.integers(2, 7)), set(), []
        suffix = rng.choice(content, int(rng.integers(0, 3)))
        while len(files) < n_files:
            own = tuple(rng.choice(content, int(rng.integers(1, 4))))
            if own in keys:
                continue
            keys.add(own)
            key = np.concatenate([own, suffix]).astype(content.dtype)
            lines = [np.concatenate([rng.choice(content, int(rng.integers(1, max_width + 1))), newline])
                     for _ in range(int(rng.integers(1, max_lines + 1)))]
            files.append((key, np.concatenate(lines)))
        filler = rng.choice(content, int(rng.integers(0, min(32, self.seq_len // 8) + 1)))

        def shown(kept):
            blocks = [np.concatenate([newline] * (i > 0) + [open_close[:1], key, open_close[1:], newline, lines])
                      for i, (key, lines) in enumerate(kept)]
            return np.concatenate([[self.marker_id], *blocks, filler])

        # Files go from the end until the shown files and the longest recall fit.
        while len(files) > 2 and len(shown(files)) + max(len(k) + len(f) + 2 for k, f in files) > self.seq_len + 1:
            files.pop()
        key, lines = files[int(rng.integers(len(files)))]
        prompt = np.concatenate([shown(files), [recall_cue(self.token_ids)], key, [self.marker_id]])
        return prompt.astype(np.int32), lines.astype(np.int32)

    def map(self, index: int) -> list[dict[str, np.ndarray]]:
        prompt, lines = self.parts(index)
        ids = np.concatenate([prompt, lines])[:self.seq_len + 1]
        return [synthetic_example(ids, len(prompt) - 1)]  # the named file's lines, from the first


def recall_cue(token_ids: np.ndarray) -> int:
    """The token that asks for one file's lines, as `cat` does: the rarest ordinary piece after
    the selection cues and the header names."""
    return int(token_ids[-5])


LINES_MIN_SEQ_LEN = 64
# A real `ls -la` line is ~26 pieces before its name (digits and spaces are pieces of their own)
# and 3-6 in it (`garnet`, `_`, `part`, `1`, `.`, `txt`), so listings may reach that far.
LISTING_PREFIX_MAX, LISTING_NAME_MAX = 32, 8


def listing_filler_max(seq_len: int) -> int:
    """The longest filler between a listing and its repeat (line_listing)."""
    return min(32, seq_len // 8)


def listing_fits(seq_len: int, prefix_max: int, name_max: int) -> bool:
    """Whether two lines of the longest shape and the longest filler fit in a copy example
    (line_listing's count of lines, at its maximum)."""
    return (seq_len + 1 - listing_filler_max(seq_len)) // 2 // (prefix_max + name_max + 1) >= 2


def line_listing(rng: np.random.Generator, token_ids: np.ndarray, seq_len: int,
                 prefix_max: int = 8, newline_id: int = -1, name_max: int = 3) -> tuple[np.ndarray, int, np.ndarray]:
    """(lines_NxW, prefix_len, filler) for a copy example whose A is a listing, as `ls -l` prints:
    2..12 lines of [prefix (1..prefix_max tokens, none if prefix_max is 0), name (1..name_max), newline],
    each prefix column shared by every line with probability 3/4 (mode, owner, date) or drawn per
    line (size). Where the prefix is shared, the token before a name says nothing about which name
    follows: copying the right one takes knowing which line this is, from the line so far or the
    previous line's name, not one-token induction. Lines end in a token drawn per listing, or in
    `newline_id` if that is >= 0."""
    filler = rng.choice(token_ids, rng.integers(0, listing_filler_max(seq_len) + 1))
    prefix_len, name_len = int(rng.integers(min(1, prefix_max), prefix_max + 1)), int(rng.integers(1, name_max + 1))
    line_len = prefix_len + name_len + 1
    max_lines = min(12, (seq_len + 1 - len(filler)) // 2 // line_len)
    n_lines = int(rng.integers(2, max_lines + 1))
    shared_columns = rng.random(prefix_len) < 0.75
    newline = rng.choice(token_ids, 1) if newline_id < 0 else np.array([newline_id])
    token_ids = token_ids[token_ids != newline[0]]  # as no line holds a newline
    shared_prefix = rng.choice(token_ids, prefix_len)
    lines = []
    for _ in range(n_lines):
        prefix = np.where(shared_columns, shared_prefix, rng.choice(token_ids, prefix_len))
        lines.append(np.concatenate([prefix, rng.choice(token_ids, name_len), newline]))
    return np.stack(lines), prefix_len, filler


def selection_cues(token_ids: np.ndarray) -> tuple[int, int]:
    """(names cue, lines cue): the token that opens a selection and says which kind it is, as the
    command does in a session (`ls` after `ls -l`; `head`). Without it, what follows a newline is
    ambiguous (the next line's prefix, or its name), and in a 1,024-token run that ambiguity took
    the shared-prefix line probe from 0.59 to 0.14 in 500 steps. The last two ordinary pieces, the
    rarest (sentencepiece puts single characters of low score last): the first ones, used before,
    include the newline piece, a cue that also ends every line."""
    return int(token_ids[-1]), int(token_ids[-2])


def header_names(token_ids: np.ndarray) -> np.ndarray:
    """The names of header lines (as `.` and `..` are `ls -la`'s): the two rarest pieces after the cues."""
    return token_ids[-4:-2]


def header_lines(rng: np.random.Generator, lines_NxW: np.ndarray, prefix_len: int, count: int,
                 names: np.ndarray) -> np.ndarray:
    """`count` lines shaped as the listing's (a prefix of one of its lines, a one-token name of
    `names`, its newline), to open it as `total N`, `.` and `..` open `ls -la`'s listing."""
    rows = [np.concatenate([lines_NxW[rng.integers(len(lines_NxW)), :prefix_len], [rng.choice(names)],
                            lines_NxW[0, -1:]]) for _ in range(count)]
    return np.concatenate(rows) if rows else np.zeros(0, lines_NxW.dtype)


def line_selection(rng: np.random.Generator, lines_NxW: np.ndarray, prefix_len: int,
                   cues: tuple[int, int], names_fraction: float = 0.5, names_from_first: bool = False) -> np.ndarray:
    """[cue, selection]: a run of whole lines, as `head`, `tail` or `ls -l` of one directory repeat a
    listing, or (a fraction `names_fraction` of the time) the names of a run of lines, one a line,
    as plain `ls` prints what `ls -l` listed. A run opens at any line and ends at any later one.
    Writing the names column takes finding where the last name written stood and skipping the next
    line's prefix. With `names_from_first` a names run opens at the listing's first line, as plain
    `ls` after `ls -l` of the same directory does (the draws are those of any run)."""
    start = int(rng.integers(0, len(lines_NxW)))
    end = int(rng.integers(start + 1, len(lines_NxW) + 1))
    names_cue, lines_cue = cues
    if rng.random() >= names_fraction:
        return np.concatenate([[lines_cue], lines_NxW[start:end].ravel()])
    return np.concatenate([[names_cue], lines_NxW[0 if names_from_first else start:end, prefix_len:].ravel()])


def copy_token_ids(tokenizer: tokenizer_lib.Tokenizer) -> np.ndarray:
    """The ordinary pieces: not markers, bytes, control or unknown."""
    sp = tokenizer.sp
    markers = {tokenizer.id_of(m) for m in tokenizer_lib.MARKERS}
    return np.array([i for i in range(tokenizer.vocab_size) if i not in markers and not sp.is_byte(i)
                     and not sp.is_control(i) and not sp.is_unknown(i) and not sp.is_unused(i)], np.int32)


class _Unlist(grain.experimental.FlatMapTransform):
    max_fan_out = 1 << 16

    def flat_map(self, examples):
        return examples


def _to_batch(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"inputs": packed["inputs"].astype(np.int32), "targets": packed["targets"].astype(np.int32),
            "segment_ids": packed["inputs_segment_ids"].astype(np.int32),
            "positions": packed["inputs_positions"].astype(np.int32),
            "roles": packed["roles"].astype(np.int32), "weights": packed["weights"].astype(np.float32)}


def _process_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    if shard is not None:
        return shard
    import jax  # Imported here so that tokenizer-only users never pay for jax.
    return jax.process_index(), jax.process_count()


def _local_batch_size(global_batch: int, shard_count: int) -> int:
    if global_batch % shard_count:
        raise ValueError(f"batch_size {global_batch} does not split over {shard_count} processes")
    return global_batch // shard_count


def _records(pattern: str, shard: tuple[int, int]) -> grain.MapDataset:
    paths = episode_lib.expand_globs(pattern)
    source = EpisodeLines(paths)
    if len(source) == 0:
        raise ValueError(f"no episodes in {pattern!r}")
    index, count = shard
    records = grain.MapDataset.source(source)[index::count]
    if len(records) == 0:
        raise ValueError(f"{pattern!r} has {len(source)} episodes, none for process {index} of {count}")
    return records


def _packed(examples: grain.IterDataset, seq_len: int, bins: int, seed: int, shuffle_bins: bool):
    return grain.experimental.FirstFitPackIterDataset(
        examples, length_struct={k: seq_len for k in _EXAMPLE_KEYS}, num_packing_bins=bins,
        seed=seed, shuffle_bins=shuffle_bins)


def _field(config, name, default):
    return config.data[name] if name in config.data else default


def _bounded(config, name, default, upper, lower=0.0):
    """config.data[name] (or `default`), which must lie in [lower, upper]."""
    value = float(_field(config, name, default))
    if not lower <= value <= upper:
        raise ValueError(f"data.{name} must be in [{lower:g}, {upper:g}], got {value:g}")
    return value


def make_encoder(config) -> EncodeEpisode:
    """The config's EncodeEpisode. Optional config.data fields: drop_labels, unimitated_labels (())."""
    data = config.data
    return EncodeEpisode(data.tokenizer, data.seq_len, data.regime, float(data.lambda_obs),
                         tuple(_field(config, "drop_labels", ())), tuple(_field(config, "unimitated_labels", ())))


def make_train_iterator(config, shard: tuple[int, int] | None = None):
    """Endless, seeded iterator of this process's training batches (a grain DatasetIterator with
    get_state/set_state). `shard` = (process_index, process_count) overrides jax's. Optional
    config.data fields: packing_bins (64), num_threads (2, reader threads per process),
    copy_fraction (0.0: the fraction of records that are synthetic copy examples), copy_lines_fraction
    (0.0: the fraction of those that are listings), copy_select_fraction (0.0: the fraction of
    listings followed by a selection from them), copy_names_fraction (0.5: the fraction of selections
    that are a names column), copy_prefix_max (8: the longest prefix of a listing's lines, up to 32; 0
    for none), copy_name_max (3: the longest name of a listing's lines, in tokens, up to 8), copy_sessions (False: listings
    shaped as in a session, each part opened by `<out>`, names columns from the listing's first line),
    copy_session_header_max (0: with copy_sessions, the most header lines that open a listing, 0-3),
    copy_recall_fraction (0.0: the fraction of copy examples that are recall examples, RecallExample),
    upweighted ("": episodes, a pattern as data.train, drawn beside data.train's as upweighted_fraction
    of the records, however few they are). With model.line_embeddings, listings and recalled files
    end their lines in the tokenizer's newline."""
    data = config.data
    shard = _process_shard(shard)
    batch = _local_batch_size(data.batch_size, shard[1])
    encode = make_encoder(config)
    ds = _records(data.train, shard).shuffle(seed=data.seed).repeat(None).map(encode)
    upweighted = str(_field(config, "upweighted", ""))
    if upweighted:
        fraction = float(_field(config, "upweighted_fraction", 0.0))
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"data.upweighted needs data.upweighted_fraction in (0, 1), got {fraction:g}")
        extra = _records(upweighted, shard).shuffle(seed=data.seed + 1).repeat(None).map(encode)
        ds = grain.MapDataset.mix([ds, extra], [1.0 - fraction, fraction])
    copy_fraction = float(_field(config, "copy_fraction", 0.0))
    if not 0.0 <= copy_fraction < 1.0:
        raise ValueError(f"data.copy_fraction must be in [0, 1), got {copy_fraction}")
    if copy_fraction > 0:
        if data.seq_len < 24:
            raise ValueError(f"copy examples need data.seq_len >= 24, got {data.seq_len}")
        lines_fraction = _bounded(config, "copy_lines_fraction", 0.0, 1.0)
        select_fraction = _bounded(config, "copy_select_fraction", 0.0, 1.0)
        names_fraction = _bounded(config, "copy_names_fraction", 0.5, 1.0)
        prefix_max = int(_bounded(config, "copy_prefix_max", 8, LISTING_PREFIX_MAX))
        name_max = int(_bounded(config, "copy_name_max", 3, LISTING_NAME_MAX, lower=1))
        header_max = int(_bounded(config, "copy_session_header_max", 0, 3))
        sessions = bool(_field(config, "copy_sessions", False))
        if header_max and not sessions:
            raise ValueError("data.copy_session_header_max needs data.copy_sessions")
        if lines_fraction > 0 and data.seq_len < LINES_MIN_SEQ_LEN:
            raise ValueError(f"listing copy examples need data.seq_len >= {LINES_MIN_SEQ_LEN}, got {data.seq_len}")
        if lines_fraction > 0 and not listing_fits(data.seq_len, prefix_max, name_max):
            raise ValueError(f"two listing lines of copy_prefix_max {prefix_max} and copy_name_max {name_max} "
                             f"do not fit twice in data.seq_len {data.seq_len}: raise it or lower them")
        indices = grain.MapDataset.range(len(ds))[shard[0]::shard[1]]
        token_ids, newline_id = copy_token_ids(encode.tokenizer), listing_newline_id(config, encode.tokenizer)
        copies = indices.map(
            CopyExample(token_ids, data.seq_len, data.seed, lines_fraction, select_fraction,
                        names_fraction, prefix_max, newline_id, name_max,
                        encode.tokenizer.out_id if sessions else -1, header_max))
        recall_fraction = _bounded(config, "copy_recall_fraction", 0.0, 1.0)
        if recall_fraction > 0:
            recalls = indices.map(RecallExample(token_ids, data.seq_len, data.seed, encode.tokenizer.out_id, newline_id))
            copies = recalls if recall_fraction == 1.0 else \
                grain.MapDataset.mix([copies, recalls], [1.0 - recall_fraction, recall_fraction])
        ds = grain.MapDataset.mix([ds, copies], [1.0 - copy_fraction, copy_fraction])
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=int(_field(config, "num_threads", 2)),
                                           prefetch_buffer_size=64))
    ds = grain.experimental.FlatMapIterDataset(ds, _Unlist())
    bins = max(batch, int(_field(config, "packing_bins", 64)))
    ds = _packed(ds, data.seq_len, bins, data.seed, shuffle_bins=True)
    ds = ds.batch(batch, drop_remainder=True).map(_to_batch)
    # Batches are made in a background thread while the caller's train step runs.
    return grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=2).__iter__()


def listing_newline_id(config, tok: tokenizer_lib.Tokenizer) -> int:
    """The newline of a model that counts lines (model.line_embeddings), else -1 (drawn per listing)."""
    return tok.id_of("\n") if config.get("model", {}).get("line_embeddings", 0) else -1


def empty_batch(batch: int, seq_len: int) -> dict[str, np.ndarray]:
    """A batch of padding only (weights all 0)."""
    batch_arrays = {k: np.zeros((batch, seq_len), np.int32) for k in BATCH_KEYS}
    batch_arrays["weights"] = np.zeros((batch, seq_len), np.float32)
    return batch_arrays


def _pad_rows(arrays: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    missing = batch - len(arrays["inputs"])
    if missing == 0:
        return arrays
    return {k: np.concatenate([v, np.zeros((missing,) + v.shape[1:], v.dtype)]) for k, v in arrays.items()}


def make_eval_batches(config, shard: tuple[int, int] | None = None,
                      num_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """One fixed pass over this process's share of config.data.valid, in file order, packed, the
    last batch padded with empty rows. With `num_batches` exactly that many batches come out
    (cut, or padded with empty batches): pass it on multi-host runs so that every process runs
    the same number of eval steps."""
    data = config.data
    shard = _process_shard(shard)
    batch = _local_batch_size(data.batch_size, shard[1])
    encode = make_encoder(config)
    ds = _records(data.valid, shard).map(encode).to_iter_dataset(grain.ReadOptions(num_threads=0))
    ds = grain.experimental.FlatMapIterDataset(ds, _Unlist())
    ds = _packed(ds, data.seq_len, max(batch, int(_field(config, "packing_bins", 64))), 0, shuffle_bins=False)
    batches = ds.batch(batch, drop_remainder=False).map(_to_batch)
    produced = 0
    for arrays in batches:
        if num_batches is not None and produced >= num_batches:
            return
        yield _pad_rows(arrays, batch)
        produced += 1
    while num_batches is not None and produced < num_batches:
        yield empty_batch(batch, data.seq_len)
        produced += 1


def summarize(batch: dict[str, Any]) -> dict[str, float]:
    """Token counts of a batch, for logs: real tokens, weighted targets, padding fraction."""
    real = float((batch["segment_ids"] > 0).sum())
    return {"tokens": real, "weighted_targets": float(batch["weights"].sum()),
            "padding_fraction": 1.0 - real / batch["segment_ids"].size}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/terminal.py:tiny", help="config file[:preset]")
    parser.add_argument("--batches", type=int, default=100, help="batches to time (after one warm-up)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")


def main(args) -> int:
    """`twjax bench data`: tokens/s and padding of this process's training batches."""
    from twjax import configlib
    config = configlib.load(args.config, args.config_overrides)
    iterator = make_train_iterator(config)
    next(iterator)
    real = slots = weighted = 0
    started = time.perf_counter()
    for _ in range(args.batches):
        batch = next(iterator)
        real += int((batch["segment_ids"] > 0).sum())
        weighted += float(batch["weights"].sum())
        slots += batch["segment_ids"].size
    seconds = time.perf_counter() - started
    result = {"bench": "data", "batches": args.batches, "batch_rows": int(batch["inputs"].shape[0]),
              "seq_len": int(config.data.seq_len), "regime": config.data.regime,
              "tokens_per_s": round(real / seconds, 1), "batches_per_s": round(args.batches / seconds, 2),
              "padding_fraction": round(1 - real / slots, 4), "weighted_fraction": round(weighted / slots, 4)}
    print_result(result, args.json)
    return 0
