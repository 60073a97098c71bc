"""Sweep planning, the three launchers' dry runs (exact commands), and a real local grid of cheap trials."""
import json
import pathlib
import shlex
import sys

import pytest

from tb_events import read_events
from twjax import cli, configlib
from twjax.launch import hparams, sweep

REPO = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable

# A cheap real program with the trial calling convention: loads the experiment config with the
# trial's overrides (so a wrong override fails it), counts its runs, fails on demand, prints metrics.
PROGRAM = """
import argparse, json, pathlib, sys
from twjax import cli, configlib
argv, overrides = cli.split_config_overrides(sys.argv[1:])
parser = argparse.ArgumentParser()
parser.add_argument("--config")
parser.add_argument("--workdir")
args = parser.parse_args(argv)
config = configlib.load(args.config, overrides)
workdir = pathlib.Path(args.workdir)
workdir.mkdir(parents=True, exist_ok=True)
with open(workdir / "runs.txt", "a") as f:
    f.write("run\\n")
if config.train.fail and pathlib.Path(config.fail_marker).exists():
    print("boom: asked to fail", file=sys.stderr)
    sys.exit(3)
with open(workdir / "metrics.jsonl", "a") as f:  # like twjax train's per-step log; the last line cut short
    f.write('{"step": 1, "train/loss": 5.0}\\n{"step": 2, "train/loss": 4.0}\\n{"step": 3, "tr')
print("training...")
print(json.dumps({"loss": 1.0 / config.model.d_model, "eval": {"acc": config.train.seed + 0.5}}))
"""
# A follow-up step (like `evaluate`): writes W/metrics.json, which the launcher merges in.
AFTER = """
import json, pathlib, sys
if pathlib.Path(sys.argv[0]).with_name("AFTER_FAIL").exists():
    sys.exit(4)
(pathlib.Path(sys.argv[1]) / "metrics.json").write_text(json.dumps({"eval_after": 2.0}))
"""
EXPERIMENT = """
import ml_collections
def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.program = {program!r}
    c.after = {after!r}
    c.fail_marker = {marker!r}
    c.summary_metrics = ("loss", "eval/acc")
    c.model = ml_collections.ConfigDict(dict(d_model=8))
    c.train = ml_collections.ConfigDict(dict(seed=0, fail=False))
    return c
def get_sweep(arg=None):
    return [{{"model.d_model": 8, "train.seed": 0}},
            {{"model.d_model": 16, "train.seed": 0}},
            {{"model.d_model": 16, "train.seed": 1, "train.fail": True}}]
"""
NAMES = ["d_model=8,seed=0", "d_model=16,seed=0", "d_model=16,seed=1,fail=true"]


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "prog.py").write_text(PROGRAM)
    (tmp_path / "after.py").write_text(AFTER)
    marker = tmp_path / "FAIL"
    marker.write_text("")
    experiment = tmp_path / "tiny.py"
    experiment.write_text(EXPERIMENT.format(program=f"exec:{PY} {tmp_path / 'prog.py'}",
                                            after=(f"exec:{PY} {tmp_path / 'after.py'} {{workdir}}",),
                                            marker=str(marker)))
    return tmp_path


def sweep_cli(capsys, *argv):
    capsys.readouterr()
    code = cli.main(["sweep", *argv])
    return code, capsys.readouterr().out


def test_trial_names_are_readable_unique_and_stable():
    assert sweep.trial_name({}) == "default"
    assert sweep.trial_name({"model.d_model": 256, "train.seed": 1}) == "d_model=256,seed=1"
    # The same leaf twice keeps the full keys; paths keep their last two parts without globs.
    assert (sweep.trial_name({"data.seed": 0, "train.seed": 1, "data.train": "data/scaling/n250/train-*.jsonl"})
            == "data.seed=0,train.seed=1,train=n250_train")
    long = {f"a.key{i}": "x" * 20 for i in range(8)}
    name = sweep.trial_name(long)
    assert len(name) == sweep.MAX_NAME_CHARS and name == sweep.trial_name(dict(long))
    assert name != sweep.trial_name({**long, "a.key7": "y" * 20})


def test_overrides_are_checked_against_the_config_before_anything_runs(tiny):
    text = (tiny / "tiny.py").read_text().replace('"train.seed": 1,', '"train.sead": 1,')
    (tiny / "typo.py").write_text(text)
    with pytest.raises(KeyError, match="sead"):
        sweep.load_experiment(str(tiny / "typo.py"))
    (tiny / "noprog.py").write_text(text.replace("c.program", "c.prog"))
    with pytest.raises(ValueError, match="config.program"):
        sweep.load_experiment(str(tiny / "noprog.py"))
    (tiny / "badcmd.py").write_text((tiny / "tiny.py").read_text().replace("exec:", "frobnicate "))
    with pytest.raises(ValueError, match="twjax command"):
        sweep.load_experiment(str(tiny / "badcmd.py"))


