"""Turn and Episode records and their JSONL form (one episode a line).

Wire format (DESIGN.md section 5): `{"id", "task", "turns": [{"command", "output", "exit_code",
"cwd", ...}], ...}`. Unknown keys, on episodes and on turns, are kept through a read/write round
trip. A malformed line raises EpisodeFormatError naming the file and line; it is never dropped.
"""
import dataclasses
import glob
import json
import os
import pathlib
from typing import Any, Iterable, Iterator, Sequence

# Turn labels used by task synthesis (TermiGen-style error injection). A "verify" turn is the task's
# verifier run as a side probe in a subshell (SIDE_PROBE_LABELS): it leaves the shell's cwd and
# variables alone, and is replayed the same way (Session.run_script), never as a plain command.
LABELS = ("expert", "error", "recovery", "exploration", "verify", "setup", "imagined")
SIDE_PROBE_LABELS = ("verify",)
# Turns that give a model the state instead of asking for it (the observation after setup). Those
# that open an episode (Episode.n_given) are pinned with the task when a long session is truncated
# (twjax.tokenizer); no agent imitates them and no fidelity metric scores them.
GIVEN_LABELS = ("setup",)
# Turns whose output a learned terminal wrote (an agent's imagined session, closed by the real
# verifier: interleave.judged_by_replay): context for the turns after them, never a terminal target
# (twjax.tokenizer) and never scored as the real output (twjax.evaluate).
IMAGINED_LABELS = ("imagined",)


class EpisodeFormatError(ValueError):
    """A record that does not follow the episode format; the message names file and line."""


@dataclasses.dataclass
class Turn:
    command: str
    output: str
    exit_code: int
    cwd: str
    duration: float = 0.0
    truncated: bool = False
    label: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        record = dict(self.extra)
        record.update(command=self.command, output=self.output, exit_code=self.exit_code, cwd=self.cwd,
                      duration=round(self.duration, 6), truncated=self.truncated)
        if self.label is not None:
            record["label"] = self.label
        return record

    @classmethod
    def from_json(cls, record: Any) -> "Turn":
        if not isinstance(record, dict):
            raise EpisodeFormatError(f"a turn must be an object, got {type(record).__name__}")
        missing = [k for k in ("command", "output", "exit_code", "cwd") if k not in record]
        if missing:
            raise EpisodeFormatError(f"turn is missing {', '.join(missing)}")
        for key in ("command", "output", "cwd"):
            if not isinstance(record[key], str):
                raise EpisodeFormatError(f"turn field {key!r} must be a string")
        if not isinstance(record["exit_code"], int) or isinstance(record["exit_code"], bool):
            raise EpisodeFormatError("turn field 'exit_code' must be an integer")
        label = record.get("label")
        if label is not None and label not in LABELS:
            raise EpisodeFormatError(f"turn label {label!r} is not one of {LABELS}")
        known = {"command", "output", "exit_code", "cwd", "duration", "truncated", "label"}
        return cls(command=record["command"], output=record["output"], exit_code=record["exit_code"],
                   cwd=record["cwd"], duration=float(record.get("duration", 0.0)),
                   truncated=bool(record.get("truncated", False)), label=label,
                   extra={k: v for k, v in record.items() if k not in known})


@dataclasses.dataclass
class Episode:
    id: str
    task: str
    turns: list[Turn]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_given(self) -> int:
        """How many turns open the episode with the state given (GIVEN_LABELS)."""
        count = 0
        while count < len(self.turns) and self.turns[count].label in GIVEN_LABELS:
            count += 1
        return count

    def to_json(self) -> dict[str, Any]:
        record = dict(self.extra)
        record.update(id=self.id, task=self.task, turns=[t.to_json() for t in self.turns])
        return record

    @classmethod
    def from_json(cls, record: Any) -> "Episode":
        if not isinstance(record, dict):
            raise EpisodeFormatError(f"an episode must be an object, got {type(record).__name__}")
        if not isinstance(record.get("id"), str) or not record["id"]:
            raise EpisodeFormatError("episode needs a non-empty string 'id'")
        if not isinstance(record.get("task", ""), str):
            raise EpisodeFormatError("episode field 'task' must be a string")
        turns = record.get("turns")
        if not isinstance(turns, list):
            raise EpisodeFormatError("episode needs a list 'turns'")
        parsed = []
        for index, turn in enumerate(turns):
            try:
                parsed.append(Turn.from_json(turn))
            except EpisodeFormatError as error:
                raise EpisodeFormatError(f"turn {index}: {error}") from None
        return cls(id=record["id"], task=record.get("task", ""), turns=parsed,
                   extra={k: v for k, v in record.items() if k not in ("id", "task", "turns")})

    def to_line(self) -> str:
        # ensure_ascii keeps lines valid UTF-8 even when outputs hold lone surrogates.
        return json.dumps(self.to_json(), ensure_ascii=True, separators=(",", ":"))


def parse_line(line: str, where: str) -> Episode:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise EpisodeFormatError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    try:
        return Episode.from_json(record)
    except EpisodeFormatError as error:
        raise EpisodeFormatError(f"{where}: {error}") from None


def read_jsonl(path: str | os.PathLike) -> Iterator[Episode]:
    """Yields episodes in file order; blank lines are skipped, anything else malformed raises."""
    path = pathlib.Path(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise EpisodeFormatError(f"{where}: not UTF-8 (byte {error.start})") from None
            if line.strip():
                yield parse_line(line, where)


def write_jsonl(path: str | os.PathLike, episodes: Iterable[Episode], append: bool = False) -> int:
    """Writes episodes, one a line, flushing each so a killed writer loses at most a partial last line."""
    count = 0
    with open(path, "a" if append else "w", encoding="utf-8") as handle:
        for episode in episodes:
            handle.write(episode.to_line() + "\n")
            handle.flush()
            count += 1
    return count


def repair_tail(path: str | os.PathLike) -> int:
    """Cuts a partial last line left by a killed writer, so appending can resume. Returns bytes cut."""
    path = pathlib.Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep == len(data):
        return 0
    with open(path, "r+b") as handle:
        handle.truncate(keep)
    return len(data) - keep


def _matches(pattern: str) -> list[str]:
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "*.jsonl")
    return sorted(glob.glob(pattern, recursive=True))


def expand_globs(patterns: str | Sequence[str]) -> list[str]:
    """Sorted files matching comma-separated glob patterns (a directory means its *.jsonl);
    raises if a pattern matches none. A path may itself hold commas (the sweep's trial directories
    do): of the ways to rejoin the comma-split pieces, the longest that matches wins."""
    if isinstance(patterns, str):
        patterns = [patterns]
    paths = []
    for group in patterns:
        pieces = group.split(",")
        start = 0
        while start < len(pieces):
            for stop in range(len(pieces), start, -1):
                pattern = ",".join(pieces[start:stop]).strip()
                matched = _matches(pattern) if pattern else []
                if matched or not pattern:
                    break
            else:
                raise FileNotFoundError(f"no episode file matches {','.join(pieces[start:]).strip()!r}")
            paths.extend(matched)
            start = stop
    return sorted(set(paths))
