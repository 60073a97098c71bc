"""Agent pass rates: pass@1 and pass@k with bootstrap confidence intervals, per family.

    twjax agent eval --agent W_AGENT [--terminal W_TERMINAL] [--floor] [--ceiling] --out report.json

Each held-out task is attempted `samples` times at the sampling temperature (pass@k), and once
greedily (`greedy`: the agent's single best guess, the pass@1 a user of the agent gets). In real
sandboxes (grounded.grounded_rollout: the real verifier's exit code) and, given a learned terminal,
inside it (rollout + learned_verdicts: the learned verifier), so the two pass rates give the
sim-to-real gap of the same agent. pass@k is the unbiased estimator 1 - C(n-c, k) / C(n, k) of n
attempts with c passes (Chen et al. 2021), averaged over tasks; its confidence interval resamples
tasks (percentile bootstrap). Floor: an untrained agent of the same architecture. Ceiling: the
tasks' expert solutions run for real.

Held-out tasks: in-distribution families drawn with seeds far from any training seed, and the
families the data config holds out entirely.
"""
import argparse
import dataclasses
import json
import math
import pathlib
import re

import jax
import numpy as np
from flax import nnx

from twjax import checkpoint_io, grounded, rollout, rollout_episodes
from twjax.episode import SIDE_PROBE_LABELS, Episode, write_jsonl
from twjax import model as model_lib
from twjax.harness.pool import Pool
from twjax.harness.shell import SandboxError
from twjax.tasks import episodes as task_episodes
from twjax.tasks import registry

EVAL_SEED_OFFSET = 10_000_000  # eval tasks: seeds no training config draws
MAX_PROMPT_LEN = 128
# A file name as commands write it: a word, a dot, an extension that starts with a letter
# (data.csv, todo.py; not 3.5, not the *.py of a glob).
FILE_NAME = re.compile(r"(?<![\w.*-])\w[\w-]*(?:\.[\w-]+)*\.[A-Za-z]\w*")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of n attempts of which c passed."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} attempts, have {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def bootstrap_ci(values, resamples: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap of the mean over the given per-task values."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(values.mean()), float(low), float(high)


def summarize(results: list[dict], ks: tuple[int, ...], seed: int = 0, metric: str = "pass@{k}") -> dict:
    """results: one dict per task {family, n, c}. -> {"all": {...}, FAMILY: {...}} with pass@k
    (named by `metric`), its 95% CI and the task count of each group."""
    groups = {"all": results}
    for result in results:
        groups.setdefault(result["family"], []).append(result)
    summary = {}
    for name, members in sorted(groups.items()):
        row = {"tasks": len(members)}
        for k in ks:
            if all(m["n"] >= k for m in members):
                mean, low, high = bootstrap_ci([pass_at_k(m["n"], m["c"], k) for m in members], seed=seed)
                key = metric.format(k=k)
                row.update({key: mean, f"{key}_low": low, f"{key}_high": high})
        summary[name] = row
    return summary


def eval_tasks(families: list[str], count: int, seed: int = 0, difficulty: int = 1):
    """`count` tasks, families taken in turn."""
    return [registry.generate(families[i % len(families)], EVAL_SEED_OFFSET + seed * 100_000 + i, difficulty)
            for i in range(count)]


def eval_splits(in_families: list[str], held_out_families: list[str]) -> dict[str, list[str]]:
    return {"in_distribution": in_families, "held_out_families": held_out_families}


def repeated(tasks, samples: int):
    return [task for task in tasks for _ in range(samples)]


def counts(tasks, samples: int, passed_N) -> list[dict]:
    passed_TxS = np.asarray(passed_N, np.float32).reshape(len(tasks), samples)
    return [{"family": t.family, "task_id": t.id, "n": samples, "c": int(p.sum())} for t, p in zip(tasks, passed_TxS)]


def attempt_episodes(tok, state, attempts, judge: str, given=None) -> list[Episode]:
    """The attempts as Episodes (W/eval/*.jsonl), each with its task, to read or replay."""
    episodes = rollout_episodes.state_to_episodes(tok, state, [f"{t.id}-attempt{i}" for i, t in enumerate(attempts)],
                                                  [t.instruction for t in attempts], {"judge": judge}, given)
    for episode, task in zip(episodes, attempts):
        episode.extra.update(family=task.family, task_id=task.id)
    return episodes


