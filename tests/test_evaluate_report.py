"""The report's structure, its JSON, TensorBoard events and PNG plots, from hand-made records."""
import json
import math

import numpy as np
import pytest
from tb_events import read_events
from tensorboardX import SummaryWriter

from twjax.episode import Episode, Turn
from twjax.evaluate import baselines, fidelity, plots, report, tensorboard_report
from twjax.evaluate.metrics import TURN_METRICS, TurnRecord


def _records(values_ExT, xent=True):
    out = []
    for e, row in enumerate(values_ExT):
        for t, v in enumerate(row):
            m = {name: float(v) for name in TURN_METRICS}
            if xent:
                m["xent"] = 1.0 - 0.5 * v
            out.append(TurnRecord(f"e{e}", t, 50 * t, "ls" if t % 2 else "cat", bool(t % 3), m))
    return out


@pytest.fixture(scope="module")
def built():
    rng = np.random.default_rng(0)
    tf = _records(rng.random((40, 8)) > 0.1)
    sc = _records(rng.random((40, 8)) > 0.1 + 0.05 * np.arange(8))
    episodes = [Episode(f"e{i}", "t", [Turn("ls", "a\n" if t % 2 else "", 0, "/root") for t in range(8)])
                for i in range(40)]
    base = {"trivial": baselines.baseline_records(baselines.TrivialBaseline(), episodes)}
    fs = {"self_conditioned": {"entries_f1": 0.5, "delta_f1": 0.25, "probes": 3, "deltas": 1}}
    return fidelity.build_report({"teacher_forced": tf, "self_conditioned": sc}, base, fs, n_boot=100)


def test_report_structure(built):
    for regime in ("teacher_forced", "self_conditioned"):
        section = built[regime]
        for key in ("exact", "exact_norm", "edit_sim", "line_f1", "exit_acc", "cwd_acc", "correct", "xent",
                    "by_turn", "nonempty", "by_command", "curves"):
            assert key in section, key
        assert [row["turn"] for row in section["by_turn"]] == list(range(8))
        assert set(section["by_command"]) == {"ls", "cat"}
        assert set(section["curves"]) == {"turn", "context", "survival", "fits"}
        assert section["curves"]["fits"]["best"] in ("exponential", "stretched_exponential", "power_law")
    bias = built["exposure_bias"]
    assert bias["area_between"]["correct"]["area"] > 0  # self-conditioned hazard grows with t
    assert 0 < bias["excess_error_fraction"]["correct"] < 1
    assert bias["survival_gap"] < 0
    assert set(bias["transitions"]) == {"teacher_forced", "self_conditioned"}
    assert bias["transitions"]["self_conditioned"]["n_after_error"] > 0
    assert built["baselines"]["trivial"]["nonempty"]["exact"] == 0.0
    assert built["baselines"]["trivial"]["exact"] == pytest.approx(0.5)
    assert built["fs_f1"] == 0.5


def test_json_is_strict_and_compact(built):
    text = json.dumps(report.json_safe(report.without_curves(built)), allow_nan=False)
    loaded = json.loads(text)
    assert "curves" not in loaded["teacher_forced"] and "curves" not in loaded["baselines"]["trivial"]
    assert set(loaded) >= {"teacher_forced", "self_conditioned", "baselines", "fs_f1", "exposure_bias"}
    assert report.json_safe({"a": [float("nan"), 1.0, float("inf")]}) == {"a": [None, 1.0, None]}


