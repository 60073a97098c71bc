"""Sentencepiece tokenizer for episodes, and the token layout every model in twjax reads.

Layout of one episode (CONTRACTS.md), with the role of each token:

    <task> TASKTEXT                                      task
    per turn:
      <cmd> COMMAND </cmd>                               agent
      <out>                                              control (forced after </cmd>)
      OUTPUT <exit> CODE <cwd> CWD </out>                terminal
    <eoe>                                                agent (the agent chooses to stop)

The eight markers are sentencepiece user-defined symbols. Text never encodes to a marker: a
literal "<cmd>" inside a command or an output has its "<" spelled as a byte piece, so only the
layout puts markers in a sequence.

Text policy (encode -> decode is the identity):
  * whitespace is kept verbatim: no normalisation, no dummy prefix, runs of spaces and tabs are
    pieces, "\n" is a user-defined symbol; digits are split one a piece (numbers copy digit by
    digit) unless trained with split_digits=False, where runs of digits merge into pieces as words
    do (every 2-digit number one piece at 2,048 pieces): fewer tokens to copy, each telling more
    numbers apart than a digit; characters outside the vocabulary fall back to their UTF-8 bytes.
  * words and runs of whitespace are encoded apart, so no piece joins a space to a word: a name
    is the same tokens after a space, at a line start or after a "/" (`cat juniper.txt` and `ls`
    printing "juniper.txt" on a line of its own share them), and copying text from the session
    is copying tokens. With sentencepiece's usual "▁word" pieces the two differed, and the
    learned terminal wrote names from training instead of the ones in its context.
  * non-UTF-8 output: text is a Python str in which undecodable bytes are lone surrogates
    U+DC80..U+DCFF (errors="surrogateescape", what decoding raw terminal bytes gives). Such a
    surrogate is encoded as its raw byte piece and decodes back to the same surrogate. Any other
    lone surrogate (not producible from bytes) becomes U+FFFD. U+2581 "▁", sentencepiece's
    space symbol, is likewise kept away from sentencepiece: it is spelled as its UTF-8 bytes.

Truncation policy (encode_episode with max_len): the pinned prefix is kept: the task's head (at
most a quarter of max_len), then the turns that open the episode with the state given
(episode.GIVEN_LABELS: the observation after setup), in at most half of max_len in all (a given
turn that does not fit whole keeps the head lines of its output, its layout intact; a later one is
left out). Then come the most recent turns that fit whole; if not even the latest turn fits, its
prefix is kept (a prefix of a valid sequence is still a valid training sequence); a task with
no turns keeps the head of the task. Training uses encode_windows, which cuts a long session
into several windows (pinned prefix + consecutive turns, with recent history for context) so that
every token is a fresh target of exactly one window (but the lines a cut given turn leaves out).
"""
import argparse
import dataclasses
import functools
import io
import os
import random
import re
import time
from typing import Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm

from twjax import episode as episode_lib
from twjax.episode import expand_globs

MARKERS = ("<task>", "<cmd>", "</cmd>", "<out>", "<exit>", "<cwd>", "</out>", "<eoe>")
ROLE_TASK, ROLE_AGENT, ROLE_TERMINAL, ROLE_CONTROL = 0, 1, 2, 3
ROLE_NAMES = ("task", "agent", "terminal", "control")
PAD_ID = 0

# Characters that must not reach sentencepiece as themselves: escaped bytes, any other lone
# surrogate, the space symbol, and the "<" that would start a marker.
_MARKER_STARTS = "|".join(re.escape(m[1:]) for m in MARKERS)
_SPECIAL_RE = re.compile(f"[\ud800-\udfff\u2581]|<(?={_MARKER_STARTS})")
_TRAINING_STRIP_RE = re.compile("[\ud800-\udfff\u2581]")
_CHUNK_RE = re.compile(r"\s+|\S+")
# sentencepiece skips longer training sentences; a longer word is cut below this.
_MAX_SENTENCE_BYTES = 8192