def names_from_context(episodes: list[Episode]) -> dict[str, int | float | None]:
    """How often the file names in the agent's commands were in front of it: in the task text or
    an earlier turn (command or output) of its session. An agent that copies names scores near 1;
    one that writes names memorised from training scores low. -> {"names", "from_context"}
    (None without any name: metrics.json stays strict JSON)."""
    names = found = 0
    for episode in episodes:
        seen = episode.task
        for turn in episode.turns:
            if turn.label not in SIDE_PROBE_LABELS:
                command_names = FILE_NAME.findall(turn.command)
                names += len(command_names)
                found += sum(name in seen for name in command_names)
            seen += "\n" + turn.command + "\n" + turn.output
    return {"names": names, "from_context": found / names if names else None}


def with_verdicts(episodes: list[Episode], passed) -> list[Episode]:
    for episode, ok in zip(episodes, passed):
        episode.extra["passed"] = bool(ok)
    return episodes


def real_results(agent, tok, tasks, samples: int, config: rollout.RolloutConfig, key, backend: str, workers: int,
                 observations=None):
    """Every task `samples` times in real sandboxes, judged by the real verifier; with `observations`
    (tasks.episodes.observe_tasks) the sessions open with them. -> (counts, episodes)"""
    attempts = repeated(tasks, samples)
    try:
        passed, episodes = grounded_passes(agent, tok, attempts, config, key, backend, workers, observations)
    except SandboxError:
        # An agent command ended its sandbox's shell (`exit`, `kill -9 $$`, ...), which ends the
        # batch: one attempt at a time then, and an attempt whose sandbox dies has failed.
        passed, episodes = [], []
        for index, task in enumerate(attempts):
            try:
                one_passed, one_episode = grounded_passes(agent, tok, [task], config, jax.random.fold_in(key, index),
                                                          backend, 1, observations)
            except SandboxError:
                one_passed, one_episode = [0.0], []
            passed += list(one_passed)
            episodes += one_episode
    return counts(tasks, samples, passed), episodes


def grounded_passes(agent, tok, attempts, config: rollout.RolloutConfig, key, backend: str, workers: int,
                    observations=None):
    prompts_BxP, lengths_B, given = rollout_episodes.task_prompts(tok, attempts, config.cache_len, observations,
                                                                  MAX_PROMPT_LEN)
    state, passed = grounded.grounded_rollout(*agent, tok, attempts, prompts_BxP, lengths_B, key, config=config,
                                              backend=backend, workers=workers)
    return passed, with_verdicts(attempt_episodes(tok, state, attempts, "real", given), passed)


def learned_results(agent, terminal, tok, tasks, samples: int, config: rollout.RolloutConfig, key,
                    observations=None, terminal_only: bool = False):
    """Every task `samples` times inside the learned terminal, judged by the learned verifier
    (with `observations`, tasks.episodes.observe_tasks, the sessions open with them; with
    terminal_only, only the terminal's: rollout_episodes.session_prompts). -> (counts, episodes)"""
    attempts = repeated(tasks, samples)
    prompts_BxP, lengths_B, given, terminal_prompts = rollout_episodes.session_prompts(
        tok, attempts, config.cache_len, observations, MAX_PROMPT_LEN, terminal_only)
    state = rollout.rollout(*agent, *terminal, prompts_BxP, lengths_B, key,
                            markers=rollout.Markers.from_tokenizer(tok), config=config, terminal_prompts=terminal_prompts)
    episodes = attempt_episodes(tok, state, attempts, "learned", given)  # learned_verdicts consumes the state
    passed = grounded.learned_verdicts(*agent, *terminal, tok, state, [t.verifier for t in attempts],
                                       config=config, terminal_prompts=terminal_prompts).rewards_B
    return counts(tasks, samples, passed), with_verdicts(episodes, passed)


def expert_results(tasks, backend: str, workers: int) -> list[dict]:
    """The ceiling: each task's expert solution, run for real and judged by its verifier."""
    def solve(session, index):
        return index, bool(task_episodes.expert_episode(session, tasks[index]).extra["passed"])

    passed = [False] * len(tasks)
    with Pool(backend=backend, workers=workers) as pool:
        for index, ok in pool.imap_unordered(solve, range(len(tasks))):
            passed[index] = ok
    return counts(tasks, 1, passed)


def greedy_config(config: rollout.RolloutConfig) -> rollout.RolloutConfig:
    return dataclasses.replace(config, agent_sampling=rollout.Sampling(temperature=0.0))


