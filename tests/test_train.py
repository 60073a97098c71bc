"""The trainer: exact resume after SIGTERM, gradient accumulation, the regime-weighted loss, init_from,
TensorBoard output and `twjax train` end to end — on the real model, 8 fake CPU devices.

XLA compiles slowly on a small CPU host (tens of seconds per train step), so every run here uses
the same tiny model shape and shares one persistent compilation cache: the first run compiles,
the others load.
"""
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache

from twjax import checkpoint_io, configlib, episode, optim, sharding, tokenizer, train
from tb_events import read_events

ROOT = pathlib.Path(__file__).resolve().parents[1]


def synthetic_episodes(count: int, seed: int) -> list[episode.Episode]:
    rng = random.Random(seed)
    episodes = []
    for i in range(count):
        turns = []
        for _ in range(rng.randint(2, 4)):
            kind = rng.randrange(4)
            if kind == 0:
                name = rng.choice(["a.txt", "b.txt", "notes"])
                turns.append(episode.Turn(f"cat {name}", f"hello {rng.randint(0, 99)}\n", 0, "/root"))
            elif kind == 1:
                turns.append(episode.Turn("pwd", "/root\n", 0, "/root"))
            elif kind == 2:
                turns.append(episode.Turn("ls", " ".join(rng.sample(["a.txt", "b.txt", "src", "x.py"], 3)) + "\n",
                                          0, "/root"))
            else:
                turns.append(episode.Turn("false", "", 1, "/root"))
        episodes.append(episode.Episode(id=f"e{seed}-{i}", task=f"task {i}: look around", turns=turns))
    return episodes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    episode.write_jsonl(root / "train.jsonl", synthetic_episodes(120, 0))
    episode.write_jsonl(root / "valid.jsonl", synthetic_episodes(16, 1))
    tokenizer.train([str(root / "train.jsonl")], str(root / "tok.model"), vocab_size=400)
    cache = root / "xla_cache"
    yield root, cache
    # The trainer pointed this process's jax at the module's cache; leave jax as it found it.
    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()


def overrides(dataset, **fields) -> list[str]:
    root, cache = dataset
    base = {
        "data.train": root / "train.jsonl", "data.valid": root / "valid.jsonl", "data.tokenizer": root / "tok.model",
        "model.d_model": 32, "model.n_layers": 1, "model.n_heads": 2, "model.n_kv_heads": 1, "model.d_ff": 64,
        "model.max_len": 32, "data.seq_len": 32, "data.batch_size": 8, "train.steps": 10_000,
        "train.log_every": 1, "train.eval_every": 10_000, "train.ckpt_every": 10_000, "train.eval_batches": 2,
        "train.progress": False, "train.compilation_cache": cache, "optim.grad_accum": 2,
    }
    base.update(fields)
    return [f"{k}={v}" for k, v in base.items()]


def tiny_config(dataset, **fields):
    return configlib.load(str(ROOT / "configs/terminal.py") + ":tiny", overrides(dataset, **fields))


def tensorboard_tags(tb_dir: pathlib.Path) -> set[str]:
    return {value.tag for event in read_events(tb_dir) for value in event.summary.value}


# ---------------------------------------------------------------------------- pure pieces


def test_loss_ignores_zero_weight_tokens():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32)
    batch = {"targets": jnp.asarray(rng.integers(0, 7, (2, 5)), jnp.int32),
             "weights": jnp.asarray([[1, 0, 2, 0, 1], [0, 0, 1, 1, 0.5]], jnp.float32),
             "segment_ids": jnp.ones((2, 5), jnp.int32), "roles": jnp.full((2, 5), 2, jnp.int32)}
    zero = batch["weights"] == 0
    changed_logits = jnp.where(zero[..., None], 1e4 * jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32), logits)
    changed = dict(batch, targets=jnp.where(zero, (batch["targets"] + 3) % 7, batch["targets"]))

    @jax.jit
    @jax.value_and_grad
    def weighted_loss(lg, b):
        sums = train.loss_sums(lg, b)
        return sums["weighted_ce"] / sums["weight"]

    log_p = np.asarray(jax.nn.log_softmax(logits))
    picked = np.take_along_axis(log_p, np.asarray(batch["targets"])[..., None], -1)[..., 0]
    expected = -(picked * np.asarray(batch["weights"])).sum() / np.asarray(batch["weights"]).sum()
    loss, grad = weighted_loss(logits, batch)
    loss_changed, grad_changed = weighted_loss(changed_logits, changed)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(loss_changed) == pytest.approx(float(expected), rel=1e-6)
    zero = np.asarray(zero)
    np.testing.assert_array_equal(np.asarray(grad)[zero], 0.0)
    np.testing.assert_allclose(np.asarray(grad_changed)[~zero], np.asarray(grad)[~zero], rtol=1e-6)


