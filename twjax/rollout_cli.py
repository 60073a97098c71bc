"""`twjax rollout`: an agent against the learned terminal, real containers, or a mix of both.

    twjax rollout --agent W_AGENT --terminal W_TERMINAL --count 64 --real-fraction 0.25 --out rollouts.jsonl

Tasks are drawn fresh from the procedural families (`--families`, default all; `--seed`). The
episodes are Episode JSONL (replayable with `twjax replay`, scorable with `twjax evaluate`); the
last stdout line is a JSON summary: rewards, the agreement between the learned and real reward, and
the share of learned passes that pass for real.
"""
import argparse
import json

import jax
from flax import nnx

from twjax import checkpoint_io, interleave, rollout
from twjax.episode import write_jsonl
from twjax.tasks import episodes as task_episodes, registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", required=True, help="training workdir of the agent")
    parser.add_argument("--terminal", required=True, help="training workdir of the learned terminal")
    parser.add_argument("--count", type=int, default=32, help="sessions (tasks)")
    parser.add_argument("--families", default="", help="comma-separated; default all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", type=int, default=1)
    parser.add_argument("--real-fraction", type=float, default=0.0)
    parser.add_argument("--max-turns", type=int, default=8)
    parser.add_argument("--max-command-tokens", type=int, default=64)
    parser.add_argument("--max-output-tokens", type=int, default=256)
    parser.add_argument("--cache-len", type=int, default=0, help="default: the terminal's max_len")
    parser.add_argument("--temperature", type=float, default=1.0, help="the agent's; the terminal is greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--observe", nargs="?", const="contents_first", default=None,
                        choices=sorted(task_episodes.OBSERVE_COMMANDS),
                        help="open every session with the observation of its task's state in this layout, as "
                             "transcripts collected with --config.observe_setup=True (and observe_layout) do, "
                             "for models trained on them")
    parser.add_argument("--observe-terminal-only", action="store_true",
                        help="with --observe, the observation opens the learned terminal's view of each session "
                             "only, for an agent trained without it")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--out", required=True)
    parser.add_argument("--replay-out", default=None,
                        help="also write the learned sessions replayed for real (same ids): with --out, the "
                             "pair `twjax evaluate --closed-loop OUT REPLAY_OUT` scores")
    parser.add_argument("--judged-out", default=None,
                        help="also write the learned sessions closed by the real verifier's verdict, their "
                             "turns labelled imagined (training data for the terminal's verdicts)")


def draw_tasks(families: list[str], count: int, seed: int, difficulty: int):
    return [registry.generate(families[i % len(families)], seed * 1_000_003 + i, difficulty) for i in range(count)]


def main(args) -> int:
    if args.observe_terminal_only and not args.observe:
        raise SystemExit("--observe-terminal-only says who sees the observation: it needs --observe")
    _, tok, agent_model = checkpoint_io.load_for_inference(args.agent)
    terminal_config, terminal = checkpoint_io.load_terminal(args.terminal, tok)
    families = [f for f in args.families.split(",") if f] or sorted(registry.FAMILIES)
    tasks = draw_tasks(families, args.count, args.seed, args.difficulty)
    cache_len = args.cache_len or int(terminal_config.model.max_len)
    config = rollout.RolloutConfig(
        max_turns=args.max_turns, max_command_tokens=args.max_command_tokens,
        max_output_tokens=args.max_output_tokens, cache_len=cache_len, reserve=min(96, cache_len // 4),
        agent_sampling=rollout.Sampling(temperature=args.temperature, top_p=args.top_p))
    batch = interleave.mixed_batch(nnx.split(agent_model), terminal, tok, tasks,
                                   jax.random.key(args.seed), config=config, real_fraction=args.real_fraction,
                                   backend=args.backend, workers=args.workers,
                                   observe=task_episodes.observation(True, args.observe) if args.observe else False,
                                   observe_terminal_only=args.observe_terminal_only)
    write_jsonl(args.out, batch.episodes)
    if args.replay_out:
        write_jsonl(args.replay_out, batch.replays)
    if args.judged_out:
        write_jsonl(args.judged_out, [interleave.judged_by_replay(learned, replay)
                                      for learned, replay in zip(batch.episodes, batch.replays)])
    print(json.dumps({"out": args.out, **batch.summary}))
    return 0