def test_local_dry_run_prints_exact_commands_and_runs_nothing(tiny, capsys):
    exproot = tiny / "runs"
    code, out = sweep_cli(capsys, str(tiny / "tiny.py"), "--exproot", str(exproot), "--dry-run")
    assert code == 0
    root = exproot / "tiny"
    expected = []
    for name, extra in zip(NAMES, (["--config.model.d_model=8", "--config.train.seed=0"],
                                   ["--config.model.d_model=16", "--config.train.seed=0"],
                                   ["--config.model.d_model=16", "--config.train.seed=1", "--config.train.fail=true"])):
        expected.append(shlex.join([PY, str(tiny / "prog.py"), "--config", str(tiny / "tiny.py"),
                                    "--workdir", str(root / name), *extra]))
        expected.append(shlex.join([PY, str(tiny / "after.py"), str(root / name)]))
    assert out.splitlines() == expected
    assert not exproot.exists()


def test_twjax_programs_get_the_cli_and_the_config_arg(tiny, capsys):
    text = (tiny / "tiny.py").read_text()
    (tiny / "exp.py").write_text(text.replace(f"exec:{PY} {tiny / 'prog.py'}", "agent train")
                                 .replace(f"exec:{PY} {tiny / 'after.py'} {{workdir}}", "evaluate --workdir {workdir} --json"))
    code, out = sweep_cli(capsys, f"{tiny / 'exp.py'}:cpu", "--exproot", "/x", "--only", NAMES[0], "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        f"{PY} -m twjax agent train --config {tiny / 'exp.py'}:cpu --workdir /x/exp-cpu/d_model=8,seed=0 "
        "--config.model.d_model=8 --config.train.seed=0",
        f"{PY} -m twjax evaluate --workdir /x/exp-cpu/d_model=8,seed=0 --json",
    ]


def hparams_of(run_dir: pathlib.Path) -> tuple[dict, dict]:
    from tensorboardX.proto import plugin_hparams_pb2

    start, scalars = {}, {}
    for event in read_events(run_dir):
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                content = plugin_hparams_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                for key, hp in content.session_start_info.hparams.items():
                    start[key] = getattr(hp, hp.WhichOneof("kind"))
            elif not value.tag.startswith("_hparams_"):
                scalars[value.tag] = value.simple_value
    return start, scalars


