"""Error injection, Generator–Critic style (after TermiGen): realistic mistakes followed by real repairs.

For a chosen expert step, a generator proposes a mistaken variant of the command (a typo'd command
name, a wrong path, a wrong flag, broken quoting, an off-by-one number, a skipped or swapped step)
together with a repair: commands that notice the mistake, undo its side effects, and do the step
right. Before anything is recorded, a critic runs both versions in a throwaway copy of the task
directory (a hidden subshell in the same sandbox) and accepts the mistake only if

  * it really misbehaves: non-zero exit, different output, or a different resulting tree, and
  * mistake + repair ends in exactly the state the expert step alone reaches (files, modes, cwd).

Only then are the mistake (label "error") and the repair (label "recovery") run for real in the
session, so every output in the transcript is what the terminal printed, and the episode still ends
in the verified state. Commands that touch processes or paths outside the task directory cannot be
probed in a copy; for them only a typo'd command name is used (it cannot run at all), checked with
`type` first. If no mistake passes the critic, the step is done the expert way.
"""
import base64
import dataclasses
import posixpath
import random
import re
import shlex

from twjax.episode import Episode, Turn
from twjax.tasks import explore
from twjax.tasks.base import TASK_DIR, Task
from twjax.tasks.episodes import finish, prepare, run_turn, verify

PROBE_DIR = "/tmp/.twjax_probe"
KEYWORDS = {"for", "while", "if", "then", "do", "done", "fi", "case", "esac", "until", "function", "cd", "export",
            "source", ".", "[", "[[", "test", "true", "false", "exit", "set", "unset", "local", "return", "eval"}
UNPROBEABLE = re.compile(r"(\bkill\b|\bpkill\b|\bkillall\b|\bnohup\b|&\s*$|~|\$HOME|/root/(?!task\b)|/tmp/|/etc/|"
                         r"\bgit\s+config\b)")
SILENT = re.compile(r"&\s*$|2>|&>")
ERROR_MARKERS = ("No such file", "not found", "Permission denied", "invalid", "unrecognized", "syntax error",
                 "cannot", "Cannot", "unexpected", "Error", "error:", "usage:", "Usage:", "fatal:", "Traceback")
MAX_ERROR_OUTPUT = 1024  # a mistake that dumps a whole usage text is passed over for a terser one
KIND_WEIGHTS = {"typo_command": 2, "wrong_path": 3, "wrong_flag": 3, "broken_quoting": 2, "off_by_one": 3,
                "wrong_order": 2}


@dataclasses.dataclass
class Mistake:
    kind: str
    bad: str  # the mistaken command, run for real and labelled "error"
    repair: list[str]  # the expert command(s) that do the step right afterwards
    consumes: int = 1  # expert steps covered by the repair (2 when the mistake skipped or swapped a step)
    notice: list[str] = dataclasses.field(default_factory=list)  # look-around commands that reveal the problem
    undo: list[str] = dataclasses.field(default_factory=list)  # commands removing the mistake's side effects


# --- generators: propose mistakes for one expert command -----------------------------------------------------

def _first_word(command: str) -> tuple[int, int] | None:
    match = re.match(r"\s*([A-Za-z][A-Za-z0-9_+-]{2,})(?=\s|$)", command)
    if not match or match.group(1) in KEYWORDS:
        return None
    return match.span(1)


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    choice = rng.randrange(3)
    if choice == 0 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]  # swapped letters
    if choice == 1:
        return word[:i] + word[i + 1:]  # dropped letter
    return word[:i + 1] + word[i] + word[i + 1:]  # doubled letter


def typo_command(command, rng, ctx):
    span = _first_word(command)
    if not span:
        return None
    word = command[span[0]:span[1]]
    bad = command[:span[0]] + _typo(word, rng) + command[span[1]:]
    return Mistake("typo_command", bad, [command]) if bad != command else None


def _path_tokens(command: str, existing: set[str]) -> list[str]:
    try:
        tokens = shlex.split(command, comments=False)
    except ValueError:
        return []
    return sorted({t for t in tokens[1:] if t in existing and t not in (".", "..") and not t.startswith("-")})


def _replace_token(command: str, token: str, new: str) -> str | None:
    pattern = re.compile(r"(?<![\w./-])" + re.escape(token) + r"(?![\w./-])")
    if not pattern.search(command):
        return None
    return pattern.sub(lambda m: new, command, count=1)


