"""`twjax train`: the trainer of the learned terminal (and of agents, by the data regime).

One jitted step per optimizer update: the batch is [grad_accum, B, T]; a `lax.scan` runs the
micro-batches, summing the gradients of the *unnormalised* weighted cross-entropy and the
weights, and divides once at the end, so k micro-batches give the gradient of one k-times-larger
batch. The train state (params, optimizer state, step) is sharded by the model's logical axes
(twjax.sharding), donated to the step, and checkpointed with orbax together with the grain
iterator state, so a run stopped at any checkpoint resumes bit-identically.

Stopping: SIGTERM / SIGINT (one process) or jax's preemption sync point (multi-host) make the
loop finish its step, checkpoint and exit with 128 + signal; `train.stop_at` stops at a step
(time-sliced jobs). Rerunning the same command resumes from W/checkpoints.
"""
import argparse
import contextlib
import dataclasses
import functools
import os
import pathlib
import signal
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache

from twjax import checkpoint_io, configlib, data, flops, metrics_log, optim, sharding
from twjax import model as model_lib
from twjax import tokenizer as tokenizer_lib
from twjax.evaluate import induction

ROLE_NAMES = tokenizer_lib.ROLE_NAMES
BATCH_FIELDS = ("inputs", "targets", "segment_ids", "positions", "roles", "weights")


def canonical_batch(batch: dict) -> dict:
    """Accepts the data pipeline's keys with or without the `_BxT` suffix (CONTRACTS.md spells
    them `inputs_BxT`, ...); returns the short names."""
    return {field: batch[field] if field in batch else batch[f"{field}_BxT"] for field in BATCH_FIELDS}


# ---------------------------------------------------------------------------- loss


def loss_sums(logits_BxTxV: jax.Array, batch: dict) -> dict:
    """Sums (not means) so that micro-batches and hosts add up exactly.

    weighted_ce: sum of weight x cross-entropy over targets; weight: sum of weights;
    role_ce / role_count [4]: unweighted cross-entropy and count of the non-padding targets of
    each role (task, agent, terminal, control), for logging whatever the regime.
    """
    b, t, v = logits_BxTxV.shape
    ce_BxT = optax.softmax_cross_entropy_with_integer_labels(
        logits_BxTxV.reshape(b * t, v), batch["targets"].reshape(b * t)).reshape(b, t)
    weights_BxT = batch["weights"].astype(jnp.float32)
    # Zero-weight targets add exactly nothing to the sum (no 0 x inf = NaN from a padding row).
    weighted_ce = jnp.sum(jnp.where(weights_BxT > 0, ce_BxT * weights_BxT, 0.0))
    real_BxT = batch["segment_ids"] > 0
    role_R = jnp.arange(len(ROLE_NAMES))
    in_role_RxBxT = (batch["roles"][None] == role_R[:, None, None]) & real_BxT[None]
    return {
        "weighted_ce": weighted_ce,
        "weight": jnp.sum(weights_BxT),
        "role_ce": jnp.sum(jnp.where(in_role_RxBxT, ce_BxT[None], 0.0), axis=(1, 2)),
        "role_count": jnp.sum(in_role_RxBxT, axis=(1, 2)).astype(jnp.float32),
    }


def zero_sums() -> dict:
    return {"weighted_ce": jnp.zeros(()), "weight": jnp.zeros(()),
            "role_ce": jnp.zeros(len(ROLE_NAMES)), "role_count": jnp.zeros(len(ROLE_NAMES))}


def forward_sums(params, graphdef, batch: dict) -> dict:
    model = nnx.merge(graphdef, params)
    logits_BxTxV = model(batch["inputs"], batch["positions"], batch["segment_ids"])
    return loss_sums(logits_BxTxV, batch)


def safe_divide(total, count):
    return total / jnp.where(count > 0, count, 1.0)


# ---------------------------------------------------------------------------- steps


