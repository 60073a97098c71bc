"""Error injection: the generators' mistakes, the critic's dry runs (it must reject a mistake that
changes nothing), and injected episodes of every family run for real: they still pass the verifier,
every error turn really misbehaved, and each is followed by its recovery."""
import random

import pytest

from harness_fixtures import session_factory as open_session  # noqa: F401 (fixture)
from twjax.episode import LABELS
from twjax.tasks import episodes, inject, registry

FAMILIES = sorted(registry.FAMILIES)




def test_typo_changes_only_the_command_name():
    for seed in range(20):
        mistake = inject.typo_command("sort -n nums.txt > out.txt", random.Random(seed), {})
        name, rest = mistake.bad.split(" ", 1)
        assert name != "sort" and rest == "-n nums.txt > out.txt" and mistake.repair == ["sort -n nums.txt > out.txt"]
    assert inject.typo_command("cd repo", random.Random(0), {}) is None  # builtins are left alone
    assert inject.typo_command("./run.sh", random.Random(0), {}) is None


def test_wrong_path_points_at_something_that_does_not_exist():
    existing = {"data", "data/users.csv", "notes.txt"}
    for seed in range(20):
        mistake = inject.wrong_path("cut -d, -f1 data/users.csv > names.txt", random.Random(seed), {"existing": existing})
        assert mistake.kind == "wrong_path"
        path = mistake.bad.split()[2]
        assert path != "data/users.csv" and path not in existing
    assert inject.wrong_path("ls -la", random.Random(0), {"existing": existing}) is None


def test_flag_quoting_number_and_order_mistakes():
    rng = random.Random(3)
    assert inject.wrong_flag("sort -n a.txt", rng, {}).bad != "sort -n a.txt"
    assert inject.wrong_flag("cat a.txt", rng, {}) is None
    assert inject.broken_quoting("grep 'a b' f", rng, {}).bad in ("grep a b f", "grep 'a b f")
    bad = inject.off_by_one("head -n 5 f > out.txt", rng, {})
    assert bad.bad in ("head -n 4 f > out.txt", "head -n 6 f > out.txt") and bad.notice
    assert inject.off_by_one("./a.sh > o 2> e", rng, {}) is None  # file descriptors are not numbers to get wrong
    order = inject.wrong_order(("chmod +x a.sh", "./a.sh"), 0)
    assert order.bad == "./a.sh" and order.repair == ["chmod +x a.sh", "./a.sh"] and order.consumes == 2
    assert inject.wrong_order(("chmod +x a.sh",), 0) is None


def test_unprobeable_commands():
    assert not inject.probeable("pkill -x worker")
    assert not inject.probeable("nohup bin/d 100 > /dev/null 2>&1 &")
    assert not inject.probeable("echo x >> ~/.bashrc")
    assert inject.probeable("sort -n /root/task/a.txt > b.txt")


def test_critic_rejects_a_mistake_without_effect_and_accepts_a_real_one(open_session):
    task = registry.generate("sort_uniq", 0, 1)
    with open_session() as session:
        episodes.prepare(session, task)
        command = task.solution[0]
        no_effect = inject.Mistake("wrong_flag", command.replace(" ", "  ", 1), [command])
        assert not inject.critic_accepts(session, task.workdir, no_effect, [command])
        typo = inject.Mistake("typo_command", "x" + command, [command])
        assert inject.critic_accepts(session, task.workdir, typo, [command])
        # A mistake whose damage the repair does not undo is rejected.
        destructive = inject.Mistake("wrong_path", "rm -f * ; " + command, [command])
        assert not inject.critic_accepts(session, task.workdir, destructive, [command])
        # The dry runs left the real task directory alone: the verifier still fails, the solution still works.
        assert episodes.verify(session, task).exit_code != 0
        assert session.run(command).exit_code == 0 and episodes.verify(session, task).exit_code == 0


def test_critic_removes_files_only_the_mistake_created(open_session):
    task = registry.generate("text_grep", 0, 1)
    with open_session() as session:
        episodes.prepare(session, task)
        command = task.solution[0]
        out = command.rsplit(">", 1)[1].strip()
        mistake = inject.Mistake("wrong_path", command.replace("> " + out, "> wrong_" + out), [command])
        assert inject.critic_accepts(session, task.workdir, mistake, [command])
        assert mistake.undo == [f"rm -f wrong_{out}"] and mistake.notice  # quiet mistake: someone looks


@pytest.mark.parametrize("family", FAMILIES)
def test_injected_episode_passes_and_is_labelled(family, open_session):
    task = registry.generate(family, 0, 1 + len(family) % 2)
    with open_session() as session:
        episode = episodes.injected_episode(session, task, random.Random(11))
    assert episode.extra["kind"] == "injected"
    assert episode.extra["passed"] is True, [(t.label, t.command, t.exit_code, t.output) for t in episode.turns]
    labels = [t.label for t in episode.turns]
    assert labels[-1] == "verify" and episode.turns[-1].exit_code == 0
    if "error" in labels:  # a probe right after the first mistake, then the recovery
        first = labels.index("error")
        assert labels[first + 1] == "verify" and labels.count("verify") == 2
        assert episode.turns[first + 1].cwd == episode.turns[first].cwd
    turns = [t for t in episode.turns if t.label != "verify"]
    assert set(t.label for t in turns) <= set(LABELS) - {"setup", "verify"}
    injected = episode.extra["injected"]
    assert len(injected) == labels.count("error")
    for i, turn in enumerate(turns):
        if turn.label == "error":
            assert turns[i + 1].label == "recovery"
            # the mistake showed: it failed, printed an error, or a recovery turn looks at the damage
            follow = [t for t in turns[i + 1:i + 3] if t.label == "recovery"]
            assert (turn.exit_code != 0 or any(m in turn.output for m in inject.ERROR_MARKERS)
                    or any(t.command.split()[0] in ("cat", "head", "wc", "ls") for t in follow)), turn
    assert all(record["shown_by"] in ("error", "notice") for record in injected), injected


def test_injection_yields_varied_mistakes(open_session):
    kinds = set()
    for family, seed in (("text_columns", 1), ("archives", 2), ("files_dirs", 3), ("logs", 4)):
        task = registry.generate(family, seed, 2)
        with open_session() as session:
            episode = episodes.injected_episode(session, task, random.Random(seed), errors=2, explore_steps=0)
        assert episode.extra["passed"]
        kinds |= {i["kind"] for i in episode.extra["injected"]}
    assert len(kinds) >= 3, kinds