def wrong_path(command, rng, ctx):
    tokens = _path_tokens(command, ctx["existing"])
    if not tokens:
        return None
    token = rng.choice(tokens)
    head, base = posixpath.split(token)
    options = []
    if len(base) > 3:
        options.append(posixpath.join(head, _typo(base, rng)))
    if head:
        options.append(base)  # forgot the directory
    stem, ext = posixpath.splitext(base)
    if ext:
        options.append(posixpath.join(head, stem + rng.choice((".txt", ".log", ".csv", "")) if stem else base))
    options = [o for o in options if o != token and o not in ctx["existing"]]
    if not options:
        return None
    new = rng.choice(options)
    bad = _replace_token(command, token, new)
    if not bad:
        return None
    look = rng.choice(([], ["ls"], [f"ls {shlex.quote(head)}" if head else "ls -la"]))
    return Mistake("wrong_path", bad, [command], notice=look)


def wrong_flag(command, rng, ctx):
    flags = [m for m in re.finditer(r"(?<=\s)-([A-Za-z]{1,4})(?=\s|$)", command)]
    if not flags:
        return None
    match = rng.choice(flags)
    letters = match.group(1)
    i = rng.randrange(len(letters))
    swapped = letters[i].swapcase()
    replacement = rng.choice((swapped, rng.choice("jkqyzJKQYZ")))
    new = letters[:i] + replacement + letters[i + 1:]
    if new == letters:
        return None
    bad = command[:match.start(1)] + new + command[match.end(1):]
    return Mistake("wrong_flag", bad, [command])


def broken_quoting(command, rng, ctx):
    quoted = [m for m in re.finditer(r"'([^'\n]*)'|\"([^\"\n]*)\"", command)]
    if not quoted:
        return None
    match = rng.choice(quoted)
    inner = match.group(0)[1:-1]
    if " " in inner and rng.random() < 0.6:
        bad = command[:match.start()] + inner + command[match.end():]  # quotes forgotten
    else:
        bad = command[:match.end() - 1] + command[match.end():]  # closing quote forgotten
    return Mistake("broken_quoting", bad, [command])


def off_by_one(command, rng, ctx):
    numbers = [m for m in re.finditer(r"(?<![\w.&<>])(\d{1,3})(?![\w.&<>])", command)]
    if not numbers:
        return None
    match = rng.choice(numbers)
    value = int(match.group(1))
    new = value + rng.choice((-1, 1)) if value > 0 else value + 1
    bad = command[:match.start(1)] + str(new) + command[match.end(1):]
    out = re.search(r">\s*([\w./-]+)\s*$", command)
    notice = [rng.choice((f"cat {out.group(1)}", f"head {out.group(1)}", f"wc -l {out.group(1)}"))] if out else []
    return Mistake("off_by_one", bad, [command], notice=notice)


GENERATORS = {"typo_command": typo_command, "wrong_path": wrong_path, "wrong_flag": wrong_flag,
              "broken_quoting": broken_quoting, "off_by_one": off_by_one}


def wrong_order(solution: tuple[str, ...], index: int) -> Mistake | None:
    """Runs the next expert step before this one (e.g. the script before its chmod +x)."""
    if index + 1 >= len(solution):
        return None
    this, following = solution[index], solution[index + 1]
    return Mistake("wrong_order", following, [this, following], consumes=2)


# --- critic: a hidden dry run in a copy of the task directory ----------------------------------------------------

# The state a step leaves: paths, types, modes, link targets and contents, except git's internals, which
# hold timestamps; a repository is compared by its history's messages and trees, its refs and its status.
DIGEST = ("find . -path '*/.git' -prune -o -printf '%p %y %m %l\\n' | sort; "
          "find . -path '*/.git' -prune -o -type f -exec sha256sum {} + | sort; "
          "for g in $(find . -name .git -type d); do r=${g%/.git}; git -C \"$r\" log --all --format='%s %T'; "
          "git -C \"$r\" for-each-ref --format='%(refname) %(tree)'; git -C \"$r\" status --porcelain; "
          "git -C \"$r\" symbolic-ref -q HEAD; done 2>&1")


@dataclasses.dataclass
class Probe:
    exit_code: int  # of the first command
    output: str  # of the first command, with the copy's path shown as the task dir
    digest: str  # of the state after all commands (see DIGEST) and the cwd they end in
    files: dict[str, str]  # regular files (relative to the starting cwd) -> sha256