def test_tensorboard_scalars_and_layout(built, tmp_path):
    writer = SummaryWriter(str(tmp_path))
    tensorboard_report.write(writer, built, step=7)
    writer.close()
    scalars = {}
    tags = set()
    for event in read_events(tmp_path):
        for value in event.summary.value:
            tags.add(value.tag)
            if value.HasField("simple_value"):
                scalars[value.tag] = (event.step, value.simple_value)
    assert scalars["fidelity/teacher_forced/correct"] == (7, pytest.approx(built["teacher_forced"]["correct"]))
    assert scalars["fidelity/baseline_trivial/exact"][1] == pytest.approx(0.5)
    assert scalars["fidelity_nonempty/self_conditioned/edit_sim"][1] == pytest.approx(
        built["self_conditioned"]["nonempty"]["edit_sim"])
    assert "by_turn/self_conditioned/correct/turn_007" in scalars
    assert scalars["exposure_bias/excess_error_fraction"][1] == pytest.approx(
        built["exposure_bias"]["excess_error_fraction"]["correct"])
    assert scalars["fs/self_conditioned/entries_f1"][1] == 0.5
    assert "custom_scalars__config__" in tags
    layout = tensorboard_report.layout(built)
    assert "fidelity/baseline_trivial/correct" in layout["fidelity"]["correct"][1]


def test_verdicts_reach_tensorboard(tmp_path):
    """A section with verifier probes writes their classifier scores; the baseline's always-exit-0
    guess passes everything (balanced accuracy 0.5 whatever the share of real passes)."""
    episodes = [Episode(f"e{i}", "t", [Turn("ls", "", 0, "/root"), Turn("test -f x", "", int(i % 4 > 0), "/root",
                                                                         label="verify")]) for i in range(8)]
    built = fidelity.build_report({}, {"trivial": baselines.baseline_records(baselines.TrivialBaseline(), episodes)},
                                  n_boot=10)
    verdicts = built["baselines"]["trivial"]["verdicts"]
    assert verdicts["n"] == 8 and verdicts["real_pass_rate"] == 0.25 and verdicts["predicted_pass_rate"] == 1.0
    assert verdicts["accuracy"] == 0.25 and verdicts["balanced_accuracy"] == 0.5 and verdicts["pass_precision"] == 0.25
    writer = SummaryWriter(str(tmp_path))
    tensorboard_report.write(writer, built, step=3)
    writer.close()
    scalars = {value.tag: value.simple_value for event in read_events(tmp_path) for value in event.summary.value
               if value.HasField("simple_value")}
    assert scalars["verdicts/baseline_trivial/balanced_accuracy"] == 0.5
    assert scalars["verdicts/baseline_trivial/real_pass_rate"] == 0.25
    assert scalars["verdicts/baseline_trivial/pass_precision"] == 0.25


def test_plots_are_pngs(built, tmp_path):
    paths = plots.write_all(built, tmp_path, metrics=("correct", "xent"))
    names = {p.name for p in paths}
    assert names == {"correct_by_turn.png", "correct_by_context.png", "xent_by_turn.png",
                     "xent_by_context.png", "survival.png"}
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_token_context_matches_layout():
    class CountingTokenizer:  # one token per character plus the layout's markers
        def encode_task(self, text):
            return [0] * (1 + len(text))

        def encode_turn(self, turn):
            return [0] * (3 + len(turn.command) + len(turn.output) + 4 + len(turn.cwd)), None

        def encode_command(self, command):
            return [0] * (2 + len(command))

    episode = Episode("e", "ab", [Turn("ls", "x\n", 0, "/r"), Turn("pwd", "/r\n", 0, "/r")])
    context_of = report.token_context(CountingTokenizer())
    assert context_of(episode, 0) == 3 + 4 + 1
    assert context_of(episode, 1) == 3 + (3 + 2 + 2 + 4 + 2) + 5 + 1
    assert not math.isnan(context_of(episode, 1))