def test_local_grid_runs_records_reports_failures_and_resumes(tiny, capsys):
    exproot = tiny / "runs"
    root = exproot / "tiny"
    args = (str(tiny / "tiny.py"), "--exproot", str(exproot), "--parallel", "2")
    code, out = sweep_cli(capsys, *args)
    assert code == 1  # one trial failed; the others still ran
    assert f"FAILED {NAMES[2]}: failed (exit 3)" in out and "boom: asked to fail" in out
    assert f"  ok          {NAMES[0]}  loss=0.125, eval/acc=0.5" in out.splitlines()
    for name in NAMES:
        assert (root / name / "runs.txt").read_text() == "run\n"
    records = [json.loads(line) for line in (root / "trials.jsonl").read_text().splitlines()]
    assert [(r["name"], r["status"]) for r in records] == [(NAMES[0], "ok"), (NAMES[1], "ok"), (NAMES[2], "failed")]
    assert records[0]["metrics"] == {"step": 2, "train/loss": 4.0, "loss": 0.125, "eval": {"acc": 0.5}, "eval_after": 2.0}
    assert records[2]["returncode"] == 3 and records[2]["overrides"]["train.fail"] is True
    assert (root / NAMES[2] / "trial.json").exists() and not (root / NAMES[2] / "hparams").exists()
    start, scalars = hparams_of(root / NAMES[1] / "hparams")
    assert start == {"model.d_model": 16.0, "train.seed": 0.0}
    assert scalars == {"step": 2.0, "train/loss": 4.0, "loss": 0.0625, "eval/acc": 0.5, "eval_after": 2.0}

    # Re-run: finished trials are skipped, the failed one runs again (and fails again).
    code, out = sweep_cli(capsys, *args)
    assert code == 1 and f"skip {NAMES[0]} (finished)" in out
    assert [(root / n / "runs.txt").read_text().count("run") for n in NAMES] == [1, 1, 2]
    code, out = sweep_cli(capsys, *args, "--dry-run")
    assert out.splitlines()[:2] == [f"# skip {NAMES[0]} (finished)", f"# skip {NAMES[1]} (finished)"]

    # Once the cause is gone, the failed trial completes and the grid is whole.
    (tiny / "FAIL").unlink()
    code, out = sweep_cli(capsys, *args)
    assert code == 0
    records = [json.loads(line) for line in (root / "trials.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok", "ok"]
    assert [(root / n / "runs.txt").read_text().count("run") for n in NAMES] == [1, 1, 3]
    assert hparams_of(root / NAMES[2] / "hparams")[0] == {"model.d_model": 16.0, "train.seed": 1.0, "train.fail": True}
    assert (root / NAMES[2] / "log.txt").read_text().count("=== attempt") == 3
    # The results table groups the trials over seeds (here one each) with the summary metrics.
    table = json.loads((root / "results.json").read_text())
    assert table["metrics"] == ["loss", "eval/acc"]
    assert [(g["label"], g["finished"], g["loss"]["mean"], g["eval/acc"]["mean"]) for g in table["groups"]] == [
        ("d_model=8", 1, 0.125, 0.5), ("d_model=16", 1, 0.0625, 0.5), ("d_model=16, fail=True", 1, 0.0625, 1.5)]
    assert (root / "results.md").read_text().startswith("| group | finished | loss | eval/acc |")
    assert (root / "results.png").exists()


def test_a_retry_skips_the_steps_that_succeeded(tiny, capsys):
    (tiny / "AFTER_FAIL").write_text("")
    args = (str(tiny / "tiny.py"), "--exproot", str(tiny / "runs"), "--only", NAMES[0])
    code, out = sweep_cli(capsys, *args)
    assert code == 1 and f"FAILED {NAMES[0]}: failed (exit 4)" in out
    (tiny / "AFTER_FAIL").unlink()
    code, out = sweep_cli(capsys, *args)
    assert code == 0
    trial_dir = tiny / "runs" / "tiny" / NAMES[0]
    assert (trial_dir / "runs.txt").read_text() == "run\n"  # the program ran once; only the follow-up was retried
    assert "=== step done in an earlier attempt: skipped" in (trial_dir / "log.txt").read_text()
    record = json.loads((trial_dir / "trial.json").read_text())
    assert record["metrics"]["loss"] == 0.125 and record["metrics"]["eval_after"] == 2.0


def test_trial_timeout_stops_the_trial_and_marks_it(tiny, capsys):
    text = (tiny / "tiny.py").read_text().replace(f"exec:{PY} {tiny / 'prog.py'}", f'exec:{PY} -c "import time; time.sleep(30)"')
    (tiny / "slow.py").write_text(text)
    code, out = sweep_cli(capsys, str(tiny / "slow.py"), "--exproot", str(tiny / "runs"), "--only", NAMES[0],
                          "--trial-timeout", "0.5")
    assert code == 1 and f"FAILED {NAMES[0]}: timeout" in out
    assert json.loads((tiny / "runs" / "slow" / NAMES[0] / "trial.json").read_text())["status"] == "timeout"


TPU_EXPERIMENT = """
import ml_collections
def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.program = "train"
    c.after = ("evaluate --workdir {workdir} --json",)
    c.model = ml_collections.ConfigDict(dict(d_model=8))
    return c
def get_sweep(arg=None):
    return [{"model.d_model": 8}, {"model.d_model": 16}]
"""


def test_tpu_vm_dry_run_prints_every_gcloud_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.py").write_text(TPU_EXPERIMENT)
    code, out = sweep_cli(capsys, "exp.py:tpu", "--launcher", "tpu-vm", "--tpu", "pod-a", "--zone", "us-central2-b",
                          "--project", "proj", "--create", "--accelerator-type", "v4-32", "--copy", "data/scaling",
                          "--delete", "--dry-run")
    assert code == 0
    g = "gcloud compute tpus tpu-vm"
    z = "--zone=us-central2-b --project=proj"
    train = ("'--command=cd twjax && .venv/bin/twjax train --config exp.py:tpu --workdir runs/sweeps/exp-tpu/d_model={d} "
             "--config.model.d_model={d}'")
    evaluate = "'--command=cd twjax && .venv/bin/twjax evaluate --workdir runs/sweeps/exp-tpu/d_model={d} --json'"
    fetch = f"{g} scp --recurse pod-a:twjax/runs/sweeps/exp-tpu/d_model={{d}}/{{item}} {tmp_path}/runs/sweeps/exp-tpu/d_model={{d}} --worker=0 {z}"
    expected = [
        "git archive --format=tar.gz --output=/tmp/twjax-src.tar.gz HEAD",
        f"{g} create pod-a --accelerator-type=v4-32 --version=tpu-ubuntu2204-base {z}",
        f"{g} scp /tmp/twjax-src.tar.gz pod-a:twjax-src.tar.gz --worker=all {z}",
        f"{g} ssh pod-a --worker=all '--command=mkdir -p twjax && tar -xzf twjax-src.tar.gz -C twjax && mkdir -p twjax/data' {z}",
        f"{g} scp --recurse data/scaling pod-a:twjax/data/ --worker=all {z}",
        f"{g} ssh pod-a --worker=all '--command=cd twjax && python3 -m pip install -q --user --upgrade uv && "
        "python3 -m uv venv -q --allow-existing --python 3.11 .venv && "
        f"python3 -m uv pip install -q --python .venv/bin/python -e . '\"'\"'jax[tpu]'\"'\"'' {z}",
    ]
    for d in (8, 16):
        expected += [f"{g} ssh pod-a --worker=all {train.format(d=d)} {z}",
                     f"{g} ssh pod-a --worker=all {evaluate.format(d=d)} {z}",
                     *[fetch.format(d=d, item=item) for item in ("tb", "metrics.jsonl", "metrics.json")]]
    expected.append(f"{g} delete pod-a --quiet {z}")
    assert out.splitlines() == expected
    assert not (tmp_path / "runs").exists()


def test_tpu_vm_dry_run_with_repo_url_gcs_workdirs_and_two_vms(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.py").write_text(TPU_EXPERIMENT)
    code, out = sweep_cli(capsys, "exp.py", "--launcher", "tpu-vm", "--tpu", "a", "--tpu", "b", "--zone", "z",
                          "--repo-url", "https://example.org/twjax.git", "--git-ref", "main",
                          "--remote-exproot", "gs://bucket/sweeps", "--dry-run")
    assert code == 0
    g = "gcloud compute tpus tpu-vm"
    clone = ("'--command=(test -d twjax/.git || git clone -q https://example.org/twjax.git twjax) && "
             "git -C twjax fetch -q origin main && git -C twjax checkout -q --force FETCH_HEAD'")
    lines = out.splitlines()
    assert lines[0] == f"{g} ssh a --worker=all {clone} --zone=z"
    assert lines[2] == f"{g} ssh b --worker=all {clone} --zone=z"
    # Workdirs on GCS: nothing to fetch back; trials alternate over the two VMs.
    assert lines[4:] == [
        f"{g} ssh a --worker=all '--command=cd twjax && .venv/bin/twjax train --config exp.py --workdir "
        "gs://bucket/sweeps/exp/d_model=8 --config.model.d_model=8' --zone=z",
        f"{g} ssh a --worker=all '--command=cd twjax && .venv/bin/twjax evaluate --workdir "
        "gs://bucket/sweeps/exp/d_model=8 --json' --zone=z",
        f"{g} ssh b --worker=all '--command=cd twjax && .venv/bin/twjax train --config exp.py --workdir "
        "gs://bucket/sweeps/exp/d_model=16 --config.model.d_model=16' --zone=z",
        f"{g} ssh b --worker=all '--command=cd twjax && .venv/bin/twjax evaluate --workdir "
        "gs://bucket/sweeps/exp/d_model=16 --json' --zone=z",
    ]


def test_tpu_vm_needs_a_name_a_zone_and_a_relative_experiment(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.py").write_text(TPU_EXPERIMENT)
    with pytest.raises(SystemExit, match="--tpu"):
        cli.main(["sweep", "exp.py", "--launcher", "tpu-vm", "--zone", "z", "--dry-run"])
    with pytest.raises(SystemExit, match="relative"):
        cli.main(["sweep", str(tmp_path / "exp.py"), "--launcher", "tpu-vm", "--tpu", "a", "--zone", "z", "--dry-run"])


def test_xm_dry_run_prints_job_specs_without_importing_xmanager(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.py").write_text(TPU_EXPERIMENT)
    code, out = sweep_cli(capsys, "exp.py:tpu", "--launcher", "xm", "--xm-executor", "vertex",
                          "--xm-accelerator", "TPU_V3=8", "--exproot", "gs://bucket/sweeps", "--dry-run")
    assert code == 0 and "xmanager" not in sys.modules
    specs = [json.loads(line) for line in out.splitlines()]
    workdir = "/gcs/bucket/sweeps/exp-tpu/d_model=8"
    assert specs[0] == {
        "experiment": "exp-tpu", "trial": "d_model=8", "executor": "vertex", "requirements": {"TPU_V3": 8},
        "workdir": workdir, "overrides": {"model.d_model": 8},
        "args": [f"twjax train --config exp.py:tpu --workdir {workdir} --config.model.d_model=8 && "
                 f"twjax evaluate --workdir {workdir} --json"]}
    assert [s["trial"] for s in specs] == ["d_model=8", "d_model=16"]
    from twjax.launch import xm

    assert xm.docker_instructions("twjax", {"TPU_V3": 8})[-1] == "RUN pip install --no-cache-dir -e . 'jax[tpu]'"
    with pytest.raises(SystemExit, match="gs://"):
        cli.main(["sweep", "exp.py", "--launcher", "xm", "--xm-executor", "vertex", "--exproot", "runs", "--dry-run"])


def test_xm_real_launch_goes_through_the_xmanager_cli(tmp_path, monkeypatch):
    import argparse
    import shutil

    from twjax.launch import xm

    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.py").write_text(TPU_EXPERIMENT)
    parser = argparse.ArgumentParser()
    sweep.add_arguments(parser)
    args = parser.parse_args(["exp.py:tpu", "--launcher", "xm", "--xm-executor", "vertex", "--xm-accelerator", "TPU_V3=8",
                              "--exproot", "gs://b/s", "--only", "d_model=8"])
    assert xm.launch_command(args, sweep.load_experiment("exp.py:tpu")) == [
        "xmanager", "launch", str(REPO / "tools" / "xm_launch.py"), "--", "--experiment=exp.py:tpu", "--name=exp-tpu",
        "--exproot=gs://b/s", "--executor=vertex", "--base_image=python:3.11", "--git_ref=HEAD",
        "--accelerator=TPU_V3=8", "--only=d_model=8"]
    if shutil.which("xmanager") is None:
        with pytest.raises(SystemExit, match=r"pip install -e '.\[xm\]'"):
            cli.main(["sweep", "exp.py:tpu", "--launcher", "xm"])


def a_run_key(experiment, trial) -> str:
    """The A run an agent-train trial trains (regime A) or branches off (C, RL)."""
    from twjax import agent_train
    return agent_train.a_run_key(agent_train.with_agent_defaults(configlib.load(
        experiment.config_spec, [f"{k}={v}" for k, v in trial.overrides.items()])))


@pytest.mark.parametrize("name, variant, program, count", [
    ("terminal_scaling", "cpu", "train", 4), ("terminal_scaling", "tpu", "train", 15),
    ("exposure_bias", "cpu", "train", 4), ("exposure_bias", "tpu", "train", 18),
    ("three_way_ablation", "cpu", "agent train", 16), ("three_way_ablation", "tpu", "agent train", 76),
    ("agent_copy", "", "agent train", 21), ("verifier_terminal", "", "agent train", 27),
    ("agent_pointer", "", "agent train", 21),
    ("agent_observed", "", "agent train", 9),
    ("agent_context", "", "agent train", 6),
    ("agent_context_imagined", "", "agent train", 15),
    ("agent_terminal_observes", "", "agent train", 18),
    ("agent_self_imitation", "", "agent train", 9),
])
def test_experiment_files_plan_valid_grids(name, variant, program, count, monkeypatch):
    monkeypatch.chdir(REPO)
    experiment = sweep.load_experiment(f"experiments/{name}.py" + (f":{variant}" if variant else ""))
    assert experiment.program == program and len(experiment.trials) == count
    if name == "three_way_ablation":
        regimes = {t.overrides["agent.regime"] for t in experiment.trials}
        seeds = {t.overrides.get("train.seed") for t in experiment.trials if t.overrides["agent.regime"] != "EXPERT"}
        assert regimes == {"UNTRAINED", "A", "B", "C", "RL", "EXPERT"} and len(seeds) >= 3
        assert any("data.lambda_obs" in t.overrides for t in experiment.trials)
        assert any("agent.lambda_env" in t.overrides for t in experiment.trials)
    if name == "agent_copy":  # three arms of regime A, two of B, one of C and RL, on the same three seeds
        arms = {tuple(sorted(f"{k}={v}" for k, v in t.overrides.items() if not k.endswith(".seed")))
                for t in experiment.trials}
        assert len(arms) == 7 and {t.overrides["train.seed"] for t in experiment.trials} == {0, 1, 2}
        assert {t.overrides.get("agent.regime", "A") for t in experiment.trials} == {"A", "B", "C", "RL"}
        learned = [t for t in experiment.trials if t.overrides.get("agent.regime") in ("C", "RL")]
        assert all(t.overrides["agent.terminal"] and t.overrides["train.init_from"] for t in learned)
        assert all(t.overrides["data.seed"] == t.overrides["train.seed"] for t in experiment.trials)
    if name == "agent_pointer":  # A as in the grid, with a copy head, with smeared keys too; B, C, RL with the head
        arms = {tuple(sorted(f"{k}={v}" for k, v in t.overrides.items() if not k.endswith(".seed")))
                for t in experiment.trials}
        assert len(arms) == 7 and {t.overrides["train.seed"] for t in experiment.trials} == {0, 1, 2}
        assert {(), ("model.copy_head=True",), ("model.copy_head=True", "model.smeared_keys=True")} < arms
        regimes = [t.overrides.get("agent.regime", "A") for t in experiment.trials if "model.copy_head" in t.overrides]
        assert sorted(set(regimes)) == ["A", "B", "C", "RL"]
        learned = [t for t in experiment.trials if t.overrides.get("agent.regime") in ("C", "RL")]
        assert all(t.overrides["agent.terminal"] == "runs/ablation/terminal" for t in learned)
        assert sum(t.overrides.get("agent.min_pass_probability") == 0.9 for t in learned) == 3
    if name == "agent_observed":  # copy-head agents that see their task's observation, as the terminal does
        config = configlib.load(experiment.config_spec)
        assert config.agent.observe_setup and config.model.copy_head and config.model.max_len == config.data.seq_len
        assert config.data.train.startswith("data/observed/")
        learned = [t for t in experiment.trials if t.overrides.get("agent.regime") in ("C", "RL")]
        assert len(learned) == 6 and all(t.overrides["agent.terminal"] == "runs/fidelity/observed-pointer"
                                         and t.overrides["agent.shared_sft"] for t in learned)
    if name == "agent_context":  # agent_observed's A on the same tasks' transcripts without the observation
        config, observed = configlib.load(experiment.config_spec), configlib.load("experiments/agent_observed.py")
        assert not config.agent.observe_setup and config.data.train == "data/ablation/n384/train-*.jsonl"
        assert (config.model.copy_head, config.data.seq_len, config.data.batch_size) == (
            observed.model.copy_head, observed.data.seq_len, observed.data.batch_size)
        assert sorted(t.overrides.get("data.batch_size", 8) for t in experiment.trials) == [4] * 3 + [8] * 3
    if name == "agent_context_imagined":  # C and RL branch off agent_context's A of their seed (batch 8)
        def a_runs(experiment):  # (regime, seed) -> the A run the trial trains or branches off
            return {(t.overrides.get("agent.regime", "A"), t.overrides["train.seed"]): a_run_key(experiment, t)
                    for t in experiment.trials if t.overrides.get("data.batch_size", 8) == 8}
        context = a_runs(sweep.load_experiment("experiments/agent_context.py"))
        here = a_runs(experiment)
        assert set(here) == {(regime, seed) for regime in ("A", "C", "RL") for seed in (0, 1, 2)}
        assert all(key == context[("A", seed)] for (regime, seed), key in here.items())
        assert len(set(context.values())) == 3
        learned = {(t.overrides["agent.regime"], t.overrides["train.seed"], t.overrides["agent.terminal"])
                   for t in experiment.trials if t.overrides.get("agent.regime") in ("C", "RL")}
        assert learned == {(regime, seed, f"runs/fidelity/{terminal}") for regime in ("C", "RL") for seed in (0, 1, 2)
                           for terminal in ("pointer-n384", "pointer-n384-agent")}
        assert all(t.overrides["agent.shared_sft"] for t in experiment.trials)
    if name == "agent_terminal_observes":  # agent_context_imagined's A runs, in a terminal that alone observes
        imagined = sweep.load_experiment("experiments/agent_context_imagined.py")
        a_of_seed = {t.overrides["train.seed"]: a_run_key(imagined, t) for t in imagined.trials}
        assert {(t.overrides.get("agent.regime", "A"), t.overrides["train.seed"], t.overrides.get("agent.terminal"))
                for t in experiment.trials} == {("A", seed, None) for seed in (0, 1, 2)} | {
            (regime, seed, f"runs/fidelity/{terminal}") for regime in ("C", "RL") for seed in (0, 1, 2)
            for terminal in ("observed-pointer-n384", "observed-pointer-n384-agent")}
        assert all(a_run_key(experiment, t) == a_of_seed[t.overrides["train.seed"]] for t in experiment.trials)
        verified = [t for t in experiment.trials if t.overrides.get("agent.real_check_fraction") == 1.0]
        assert sorted(t.overrides["train.seed"] for t in verified) == [0, 1, 2]
        assert all(t.overrides["agent.terminal"].endswith("-agent") for t in verified)
        config = configlib.load(experiment.config_spec)
        assert config.agent.observe_setup and config.agent.observe_terminal_only
        assert config.agent.terminal == "runs/fidelity/observed-pointer-n384"
        trial_dir = REPO / "runs/sweeps/agent_terminal_observes/trial"
        assert (trial_dir / config.agent.shared_sft).resolve() == (REPO / "runs/sweeps/agent_context_imagined/shared-sft")
    if name == "agent_self_imitation":  # C off the same A runs, in the fine-tuned observed terminal, weighted up
        observes = sweep.load_experiment("experiments/agent_terminal_observes.py")
        a_of_seed = {t.overrides["train.seed"]: a_run_key(observes, t) for t in observes.trials}
        assert all(a_run_key(experiment, t) == a_of_seed[t.overrides["train.seed"]] for t in experiment.trials)
        config = configlib.load(experiment.config_spec)
        assert config.agent.regime == "C" and config.agent.terminal == "runs/fidelity/observed-pointer-n384-agent"
        assert config.agent.observe_terminal_only and config.agent.shared_sft
        arms = {(t.overrides["agent.imagined_fraction"], t.overrides.get("agent.real_check_fraction"))
                for t in experiment.trials}
        assert arms == {(0.25, None), (0.5, None), (0.5, 1.0)}
        assert {t.overrides["train.seed"] for t in experiment.trials} == {0, 1, 2}
    if name == "verifier_terminal":  # C and RL branch off the three-way grid's A runs: the same run key
        def run_keys(experiment):  # (terminal, regime, seed, re-checked fraction) -> the A run it branches off
            return {(t.overrides.get("agent.terminal"), t.overrides["agent.regime"], t.overrides["train.seed"],
                     t.overrides.get("agent.real_check_fraction")): a_run_key(experiment, t)
                    for t in experiment.trials if t.overrides["agent.regime"] in ("C", "RL")}
        three_way = run_keys(sweep.load_experiment("experiments/three_way_ablation.py:cpu"))
        grid = {trial[1:3]: key for trial, key in three_way.items()}
        here = run_keys(experiment)
        terminals = {"runs/fidelity/recorded", "runs/fidelity/recorded-agent", "runs/fidelity/recorded-agent-balanced",
                     "runs/fidelity/recorded-agent-judged"}
        assert set(here) == {(terminal, regime, seed, None) for terminal in terminals for seed in (0, 1, 2)
                             for regime in ("C", "RL")} | {("runs/fidelity/recorded-agent-judged", "C", seed, 1.0)
                                                           for seed in (0, 1, 2)}
        assert all(key == grid[trial[1:3]] for trial, key in here.items())
        assert all(t.overrides["agent.terminal"] != "runs/ablation/terminal" for t in experiment.trials)
    if name == "exposure_bias":
        assert experiment.after and experiment.after[0].startswith("evaluate --workdir {workdir}")


def test_real_experiment_dry_runs(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(REPO)
    # Launch records go to tmp_path: a grid already run in this checkout (runs/sweeps) would be skipped.
    code, out = sweep_cli(capsys, "experiments/three_way_ablation.py:cpu", "--launcher", "tpu-vm", "--tpu", "v",
                          "--zone", "z", "--skip-setup", "--exproot", str(tmp_path), "--remote-exproot", "gs://b/s",
                          "--dry-run")
    assert code == 0
    assert out.splitlines()[0] == (
        "gcloud compute tpus tpu-vm ssh v --worker=all '--command=cd twjax && .venv/bin/twjax agent train "
        "--config experiments/three_way_ablation.py:cpu --workdir "
        "gs://b/s/three_way_ablation-cpu/regime=UNTRAINED,train=n384_train,seed=0 "
        "--config.agent.regime=UNTRAINED '\"'\"'--config.data.train=data/ablation/n384/train-*.jsonl'\"'\"' "
        "--config.train.seed=0' --zone=z")
    code, out = sweep_cli(capsys, "experiments/exposure_bias.py:cpu", "--exproot", "/r", "--dry-run")
    lines = out.splitlines()
    assert len(lines) == 8 and lines[1] == (
        f"{PY} -m twjax evaluate --workdir /r/exposure_bias-cpu/seq_len=128,max_len=128,regime=terminal,train=expert_train "
        "--episodes data/exposure/mixed/test-00000.jsonl --max-episodes 8 --max-new-tokens 64 --n-boot 50 --json")


def test_metrics_convention():
    assert hparams.last_json_object('x\n{"a": 1}\nnot json {\n{"b": {"c": 2}}\n[1]\n') == {"b": {"c": 2}}
    assert hparams.numeric({"a": 1, "b": True, "c": "s", "d": {"e": 2.5, "f": None}}) == {"a": 1.0, "d/e": 2.5}


SLOW = """
import ml_collections
def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.program = {program!r}
    c.x = 0
    return c
def get_sweep(arg=None):
    return [{{"x": 1}}, {{"x": 2}}]
"""
# The trial starts a child of its own: stopping a trial must stop its whole process group.
SLOW_PROGRAM = """
import pathlib, subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
pathlib.Path(sys.argv[sys.argv.index("--workdir") + 1]).mkdir(parents=True, exist_ok=True)
pathlib.Path(sys.argv[sys.argv.index("--workdir") + 1], "child.pid").write_text(str(child.pid))
time.sleep(60)
"""


def send_sigint_to_thread(pid: int, tid: int) -> None:
    """tgkill(2): a signal for one thread, as the kernel may pick any thread for a process's Ctrl-C."""
    import ctypes
    import os
    import signal
    number = {"x86_64": 234, "aarch64": 131}.get(os.uname().machine)
    if number is None:
        pytest.skip(f"tgkill's syscall number is not known here for {os.uname().machine}")
    if ctypes.CDLL(None, use_errno=True).syscall(number, pid, tid, signal.SIGINT) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


# Starts the sweep as a terminal would: SIGINT deliverable. A signal mask or an ignored SIGINT
# survives exec, and the test process's own (which libraries and pytest's workers may change) is
# not the launcher's to answer for. -X faulthandler: SIGABRT prints every thread's stack.
CLEAN_SIGNALS = """
import os, signal, sys
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.executable, [sys.executable, "-X", "faulthandler", *sys.argv[1:]])
"""


def signal_state(pid: int) -> str:
    import os
    import re
    lines = []
    for tid in sorted(os.listdir(f"/proc/{pid}/task")):
        status = pathlib.Path(f"/proc/{pid}/task/{tid}/status").read_text()
        fields = re.findall(r"^(?:Sig(?:Pnd|Blk|Ign|Cgt)|ShdPnd):\s*\S+", status, re.M)
        lines.append(f"thread {tid}: " + " ".join(fields))
    return "\n".join(lines)


@pytest.mark.parametrize("thread", ["main", "worker"])
def test_ctrl_c_stops_running_trials_and_their_children(tmp_path, thread):
    """Whichever of the sweep's threads the kernel hands Ctrl-C to, the trials stop at once."""
    import os
    import signal
    import subprocess
    import time

    (tmp_path / "slow_prog.py").write_text(SLOW_PROGRAM)
    (tmp_path / "slow.py").write_text(SLOW.format(program=f"exec:{PY} {tmp_path / 'slow_prog.py'}"))
    sweep_process = subprocess.Popen([PY, "-c", CLEAN_SIGNALS, "-m", "twjax", "sweep", str(tmp_path / "slow.py"),
                                      "--exproot", str(tmp_path / "runs")], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
    pid_file = tmp_path / "runs" / "slow" / "x=1" / "child.pid"
    passed = False
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pid_file.exists(), "the trial did not start within 30 s"
        time.sleep(0.2)
        pid = sweep_process.pid
        threads = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
        assert threads, "the sweep runs its trials from worker threads"
        send_sigint_to_thread(pid, pid if thread == "main" else threads[-1])
        try:
            out, _ = sweep_process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            state = signal_state(pid)
            sweep_process.send_signal(signal.SIGABRT)
            _, stacks = sweep_process.communicate(timeout=30)
            pytest.fail(f"the sweep ignored SIGINT for 30 s\n{state}\n{stacks}")
        assert sweep_process.returncode == 130, out
        records = [json.loads(line) for line in (tmp_path / "runs" / "slow" / "trials.jsonl").read_text().splitlines()]
        assert [r["status"] for r in records] == ["interrupted", "pending"]
        child = int(pid_file.read_text())
        time.sleep(0.2)
        state = pathlib.Path(f"/proc/{child}/status")
        assert not state.exists() or "zombie" in state.read_text()
        passed = True
    finally:
        if sweep_process.poll() is None:
            sweep_process.kill()
            sweep_process.communicate()
        if not passed and pid_file.exists():  # a failed run leaves the trial's group behind: end it
            try:
                os.killpg(os.getpgid(int(pid_file.read_text())), signal.SIGKILL)
            except ProcessLookupError:
                pass