def _sequence_script(index: int, cwd: str, commands: list[str]) -> str:
    """One dry run, in a subshell: copy the task dir, run commands there, report on one line each."""
    copy = f"{PROBE_DIR}{index}"
    start = shlex.quote(posixpath.normpath(posixpath.join(copy, posixpath.relpath(cwd, TASK_DIR))))
    lines = ["(", f"rm -rf {copy} && mkdir -p {copy} && cp -a {TASK_DIR}/. {copy}/ && cd {start} || exit 0"]
    for i, command in enumerate(commands):
        sink = f"> {copy}.out 2>&1" if i == 0 else "> /dev/null 2>&1"
        lines.append(f"__c={shlex.quote(command.replace(TASK_DIR, copy))}; eval \"$__c\" {sink} < /dev/null")
        if i == 0:
            lines.append("__rc=$?")
    lines += ["__cwd=${PWD#" + copy + "}", f"cd {copy} || exit 0",
              f"__digest=$( {{ {DIGEST}; echo \"$__cwd\"; }} | sha256sum | cut -c1-16)",
              f'echo "__PROBE {index} $__rc $__digest $(base64 -w0 < {copy}.out)"',
              f"cd {start} && find . -path '*/.git' -prune -o -type f -exec sha256sum {{}} + | "
              f"sed 's/^/__FILE {index} /'",
              f"cd / && rm -rf {copy} {copy}.out", ")"]
    return "\n".join(lines)


def probe(session, cwd: str, sequences: list[list[str]]) -> list[Probe | None]:
    """Dry-runs each command sequence in its own copy of the task dir, all in one hidden script; the
    session's files, cwd and variables are untouched. None for a sequence that did not finish."""
    script = "\n".join(_sequence_script(i, cwd, commands) for i, commands in enumerate(sequences))
    turn = session.run_script(script, timeout=60.0)
    results: list[Probe | None] = [None] * len(sequences)
    for line in turn.output.splitlines():
        parts = line.split(" ")
        if parts[0] == "__PROBE" and len(parts) in (4, 5):
            output = base64.b64decode(parts[4]).decode("utf-8", "replace") if len(parts) == 5 else ""
            results[int(parts[1])] = Probe(int(parts[2]), output.replace(f"{PROBE_DIR}{parts[1]}", TASK_DIR),
                                           parts[3], {})
        elif parts[0] == "__FILE" and len(parts) >= 4 and results[int(parts[1])] is not None:
            results[int(parts[1])].files[posixpath.normpath(line.split("  ", 1)[1])] = parts[2]
    return results


def probeable(command: str) -> bool:
    return not UNPROBEABLE.search(command)


def critic_accepts(session, cwd: str, mistake: Mistake, expert: list[str]) -> bool:
    """True when the mistake visibly misbehaves and mistake + repair reaches the expert's state.

    Files only the mistake created (which the repair would not overwrite) get an `rm` before the
    repair; a mistake that fails quietly (exit 0, same output) gets a look at the file it got wrong.
    """
    if not all(probeable(c) for c in [mistake.bad, *mistake.notice, *mistake.undo, *mistake.repair]):
        return False
    good, bad = probe(session, cwd, [expert, [mistake.bad]])
    if good is None or bad is None:
        return False
    if mistake.kind == "wrong_order":
        visible = bad.exit_code != 0  # doing independent steps in another order is no mistake
    else:
        visible = bad.exit_code != 0 or bad.digest != good.digest or bad.output != good.output
    if not visible or len(bad.output) > MAX_ERROR_OUTPUT:
        return False
    created = sorted(set(bad.files) - set(good.files))
    if created and not mistake.undo:
        mistake.undo = [f"rm -f {' '.join(shlex.quote(p) for p in created)}"]
    if bad.exit_code == 0 and bad.output == good.output and not mistake.notice:
        wrong = created or sorted(p for p in bad.files if p in good.files and bad.files[p] != good.files[p])
        mistake.notice = [f"cat {shlex.quote(wrong[0])}" if wrong else "ls -l"]
    (fixed,) = probe(session, cwd, [[mistake.bad, *mistake.notice, *mistake.undo, *mistake.repair]])
    return bool(fixed and fixed.digest == good.digest)


