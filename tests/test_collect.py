"""twjax collect: the split plan (held-out parameters and families, no duplicates), and a real
collection into shards that survives being cut short and resumed without loss or duplicates."""
import collections
import json
import os

import pytest

from twjax import cli, configlib
from twjax.episode import EpisodeFormatError, read_jsonl
from twjax.tasks import collect, splits

CONFIG = "configs/data/tiny.py"
SMALL_RUN = ["families=('files_dirs','sort_uniq','text_sed')", "held_out_families=('text_grep',)",
             "episodes.train=3", "episodes.valid=1", "episodes.test=1", "workers=2"]


def test_plan_splits_are_disjoint_and_hold_out_parameters_and_families():
    config = configlib.load(CONFIG, ["episodes.train=20", "episodes.valid=4", "episodes.test=4"])
    jobs, report = collect.make_plan(config)
    assert not report.shortfall
    by_split = collections.defaultdict(set)
    for job in jobs:
        by_split[job.split].add(job.content_hash)
    assert len({job.content_hash for job in jobs}) == len(jobs)  # no duplicate task anywhere
    assert not (by_split["train"] & by_split["valid"]) and not (by_split["train"] & by_split["test"])
    assert len({job.episode_id for job in jobs}) == len(jobs)
    held = set(config.held_out_families)
    assert {job.family for job in jobs if job.split != "test"}.isdisjoint(held)
    assert {job.family for job in jobs if job.heldout == "family"} == held
    # Every held-out-parameter task uses a setup word (file name, content) no train task of its family uses.
    for family in {job.family for job in jobs} - held:
        train_words = set().union(*(splits.task_words(j.task) for j in jobs if j.family == family and j.split == "train"))
        evaluation = [j for j in jobs if j.family == family and j.split in ("valid", "test")]
        assert len(evaluation) == 8 and all(j.heldout == "params" for j in evaluation)
        assert all(splits.task_words(j.task) - train_words for j in evaluation), family
    kinds = collections.Counter(job.kind for job in jobs)
    assert set(kinds) == {"expert", "injected", "exploration"} and kinds["expert"] > kinds["exploration"]
    # The plan is a pure function of the config: a resume makes the same one.
    again, _ = collect.make_plan(config)
    assert [j.episode_id for j in again] == [j.episode_id for j in jobs]


def backend_or_skip(config) -> None:
    from twjax.harness import session
    ok, reason = session.backend_status(session.resolve_backend(config.backend))
    if not ok:
        if os.environ.get("TWJAX_REQUIRE_BACKENDS") == "1":
            pytest.fail(f"no sandbox backend: {reason}")
        pytest.skip(f"no sandbox backend: {reason}")


def written_ids(out) -> list[str]:
    return [episode.id for path in collect.shard_paths(out) for episode in read_jsonl(path)]


def failed_ids(out) -> set[str]:
    path = out / collect.FAILURES
    return {json.loads(line)["id"] for line in path.read_text().splitlines()} if path.exists() else set()