def test_cli_end_to_end(tmp_path, monkeypatch, capsys):
    """`twjax evaluate` on a JSONL file: JSON last on stdout, report.json, turns.jsonl, PNGs and
    TensorBoard events. The workdir loader is the trainer's (tested there); here it hands over a
    small model built in the test."""
    from flax import nnx

    from twjax import checkpoint_io, cli, episode as episode_lib, model as model_lib, tokenizer as tokenizer_lib

    rng = np.random.default_rng(0)
    def episode(i):
        turns = [Turn(f"echo w{i}_{t}", f"w{i}_{t}\n" if rng.random() < 0.5 else "", 0, "/root") for t in range(3)]
        return Episode(f"e{i}", f"task {i}", turns)
    train, test = [episode(i) for i in range(30)], [episode(i) for i in range(30, 36)]
    episode_lib.write_jsonl(tmp_path / "train.jsonl", train)
    episode_lib.write_jsonl(tmp_path / "test.jsonl", test)
    tok = tokenizer_lib.train([str(tmp_path / "train.jsonl")], str(tmp_path / "tok.model"), vocab_size=300)
    config = model_lib.ModelConfig(vocab_size=384, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64,
                                   max_len=128)
    model = model_lib.Transformer(config, rngs=nnx.Rngs(0))
    monkeypatch.setattr(checkpoint_io, "load_for_inference", lambda workdir, step=None: (None, tok, model))
    workdir = tmp_path / "run"
    workdir.mkdir()
    code = cli.main(["evaluate", "--workdir", str(workdir), "--episodes", str(tmp_path / "test.jsonl"),
                     "--train-episodes", str(tmp_path / "train*.jsonl"), "--max-episodes", "5",
                     "--max-new-tokens", "8", "--n-boot", "20", "--json"])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    out = json.loads(last)
    for regime in ("teacher_forced", "self_conditioned"):
        assert {"exact", "exact_norm", "edit_sim", "line_f1", "exit_acc", "cwd_acc", "by_turn", "nonempty",
                "by_command"} <= set(out[regime])
        assert out[regime]["n"] == 15
    assert set(out["baselines"]) == {"trivial", "ngram"} and "fs_f1" in out
    assert out["meta"]["episodes"] == 5 and out["meta"]["ngram_backoff_hits"]
    assert 0.0 <= out["copy_probe"]["accuracy"] <= 1.0 and out["copy_probe"]["examples"] == 32
    assert set(out["copy_probe"]["line_names"]) == {"shared_prefix", "unique_prefix", "names_column",
                                                        "names_column_session", "names_column_session_headers"}
    for key in ("names_column_predicted", "names_column_session_predicted"):
        assert set(out["copy_probe"][key]) == {"right", "previous_name", "other_name", "newline", "prefix", "other"}
    saved = json.loads((workdir / "eval" / "report.json").read_text())
    assert "curves" in saved["self_conditioned"]
    lines = (workdir / "eval" / "turns.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 15
    assert list((workdir / "eval" / "tb").glob("events.out.tfevents.*"))
    assert (workdir / "eval" / "plots" / "survival.png").exists()


def test_cli_baselines_only_with_closed_loop_pairs(tmp_path, capsys):
    from twjax import cli, episode as episode_lib

    real = [Episode(f"r{i}", "t", [Turn("ls", "a\n", 0, "/root"), Turn("pwd", "/root\n", 0, "/root")]) for i in range(4)]
    learned = [Episode(e.id, e.task, [Turn("ls", "a\n", 0, "/root"), Turn("pwd", "/tmp\n", 0, "/root")]) for e in real]
    for name, eps in (("real", real), ("learned", learned), ("test", real), ("train", real)):
        episode_lib.write_jsonl(tmp_path / f"{name}.jsonl", eps)
    out_dir = tmp_path / "out"
    assert cli.main(["evaluate", "--workdir", str(tmp_path), "--out", str(out_dir), "--episodes",
                     str(tmp_path / "test.jsonl"), "--train-episodes", str(tmp_path / "train.jsonl"),
                     "--baselines-only", "--closed-loop", str(tmp_path / "learned.jsonl"),
                     str(tmp_path / "real.jsonl"), "--n-boot", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["closed_loop"]["correct"] == 0.5 and out["closed_loop"]["n"] == 8
    assert out["baselines"]["ngram"]["correct"] == 1.0  # the test episodes are the training episodes
    assert "teacher_forced" not in out and (out_dir / "report.json").exists()
    episode_lib.write_jsonl(tmp_path / "learned.jsonl", learned[:3])
    with pytest.raises(ValueError, match="same episode ids"):
        report.closed_loop_pairs(str(tmp_path / "learned.jsonl"), str(tmp_path / "real.jsonl"))