def _unknown_command(session, command: str) -> bool:
    span = _first_word(command)
    if not span:
        return False
    word = command[span[0]:span[1]]
    return session.run_script(f"type {shlex.quote(word)} >/dev/null 2>&1", timeout=10.0).exit_code != 0


def _existing(session, cwd: str) -> set[str]:
    entries = session.snapshot(roots=(cwd,))
    return {posixpath.relpath(e["path"], cwd) for e in entries if e["path"] != cwd and "/.git" not in e["path"]}


class _Context(dict):
    """What generators may look at; the listing of the cwd is taken only if a generator asks for it."""

    def __init__(self, list_cwd):
        super().__init__()
        self._list_cwd = list_cwd

    def __missing__(self, key):
        if key != "existing":
            raise KeyError(key)
        self[key] = self._list_cwd()
        return self[key]


def propose(session, task: Task, index: int, cwd: str, rng: random.Random) -> Mistake | None:
    """The generator proposes mistakes for expert step `index` until the critic accepts one."""
    command = task.solution[index]
    kinds = list(KIND_WEIGHTS)
    rng.shuffle(kinds)
    kinds.sort(key=lambda k: -KIND_WEIGHTS[k] * rng.random())
    ctx = _Context(lambda: _existing(session, cwd))
    for kind in kinds:
        if kind == "wrong_order":
            mistake = wrong_order(task.solution, index)
            expert = list(task.solution[index:index + 2])
        else:
            mistake = GENERATORS[kind](command, rng, ctx)
            expert = [command]
        if mistake is None or mistake.bad == command:
            continue
        if probeable(command) and all(probeable(c) for c in expert):
            if critic_accepts(session, cwd, mistake, expert):
                return mistake
        elif kind == "typo_command" and not SILENT.search(command):
            # Cannot dry-run (processes, paths outside the task): a command name that does not exist never
            # runs, and "command not found" shows unless the command is backgrounded or its stderr hidden.
            if _unknown_command(session, mistake.bad):
                return mistake
    return None


def _label_kind(mistake: Mistake, turn: Turn) -> str:
    if mistake.kind == "wrong_order" and "Permission denied" in turn.output:
        return "missing_permission"
    return mistake.kind


def injected_episode(session, task: Task, rng: random.Random, errors: int | None = None,
                     explore_steps: int | None = None, observe: bool | str = False) -> Episode:
    """An episode of the task with `errors` (default 1-2) critic-approved mistakes and their repairs,
    optionally after a few exploration commands; the verifier probes the state right after the first
    mistake, and ends the episode. `observe`: open with the observation of the state (prepare)."""
    turns: list[Turn] = prepare(session, task, observe)
    if explore_steps is None:
        explore_steps = rng.choice((0, 0, 1, 2, 3))
    if explore_steps:
        turns += explore.walk(session, rng, explore_steps)
    wanted = errors if errors is not None else rng.choice((1, 1, 1, 2))
    targets = set(rng.sample(range(len(task.solution)), min(wanted, len(task.solution))))
    injected, index = [], 0
    cwd = turns[-1].cwd if turns else task.workdir
    while index < len(task.solution):
        mistake = propose(session, task, index, cwd, rng) if index in targets else None
        if mistake is None:
            turns.append(run_turn(session, task.solution[index], "expert"))
            cwd = turns[-1].cwd
            if index in targets and index + 1 < len(task.solution) and len(injected) < wanted:
                targets.add(index + 1)  # nothing fit here: try the next step instead
            index += 1
            continue
        error_turn = run_turn(session, mistake.bad, "error")
        turns.append(error_turn)
        if not injected:
            # The verdict on the state right after the first mistake: an attempt that looks like the
            # solution but is wrong, the hard case for the learned terminal's learned reward.
            turns.append(verify(session, task))
        turns += [run_turn(session, c, "recovery") for c in mistake.notice + mistake.undo + mistake.repair]
        cwd = turns[-1].cwd
        shows = error_turn.exit_code != 0 or any(m in error_turn.output for m in ERROR_MARKERS)
        injected.append({"step": index, "kind": _label_kind(mistake, error_turn), "command": mistake.bad,
                         "exit_code": error_turn.exit_code, "shown_by": "error" if shows else "notice"
                         if mistake.notice else "output_differs"})
        index += mistake.consumes
    episode_id = f"{task.id}-injected-{rng.getrandbits(32):08x}"
    return finish(session, task, turns, "injected", episode_id, injected=injected)