def test_collect_resumes_after_a_kill_without_loss_or_duplicates(tmp_path):
    config = configlib.load(CONFIG, SMALL_RUN)
    backend_or_skip(config)
    out = tmp_path / "data"
    jobs, _ = collect.make_plan(config)
    planned = {job.episode_id for job in jobs}
    first = collect.collect(config, out, limit=6, progress=False)
    assert first["run"]["new_episodes"] + first["run"]["new_failures"] == 6
    # A writer killed mid-line leaves a partial last record.
    shard = max(collect.shard_paths(out), key=lambda p: p.stat().st_size)
    data = shard.read_bytes()
    cut_id = json.loads(data.splitlines()[-1])["id"]
    shard.write_bytes(data[:-25])
    # The CLI resumes: repairs the tail, skips what is done, appends the rest.
    assert cli.main(["collect", "--config", CONFIG, "--out", str(out), "--no-progress",
                     *[f"--config.{o}" for o in SMALL_RUN]]) == 0
    ids = written_ids(out)
    assert len(ids) == len(set(ids)), "an episode was written twice"
    assert cut_id in ids
    assert set(ids) | failed_ids(out) == planned and not set(ids) & failed_ids(out)
    stats = json.loads((out / collect.STATS).read_text())
    assert stats["total"]["episodes"] == len(ids) and stats["failed_tasks"] == len(failed_ids(out))
    assert set(stats["split_overlap_tasks"].values()) == {0}
    assert stats["splits"]["test"]["families"]["text_grep"] == len([i for i in ids if i.startswith("text_grep-")])
    assert stats["splits"]["train"]["turns"] > 0 and stats["splits"]["train"]["tokens"] > 0
    train_stats = stats["splits"]["train"]
    assert train_stats["verify_turns"] >= train_stats["episodes"] and 0 < train_stats["verify_pass_fraction"] < 1
    for split in splits.SPLITS:
        for episode in (e for p in sorted(out.glob(f"{split}-*.jsonl")) for e in read_jsonl(p)):
            assert episode.extra["split"] == split and episode.extra["kind"] in config.kinds
            if episode.extra["kind"] == "expert":
                assert episode.extra["passed"] and {t.label for t in episode.turns} == {"expert", "verify"}
    # Nothing is left to do: a third run writes nothing new.
    third = collect.collect(config, out, progress=False)
    assert third["run"]["new_episodes"] == 0 and written_ids(out) == ids


def test_resume_with_another_config_is_refused(tmp_path):
    config = configlib.load(CONFIG, SMALL_RUN)
    backend_or_skip(config)
    collect.collect(config, tmp_path, limit=1, progress=False)
    changed = configlib.load(CONFIG, SMALL_RUN + ["seed=7"])
    with pytest.raises(SystemExit, match="another config"):
        collect.collect(changed, tmp_path, limit=1, progress=False)


def test_a_corrupt_shard_line_is_reported_with_its_place(tmp_path):
    (tmp_path / "train-00000.jsonl").write_text('{"id": "a", "task": "", "turns": []}\n{not json}\n')
    with pytest.raises(EpisodeFormatError, match=r"train-00000.jsonl:2"):
        collect.done_ids(tmp_path)


def test_imported_terminal_bench_task_is_collected_into_test(tmp_path):
    config = configlib.load(CONFIG, SMALL_RUN)
    backend_or_skip(config)
    from twjax.tasks import harbor_import
    task_dir = tmp_path / "tb" / "count-lines"
    for relative, text in {
        "task.yaml": "instruction: Write the number of lines of /srv/data/log.txt to /srv/data/n.txt.\ndifficulty: easy\n",
        "Dockerfile": "FROM ubuntu:24.04\nWORKDIR /srv/data\nRUN seq 1 7 > log.txt\n",
        "solution.sh": "wc -l < /srv/data/log.txt > /srv/data/n.txt\n",
        "run-tests.sh": "#!/bin/bash\n[ \"$(cat /srv/data/n.txt)\" = 7 ]\n",
    }.items():
        (task_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (task_dir / relative).write_text(text)
    tasks = tmp_path / "tasks.jsonl"
    assert cli.main(["tasks", "import", str(task_dir), "--out", str(tasks)]) == 0
    config = configlib.load(CONFIG, SMALL_RUN + ["episodes.train=1", "episodes.valid=0", "episodes.test=0",
                                                 f"imported.files=('{tasks}',)"])
    stats = collect.collect(config, tmp_path / "data", progress=False)
    assert stats["splits"]["test"]["heldout"] == {"imported": 1}
    [episode] = [e for p in sorted((tmp_path / "data").glob("test-*.jsonl")) for e in read_jsonl(p)]
    assert episode.extra["family"] == "terminal-bench" and episode.extra["passed"]
    assert [t.command for t in episode.turns if t.label == "expert"] == [harbor_import.load_task(task_dir)[0].solution[0]]