def needed_observation(observe: str | bool, terminal_only: bool, learned_terminal: bool) -> str | bool:
    """`observe` (the observation command, or False), or False where only a learned terminal would
    read it (terminal_only) and no learned terminal reads the sessions: it is not made for nothing."""
    return observe if learned_terminal or not terminal_only else False


def report(agent, tok, in_families: list[str], held_out_families: list[str], *, tasks_per_split: int, samples: int,
           ks: tuple[int, ...], config: rollout.RolloutConfig, key, backend: str, workers: int,
           terminal=None, learned_config: rollout.RolloutConfig | None = None, seed: int = 0, greedy: bool = True,
           episodes_dir: str | pathlib.Path | None = None, observe: bool | str = False,
           observe_terminal_only: bool = False) -> dict:
    """The agent's pass rates in real sandboxes (and in the learned terminal, given one), split
    into in-distribution and held-out families: pass@k of `samples` sampled attempts, and (if
    greedy) `greedy`, one greedy attempt per task. Every attempt goes to episodes_dir, if given,
    as {real,learned}-SPLIT-{sampled,greedy}.jsonl. The learned judge runs under learned_config
    (default: config), whose context the terminal's may shorten (judge_configs). With `observe` (True
    or the observation command) every attempt opens with its task's observation, made once per task
    for all the judges; with observe_terminal_only, only the learned terminal's view of it does."""
    splits = eval_splits(in_families, held_out_families)
    out = {}
    for split, families in splits.items():
        if not families:
            continue
        tasks = eval_tasks(families, tasks_per_split, seed)
        observed = needed_observation(observe, observe_terminal_only, learned_terminal=terminal is not None)
        observations = task_episodes.observe_tasks(tasks, backend, workers, observed) if observed else None
        agent_observations = None if observe_terminal_only else observations
        judges = {"real": (lambda n, c: real_results(agent, tok, tasks, n, c, key, backend, workers,
                                                     agent_observations), config)}
        if terminal is not None:
            judges["learned"] = (lambda n, c: learned_results(agent, terminal, tok, tasks, n, c, key, observations,
                                                              observe_terminal_only), learned_config or config)
        for judge, (run, judge_config) in judges.items():
            results, episodes = run(samples, judge_config)
            summary = summarize(results, ks)
            write_episodes(episodes_dir, f"{judge}-{split}-sampled.jsonl", episodes)
            out[f"names_from_context/{judge}/{split}"] = names_from_context(episodes)["from_context"]
            if greedy:
                results, episodes = run(1, greedy_config(judge_config))
                for family, row in summarize(results, (1,), metric="greedy").items():
                    summary[family].update(row)
                write_episodes(episodes_dir, f"{judge}-{split}-greedy.jsonl", episodes)
                out[f"names_from_context_greedy/{judge}/{split}"] = names_from_context(episodes)["from_context"]
            out[f"{judge}/{split}"] = summary
        if terminal is not None:
            for metric in ("pass@1", "greedy") if greedy else ("pass@1",):
                suffix = "" if metric == "pass@1" else "_greedy"
                out[f"sim_to_real_gap{suffix}/{split}"] = (out[f"learned/{split}"]["all"][metric]
                                                           - out[f"real/{split}"]["all"][metric])
    return out


def write_episodes(directory, name: str, episodes: list[Episode]) -> None:
    if directory is not None:
        pathlib.Path(directory).mkdir(parents=True, exist_ok=True)
        write_jsonl(pathlib.Path(directory) / name, episodes)


def ceiling_report(in_families: list[str], held_out_families: list[str], *, tasks_per_split: int, backend: str,
                   workers: int, seed: int = 0) -> dict:
    """The expert solutions on the tasks `report` draws, run for real: the pass rate a perfect agent
    reaches. The expert is deterministic, so its one attempt is both its pass@1 and its greedy rate."""
    splits = eval_splits(in_families, held_out_families)
    out = {}
    for split, families in splits.items():
        if families:
            results = expert_results(eval_tasks(families, tasks_per_split, seed), backend, workers)
            out[f"real/{split}"] = summarize(results, (1,))
            for family, row in summarize(results, (1,), metric="greedy").items():
                out[f"real/{split}"][family].update(row)
    return out


def untrained_like(agent_config) -> tuple:
    """The floor agent: the same architecture, fresh weights."""
    cfg = checkpoint_io.model_config(agent_config)
    return nnx.split(model_lib.Transformer(cfg, rngs=nnx.Rngs(int(agent_config.train.seed))))