def make_train_step(graphdef, tx: optax.GradientTransformation, schedule: optax.Schedule, param_shardings):
    def objective(params, micro_batch):
        sums = forward_sums(params, graphdef, micro_batch)
        return sums["weighted_ce"], sums

    def train_step(state: dict, batch_AxBxT: dict):
        params = state["params"]

        def micro_step(carry, micro_batch):
            grads_acc, sums_acc = carry
            grads, sums = jax.grad(objective, has_aux=True)(params, micro_batch)
            return (jax.tree.map(jnp.add, grads_acc, grads), jax.tree.map(jnp.add, sums_acc, sums)), None

        zero_grads = jax.lax.with_sharding_constraint(jax.tree.map(jnp.zeros_like, params), param_shardings)
        (grad_sums, sums), _ = jax.lax.scan(micro_step, (zero_grads, zero_sums()), batch_AxBxT)
        grads = jax.tree.map(lambda g: safe_divide(g, sums["weight"]), grad_sums)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_state = {"params": optax.apply_updates(params, updates), "opt_state": opt_state,
                     "step": state["step"] + 1}
        metrics = dict(sums, grad_norm=optax.tree.norm(grads), lr=schedule(state["step"]))
        return new_state, metrics

    return train_step


def make_eval_step(graphdef):
    def eval_step(params, batch_BxT: dict) -> dict:
        return forward_sums(params, graphdef, batch_BxT)
    return eval_step


# ---------------------------------------------------------------------------- host side


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """Multi-host only: asked for by the config or by jax's coordinator environment variable."""
    if config.train.distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()


def enable_compilation_cache(directory: str) -> None:
    """Reruns (resumes, sweeps, the quickstart) load compiled steps instead of compiling again:
    XLA compilation of the step costs tens of seconds on a small CPU host. JAX_COMPILATION_CACHE_DIR,
    when set, wins."""
    if directory and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))
        # jax decides once whether to use the cache, at the first compilation: decide again.
        compilation_cache.reset_cache()


@functools.cache
def peak_flops_per_second() -> float:
    """All devices together, measured once per process (twjax.flops); a small matmul on CPU, where
    the default 4096^3 one per fake device would take tens of seconds."""
    return flops.measure_peak_flops(size=1024 if jax.default_backend() == "cpu" else 4096)


def stacked_global_batch(micro_batches: list[dict], mesh) -> dict:
    """grad_accum per-process [B, T] batches -> global [A, B * processes, T] arrays sharded on B."""
    out = {}
    for field in BATCH_FIELDS:
        local = np.stack([micro[field] for micro in micro_batches])
        global_shape = (local.shape[0], local.shape[1] * jax.process_count()) + local.shape[2:]
        placement = sharding.array_sharding((None, "batch", None), global_shape, mesh)
        out[field] = jax.make_array_from_process_local_data(placement, local, global_shape)
    return out


def unigram_entropy(eval_batches: list[dict], vocab_size: int) -> float:
    """Cross-entropy (nats) of the best unigram model of the valid split's weighted targets: the
    baseline a model must beat to have learned anything beyond token frequencies."""
    counts = np.zeros(vocab_size, np.float64)
    for batch in eval_batches:
        np.add.at(counts, batch["targets"].ravel(), batch["weights"].ravel().astype(np.float64))
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        counts = np.asarray(multihost_utils.process_allgather(counts)).sum(axis=0)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def summarize_sums(prefix: str, sums: dict) -> dict[str, float]:
    sums = jax.tree.map(np.asarray, sums)
    values = {f"{prefix}/loss": float(sums["weighted_ce"] / max(float(sums["weight"]), 1e-12))
              if sums["weight"] > 0 else float("nan")}
    for role, name in enumerate(ROLE_NAMES):
        if sums["role_count"][role] > 0:
            values[f"{prefix}/loss_{name}"] = float(sums["role_ce"][role] / sums["role_count"][role])
    return values


