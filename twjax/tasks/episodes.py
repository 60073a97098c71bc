"""Running tasks in a real session: expert, error-injected and exploration episodes, and check_task.

The setup script runs first and is not part of the transcript. With `observe`, an observation of
the state it left (OBSERVE_COMMAND: the head of each text file, then the workspace's listing) opens
the transcript as a turn labelled "setup": the state a terminal model is given, not asked to
guess (most non-empty outputs of these sessions otherwise show files no earlier turn printed).
The verifier runs as a side probe (a subshell: the session's cwd, variables and shell state stay
as they were) and is recorded as a turn labelled "verify" whose command is the verifier script:
once at the end of every episode (its verdict also goes to Episode.extra: verifier, passed), once
more midway through expert episodes (after a seeded number of solution steps, 0 included) and, in
injected episodes, right after the first mistake (inject.py), so the learned terminal sees the
verifier fail on unfinished and wrong states as well as pass on finished ones: that is what its
learned reward (grounded.learned_verdicts) is asked to predict. Every output is what the real
terminal printed.
"""
import dataclasses
import random

from twjax.episode import Episode, Turn
from twjax.harness.pool import Pool
from twjax.tasks.base import Task

COMMAND_TIMEOUT = 20.0
SCRIPT_TIMEOUT = 60.0
# The workspace after setup: the first 20 lines of each of the first 24 text files under head's
# "==> path <==" headers (60 lines at most), then a recursive long listing (git internals left out,
# 40 lines at most). Contents come first: they are what most outputs show (cat, head, wc, grep), and
# a long session's pinned prefix keeps an observation's head lines (twjax.tokenizer), while a
# listing line costs ~35 tokens (mode, digits one a piece, time).
_CONTENTS = ("find . -name .git -prune -o -type f -print | LC_ALL=C sort | head -n 24 "
             "| xargs -r -d '\\n' grep -Il '' | xargs -r -d '\\n' head -v -n 20 2>/dev/null | head -n 60")
OBSERVE_COMMAND = "{ " + _CONTENTS + "; ls -laR -I .git | head -n 40; }"
# The same state with the working directory's own long listing first, where ls -la prints it: its
# line 3 + k (after total, . and ..) names what a later plain `ls` prints on its line k, each
# counted from its output's start, the alignment line embeddings learn a names column at (README,
# "In a session's shape the names column is learnt"). Then contents, then the subdirectories.
OBSERVE_LISTING_FIRST = "{ ls -la -I .git; " + _CONTENTS + "; ls -laR -I .git -- */ 2>/dev/null | head -n 40; }"
OBSERVE_COMMANDS = {"contents_first": OBSERVE_COMMAND, "listing_first": OBSERVE_LISTING_FIRST}


def observation(observe_setup: bool, layout: str = "contents_first") -> str | bool:
    """The observation command of a setting (observe_setup and its layout, a key of
    OBSERVE_COMMANDS), or False: what `prepare` and `observe_tasks` take."""
    if layout not in OBSERVE_COMMANDS:
        raise ValueError(f"observe_layout {layout!r} is not one of {sorted(OBSERVE_COMMANDS)}")
    return OBSERVE_COMMANDS[layout] if observe_setup else False


class TaskSetupError(RuntimeError):
    """The task's setup script failed: the task is broken, not the agent."""


def prepare(session, task: Task, observe: bool | str = False) -> list[Turn]:
    """Runs the setup and enters the task's directory. Returns the transcript's opening turns: the
    observation of the state (label "setup") with `observe` (True: OBSERVE_COMMAND; a string: that
    observation command), else none."""
    turn = session.run_script(task.setup, timeout=SCRIPT_TIMEOUT)
    if turn.exit_code != 0:
        raise TaskSetupError(f"{task.id}: setup exited {turn.exit_code}: {turn.output[-500:]}")
    # Scripts may run in a subshell; the agent starts in the task's directory either way.
    entered = session.run(f"cd {task.workdir}", timeout=COMMAND_TIMEOUT)
    if entered.exit_code != 0:
        raise TaskSetupError(f"{task.id}: cannot enter {task.workdir}: {entered.output[-300:]}")
    if not observe:
        return []
    return [run_turn(session, OBSERVE_COMMAND if observe is True else observe, "setup")]


