"""`twjax bench train --config configs/terminal.py:tiny --json`: training throughput and MFU.

Runs the trainer's own jitted step (twjax.train.make_train_step: sharded state, donation, AdamW)
on synthetic tokens, after warm-up, times each step (throughput from the median step), measures
the peak FLOP/s of a large matmul in the same process (twjax.flops) and reports
MFU = model FLOP/s / measured peak. With `--json` the last line of stdout is one JSON object.
"""
import argparse
import time

import jax
import numpy as np

from twjax import configlib, flops, optim, sharding, train
from twjax import model as model_lib
from twjax.cli import print_result


def synthetic_micro_batches(config, vocab_size: int, seed: int = 0) -> list[dict]:
    """grad_accum per-process batches of random tokens: one segment per row, every target weighted."""
    rng = np.random.default_rng(seed)
    per_process = config.data.batch_size // jax.process_count()
    shape = (per_process, config.data.seq_len)
    tokens = rng.integers(0, vocab_size, (config.optim.grad_accum, shape[0], shape[1] + 1), dtype=np.int32)
    return [dict(inputs=t[:, :-1], targets=t[:, 1:], segment_ids=np.ones(shape, np.int32),
                 positions=np.broadcast_to(np.arange(shape[1], dtype=np.int32), shape).copy(),
                 roles=np.full(shape, 2, np.int32), weights=np.ones(shape, np.float32)) for t in tokens]


def build_step(config, schedule_steps: int):
    """-> (mesh, jitted train step, sharded state, one synthetic global batch): the trainer's own
    step (twjax.train.make_train_step: sharded state, donation, AdamW) on random tokens."""
    mesh = sharding.make_mesh(config.mesh)
    total_steps = max(config.train.steps, schedule_steps)
    tx = optim.make_optimizer(config.optim, total_steps)
    schedule = optim.learning_rate_schedule(config.optim, total_steps)
    graphdef, abstract_state = train.abstract_train_state(config, tx)
    state_shardings = sharding.shardings(abstract_state, mesh)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state = train.init_state(config, tx, abstract_state, state_shardings)
    step_fn = jax.jit(train.make_train_step(graphdef, tx, schedule, state_shardings["params"]),
                      in_shardings=(state_shardings, None), out_shardings=(state_shardings, replicated),
                      donate_argnums=(0,))
    batch = train.stacked_global_batch(synthetic_micro_batches(config, config.model.vocab_size), mesh)
    return mesh, step_fn, state, batch


def run(config, steps: int, warmup: int, peak_size: int) -> dict:
    mesh, step_fn, state, batch = build_step(config, steps + warmup)
    params = model_lib.param_count(state["params"])  # before the steps donate the state
    # The peak is measured before and after the timed steps and the higher one kept: on a shared
    # host the load drifts, and the higher peak gives the conservative (lower) MFU.
    peak_before = flops.measure_peak_flops(size=peak_size)

    with sharding.activation_sharding(mesh):
        for _ in range(warmup):
            state, metrics = step_fn(state, batch)
        jax.block_until_ready(metrics)
        step_seconds = []
        for _ in range(steps):
            start = time.perf_counter()
            state, metrics = step_fn(state, batch)
            jax.block_until_ready(metrics)
            step_seconds.append(time.perf_counter() - start)
    loss = float(metrics["weighted_ce"] / metrics["weight"])
    # Throughput from the median step: on a shared host a neighbour's burst stalls single steps,
    # and the median is what a long run sees most of the time (the mean is reported beside it).
    step_s, step_s_mean = float(np.median(step_seconds)), float(np.mean(step_seconds))

    cfg = model_lib.ModelConfig.from_mapping(config.model)
    seq_len = config.data.seq_len
    tokens_per_step = config.optim.grad_accum * config.data.batch_size * seq_len
    tokens_per_s = tokens_per_step / step_s
    flops_per_token = flops.train_flops_per_token(cfg, seq_len)
    model_flops_per_s = flops_per_token * tokens_per_s
    peak_flops_per_s = max(peak_before, flops.measure_peak_flops(size=peak_size))
    return dict(
        benchmark="train", config=config.get("preset", "?"), params=params,
        matmul_params=flops.matmul_params(cfg), vocab_size=cfg.vocab_size, batch=config.data.batch_size,
        grad_accum=config.optim.grad_accum, seq_len=seq_len, devices=jax.device_count(),
        backend=jax.default_backend(), mesh=dict(mesh.shape), dtype=str(cfg.compute_dtype), steps=steps,
        step_s=step_s, step_s_mean=step_s_mean, step_s_min=min(step_seconds), tokens_per_s=tokens_per_s,
        tokens_per_s_mean=tokens_per_step / step_s_mean,
        model_flops_per_token=flops_per_token, model_flops_per_s=model_flops_per_s, peak_flops_per_s=peak_flops_per_s,
        peak_matmul=f"{peak_size}x{peak_size} {flops.default_peak_dtype()}",
        mfu=model_flops_per_s / peak_flops_per_s, final_loss=loss)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/terminal.py:tiny", help="config file[:preset]")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation included)")
    parser.add_argument("--vocab-size", type=int, default=2048,
                        help="vocabulary when the config's model.vocab_size is 0 (taken from a tokenizer in training)")
    parser.add_argument("--peak-size", type=int, default=4096, help="side of the matmul that measures the peak")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def main(args) -> int:
    config = configlib.load(args.config, getattr(args, "config_overrides", []))
    if config.model.vocab_size == 0:
        config.model.vocab_size = args.vocab_size
    result = run(config, args.steps, args.warmup, args.peak_size)
    print_result(result, args.json)
    return 0
