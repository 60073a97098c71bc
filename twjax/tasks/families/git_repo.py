"""A local git repository: commits, branches, tags, history search, discarding and ignoring changes.

The starting history is made with fixed dates, so its commit hashes are the same on every run.
"""
import random

from twjax.tasks.base import Task
from twjax.tasks.families.common import NAMES, Names, Step, build, draw_steps, one_of, q

DATE = "GIT_AUTHOR_DATE='2024-01-0{d}T10:00:00Z' GIT_COMMITTER_DATE='2024-01-0{d}T10:00:00Z'"
G = "git -C repo"


def _setting(rng: random.Random) -> str:
    return f"{rng.choice(NAMES)}_{rng.choice(('limit', 'timeout', 'retries'))} = {rng.randint(2, 99)}"


def _history(rng: random.Random, names: Names):
    """Setup commands for a repo with a few commits; returns (commands, messages, files at HEAD, lines added)."""
    commands = ["git init -q repo"]
    files, messages, added = {}, [], {}
    for day in range(1, rng.randint(4, 6)):
        path = f"{rng.choice(('app', 'lib', 'util'))}.py" if day > 1 else "README.md"
        line = f"# {names.one()} project" if day == 1 else _setting(rng)
        while line in added:  # a line added twice has two "commits that added it" (seed 70000030)
            line = _setting(rng)
        files[path] = files.get(path, "") + line + "\n"
        message = ("Initial commit" if day == 1 else
                   f"{rng.choice(('Add', 'Tune', 'Set'))} {line.split(' =')[0].replace('_', ' ')}")
        if message in messages:
            message += f" ({day})"
        messages.append(message)
        added[line] = message
        commands.append(f"printf '%s\\n' {q(line)} >> repo/{path}")
        commands.append(f"{G} add {path} && {DATE.format(d=day)} {G} commit -q -m {q(message)}")
    return commands, messages, files, added


def commit_file(rng, names, repo):
    path, message = f"{names.one()}.md", one_of(rng, "Add notes", "Document setup", "Add changelog")
    body = f"{names.one()} {rng.randint(1, 9)}"
    text = one_of(rng, f"In the repository, add a file {path} containing the line \"{body}\" and commit it with the "
                       f"message \"{message}\".",
                  f"Commit a new file {path} (content: {body}) to the repo with commit message \"{message}\".")
    return Step(text, [f"echo {q(body)} > {path}", f"git add {path}", f"git commit -q -m {q(message)}"],
                [f'{G} log --format=%s | grep -qx {q(message)}', f'[ "$({G} show HEAD:{path})" = {q(body)} ]',
                 f'[ -z "$({G} status --porcelain -- {path})" ]'])


def branch(rng, names, repo):
    # The commit is named by its subject, not "the current commit": other steps of the same task
    # may commit on main first, and the check must not depend on the order they are done in.
    name = f"{one_of(rng, 'feature', 'fix', 'topic')}/{names.one()}"
    message = repo["messages"][-1]
    find = f"$({G} log --format=%H --grep={q('^' + message + '$')} main)"
    text = one_of(rng, f"Create a branch named {name} at the commit \"{message}\" (stay on main).",
                  f"Add a new branch {name} pointing at the commit whose subject is \"{message}\", without "
                  f"switching to it.")
    return Step(text, [f"git branch {name} $(git log --format=%H --grep={q('^' + message + '$')})"],
                [f'[ "$({G} rev-parse -q --verify refs/heads/{name})" = "{find}" ]',
                 f'[ "$({G} symbolic-ref --short HEAD)" = main ]'])


def tag_commit(rng, names, repo):
    message = rng.choice(repo["messages"][1:])
    tag = f"v{rng.randint(0, 3)}.{rng.randint(0, 9)}"
    text = one_of(rng, f"Tag the commit with message \"{message}\" as {tag}.",
                  f"Put a tag {tag} on the commit whose subject is \"{message}\".")
    find = f"$({G} log --format=%H --grep={q('^' + message + '$')})"
    return Step(text, [f"git tag {tag} $(git log --format=%H --grep={q('^' + message + '$')})"],
                [f'[ "$({G} rev-list -n 1 {tag})" = "{find}" ]'])


def find_commit(rng, names, repo):
    line, message = rng.choice(sorted(repo["added"].items())[1:])
    out = "../commit.txt"
    text = one_of(rng, f"Find the commit that added the line \"{line}\" and write its full hash to commit.txt "
                       f"(in /root/task).",
                  f"Which commit introduced \"{line}\"? Save its full SHA in /root/task/commit.txt.")
    return Step(text, [f"git log --format=%H -S {q(line)} > {out}"],
                [f'[ "$(tr -d " \\n" < commit.txt)" = "$({G} log --format=%H -S {q(line)})" ]'])


def discard_changes(rng, names, repo):
    path = sorted(p for p in repo["files"] if p.endswith(".py"))[0]
    text = one_of(rng, f"{path} has uncommitted edits; throw them away so it matches the last commit again.",
                  f"Discard the local modifications to {path}.")
    return Step(text, [f"git checkout -- {path}"], [f"{G} diff --quiet -- {path}", f"[ -f repo/{path} ]"],
                setup=[f"echo 'broken = True' >> repo/{path}"])


def ignore_logs(rng, names, repo):
    ext = one_of(rng, "log", "tmp", "cache")
    text = one_of(rng, f"Make git ignore all *.{ext} files by adding a .gitignore, and commit the .gitignore.",
                  f"Add a committed .gitignore so that *.{ext} files never show up in git status.")
    return Step(text, [f"echo '*.{ext}' >> .gitignore", "git add .gitignore", "git commit -q -m 'Ignore generated files'"],
                [f'[ -z "$({G} status --porcelain)" ]', f"{G} check-ignore -q x.{ext}",
                 f"{G} cat-file -e HEAD:.gitignore"],
                setup=[f"echo run > repo/debug.{ext}"])


MAKERS = (commit_file, branch, tag_commit, find_commit, discard_changes, ignore_logs)


class GitFamily:
    name = "git_repo"

    def generate(self, rng: random.Random, difficulty: int) -> Task:
        names = Names(rng)
        commands, messages, files, added = _history(rng, names)
        repo = {"messages": messages, "files": files, "added": added}
        makers = [lambda r, n, m=m: m(r, n, repo) for m in MAKERS]
        steps = draw_steps(rng, difficulty, makers, names)
        return build(self.name, rng, difficulty, steps, prelude=commands, solution_prefix=["cd repo"])


FAMILY = GitFamily()