def observe_tasks(tasks: list[Task], backend: str = "auto", workers: int = 8,
                  observe: bool | str = True) -> dict[str, Turn]:
    """{task id: its observation} (the "setup" turn `prepare` opens a transcript with; `observe` as
    prepare takes it), each distinct task observed once, in its own fresh sandbox: what a rollout
    gives a terminal trained on observed transcripts. The setups are deterministic, so a later sandbox of the same
    task holds the same files; only the minute in the listing's times may differ."""
    distinct = list({task.id: task for task in tasks}.values())

    def observed(session, task: Task) -> tuple[str, Turn]:
        [turn] = prepare(session, task, observe=observe)
        return task.id, turn

    with Pool(backend=backend, workers=workers) as pool:
        return dict(pool.imap_unordered(observed, distinct))


def verify(session, task: Task) -> Turn:
    turn = session.run_script(task.verifier, timeout=SCRIPT_TIMEOUT)
    turn.command, turn.label = task.verifier, "verify"
    return turn


def solve(session, task: Task, noop: Turn | None = None) -> list[Turn]:
    """The expert solution's turns with one verifier probe among them: the verdict on the untouched
    state (`noop` when the caller already has it) when the seeded probe point is 0, else a verdict
    after that many steps."""
    probe_at = random.Random(task.id).randrange(len(task.solution)) if task.solution else 0
    turns = [noop or verify(session, task)] if probe_at == 0 else []
    for step, command in enumerate(task.solution, start=1):
        turns.append(run_turn(session, command, "expert"))
        if step == probe_at:
            turns.append(verify(session, task))
    return turns


def run_turn(session, command: str, label: str) -> Turn:
    turn = session.run(command, timeout=COMMAND_TIMEOUT)
    turn.label = label
    return turn


def finish(session, task: Task, turns: list[Turn], kind: str, episode_id: str, **extra) -> Episode:
    verdict = verify(session, task)
    return Episode(id=episode_id, task=task.instruction, turns=turns + [verdict], extra=dict(
        family=task.family, task_id=task.id, params=task.params, difficulty=task.difficulty,
        verifier=task.verifier, passed=verdict.exit_code == 0, kind=kind, **extra))


def expert_episode(session, task: Task, observe: bool | str = False) -> Episode:
    turns = prepare(session, task, observe)
    turns += solve(session, task)
    return finish(session, task, turns, "expert", f"{task.id}-expert")


def injected_episode(session, task: Task, rng: random.Random, **options) -> Episode:
    """options: errors (how many mistakes to try for), explore_steps (look-around turns first),
    observe (open with the observation of the state)."""
    from twjax.tasks import inject
    return inject.injected_episode(session, task, rng, **options)


def exploration_episode(session, task: Task, rng: random.Random, steps: int = 8, observe: bool | str = False) -> Episode:
    from twjax.tasks import explore
    turns = prepare(session, task, observe)
    turns += explore.walk(session, rng, steps)
    return finish(session, task, turns, "exploration", f"{task.id}-explore-{rng.getrandbits(32):08x}")


@dataclasses.dataclass
class TaskCheck:
    ok: bool
    noop_failed: bool  # the verifier rejects the untouched starting state
    solution_passed: bool  # the verifier accepts the state after the expert solution
    reason: str
    episode: Episode | None  # the expert episode, reusable as data when ok


def check_task(session_or_factory, task: Task, observe: bool | str = False) -> TaskCheck:
    """Runs the task for real: the verifier must fail right after setup (doing nothing must not pass;
    a verifier that cannot fail is a bug) and pass after the expert solution.

    Takes an open session, or a factory returning a context manager that yields one (e.g.
    functools.partial(open_session, backend="auto")); with a factory a fresh session is used.
    `observe`: the expert episode opens with the observation of the state (see prepare).
    """
    if callable(session_or_factory) and not hasattr(session_or_factory, "run"):
        with session_or_factory() as session:
            return check_task(session, task, observe)
    session = session_or_factory
    try:
        opening = prepare(session, task, observe)
    except TaskSetupError as error:
        return TaskCheck(False, False, False, str(error), None)
    noop = verify(session, task)
    turns = opening + solve(session, task, noop)
    episode = finish(session, task, turns, "expert", f"{task.id}-expert")
    noop_failed, passed = noop.exit_code != 0, episode.extra["passed"]
    failing = [t for t in turns if t.label == "expert" and t.exit_code != 0]
    reasons = []
    if not noop_failed:
        reasons.append("verifier passes without doing anything")
    if not passed:
        reasons.append("verifier rejects the expert solution")
    if failing:
        reasons.append(f"expert command failed: {failing[0].command!r} -> {failing[0].exit_code}: "
                       f"{failing[0].output[-300:]}")
    return TaskCheck(not reasons, noop_failed, passed, "; ".join(reasons) or "ok", episode)