class StopSignal:
    """Records SIGTERM / SIGINT instead of dying, so the loop can checkpoint first."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@dataclasses.dataclass
class Result:
    start_step: int
    end_step: int
    losses: dict[int, float]          # step (1-based: after the update) -> train loss of that step
    eval_loss: float | None
    unigram_baseline: float | None
    stopped_by: int | None            # the signal that stopped the run, if any


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy with model.vocab_size fixed from the tokenizer, and with line embeddings the ids that
    break and reset lines (newline; the markers)."""
    config = ml_collections.ConfigDict(config.to_dict())
    tok = tokenizer_lib.Tokenizer.load(config.data.tokenizer)
    config.model.vocab_size = checkpoint_io.resolve_vocab_size(config.model.vocab_size, tok.vocab_size)
    if config.model.get("line_embeddings", 0):
        config.model.newline_id = tok.id_of("\n")
        config.model.line_reset_ids = tuple(tok.id_of(marker) for marker in tokenizer_lib.MARKERS)
    if config.data.seq_len > config.model.max_len:
        raise ValueError(f"data.seq_len {config.data.seq_len} exceeds model.max_len {config.model.max_len}")
    return config


def abstract_train_state(config, tx: optax.GradientTransformation):
    """-> (graphdef, the train state's shapes: params, optimizer state, step); nothing allocated."""
    graphdef, abstract_params = checkpoint_io.abstract_model(config)
    return graphdef, {"params": abstract_params, "opt_state": jax.eval_shape(tx.init, abstract_params),
                      "step": jax.ShapeDtypeStruct((), jnp.int32)}