def rollout_config_of(agent_config, cache_len: int) -> rollout.RolloutConfig:
    a = agent_config.agent
    return rollout.RolloutConfig(
        max_turns=int(a.max_turns), max_command_tokens=int(a.max_command_tokens),
        max_output_tokens=int(a.max_output_tokens), cache_len=cache_len, reserve=min(96, cache_len // 4),
        agent_sampling=rollout.Sampling(temperature=float(a.temperature)))


def judge_configs(agent_config, terminal_config=None) -> tuple[rollout.RolloutConfig, rollout.RolloutConfig]:
    """(real, learned) rollout limits: the real judge gives the agent its whole context, the learned
    one no more than the terminal was trained on, so a short terminal never caps the real pass rate."""
    agent_len = int(agent_config.model.max_len)
    learned_len = agent_len if terminal_config is None else min(agent_len, int(terminal_config.model.max_len))
    return rollout_config_of(agent_config, agent_len), rollout_config_of(agent_config, learned_len)


# ---------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", required=True, help="workdir of the agent (`twjax agent train` or `twjax train`)")
    parser.add_argument("--terminal", default="", help="workdir of a learned terminal: also judge inside it")
    parser.add_argument("--families", default="", help="in-distribution families (default: all not held out)")
    parser.add_argument("--held-out-families", default="text_grep")
    parser.add_argument("--tasks", type=int, default=16, help="tasks per split (families taken in turn)")
    parser.add_argument("--samples", type=int, default=4, help="attempts per task (n of pass@k)")
    parser.add_argument("--ks", default="1,4")
    parser.add_argument("--floor", action="store_true", help="also evaluate an untrained agent")
    parser.add_argument("--ceiling", action="store_true", help="also run the expert solutions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature of the sampled attempts (default: the agent config's)")
    parser.add_argument("--no-greedy", dest="greedy", action="store_false",
                        help="skip the greedy attempt per task (pass@k only)")
    parser.add_argument("--observe", nargs="?", const="contents_first", default=None,
                        choices=sorted(task_episodes.OBSERVE_COMMANDS),
                        help="open every attempt with its task's observation in this layout (default: the "
                             "agent config's agent.observe_setup and observe_layout), for models trained on "
                             "transcripts observed so")
    parser.add_argument("--observe-terminal-only", action="store_true", default=None,
                        help="the observation opens the learned terminal's view of each attempt only, for an "
                             "agent trained without it (default: the agent config's agent.observe_terminal_only)")
    parser.add_argument("--episodes-dir", default="", help="write every attempt here as Episode JSONL")
    parser.add_argument("--out", default="", help="write the report JSON here too")


def main(args) -> int:
    from twjax import agent_train  # the agent defaults (turn and token limits) live with the trainer
    agent_config, tok, agent_model = checkpoint_io.load_for_inference(args.agent)
    agent_config = agent_train.with_agent_defaults(agent_config)
    held = [f for f in args.held_out_families.split(",") if f]
    in_families = [f for f in args.families.split(",") if f] or [f for f in sorted(registry.FAMILIES) if f not in held]
    terminal = terminal_config = None
    if args.terminal:
        terminal_config, terminal = checkpoint_io.load_terminal(args.terminal, tok)
    if args.temperature is not None:
        agent_config.agent.temperature = args.temperature
    config, learned_config = judge_configs(agent_config, terminal_config)
    common = dict(tasks_per_split=args.tasks, samples=args.samples, ks=tuple(int(k) for k in args.ks.split(",")),
                  config=config, key=jax.random.key(args.seed), backend=args.backend, workers=args.workers,
                  seed=args.seed, greedy=args.greedy,
                  observe=task_episodes.observation(True, args.observe) if args.observe else agent_train.observation(agent_config),
                  observe_terminal_only=(args.observe_terminal_only if args.observe_terminal_only is not None
                                         else bool(agent_config.agent.observe_terminal_only)))
    out = {"agent": report(nnx.split(agent_model), tok, in_families, held, terminal=terminal,
                           learned_config=learned_config, episodes_dir=args.episodes_dir or None, **common)}
    if args.floor:
        out["floor"] = report(untrained_like(agent_config), tok, in_families, held, **common)
    if args.ceiling:
        out["ceiling"] = ceiling_report(in_families, held, tasks_per_split=args.tasks, backend=args.backend,
                                        workers=args.workers, seed=args.seed)
    text = json.dumps(out, sort_keys=True)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)
    return 0
