"""`twjax bench rollout`: the compiled agent ⇄ learned-terminal loop against its alternatives.

    sim_turns_per_s          agent + learned terminal, the compiled loop, `--batch` sessions at once
    real_turns_per_s         the real harness (persistent shells through the Pool), the same number
                             of sessions and turns, in the same run
    python_loop_turns_per_s  the straightforward way: a per-token Python loop over one session at a
                             time, with the same models and the same transition function
    python_batched_turns_per_s  the per-token Python loop over the whole batch (dispatch cost only)
    decode_flops_per_s       useful model FLOPs of both models while decoding (2·N per token plus
                             4·layers·context·d_model of attention), divided by the loop's wall time
    peak_flops_per_s         a large jitted matmul timed in the same run

Models are randomly initialised at the config's shape (throughput does not depend on weights); the
agent must take exactly `--turns` turns (min_turns) and each span runs to its token limit, so every
run does the same, known amount of work: about `command_tokens + output_tokens + 3` tokens a turn.
`--sim-only` stops after the compiled loop: quick A/B runs of the loop itself; `--no-real` after the
Python loop (machines without a sandbox backend).
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from twjax import configlib, flops
from twjax import model as model_lib
from twjax import rollout
from twjax.harness import bench as harness_bench
from twjax.harness.session import resolve_backend
from twjax.cli import print_result

# Marker ids for random-weight models; any distinct ids work.
MARKERS = rollout.Markers(cmd_open=1, cmd_end=2, out_open=3, out_end=4, eoe=5, task=6, exit=7, cwd=8)


def make_models(config, vocab_size: int, seed: int):
    model_config = model_lib.ModelConfig.from_mapping(config.model, vocab_size=vocab_size)
    agent = nnx.split(model_lib.Transformer(model_config, rngs=nnx.Rngs(seed)))
    terminal = nnx.split(model_lib.Transformer(model_config, rngs=nnx.Rngs(seed + 1)))
    return model_config, (*agent, *terminal)


def random_prompts(batch: int, prompt_len: int, vocab_size: int, seed: int):
    rng = np.random.default_rng(seed)
    prompts_BxP = rng.integers(16, vocab_size, size=(batch, prompt_len)).astype(np.int32)
    prompts_BxP[:, 0] = MARKERS.task
    return jnp.asarray(prompts_BxP), jnp.full((batch,), prompt_len, jnp.int32)


def decode_flops(model_config: model_lib.ModelConfig, state: rollout.LoopState, prompt_len: int) -> float:
    """Useful FLOPs of one model over every generated token (flops.decode_flops_per_token, with
    each token's actual context rather than the masked remainder of the cache)."""
    lengths_B = np.asarray(state.length_B).astype(np.float64)
    tokens = float(np.sum(lengths_B - prompt_len))
    # A token written at position p was predicted from a context of p tokens.
    context_sum = float(np.sum((lengths_B - 1) * lengths_B / 2 - (prompt_len - 1) * prompt_len / 2))
    return (flops.decode_flops_per_token(model_config, 0) * tokens
            + 4.0 * model_config.n_layers * model_config.d_model * context_sum)


def time_compiled(models, prompts_BxP, lengths_B, config, repeats: int):
    state = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS, config=config)
    jax.block_until_ready(state.tokens_BxS)  # compile and warm up
    best = float("inf")
    for repeat in range(repeats):
        started = time.perf_counter()
        state = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(repeat + 1), markers=MARKERS,
                                config=config)
        jax.block_until_ready(state.tokens_BxS)
        best = min(best, time.perf_counter() - started)
    return state, best


def time_reference(models, prompts_BxP, lengths_B, config):
    rollout.reference_rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS, config=config)
    started = time.perf_counter()
    state = rollout.reference_rollout(*models, prompts_BxP, lengths_B, jax.random.key(1), markers=MARKERS,
                                      config=config)
    jax.block_until_ready(state.tokens_BxS)
    return state, time.perf_counter() - started


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """The fixed workload's shape; `twjax bench ops --step rollout` takes the same flags."""
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--command-tokens", type=int, default=12)
    parser.add_argument("--output-tokens", type=int, default=24)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--cache-dtype", default=None, help="KV cache dtype (default: the compute dtype)")
    parser.add_argument("--key-layout", default="slot_major", choices=model_lib.KEY_LAYOUTS,
                        help="KV cache keys as [.., slots, head_dim] or [.., head_dim, slots] (twjax.model)")
    parser.add_argument("--cache-stages", type=int, default=rollout.RolloutConfig.cache_stages,
                        help="stages of the loop, each with caches of the slots filled so far (1: the whole cache)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/terminal.py:tiny", help="model shape of both models")
    parser.add_argument("--vocab-size", type=int, default=2048)
    add_workload_arguments(parser)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--python-sessions", type=int, default=2,
                        help="sessions decoded one at a time by the per-token Python loop")
    parser.add_argument("--python-batched", action="store_true",
                        help="also time the per-token Python loop over the whole batch (slow)")
    parser.add_argument("--sim-only", action="store_true",
                        help="time the compiled loop only, no Python or real-terminal baseline (A/B runs of the loop)")
    parser.add_argument("--no-real", action="store_true",
                        help="skip the real-terminal baseline (a machine without Docker or bwrap, such as a lent GPU)")
    parser.add_argument("--real-backend", default="auto")
    parser.add_argument("--real-workers", type=int, default=8)
    parser.add_argument("--real-sessions", type=int, default=0, help="default: --batch")
    parser.add_argument("--json", action="store_true")