class StandIn(nnx.Module):
    """A small model with the Transformer's call signature: the accumulation test is about the
    step's arithmetic, not the model, and this one compiles in a second."""

    def __init__(self, vocab: int, dim: int, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, dim, rngs=rngs)
        self.out = nnx.Linear(dim, vocab, rngs=rngs)

    def __call__(self, tokens_BxT, positions_BxT, segment_ids_BxT):
        x = self.embed(tokens_BxT) * (1.0 + 0.01 * positions_BxT[..., None]) * (segment_ids_BxT[..., None] > 0)
        return self.out(jnp.tanh(x))


def test_grad_accumulation_equals_one_big_batch():
    graphdef, params = nnx.split(StandIn(11, 8, nnx.Rngs(0)))
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    param_shardings = sharding.shardings(params, mesh)
    # SGD with lr 1: the update is exactly minus the gradient (Adam would hide scale errors).
    step = jax.jit(train.make_train_step(graphdef, optax.sgd(1.0), lambda s: 1.0, param_shardings))
    rng = np.random.default_rng(1)
    big = {"inputs": rng.integers(0, 11, (16, 6)), "targets": rng.integers(0, 11, (16, 6)),
           "segment_ids": rng.integers(0, 3, (16, 6)), "positions": np.tile(np.arange(6), (16, 1)),
           "roles": rng.integers(0, 4, (16, 6)),
           "weights": rng.choice([0.0, 0.5, 1.0], (16, 6)).astype(np.float32)}
    big = {k: jnp.asarray(v, jnp.float32 if k == "weights" else jnp.int32) for k, v in big.items()}
    state = {"params": params, "opt_state": optax.sgd(1.0).init(params), "step": jnp.zeros((), jnp.int32)}
    copy = lambda: jax.tree.map(jnp.array, state)
    one, one_metrics = step(copy(), jax.tree.map(lambda x: x[None], big))
    four, four_metrics = step(copy(), jax.tree.map(lambda x: x.reshape(4, 4, 6), big))
    for a, b in zip(jax.tree.leaves(one["params"]), jax.tree.leaves(four["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert float(one_metrics["weighted_ce"]) == pytest.approx(float(four_metrics["weighted_ce"]), rel=1e-6)
    assert float(one_metrics["grad_norm"]) == pytest.approx(float(four_metrics["grad_norm"]), rel=1e-5)
    moved = sum(float(jnp.abs(a - b).sum()) for a, b in zip(jax.tree.leaves(one["params"]), jax.tree.leaves(params)))
    assert moved > 0


# ---------------------------------------------------------------------------- real runs


def send_sigterm_after_first_logged_step(workdir: pathlib.Path) -> threading.Thread:
    def watch():
        metrics = workdir / "metrics.jsonl"
        deadline = time.time() + 300
        while time.time() < deadline:
            if metrics.exists() and '"train/loss"' in metrics.read_text():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.005)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    """An interrupted run (SIGTERM mid-training, then resumed) and an uninterrupted one."""
    root = tmp_path_factory.mktemp("runs")
    killed = root / "killed"
    watcher = send_sigterm_after_first_logged_step(killed)
    first = train.train(tiny_config(dataset), killed)
    watcher.join()
    assert first.stopped_by == signal.SIGTERM, "the SIGTERM did not stop the run"
    end = first.end_step + 3
    second = train.train(tiny_config(dataset, **{"train.stop_at": end}), killed)
    straight = train.train(tiny_config(dataset, **{"train.stop_at": end}), root / "straight")
    return {"first": first, "second": second, "straight": straight, "killed": killed,
            "straight_dir": root / "straight", "end": end}


def test_sigterm_saves_a_checkpoint_at_the_current_step(runs):
    first = runs["first"]
    assert first.end_step >= 1
    assert (runs["killed"] / "checkpoints" / str(first.end_step) / "state").is_dir()
    assert sorted(first.losses) == list(range(1, first.end_step + 1))


def test_resume_after_kill_reproduces_the_uninterrupted_losses(runs):
    first, second, straight = runs["first"], runs["second"], runs["straight"]
    assert second.start_step == first.end_step and second.end_step == runs["end"]
    resumed = {**first.losses, **second.losses}
    assert sorted(resumed) == sorted(straight.losses) == list(range(1, runs["end"] + 1))
    for step in resumed:
        assert resumed[step] == pytest.approx(straight.losses[step], abs=1e-6), step
    # And the parameters end equal, not just the losses.
    _, _, model_a = checkpoint_io.load_for_inference(runs["killed"])
    _, _, model_b = checkpoint_io.load_for_inference(runs["straight_dir"])
    for a, b in zip(jax.tree.leaves(nnx.state(model_a)), jax.tree.leaves(nnx.state(model_b))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_resume_under_a_different_run_config_is_refused(dataset, runs):
    before = (runs["killed"] / "config.json").read_text()
    with pytest.raises(ValueError, match=r"data.copy_fraction: 0.0 -> 0.5.*model.d_model"):
        train.train(tiny_config(dataset, **{"data.copy_fraction": 0.5, "model.d_model": 64}), runs["killed"])
    assert (runs["killed"] / "config.json").read_text() == before


def test_resume_check_accepts_a_field_added_since_the_run_started_while_it_is_off(dataset, runs, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(runs["killed"], workdir)
    saved = json.loads((workdir / "config.json").read_text())
    del saved["model"]["smeared_keys"]  # as written before the field existed
    del saved["model"]["attention"]  # a kernel choice: resumable whatever its value
    (workdir / "config.json").write_text(json.dumps(saved))
    checkpoint_io.check_resumable(workdir, train.resolve_config(tiny_config(dataset)))
    checkpoint_io.check_resumable(workdir, train.resolve_config(tiny_config(dataset, **{"model.attention": "xla"})))
    with pytest.raises(ValueError, match=r"model.smeared_keys: None -> True"):
        checkpoint_io.check_resumable(workdir, train.resolve_config(tiny_config(dataset, **{"model.smeared_keys": True})))


def test_line_embeddings_take_the_tokenizers_ids_and_come_back_from_the_checkpoint(dataset, tmp_path):
    config = tiny_config(dataset, **{"model.line_embeddings": 8, "train.stop_at": 2})
    tok = tokenizer.Tokenizer.load(str(dataset[0] / "tok.model"))
    resolved = train.resolve_config(config).model
    assert resolved.newline_id == tok.id_of("\n")
    assert tuple(resolved.line_reset_ids) == tuple(tok.id_of(marker) for marker in tokenizer.MARKERS)
    assert "newline_id" not in train.resolve_config(tiny_config(dataset)).model  # off: no ids
    train.train(config, tmp_path / "lines")
    _, _, model = checkpoint_io.load_for_inference(tmp_path / "lines")
    assert model.config.line_embeddings == 8 and model.config.line_reset_ids == tuple(resolved.line_reset_ids)
    assert model.line_embed_LxD[...].shape == model.column_embed_LxD[...].shape == (8, 32)


def test_resume_check_names_a_moved_tokenizer_when_the_workdir_lost_its_copy(dataset, runs, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(runs["killed"], workdir)
    (workdir / "tokenizer.model").unlink()
    moved = tmp_path / "moved.model"
    shutil.copy(dataset[0] / "tok.model", moved)
    config = train.resolve_config(tiny_config(dataset, **{"data.tokenizer": str(moved)}))
    with pytest.raises(ValueError, match=r"data.tokenizer: .* -> .*moved.model"):
        checkpoint_io.check_resumable(workdir, config)


def initial_state(config):
    """train.init_state's state for a resolved config (on the config's mesh)."""
    tx = optim.make_optimizer(config.optim, config.train.steps)
    _, abstract_state = train.abstract_train_state(config, tx)
    return train.init_state(config, tx, abstract_state,
                            sharding.shardings(abstract_state, sharding.make_mesh(config.mesh)))


def assert_same_params(params, workdir):
    _, _, trained = checkpoint_io.load_for_inference(workdir)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(nnx.state(trained))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_init_from_starts_from_the_other_runs_weights(dataset, runs):
    state = initial_state(train.resolve_config(tiny_config(dataset, **{"train.init_from": str(runs["straight_dir"])})))
    assert int(state["step"]) == 0
    assert_same_params(state["params"], runs["straight_dir"])


def test_init_from_a_run_without_line_embeddings_gains_them_at_zero(dataset, runs):
    step_dir = runs["straight_dir"] / "checkpoints" / str(runs["end"])
    config = train.resolve_config(tiny_config(dataset, **{"train.init_from": str(step_dir), "model.line_embeddings": 8}))
    assert checkpoint_io.gained_params(config, step_dir) == ("line_embed_LxD", "column_embed_LxD")
    params = initial_state(config)["params"]
    assert not np.asarray(params["line_embed_LxD"][...]).any() and not np.asarray(params["column_embed_LxD"][...]).any()
    _, _, plain = checkpoint_io.load_for_inference(runs["straight_dir"])
    gained = {name: params[name] for name in checkpoint_io.GAINABLE_PARAMS}
    assert_same_params(nnx.State({name: value for name, value in params.items() if name not in gained}),
                       runs["straight_dir"])
    lines = nnx.merge(checkpoint_io.abstract_model(config)[0], params)
    tokens = jnp.array([[3, 10, 5, 10, 7, 2]], jnp.int32) % config.model.vocab_size
    np.testing.assert_allclose(lines(tokens), plain(tokens), atol=1e-6)  # the same function, to start
    assert checkpoint_io.gained_params(tiny_config(dataset), runs["killed"]) == ()  # nothing to gain
    with pytest.raises(FileNotFoundError, match="config.json"):
        checkpoint_io.gained_params(config, "/nonexistent/run")


def test_init_from_refuses_a_copy_head_the_other_run_lacks(dataset, runs):
    """A pointer changes the function from the first step: it is not gained as line embeddings are."""
    config = train.resolve_config(tiny_config(dataset, **{"train.init_from": str(runs["straight_dir"]),
                                                          "model.copy_head": True}))
    with pytest.raises(ValueError, match="copy_head is True here and False"):
        initial_state(config)


def learning_rates(workdir: pathlib.Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["train/learning_rate"] for row in rows if "train/learning_rate" in row}


def test_init_state_continues_the_other_runs_optimizer_and_schedule(dataset, runs, tmp_path):
    end = runs["end"]
    config = train.resolve_config(tiny_config(dataset, **{"train.init_from": str(runs["straight_dir"]),
                                                          "train.init_state": True, "train.stop_at": end + 2}))
    state = initial_state(config)
    assert_same_params(state["params"], runs["straight_dir"])
    adam = state["opt_state"][1][0]  # chain(clip, adamw): adamw's scale_by_adam state
    assert int(state["step"]) == int(adam.count) == end
    assert float(jnp.abs(jax.tree.leaves(adam.mu)[0]).max()) > 0  # a fresh optimizer's moments are zero

    result = train.train(config, tmp_path / "continued")
    assert (result.start_step, result.end_step) == (end, end + 2)
    schedule = optim.learning_rate_schedule(config.optim, config.train.steps)
    rates = learning_rates(tmp_path / "continued")
    assert rates == pytest.approx({step: float(schedule(step - 1)) for step in (end + 1, end + 2)})


def test_init_state_from_a_finished_run_or_from_nothing_is_refused(dataset, runs, tmp_path):
    config = tiny_config(dataset, **{"train.init_from": str(runs["straight_dir"]), "train.init_state": True,
                                     "train.steps": runs["end"]})
    with pytest.raises(ValueError, match="nothing would be trained"):
        train.train(config, tmp_path / "w")
    with pytest.raises(ValueError, match="set train.init_from too"):
        train.train(tiny_config(dataset, **{"train.init_state": True}), tmp_path / "w2")


def test_cli_trains_end_to_end_and_writes_tensorboard(dataset, runs, tmp_path, monkeypatch):
    # A relative --workdir, as a user types it (orbax itself wants absolute paths).
    workdir = tmp_path / "w"
    args = [sys.executable, "-m", "twjax.cli", "train", "--config", f"{ROOT / 'configs/terminal.py'}:tiny",
            "--workdir", "w"] + [f"--config.{o}" for o in overrides(
                dataset, **{"train.steps": 6, "train.log_every": 2, "train.eval_every": 3, "train.ckpt_every": 4})]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "valid unigram baseline" in done.stdout.splitlines()[-1]
    assert (workdir / "config.json").exists() and (workdir / "tokenizer.model").exists()
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["4", "6"]
    tags = tensorboard_tags(workdir / "tb")
    for tag in ("train/loss", "train/loss_terminal", "train/loss_agent", "train/grad_norm", "train/learning_rate",
                "perf/tokens_per_second", "perf/mfu", "eval/loss", "eval/loss_terminal", "eval/unigram_baseline",
                "eval/copy_accuracy", "eval/line_copy_shared", "eval/line_copy_unique",
                "eval/line_copy_names_column", "eval/line_copy_names_session",
                "eval/line_copy_names_session_headers"):
        assert tag in tags, (tag, sorted(tags))
    monkeypatch.chdir(tmp_path)
    config, tok, model = checkpoint_io.load_for_inference("w")
    assert config.model.vocab_size >= tok.vocab_size and config.model.vocab_size % 128 == 0
    ids, _ = tok.encode_episode(synthetic_episodes(1, 5)[0], max_len=32)
    logits = model(jnp.asarray(ids)[None])
    assert logits.shape == (1, len(ids), config.model.vocab_size) and bool(jnp.isfinite(logits).all())
