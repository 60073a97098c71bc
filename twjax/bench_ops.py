"""`twjax bench ops --step train|rollout --json`: where a step's time goes, per compiled operation.

Runs the step that `bench train` times (the trainer's jitted step on synthetic tokens) or the loop
that `bench rollout` times (agent ⇄ terminal, random weights, fixed work), traces it with
jax.profiler and sums the time of each compiled operation over the traced run. Each operation is
named with its output shape and the jax primitive it came from (the HLO metadata), and the totals
are grouped by primitive (`dot_general`, `slice`, `scatter`, `reduce_max`, ...). Times are ms per
train step, or per loop step (one token of every row) for the rollout. Operations that run
concurrently on the host's threads overlap, so their sum can exceed the wall time.
"""
import argparse
import collections
import pathlib
import re
import tempfile
import time

import jax
import numpy as np

from twjax import bench_rollout, bench_train, configlib, rollout, sharding
from twjax.cli import print_result

# The output shape is one token, or a tuple of them (up to one level nested) with spaces inside.
INSTRUCTION = re.compile(r'\s*(?:ROOT )?%([\w.\-]+) = (\((?:[^()]|\([^()]*\))*\)|\S+) .*?op_name="([^"]*)"')


def instruction_info(hlo_text: str) -> dict[str, tuple[str, str]]:
    """Compiled instruction name -> (output shape, jax op path) from the HLO's metadata."""
    return {m.group(1): (m.group(2), m.group(3)) for m in map(INSTRUCTION.match, hlo_text.splitlines()) if m}


def traced_op_ns(run, known: dict) -> tuple[collections.Counter, str]:
    """Nanoseconds per compiled instruction while `run()` executes under jax.profiler, and where
    they were timed ("device" or "host"): see op_totals."""
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            run()
        trace_file = max(pathlib.Path(trace_dir).rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
        profile = jax.profiler.ProfileData.from_file(str(trace_file))
    return op_totals(profile.planes, known)


def op_totals(planes, known: dict) -> tuple[collections.Counter, str]:
    """Sums a trace's events per instruction of `known`. An event is an instruction by its name or
    its `hlo_op` stat (a GPU kernel is named after the kernel, not the instruction); other events
    (runtime bookkeeping, Python) are left out. On an accelerator the host's events for an
    instruction time its launch and the device's its run, so the device's are used when it has any."""
    totals = {"device": collections.Counter(), "host": collections.Counter()}
    for plane in planes:
        plane_totals = totals["device" if plane.name.startswith("/device:") else "host"]
        for line in plane.lines:
            for event in line.events:
                op = event.name if event.name in known else dict(event.stats).get("hlo_op")
                if op in known:
                    plane_totals[op] += event.duration_ns
    timed_on = "device" if totals["device"] else "host"
    return totals[timed_on], timed_on


def summarize(traced: tuple[collections.Counter, str], known: dict, steps: int, wall_s: float, top: int) -> dict:
    totals, timed_on = traced
    # Four significant figures, not three decimals: on a toy model an operation takes under a
    # microsecond a step, and it must not read as 0 ms.
    ms = lambda ns: float(f"{ns / steps / 1e6:.4g}")  # noqa: E731
    by_primitive = collections.Counter()
    for name, ns in totals.items():
        by_primitive[known[name][1].rsplit("/", 1)[-1]] += ns
    return {
        "steps": steps, "timed_on": timed_on, "wall_ms_per_step": round(wall_s / steps * 1e3, 2),
        "op_ms_per_step": ms(sum(totals.values())),
        "by_primitive": {primitive: ms(ns) for primitive, ns in by_primitive.most_common()},
        "top": [{"op": name, "ms": ms(ns), "shape": known[name][0], "from": known[name][1]}
                for name, ns in totals.most_common(top)],
    }


def profile_train(config, steps: int, top: int) -> dict:
    mesh, step_fn, state, batch = bench_train.build_step(config, steps + 2)
    known = instruction_info(step_fn.lower(state, batch).compile().as_text())
    with sharding.activation_sharding(mesh):
        for _ in range(2):  # compilation and warm-up
            state, metrics = step_fn(state, batch)
        jax.block_until_ready(metrics)

        def run():
            nonlocal state, metrics
            for _ in range(steps):
                state, metrics = step_fn(state, batch)
            jax.block_until_ready(metrics)

        started = time.perf_counter()
        traced = traced_op_ns(run, known)
        wall_s = time.perf_counter() - started
    return summarize(traced, known, steps, wall_s, top)


def profile_rollout(config, args, top: int) -> dict:
    _, models, rollout_config, prompts_BxP, lengths_B = bench_rollout.fixed_work_rollout(config, args)
    loop_args = dict(markers=bench_rollout.MARKERS, config=rollout_config)

    def start():
        return rollout.prefill(*models, prompts_BxP, lengths_B, config=rollout_config)

    key = jax.random.key(0)
    known = instruction_info(rollout.run_loop.lower(*models, start(), key, **loop_args).compile().as_text())
    jax.block_until_ready(rollout.run_loop(*models, start(), key, **loop_args))  # warm-up
    state = jax.block_until_ready(start())

    def run():
        nonlocal state
        state = jax.block_until_ready(rollout.run_loop(*models, state, key, **loop_args))

    started = time.perf_counter()
    traced = traced_op_ns(run, known)
    wall_s = time.perf_counter() - started
    steps = int(np.asarray(state.step))
    return {"batch": args.batch, "cache_len": rollout_config.cache_len,
            **summarize(traced, known, steps, wall_s, top)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--step", choices=("train", "rollout"), default="train")
    parser.add_argument("--config", default="configs/terminal.py:tiny", help="config file[:preset]")
    parser.add_argument("--vocab-size", type=int, default=2048,
                        help="vocabulary when the config's model.vocab_size is 0")
    parser.add_argument("--steps", type=int, default=3, help="train steps traced")
    parser.add_argument("--top", type=int, default=25, help="operations listed one by one")
    bench_rollout.add_workload_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def main(args) -> int:
    config = configlib.load(args.config, getattr(args, "config_overrides", []))
    if config.model.vocab_size == 0:
        config.model.vocab_size = args.vocab_size
    if args.step == "train":
        result = {"step": "train", "config": args.config, **profile_train(config, args.steps, args.top)}
    else:
        result = {"step": "rollout", "config": args.config, **profile_rollout(config, args, args.top)}
    print_result(result, args.json)
    return 0
