"""Where the names of a session's plain `ls` come from, and at which line offset.

For each turn whose command is a plain `ls` (no -l, -R or pipe) with non-empty output, finds the
latest earlier output in which every line it printed is the last field of some line, and the
offset between line k of the `ls` output and the line of the earlier output that holds its name
(each counted from the output's first line, as model.line_embeddings count from `<out>`). A
single offset of 0 is the shape data.CopyExample's copy_sessions teach; other offsets and the
commands that printed the source show how far real sessions are from it.

    .venv/bin/python tools/names_column_sources.py 'data/observed/n96/*-*.jsonl'
"""
import collections
import json
import sys

from twjax import episode as episode_lib


def plain_ls(command: str) -> bool:
    words = command.split()
    return bool(words) and words[0] == "ls" and "|" not in command and not any(
        w.startswith("-") and ("l" in w or "R" in w) for w in words[1:])


def source_of(turns, index: int) -> tuple[str, tuple[int, ...]] | None:
    """(the source's command word(s), the offsets) of turn `index`'s names, or None if no earlier
    output holds them all."""
    names = turns[index].output.splitlines()
    for earlier in reversed(turns[:index]):
        last_fields = [line.split()[-1] if line.split() else "" for line in earlier.output.splitlines()]
        if all(name in last_fields for name in names):
            offsets = {last_fields.index(name) - k for k, name in enumerate(names)}
            return " ".join(earlier.command.split()[:2]), tuple(sorted(offsets))
    return None


def main(patterns: list[str]) -> None:
    turns_total, offsets, sources = 0, collections.Counter(), collections.Counter()
    for path in episode_lib.expand_globs(patterns):
        for episode in episode_lib.read_jsonl(path):
            for index, turn in enumerate(episode.turns):
                if not plain_ls(turn.command) or not turn.output.strip():
                    continue
                turns_total += 1
                found = source_of(episode.turns, index)
                if found is None:
                    offsets["no source"] += 1
                    continue
                sources[found[0]] += 1
                offsets[str(found[1][0]) if len(found[1]) == 1 else "several"] += 1
    print(json.dumps({"plain_ls_turns": turns_total, "offsets": dict(offsets.most_common()),
                      "source_commands": dict(sources.most_common(10))}))


if __name__ == "__main__":
    main(sys.argv[1:])
