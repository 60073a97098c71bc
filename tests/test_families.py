"""Task families: determinism, variety and shape (no sandbox), and every family run for real:
the expert solution passes its verifier, doing nothing fails it, exploration walks run."""
import dataclasses
import functools
import os
import random

import ml_collections
import pytest

from harness_fixtures import session_factory as open_session  # noqa: F401 (fixture)
from twjax.episode import Episode
from twjax.evaluate.normalize import normalize_output
from twjax.tasks import collect, episodes, registry
from twjax.tasks.base import TASK_DIR, Task

FAMILIES = sorted(registry.FAMILIES)




def test_at_least_fifteen_families_cover_the_terminal_basics():
    assert len(FAMILIES) >= 15
    for needed in ("files_dirs", "text_grep", "find_xargs", "permissions", "archives", "shell_scripting",
                   "python_scripts", "csv_json", "git_repo", "logs", "config_files", "env_vars", "processes",
                   "fix_script"):
        assert needed in registry.FAMILIES


def test_unknown_family_names_the_known_ones():
    with pytest.raises(KeyError, match="files_dirs"):
        registry.generate("no_such_family", 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_is_deterministic_varied_and_well_formed(family):
    a, b = registry.generate(family, 7, 2), registry.generate(family, 7, 2)
    assert a == b
    tasks = [registry.generate(family, seed, 1 + seed % 3) for seed in range(12)]
    assert len({t.id for t in tasks}) == 12
    assert len({t.instruction for t in tasks}) >= 10  # wording and content vary with the seed
    for task in tasks:
        assert task.family == family and task.workdir == TASK_DIR
        assert task.setup.startswith(f"mkdir -p {TASK_DIR} && cd {TASK_DIR}")
        assert task.solution and all(c.strip() for c in task.solution)
        assert task.verifier.startswith(f"cd {TASK_DIR}") and "exit 1" in task.verifier
        assert Task.from_json(task.to_json()) == task


@pytest.mark.parametrize("family", FAMILIES)
def test_difficulty_is_the_number_of_steps(family):
    steps = [registry.generate(family, 3, d).params["steps"] for d in (1, 2, 3)]
    assert steps[0] == 1 and steps[0] < steps[1] < steps[2]
    three = registry.generate(family, 3, 3)
    items = [line for line in three.instruction.splitlines()[1:] if line.startswith(("1.", "2.", "3.", "- "))]
    assert len(items) == 3


def test_generated_files_stay_small():
    for family in FAMILIES:
        for seed in range(5):
            task = registry.generate(family, seed, 3)
            assert len(task.setup) < 8000, (family, seed, len(task.setup))


@pytest.mark.parametrize("family", FAMILIES)
def test_family_runs_for_real(family, open_session):
    """check_task in a real sandbox: the verifier fails right after setup and passes after the solution."""
    task = registry.generate(family, 1, 2)
    result = episodes.check_task(open_session, task)
    assert result.ok, result.reason
    assert result.noop_failed and result.solution_passed
    episode = result.episode
    expert = [t for t in episode.turns if t.label == "expert"]
    probes = [(i, t) for i, t in enumerate(episode.turns) if t.label == "verify"]
    assert [t.command for t in expert] == list(task.solution)
    assert len(episode.turns) == len(task.solution) + 2 and len(probes) == 2
    # the midway probe sees an unfinished state (the untouched one at 0, where it must fail; later
    # steps may already have done all the verifier checks); the last one sees the solved state
    (mid_at, mid), (last_at, last) = probes
    assert mid_at < last_at == len(episode.turns) - 1 and last.exit_code == 0
    assert mid.exit_code != 0 or mid_at > 0
    assert mid.command == last.command == task.verifier
    # a probe runs in a subshell: the verifier's `cd` and `exit` leave the session where it was
    assert mid.cwd == (episode.turns[mid_at - 1].cwd if mid_at else TASK_DIR)
    assert episode.extra["kind"] == "expert" and episode.extra["passed"] is True
    for key in ("family", "task_id", "params", "difficulty", "verifier"):
        assert key in episode.extra
    assert Episode.from_json(episode.to_json()).extra["task_id"] == task.id


def test_steps_of_one_task_never_interfere():
    """A step acting on a whole pattern (*.py, *.md) is never combined with a step whose files it would reach."""
    from twjax.tasks.families import common, files_dirs, find_xargs
    for family in (files_dirs.FAMILY, find_xargs.FAMILY):
        for seed in range(60):
            rng = random.Random(seed)
            steps = common.draw_steps(rng, 3, list(family.makers), common.Names(rng))
            assert len(steps) == 3
            assert not any(common.clashes(step, steps[:i]) for i, step in enumerate(steps)), (family.name, seed)


@pytest.mark.parametrize("family, seed, difficulty", [("find_xargs", 24, 2), ("find_xargs", 15, 3),
                                                      ("files_dirs", 24, 3), ("git_repo", 70000030, 1),
                                                      ("processes", 70000175, 1)])
def test_formerly_failing_tasks_pass_their_own_verifier(family, seed, difficulty, open_session):
    result = episodes.check_task(open_session, registry.generate(family, seed, difficulty))
    assert result.ok, result.reason


def test_check_task_catches_a_verifier_that_cannot_fail_and_a_wrong_solution(open_session):
    task = registry.generate("text_grep", 0, 1)
    always = dataclasses.replace(task, verifier="exit 0\n")
    result = episodes.check_task(open_session, always)
    assert not result.ok and not result.noop_failed and "without doing anything" in result.reason
    wrong = dataclasses.replace(task, solution=("echo nothing useful > unrelated.txt",))
    result = episodes.check_task(open_session, wrong)
    assert not result.ok and result.noop_failed and not result.solution_passed


def test_broken_setup_is_reported(open_session):
    task = dataclasses.replace(registry.generate("files_dirs", 0, 1), setup="mkdir -p /root/task && false\n")
    result = episodes.check_task(open_session, task)
    assert not result.ok and "setup exited" in result.reason


@pytest.mark.parametrize("family", ["find_xargs", "git_repo"])
def test_exploration_episode_walks_the_real_files(family, open_session):
    task = registry.generate(family, 2, 2)
    with open_session() as session:
        episode = episodes.exploration_episode(session, task, random.Random(5), steps=10)
    assert len(episode.turns) >= 10
    assert {t.label for t in episode.turns[:-1]} == {"exploration"}
    assert episode.turns[-1].label == "verify" and episode.turns[-1].exit_code != 0
    assert episode.extra["kind"] == "exploration" and episode.extra["passed"] is False
    assert episode.turns[-1].cwd == TASK_DIR
    assert sum(bool(t.output.strip()) for t in episode.turns) >= 3  # they looked at real things
    assert all(len(t.output) < 4096 for t in episode.turns)


def same_state(observed, other) -> bool:
    """The same observation up to `ls -l` times (a minute may turn between two sessions)."""
    return normalize_output(observed.output, observed.command) == normalize_output(other.output, other.command)


@pytest.mark.parametrize("family", ["git_repo", "logs"])
def test_observation_of_the_state_opens_every_kind_of_episode(family, open_session):
    task = registry.generate(family, 3, 2)
    result = episodes.check_task(open_session, task, observe=True)
    assert result.ok, result.reason
    seen = result.episode.turns[0]
    assert seen.label == "setup" and seen.command == episodes.OBSERVE_COMMAND and seen.exit_code == 0
    assert [t.label for t in result.episode.turns].count("setup") == 1
    with open_session() as session:
        opening = episodes.prepare(session, task, observe=True)
        files = session.run("find . -name .git -prune -o -type f -print", timeout=20).output.split()
        first_line = session.run(f"head -n 1 {files[0]}", timeout=20).output.strip()
        assert [t.label for t in opening] == ["setup"] and same_state(opening[0], seen)
        session.reset()
        explored = episodes.exploration_episode(session, task, random.Random(1), steps=3, observe=True)
        session.reset()
        injected = episodes.injected_episode(session, task, random.Random(1), observe=True)
    assert all(os.path.basename(f) in seen.output for f in files) and first_line in seen.output
    assert "objects" not in seen.output  # git's internals stay out
    assert seen.output.index("==> ") < seen.output.index(".:\n"), "contents first, then the listing"
    assert same_state(explored.turns[0], seen) and same_state(injected.turns[0], seen)
    assert [t.label for t in explored.turns + injected.turns].count("setup") == 2
    assert episodes.check_task(open_session, task).episode.turns[0].label != "setup"  # off by default


@pytest.mark.parametrize("family", ["git_repo", "files_dirs", "logs"])
def test_listing_first_observation_aligns_the_directory_listing_with_a_later_ls(family, open_session):
    task = registry.generate(family, 3, 2)
    with open_session() as session:
        [seen] = episodes.prepare(session, task, observe=episodes.OBSERVE_LISTING_FIRST)
        names = session.run("ls -1A -I .git", timeout=20).output.split("\n")[:-1]
        contents_first = episodes.run_turn(session, episodes.OBSERVE_COMMAND, "setup")
    lines = seen.output.split("\n")
    assert seen.label == "setup" and seen.command == episodes.OBSERVE_LISTING_FIRST and seen.exit_code == 0
    assert lines[0].startswith("total ") and lines[1].endswith(" .") and lines[2].endswith(" ..")
    assert [line.split()[-1] for line in lines[3:3 + len(names)]] == names  # ls -la's line 3 + k: ls's line k
    assert seen.output.index("==> ") > seen.output.index(names[-1]), "the listing first, then contents"
    # the same files and contents as the default layout shows, in another order
    heads = {line for line in contents_first.output.split("\n") if line and not line[0] in "-dl.t"}
    assert heads <= set(lines), heads - set(lines)


def test_observation_layout_is_a_collection_setting():
    config = ml_collections.ConfigDict(dict(observe_setup=False, observe_layout="listing_first"))
    assert collect.observation_command(config) is False
    config.observe_setup = True
    assert collect.observation_command(config) == episodes.OBSERVE_LISTING_FIRST
    config.observe_layout = "contents_first"
    assert collect.observation_command(config) == episodes.OBSERVE_COMMAND
    config.observe_layout = "sideways"
    with pytest.raises(ValueError, match="observe_layout 'sideways'"):
        collect.observation_command(config)


@pytest.mark.parametrize("family, seed", [("text_grep", 4), ("git_repo", 4), ("shell_scripting", 0),
                                          ("processes", 0)])
def test_families_on_docker(family, seed):
    """The same tasks under the docker backend (the suite above prefers bwrap for speed); the
    shell_scripting task runs ./script.sh from the task directory, which needs an exec mount."""
    from twjax.harness import session
    ok, reason = session.backend_status("docker")
    if not ok:
        if os.environ.get("TWJAX_REQUIRE_BACKENDS") == "1":
            pytest.fail(f"docker backend unavailable: {reason}")
        pytest.skip(f"docker backend unavailable: {reason}")
    factory = functools.partial(session.open_session, backend="docker")
    task = registry.generate(family, seed, 2)
    result = episodes.check_task(factory, task)
    assert result.ok, result.reason
    with factory() as sandbox:
        episode = episodes.injected_episode(sandbox, task, random.Random(seed))
    assert episode.extra["passed"]