def init_state(config, tx, abstract_state, state_shardings):
    """Fresh parameters (or train.init_from's), fresh optimizer state, step 0 — born sharded; with
    train.init_state, init_from's whole train state (parameters, optimizer state, step)."""
    if config.train.init_state and not config.train.init_from:
        raise ValueError("train.init_state restores train.init_from's state: set train.init_from too")
    if config.train.init_state:
        state = checkpoint_io.restore_parts(config.train.init_from,
                                            checkpoint_io.placed(abstract_state, state_shardings))
        if int(state["step"]) >= config.train.steps:
            raise ValueError(f"{config.train.init_from} is at step {int(state['step'])}, "
                             f"not before train.steps {config.train.steps}: nothing would be trained")
        return state
    def make(restored=None):
        """Fresh parameters, with init_from's (`restored`: all, or all but the gained ones) over them.
        Under jit the fresh values that get replaced are never computed."""
        params = nnx.split(model_lib.Transformer(checkpoint_io.model_config(config), rngs=nnx.Rngs(config.train.seed)))[1]
        for name in restored or ():
            params[name] = restored[name]
        return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

    if not config.train.init_from:
        return jax.jit(make, out_shardings=state_shardings)()
    gained = checkpoint_io.gained_params(config, config.train.init_from)
    placed = checkpoint_io.placed(abstract_state["params"], state_shardings["params"])
    if gained:
        placed = nnx.State({name: value for name, value in placed.items() if name not in gained})
        print(f"init_from {config.train.init_from}: its parameters, and fresh (zero) {', '.join(gained)}")
    restored = checkpoint_io.restore_params(config.train.init_from, placed)
    return jax.jit(make, out_shardings=state_shardings)(restored)


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> Result:
    workdir = pathlib.Path(workdir)
    maybe_initialize_distributed(config)
    enable_compilation_cache(config.train.compilation_cache)
    config = resolve_config(config)
    is_main = jax.process_index() == 0
    checkpoint_io.check_resumable(workdir, config)
    if is_main:
        checkpoint_io.write_run_files(workdir, config)

    mesh = sharding.make_mesh(config.mesh)
    total_steps = config.train.steps
    accum = config.optim.grad_accum
    schedule = optim.learning_rate_schedule(config.optim, total_steps)
    tx = optim.make_optimizer(config.optim, total_steps)

    graphdef, abstract_state = abstract_train_state(config, tx)
    state_shardings = sharding.shardings(abstract_state, mesh)
    param_shardings = state_shardings["params"]
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    train_iterator = data.make_train_iterator(config)
    eval_batches = [canonical_batch(b) for b in data.make_eval_batches(
        config, num_batches=config.train.eval_batches or None)]
    if jax.process_count() > 1 and not config.train.eval_batches:
        raise ValueError("multi-host runs need train.eval_batches > 0 (the same count on every process)")

    manager = checkpoint_io.make_manager(workdir, config.train.keep_ckpts)
    latest = manager.latest_step()
    if latest is not None:
        state, meta = checkpoint_io.restore(manager, latest, checkpoint_io.placed(abstract_state, state_shardings),
                                            train_iterator)
        tokens_seen = meta["tokens_seen"]
    else:
        state = init_state(config, tx, abstract_state, state_shardings)
        tokens_seen = 0
    start_step = int(state["step"])

    train_step = jax.jit(make_train_step(graphdef, tx, schedule, param_shardings),
                         in_shardings=(state_shardings, None), out_shardings=(state_shardings, replicated),
                         donate_argnums=(0,))
    eval_step = jax.jit(make_eval_step(graphdef), in_shardings=(param_shardings, None),
                        out_shardings=replicated)
    stop_at = min(config.train.stop_at or total_steps, total_steps)
    tokens_per_step = accum * config.data.batch_size * config.data.seq_len
    flops_per_token = flops.train_flops_per_token(checkpoint_io.model_config(config), config.data.seq_len)

    log = metrics_log.MetricsLog(workdir, total_steps, start_step, enabled=is_main,
                                 progress=config.train.progress)
    n_params = model_lib.param_count(abstract_state["params"])
    baseline = unigram_entropy(eval_batches, config.model.vocab_size)
    log.line(f"twjax train: {config.get('preset', '?')} model, {n_params / 1e6:.2f}M parameters, "
             f"mesh {dict(mesh.shape)}, {tokens_per_step} tokens/step, steps {start_step}->{stop_at} "
             f"of {total_steps}, valid unigram baseline {baseline:.4f} nats")
    log.scalars(start_step, {"eval/unigram_baseline": baseline, "model/parameters": float(n_params)})

    tokenizer = tokenizer_lib.Tokenizer.load(config.data.tokenizer)

    def copy_probe() -> dict[str, float]:
        """Induction appears as a sudden rise (a phase change) of this accuracy, well after the
        loss has settled; single-process only (the probe's inputs are host arrays)."""
        if jax.process_count() > 1:
            return {}
        with sharding.activation_sharding(mesh):
            probe = induction.copy_probes(nnx.merge(graphdef, state["params"]), tokenizer)
        return {"eval/copy_accuracy": probe["accuracy"], "eval/line_copy_shared": probe["line_names"]["shared_prefix"],
                "eval/line_copy_unique": probe["line_names"]["unique_prefix"],
                "eval/line_copy_names_column": probe["line_names"]["names_column"],
                "eval/line_copy_names_session": probe["line_names"]["names_column_session"],
                "eval/line_copy_names_session_headers": probe["line_names"]["names_column_session_headers"],
                "eval/recall_copy": probe["recall"]["accuracy"], "eval/recall_copy_first": probe["recall"]["first_token"]}

    def evaluate(step: int) -> float:
        sums = zero_sums()
        for batch in eval_batches:
            with sharding.activation_sharding(mesh):
                sums = jax.tree.map(jnp.add, sums, eval_step(state["params"], sharding.shard_batch(batch, mesh)))
        values = summarize_sums("eval", sums) | copy_probe()
        log.scalars(step, values | {"eval/unigram_baseline": baseline})
        log.line(f"step {step}: valid loss {values['eval/loss']:.4f} (unigram baseline {baseline:.4f}, "
                 f"terminal {values.get('eval/loss_terminal', float('nan')):.4f}), "
                 f"copy probe {values.get('eval/copy_accuracy', float('nan')):.3f}, lines "
                 f"{values.get('eval/line_copy_shared', float('nan')):.3f} shared / "
                 f"{values.get('eval/line_copy_unique', float('nan')):.3f} unique prefix / "
                 f"{values.get('eval/line_copy_names_column', float('nan')):.3f} names column / "
                 f"{values.get('eval/line_copy_names_session', float('nan')):.3f} in a session's shape / "
                 f"{values.get('eval/line_copy_names_session_headers', float('nan')):.3f} after header lines, "
                 f"recall {values.get('eval/recall_copy', float('nan')):.3f} "
                 f"({values.get('eval/recall_copy_first', float('nan')):.3f} first tokens)")
        return values["eval/loss"]

    def checkpoint(step: int) -> None:
        checkpoint_io.save(manager, step, state, train_iterator,
                           {"step": step, "tokens_seen": tokens_seen})

    losses: dict[int, float] = {}
    pending: list[tuple[int, dict]] = []
    eval_loss = None
    stopped_by = None
    window_start, window_tokens = time.perf_counter(), 0
    step = start_step
    with StopSignal() as stop, log_on_exit(log, manager):
        while step < stop_at:
            micro_batches = [canonical_batch(next(train_iterator)) for _ in range(accum)]
            with sharding.activation_sharding(mesh):
                state, metrics = train_step(state, stacked_global_batch(micro_batches, mesh))
            step += 1
            tokens_seen += tokens_per_step
            if step == start_step + 1:
                # Throughput windows start after the first step, which pays for compilation.
                jax.block_until_ready(metrics)
                window_start = time.perf_counter()
            else:
                window_tokens += tokens_per_step
            pending.append((step, metrics))

            last = step == stop_at
            if step % config.train.log_every == 0 or last:
                fetched = jax.device_get(pending)
                elapsed = time.perf_counter() - window_start
                for s, m in fetched:
                    losses[s] = float(m["weighted_ce"] / max(float(m["weight"]), 1e-12)) if m["weight"] > 0 else float("nan")
                window_sums = jax.tree.map(lambda *xs: np.sum(xs, axis=0),
                                           *[{k: m[k] for k in ("weighted_ce", "weight", "role_ce", "role_count")}
                                             for _, m in fetched])
                scalars = summarize_sums("train", window_sums) | {
                    "train/grad_norm": float(fetched[-1][1]["grad_norm"]),
                    "train/learning_rate": float(fetched[-1][1]["lr"]),
                    "perf/tokens_seen": float(tokens_seen),
                }
                if window_tokens:
                    scalars["perf/tokens_per_second"] = window_tokens / elapsed
                    scalars["perf/mfu"] = window_tokens / elapsed * flops_per_token / peak_flops_per_second()
                log.scalars(step, scalars)
                log.advance(len(fetched), loss=scalars["train/loss"],
                            **{"tok/s": scalars.get("perf/tokens_per_second", float("nan"))})
                pending.clear()
                window_start, window_tokens = time.perf_counter(), 0
            aside = time.perf_counter()  # evaluation and checkpoints do not count against tokens/s
            if step % config.train.eval_every == 0 or step == total_steps:
                eval_loss = evaluate(step)
            if stop.signum is None and jax.process_count() > 1 and manager.reached_preemption(step):
                stop.signum = signal.SIGTERM
            if step % config.train.ckpt_every == 0 or last or stop.signum is not None:
                checkpoint(step)
            window_start += time.perf_counter() - aside
            if stop.signum is not None:
                stopped_by = stop.signum
                log.line(f"stopped by signal {stop.signum} at step {step}; checkpoint saved, "
                         f"rerun the same command to resume")
                break
        if stopped_by is None and step == total_steps:
            if eval_loss is None:  # a rerun of a finished workdir still reports its numbers
                eval_loss = evaluate(step)
            train_loss = f"train loss {losses[step]:.4f}, " if step in losses else "already trained, "
            log.line(f"done: step {step}, {train_loss}"
                     f"valid loss {eval_loss:.4f}, valid unigram baseline {baseline:.4f} nats")
    return Result(start_step, step, losses, eval_loss, baseline, stopped_by)


@contextlib.contextmanager
def log_on_exit(log: metrics_log.MetricsLog, manager):
    try:
        yield
    finally:
        manager.wait_until_finished()
        log.close()


# ---------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/terminal.py:tiny",
                        help="config file[:preset]; override fields with --config.a.b=value")
    parser.add_argument("--workdir", required=True, help="checkpoints, TensorBoard and config.json go here")


def main(args) -> int:
    config = configlib.load(args.config, args.config_overrides)
    result = train(config, args.workdir)
    return 128 + result.stopped_by if result.stopped_by is not None else 0