class Tokenizer:
    """A trained sentencepiece model plus the episode layout."""

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab_size = self.sp.vocab_size()
        self._marker_ids = {m: self.sp.piece_to_id(m) for m in MARKERS}
        for marker, index in self._marker_ids.items():
            if self.sp.id_to_piece(index) != marker:
                raise ValueError(f"tokenizer model lacks the marker {marker!r}")
        self._byte_ids = np.array([self.sp.piece_to_id(f"<0x{b:02X}>") for b in range(256)], np.int32)
        if any(self.sp.id_to_piece(int(i)) != f"<0x{b:02X}>" for b, i in enumerate(self._byte_ids)):
            raise ValueError("tokenizer model was trained without byte fallback")
        self._bytes_of_id = [self._piece_bytes(i) for i in range(self.vocab_size)]
        joined = [piece for piece in map(self.sp.id_to_piece, range(self.vocab_size))
                  if re.search("\u2581[^\u2581]|[^\u2581]\u2581", piece)]
        if joined:
            raise ValueError(f"tokenizer model has pieces that join a space to a word ({joined[0]!r}): it was "
                             "trained before words and whitespace were split; retrain it with `twjax tokenizer train`")
        # Words repeat: a cache makes chunk-by-chunk encoding as fast as sentencepiece on whole text.
        self._encode_chunk = functools.lru_cache(maxsize=1 << 16)(lambda chunk: tuple(self.sp.encode(chunk)))
        ids = self._marker_ids
        self.task_id, self.cmd_id, self.end_cmd_id = ids["<task>"], ids["<cmd>"], ids["</cmd>"]
        self.out_id, self.exit_id, self.cwd_id = ids["<out>"], ids["<exit>"], ids["<cwd>"]
        self.end_out_id, self.eoe_id = ids["</out>"], ids["<eoe>"]

    @classmethod
    def load(cls, path: str) -> "Tokenizer":
        with open(path, "rb") as handle:
            return cls(handle.read())

    def id_of(self, piece: str) -> int:
        index = self.sp.piece_to_id(piece)
        if self.sp.id_to_piece(index) != piece:
            raise KeyError(f"{piece!r} is not a piece of this tokenizer")
        return index

    def _piece_bytes(self, index: int) -> bytes:
        if self.sp.is_byte(index):
            return bytes([int(self.sp.id_to_piece(index)[3:5], 16)])
        if self.sp.is_control(index):
            return b""
        if self.sp.is_unknown(index):
            return "\ufffd".encode()
        return self.sp.id_to_piece(index).replace("\u2581", " ").encode("utf-8")

    # ---- text ---------------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        """Ids of plain text (never a marker id); see the module doc for the text policy."""
        ids: list[int] = []
        start = 0
        for match in _SPECIAL_RE.finditer(text):
            if match.start() > start:
                ids.extend(self._encode_plain(text[start:match.start()]))
            char = match.group()
            if "\udc80" <= char <= "\udcff":
                ids.append(int(self._byte_ids[ord(char) - 0xDC00]))
            elif "\ud800" <= char <= "\udfff":
                ids.extend(self.sp.encode("\ufffd"))
            else:
                ids.extend(int(self._byte_ids[b]) for b in char.encode("utf-8"))
            start = match.end()
        if start < len(text):
            ids.extend(self._encode_plain(text[start:]))
        return ids

    def _encode_plain(self, text: str) -> list[int]:
        return [i for chunk in _CHUNK_RE.findall(text) for i in self._encode_chunk(chunk)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids; markers render as their literal text, padding as nothing."""
        raw = b"".join(self._bytes_of_id[int(i)] for i in ids)
        return raw.decode("utf-8", "surrogateescape")

    # ---- layout pieces ------------------------------------------------------------------
    def encode_task(self, text: str) -> np.ndarray:
        return np.array([self.task_id] + self.encode_text(text), np.int32)

    def encode_command(self, command: str) -> np.ndarray:
        return np.array([self.cmd_id] + self.encode_text(command) + [self.end_cmd_id], np.int32)

    def encode_terminal(self, output: str, exit_code: int, cwd: str) -> np.ndarray:
        """The terminal span that follows <out>: OUTPUT <exit> CODE <cwd> CWD </out>."""
        return np.array(self.encode_text(output) + [self.exit_id] + self.encode_text(str(exit_code))
                        + [self.cwd_id] + self.encode_text(cwd) + [self.end_out_id], np.int32)

    def encode_turn(self, turn: episode_lib.Turn) -> tuple[np.ndarray, np.ndarray]:
        command = self.encode_command(turn.command)
        terminal = self.encode_terminal(turn.output, turn.exit_code, turn.cwd)
        ids = np.concatenate([command, [self.out_id], terminal]).astype(np.int32)
        roles = np.concatenate([np.full(len(command), ROLE_AGENT), [ROLE_CONTROL],
                                np.full(len(terminal), ROLE_TERMINAL)]).astype(np.int32)
        return ids, roles

    @staticmethod
    def _capped(turns: Sequence[episode_lib.Turn], max_len: int | None) -> list[episode_lib.Turn]:
        """With max_len, a command or output longer than 32 * max_len characters is cut first (a
        piece spans at most 16 characters, so the cut turn still overflows max_len and keeps its
        head): an output flood costs bounded time."""
        if max_len is None:
            return list(turns)
        cap = 32 * max_len
        return [dataclasses.replace(t, command=t.command[:cap], output=t.output[:cap]) for t in turns]

    def _encode_part(self, turn: episode_lib.Turn, unimitated_labels: Sequence[str]):
        """(ids, roles, imitated): `imitated` is False on the agent tokens of given turns and of
        turns labelled one of unimitated_labels, and on the terminal tokens of imagined turns."""
        ids, roles = self.encode_turn(turn)
        copied = turn.label not in unimitated_labels and turn.label not in episode_lib.GIVEN_LABELS
        observed = turn.label not in episode_lib.IMAGINED_LABELS
        return ids, roles, np.where(roles == ROLE_AGENT, copied, (roles != ROLE_TERMINAL) | observed)

    def _turns(self, ep: episode_lib.Episode, max_len: int | None,
               unimitated_labels: Sequence[str] = ()) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Encoded turns (ids, roles, imitated) after the given ones that open the episode."""
        return [self._encode_part(t, unimitated_labels) for t in self._capped(ep.turns[ep.n_given:], max_len)]

    def _given_head(self, turn: episode_lib.Turn, room: int):
        """The given turn with the most head lines of its output that fit in room tokens, or None
        if not one line does (an empty output would tell the model the state is empty)."""
        lines = turn.output.splitlines(keepends=True)
        fits = lambda n: len(self.encode_turn(dataclasses.replace(turn, output="".join(lines[:n])))[0]) <= room
        if not lines or not fits(1):
            return None
        low, high = 1, len(lines)  # fits(low); the answer is in [low, high]
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) else (low, middle - 1)
        return self._encode_part(dataclasses.replace(turn, output="".join(lines[:low]), truncated=True), ())

    def _pinned(self, ep: episode_lib.Episode, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pinned prefix (ids, roles, imitated) of a sequence cut to max_len: see the module doc."""
        task = self._cut(self._task_part(ep), max(1, max_len // 4))
        parts, room = [task], max_len // 2 - len(task[0])
        for turn in self._capped(ep.turns[:ep.n_given], max_len):
            part = self._encode_part(turn, ())
            if len(part[0]) > room:
                part = self._given_head(turn, room)
                parts += [part] if part is not None else []
                break
            parts.append(part)
            room -= len(part[0])
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def pinned_prefix(self, ep: episode_lib.Episode, max_len: int) -> np.ndarray:
        """Ids of what a sequence of ep cut to max_len tokens keeps first, whatever follows."""
        return self._pinned(ep, max_len)[0].astype(np.int32)

    def parse_terminal_span(self, ids: Sequence[int]) -> tuple[str, int | None, str | None]:
        """(output, exit_code, cwd) of a terminal span; a leading <out> is allowed and a missing
        </out> (generation cut off) too. A part that is absent or unparsable is None."""
        ids = [int(i) for i in ids]
        if ids and ids[0] == self.out_id:
            ids = ids[1:]
        if self.end_out_id in ids:
            ids = ids[:ids.index(self.end_out_id)]
        if self.exit_id not in ids:
            return self.decode(ids), None, None
        at_exit = ids.index(self.exit_id)
        output, rest = self.decode(ids[:at_exit]), ids[at_exit + 1:]
        code_ids, cwd = rest, None
        if self.cwd_id in rest:
            at_cwd = rest.index(self.cwd_id)
            code_ids, cwd = rest[:at_cwd], self.decode(rest[at_cwd + 1:])
        try:
            exit_code = int(self.decode(code_ids).strip())
        except ValueError:
            exit_code = None
        return output, exit_code, cwd

    # ---- episodes -----------------------------------------------------------------------
    def _task_part(self, ep: episode_lib.Episode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = self.encode_task(ep.task)
        return ids, np.full(len(ids), ROLE_TASK, np.int32), np.ones(len(ids), bool)

    def _head_part(self, ep: episode_lib.Episode, max_len: int | None):
        """The task and the given turns, whole."""
        given = [self._encode_part(t, ()) for t in self._capped(ep.turns[:ep.n_given], max_len)]
        return self._join(self._task_part(ep), given, False)

    def _join(self, task, turns, finished: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = [task] + list(turns)
        if finished:
            parts.append((np.array([self.eoe_id], np.int32), np.array([ROLE_AGENT], np.int32), np.ones(1, bool)))
        return (np.concatenate([p[0] for p in parts]).astype(np.int32),
                np.concatenate([p[1] for p in parts]).astype(np.int32),
                np.concatenate([p[2] for p in parts]).astype(bool))

    @staticmethod
    def _cut(part, length: int):
        return tuple(array[:length] for array in part)

    def encode_episode(self, ep: episode_lib.Episode, max_len: int | None = None,
                       finished: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(ids int32[T], roles int32[T]); `finished` appends <eoe>. See the truncation policy."""
        turns = self._turns(ep, max_len)
        ids, roles, _ = self._join(self._head_part(ep, max_len), turns, finished)
        if max_len is None or len(ids) <= max_len:
            return ids, roles
        task = self._pinned(ep, max_len)
        budget = max_len - len(task[0]) - int(finished)
        kept = []
        for turn in reversed(turns):
            if len(turn[0]) > budget:
                break
            kept.insert(0, turn)
            budget -= len(turn[0])
        if kept or not turns:
            return self._join(task, kept, finished)[:2]
        return self._join(task, [self._cut(turns[-1], max_len - len(task[0]))], False)[:2]

    def encode_windows(self, ep: episode_lib.Episode, max_len: int, unimitated_labels: Sequence[str] = ()
                       ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Training windows (ids, roles, fresh) of at most max_len tokens covering every turn.

        A window is the pinned prefix (the task's head and the given turns: see the module doc)
        followed by consecutive turns: first as many not yet covered turns as fit, then as much
        recent history before them as fits. Only the last window ends with <eoe>. A turn longer
        than the room left is kept as a prefix. `fresh` (bool) marks the tokens a window is the
        first to hold (the prefix counts in the first window only), so a loss over fresh targets
        sees each token once per episode. The agent tokens of given turns and of turns labelled
        one of `unimitated_labels` (e.g. injected "error" turns: context to recover from, not
        behaviour to copy) are never fresh, nor are the terminal tokens of imagined turns (a
        learned terminal's outputs: context, not the real terminal's).
        """
        turns = self._turns(ep, max_len, unimitated_labels)
        whole = self._join(self._head_part(ep, max_len), turns, True)
        if len(whole[0]) <= max_len:
            return [whole]
        task = self._pinned(ep, max_len)
        room = max_len - len(task[0])
        if not turns:
            return [self._join(task, [], True)]
        windows, first = [], 0

        def add(history, new, finished):
            ids, roles, imitated = self._join(task, history + new, finished)
            old = (len(task[0]) if windows else 0) + sum(len(t[0]) for t in history)
            windows.append((ids, roles, (np.arange(len(ids)) >= old) & imitated))

        while first < len(turns):
            budget, end = room, first
            while end < len(turns):
                need = len(turns[end][0]) + int(end == len(turns) - 1)
                if need > budget:
                    break
                budget -= len(turns[end][0])
                end += 1
            if end == first:  # The turn alone does not fit: keep its prefix.
                add([], [self._cut(turns[first], room)], False)
                first += 1
                continue
            if end == len(turns):
                budget -= 1
            start = first
            while start > 0 and len(turns[start - 1][0]) <= budget:
                start -= 1
                budget -= len(turns[start][0])
            add(turns[start:first], turns[first:end], end == len(turns))
            first = end
        return windows


# ---- training -----------------------------------------------------------------------------
def _sentences(text: str) -> Iterator[str]:
    """Training text of one span as encode_text sees it: its words and runs of whitespace apart,
    without the characters encode_text routes around sentencepiece, a word too long for
    sentencepiece cut (a piece is at most 16 characters anyway)."""
    cut = _MAX_SENTENCE_BYTES // 4
    for chunk in _CHUNK_RE.findall(_TRAINING_STRIP_RE.sub("", text)):
        for start in range(0, len(chunk), cut):
            yield chunk[start:start + cut]


def training_text(paths: Sequence[str], max_chars: int, seed: int) -> list[str]:
    """Text spans (task, commands, outputs, cwds; never markers) of a seeded sample of episodes
    of about max_chars characters in all."""
    total_bytes = max(1, sum(os.path.getsize(p) for p in paths))
    keep = min(1.0, max_chars / total_bytes)
    rng = random.Random(seed)
    spans: list[str] = []
    for path in paths:
        with open(path, "rb") as handle:
            lines = [(number, raw) for number, raw in enumerate(handle, start=1)
                     if raw.strip() and rng.random() < keep]
        for number, raw in lines:
            where = f"{path}:{number}"
            try:
                ep = episode_lib.parse_line(raw.decode("utf-8"), where)
            except UnicodeDecodeError as error:
                raise episode_lib.EpisodeFormatError(f"{where}: not UTF-8 (byte {error.start})") from None
            spans.extend(_sentences(ep.task))
            for turn in ep.turns:
                for text in (turn.command, turn.output, turn.cwd):
                    spans.extend(_sentences(text))
    return spans


def train(paths: Sequence[str], out_path: str, vocab_size: int = 8192, max_chars: int = 8_000_000,
          seed: int = 0, model_type: str = "bpe", split_digits: bool = True) -> Tokenizer:
    spans = training_text(paths, max_chars, seed)
    if not spans:
        raise ValueError("no text to train the tokenizer on")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(spans), model_writer=model, vocab_size=vocab_size, model_type=model_type,
        byte_fallback=True, split_digits=split_digits, remove_extra_whitespaces=False,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True, add_dummy_prefix=False,
        user_defined_symbols=list(MARKERS) + ["\n"], pad_id=PAD_ID, unk_id=1, bos_id=-1, eos_id=-1,
        hard_vocab_limit=False, max_sentencepiece_length=16, max_sentence_length=_MAX_SENTENCE_BYTES * 4,
        input_sentence_size=2_000_000, shuffle_input_sentence=True, seed_sentencepiece_size=200_000,
        num_threads=4, minloglevel=2)
    with open(out_path, "wb") as handle:
        handle.write(model.getvalue())
    return Tokenizer(model.getvalue())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", nargs="+", required=True, help="episode JSONL files or globs")
    parser.add_argument("--out", required=True, help="where to write the .model file")
    parser.add_argument("--vocab-size", type=int, default=8192,
                        help="target vocabulary (smaller if the text cannot fill it)")
    parser.add_argument("--max-chars", type=int, default=8_000_000,
                        help="train on a seeded sample of about this many characters")
    parser.add_argument("--model-type", default="bpe", choices=("bpe", "unigram"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-digits", action=argparse.BooleanOptionalAction, default=True,
                        help="digits one a piece (the default), or with --no-split-digits merged into "
                             "pieces as words are")


def main(args) -> int:
    paths = expand_globs(args.episodes)
    started = time.perf_counter()
    tok = train(paths, args.out, args.vocab_size, args.max_chars, args.seed, args.model_type, args.split_digits)
    print(f"wrote {args.out}: vocab {tok.vocab_size} from {len(paths)} file(s) "
          f"in {time.perf_counter() - started:.1f}s")
    return 0
