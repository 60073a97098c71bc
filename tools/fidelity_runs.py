"""One markdown row per evaluated terminal: the figures the README's fidelity tables give.

Reads each workdir's eval/report.json (`twjax evaluate`), eval/turns.jsonl and metrics.jsonl, and
the test episodes the report names, for the commands behind each turn. Counts are of teacher-forced
turns with non-empty real output that are right after normalisation; `ls -l` counts the `ls`
turns whose options ask for the long listing.

    .venv/bin/python tools/fidelity_runs.py runs/fidelity/observed-select-session runs/fidelity/...
"""
import json
import pathlib
import sys

from twjax import episode as episode_lib

COLUMNS = ("run", "valid loss, terminal tokens", "all turns", "non-empty", "copyable", "line F1, non-empty",
           "exit acc", "self-conditioned, non-empty", "`ls` right", "`ls -l` right", "`cat` / `head` / `tail` right",
           "names column, session / after headers", "shared-prefix lines", "recall, first tokens", "pass AUC")


def long_listing(command: str) -> bool:
    words = command.split()
    return bool(words) and words[0] == "ls" and any(w.startswith("-") and "l" in w for w in words[1:])


def commands_of(episodes_glob: str) -> dict[tuple[str, int], str]:
    return {(ep.id, index): turn.command for path in episode_lib.expand_globs(episodes_glob)
            for ep in episode_lib.read_jsonl(path) for index, turn in enumerate(ep.turns)}


def right_nonempty(turns: list[dict], commands: dict, keep) -> tuple[int, int]:
    """(right, of) over the teacher-forced non-empty turns whose command `keep` accepts."""
    kept = [t for t in turns if t["section"] == "teacher_forced" and t["nonempty"]
            and keep(commands[(t["episode_id"], t["turn"])])]
    return sum(t["metrics"]["exact_norm"] > 0 for t in kept), len(kept)


def row(workdir: pathlib.Path) -> list[str]:
    report = json.loads((workdir / "eval" / "report.json").read_text())
    turns = [json.loads(line) for line in (workdir / "eval" / "turns.jsonl").read_text().splitlines()]
    commands = commands_of(report["meta"]["episodes_file"])
    losses = [m["eval/loss_terminal"] for m in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
              if "eval/loss_terminal" in m]
    forced, own = report["teacher_forced"], report["self_conditioned"]
    probe = report.get("copy_probe", {})
    lines = probe.get("line_names", {})

    def counted(part: dict) -> str:
        return f"{part['exact_norm']:.3f} ({round(part['exact_norm'] * part['n'])} of {part['n']})"

    def word_is(word):
        return lambda command: command.split()[:1] == [word]

    def count(keep) -> str:
        right, of = right_nonempty(turns, commands, keep)
        return f"{right} of {of}"

    def number(value) -> str:
        return "—" if value is None else f"{value:.3f}"

    return [f"`{workdir.name}`", number(losses[-1] if losses else None), f"{forced['exact_norm']:.3f}",
            counted(forced["nonempty"]), counted(forced["copyable"]), f"{forced['nonempty']['line_f1']:.3f}",
            f"{forced['exit_acc']:.3f}", f"{own['nonempty']['exact_norm']:.3f}", count(word_is("ls")),
            count(long_listing),
            " / ".join(str(right_nonempty(turns, commands, word_is(w))[0]) for w in ("cat", "head", "tail")),
            f"{number(lines.get('names_column_session'))} / {number(lines.get('names_column_session_headers'))}",
            number(lines.get("shared_prefix")), number(probe.get("recall", {}).get("first_token")),
            number(forced.get("verdicts", {}).get("pass_auc"))]


def main(workdirs: list[str]) -> int:
    if not workdirs:
        print(__doc__, file=sys.stderr)
        return 2
    print("| " + " | ".join(COLUMNS) + " |")
    print("| " + " | ".join("---" for _ in COLUMNS) + " |")
    for workdir in workdirs:
        print("| " + " | ".join(row(pathlib.Path(workdir))) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