def tokens_per_turn(args) -> int:
    """<cmd> COMMAND </cmd> <out> OUTPUT </out>: the spans run to their limits."""
    return args.command_tokens + args.output_tokens + 3


def fixed_work_rollout(config, args):
    """-> (model config, models, rollout config, prompts, prompt lengths) of a run whose amount of
    work is known: every session takes exactly `args.turns` turns, each span runs to its limit."""
    model_config, models = make_models(config, args.vocab_size, seed=0)
    rollout_config = rollout.RolloutConfig(
        max_turns=args.turns, min_turns=args.turns, max_command_tokens=args.command_tokens + 1,
        max_output_tokens=args.output_tokens, cache_len=args.prompt_len + args.turns * tokens_per_turn(args) + 8,
        agent_sampling=rollout.Sampling(temperature=1.0), terminal_sampling=rollout.Sampling(temperature=0.0),
        cache_dtype=args.cache_dtype, key_layout=args.key_layout, cache_stages=args.cache_stages)
    prompts_BxP, lengths_B = random_prompts(args.batch, args.prompt_len, args.vocab_size, seed=0)
    return model_config, models, rollout_config, prompts_BxP, lengths_B


def main(args) -> int:
    config = configlib.load(args.config, args.config_overrides)
    model_config, models, rollout_config, prompts_BxP, lengths_B = fixed_work_rollout(config, args)

    peak = flops.measure_peak_flops()
    state, sim_s = time_compiled(models, prompts_BxP, lengths_B, rollout_config, args.repeats)
    sim_turns = int(np.sum(np.asarray(state.turns_B)))
    useful_flops = 2 * decode_flops(model_config, state, args.prompt_len)  # agent and terminal

    result = {
        "config": args.config, "params_per_model": model_lib.param_count(models[1]), "batch": args.batch,
        "turns_per_session": args.turns, "tokens_per_turn": tokens_per_turn(args),
        "cache_len": rollout_config.cache_len,
        "devices": jax.device_count(), "backend": jax.default_backend(), "cache_dtype": args.cache_dtype or "compute",
        "key_layout": args.key_layout, "cache_stages": args.cache_stages,
        "sim_turns": sim_turns, "sim_s": round(sim_s, 3), "sim_turns_per_s": round(sim_turns / sim_s, 1),
        "sim_tokens_per_s": round(float(np.sum(np.asarray(state.length_B) - args.prompt_len)) / sim_s, 1),
        "decode_flops_per_s": useful_flops / sim_s, "peak_flops_per_s": peak,
    }
    result["decode_fraction_of_peak"] = round(result["decode_flops_per_s"] / peak, 3)
    if args.sim_only:
        print_result(result, args.json)
        return 0
    python_s, python_turns = 0.0, 0
    for row in range(args.python_sessions):
        single, seconds = time_reference(models, prompts_BxP[row:row + 1], lengths_B[row:row + 1], rollout_config)
        python_s += seconds
        python_turns += int(np.sum(np.asarray(single.turns_B)))
    result["python_loop_turns_per_s"] = round(python_turns / python_s, 2)
    if args.python_batched:
        batched, seconds = time_reference(models, prompts_BxP, lengths_B, rollout_config)
        result["python_batched_turns_per_s"] = round(int(np.sum(np.asarray(batched.turns_B))) / seconds, 1)
    result["ratio_vs_python"] = round(result["sim_turns_per_s"] / result["python_loop_turns_per_s"], 1)
    if args.no_real:
        print_result(result, args.json)
        return 0
    real = harness_bench.measure_pool(args.real_backend, args.real_sessions or args.batch, args.real_workers,
                                      args.turns)
    result["real_backend"] = resolve_backend(args.real_backend)
    result["real_turns_per_s"] = real["turns_per_s"]
    result["ratio_vs_real"] = round(result["sim_turns_per_s"] / real["turns_per_s"], 2)
    print_result(result, args.json)
    return 0
