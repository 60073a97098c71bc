"""`twjax agent train`: one agent of the three-way ablation (+ RL), then its held-out pass rate.

    twjax agent train --config configs/agent.py:tiny --workdir W --config.agent.regime=C

Regimes (same architecture; the same number of optimizer updates, train.steps, in every regime):
  A   assistant-masked SFT: the trainer with data.regime "agent"            -> W/checkpoints
  B   full-transcript SFT (ECHO in SFT): data.regime "full", lambda_obs     -> W/checkpoints
  C   A's run through update train.steps - rounds·round_steps (W/sft), then `rounds` times: roll
      the agent out on fresh tasks inside the learned terminal (agent.terminal), keep the sessions
      the learned verifier passes with at least min_pass_probability of exit 0 (a fraction
      re-checked by replay in real sandboxes; a failed re-check drops the session, and a re-check
      precision under min_recheck_precision drops the unchecked ones), write them to
      W/imagined/round-K.jsonl, and continue A's run round_steps updates (its optimizer state and
      learning-rate schedule; train.init_state) on the original data plus every imagined file so
      far (W/round-K): with nothing imagined, C differs from A only in the order of its last
      rounds·round_steps batches
  RL  A's run through update train.steps - rl_steps (W/sft), then rl_steps GRPO updates (twjax.rl) in the
      learned terminal, groups of group_size attempts per task, a real_fraction of the groups rolled
      out in real sandboxes with the real verifier as reward                  -> W/rl
C and RL thus branch off A's own trajectory; with agent.shared_sft the trials of a sweep train that
run once and link its checkpoints (a_phase).
Two references share the eval, so an experiment's table shows the floor and the ceiling beside the regimes:
  UNTRAINED  the same architecture with fresh weights (seed train.seed), no updates  -> W/untrained
  EXPERT     no agent: each eval task's expert solution run for real
Finally the agent is judged on held-out tasks in real sandboxes (and inside the learned terminal
when one exists): W/metrics.json and the last stdout line hold the pass rates (agent_eval), and
W/eval/*.jsonl every attempt as an episode with its verdict.
W/agent.json names the directory of the final agent (loadable with checkpoint_io.load_for_inference).
"""
import argparse
import fcntl
import hashlib
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from twjax import agent_eval, checkpoint_io, configlib, grounded, interleave, metrics_log, optim, rl, rollout
from twjax import rollout_episodes, train
from twjax.episode import write_jsonl
from twjax.evaluate import metrics
from twjax.tasks import episodes as task_episodes
from twjax.tasks import registry

REGIMES = ("A", "B", "C", "RL")
REFERENCES = ("UNTRAINED", "EXPERT")
TRAIN_SEED_OFFSET = 5_000_000  # tasks drawn for C and RL: seeds apart from collect's and eval's
AGENT_DEFAULTS = dict(
    regime="A",
    terminal="runs/terminal",       # learned-terminal workdir (C, RL, and the learned-terminal eval)
    shared_sft="",                  # where trials share A's run (a_phase); "" = each trains its own
    # C
    rounds=2,
    round_steps=10,
    tasks_per_round=32,
    real_check_fraction=0.25,       # of the sessions the learned verifier passes, replayed for real
    min_recheck_precision=0.5,      # below it, the learned verifier's unchecked passes are not trusted
    min_pass_probability=0.0,       # a learned pass counts only if the terminal gave exit 0 this probability
    imagined_fraction=0.0,          # of a round's records, drawn from the kept sessions (0: they join A's data as equals)
    # RL
    rl_steps=10,
    tasks_per_step=4,
    group_size=8,
    clip_eps=0.2,
    kl_beta=0.04,
    lambda_env=0.0,
    real_fraction=0.0,              # of each step's groups rolled out in real sandboxes
    rl_lr=1e-4,
    ppo_epochs=1,
    # rollouts (C, RL, eval)
    families=(),                    # () = every family not held out
    held_out_families=("text_grep",),
    difficulty=1,
    max_turns=6,
    max_command_tokens=48,
    max_output_tokens=128,
    temperature=1.0,
    backend="auto",
    workers=4,
    observe_setup=False,            # sessions open with the task's observation (agent and terminal trained on it)
    observe_layout="contents_first",  # its layout, as the terminal's collection had it (tasks.episodes.OBSERVE_COMMANDS)
    observe_terminal_only=False,    # with observe_setup: only the learned terminal's sessions open with it, not the agent's
    # eval
    eval_tasks=8,                   # per split (in-distribution, held-out families); 0 skips the eval
    eval_samples=2,                 # sampled attempts per task (pass@k), at `temperature`
    eval_ks=(1, 2),
    eval_greedy=True,               # plus one greedy attempt per task (`greedy`)
)


def with_agent_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy whose `agent` block has every field (an experiment file may set only some)."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.agent = ml_collections.ConfigDict({**AGENT_DEFAULTS, **dict(config.get("agent", {}))})
    config.agent.regime = config.agent.regime.upper()
    if config.agent.regime not in REGIMES + REFERENCES:
        raise ValueError(f"agent.regime {config.agent.regime!r}: one of {', '.join(REGIMES + REFERENCES)}")
    if config.agent.observe_terminal_only and not config.agent.observe_setup:
        raise ValueError("agent.observe_terminal_only says who sees the observation: it needs agent.observe_setup=True")
    return config


def training_families(config) -> list[str]:
    held = set(config.agent.held_out_families)
    return [f for f in (list(config.agent.families) or sorted(registry.FAMILIES)) if f not in held]


def draw_tasks(config, count: int, stream: int):
    """Fresh tasks for rollouts; `stream` (round or step) keeps every draw distinct."""
    families = training_families(config)
    base = TRAIN_SEED_OFFSET + (int(config.train.seed) * 1000 + stream) * 10_000
    return [registry.generate(families[i % len(families)], base + i, int(config.agent.difficulty))
            for i in range(count)]


def phase_config(config, regime: str, steps: int) -> ml_collections.ConfigDict:
    """The trainer's config for one SFT run: `steps` updates of data.regime `regime`."""
    run = ml_collections.ConfigDict(config.to_dict())
    run.data.regime = regime
    run.train.steps = steps
    run.train.eval_every = min(run.train.eval_every, steps)
    run.train.ckpt_every = min(run.train.ckpt_every, steps)
    return run


def has_checkpoint(workdir: pathlib.Path, step: int) -> bool:
    return (workdir / "checkpoints" / str(step) / checkpoint_io.STATE).is_dir()


def sft(config, workdir: pathlib.Path, regime: str, steps: int) -> pathlib.Path:
    """The trainer, unchanged, on a copy of the config; a run already trained to `steps` is
    kept (a rerun of agent train does not train it again)."""
    if not has_checkpoint(workdir, steps):
        train.train(phase_config(config, regime, steps), workdir)
    return workdir


# ---------------------------------------------------------------------------- A's run, shared


def a_run_config(config) -> ml_collections.ConfigDict:
    """Regime A's run: train.steps updates of data.regime "agent"."""
    return phase_config(config, "agent", int(config.train.steps))


def branch_steps(config) -> list[int]:
    """The updates of A's run that some regime starts from: C's and RL's base_steps, and A's end."""
    later = [int(config.agent.rounds) * int(config.agent.round_steps), int(config.agent.rl_steps), 0]
    return sorted({int(config.train.steps) - n for n in later if int(config.train.steps) - n > 0})


def a_run_key(config) -> str:
    """What fixes A's run's parameters at every step: everything but the agent block and the
    bookkeeping (when to evaluate, checkpoint, log; where to cache compiled programs)."""
    run = a_run_config(config).to_dict()
    run.pop("agent", None)
    if not run["model"].get("copy_follow"):
        # They shape only a following pointer; left in, they re-keyed every A run made before them.
        for name in ("copy_follow_init_confidence", "copy_follow_init_bias"):
            run["model"].pop(name, None)
    for name in ("stop_at", "eval_every", "ckpt_every", "keep_ckpts", "progress", "log_every", "compilation_cache"):
        run["train"].pop(name, None)
    return hashlib.sha256(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()[:16]


def a_phase(config, workdir: pathlib.Path, stop: int) -> pathlib.Path:
    """Regime A's run through update `stop`, in workdir: A itself (stop = train.steps), and where C
    and RL start (their base_steps), so C and RL branch off A's own trajectory (its learning-rate
    schedule spans train.steps). With agent.shared_sft, the trials of a sweep that share A's run
    (same config and seed) train it once: see shared_a_phase."""
    if has_checkpoint(workdir, stop):
        return workdir
    if config.agent.shared_sft and shared_a_phase(config, workdir, stop):
        return workdir
    run = a_run_config(config)
    run.train.stop_at = stop
    train.train(run, workdir)
    return workdir


def shared_a_phase(config, workdir: pathlib.Path, stop: int) -> bool:
    """A's run lives in agent.shared_sft/a-KEY (agent_train makes a relative path start at the
    trial's workdir: "../shared-sft" is a sibling of a sweep's trials), trained
    under a file lock through every branch step up to `stop`, each kept as a checkpoint; the one at
    `stop` is linked into workdir with the run's files, so the workdir reads as if it had trained
    there. False when the shared run went past `stop` without keeping it (a run made with other
    agent.rounds / rl_steps): the caller then trains privately."""
    shared = pathlib.Path(config.agent.shared_sft) / f"a-{a_run_key(config)}"
    shared.mkdir(parents=True, exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        for branch in sorted({b for b in branch_steps(config) if b < stop} | {stop}):
            if has_checkpoint(shared, branch):
                continue
            latest = max((int(p.name) for p in (shared / "checkpoints").glob("*") if p.name.isdigit()), default=0)
            if latest > branch:
                return False
            run = a_run_config(config)
            if latest:
                # The agent block does not change A's run (a_run_key leaves it out): keep the one of
                # the trial that started the run, or resuming it for another regime is refused.
                run.agent = checkpoint_io.read_config(shared).agent
            run.train.update(stop_at=branch, ckpt_every=int(config.train.steps),
                             keep_ckpts=len(branch_steps(config)) + 1)
            train.train(run, shared)
    checkpoint_io.write_run_files(workdir, checkpoint_io.read_config(shared))
    (workdir / "checkpoints").mkdir(parents=True, exist_ok=True)
    link = workdir / "checkpoints" / str(stop)
    if not link.exists():
        link.symlink_to(shared / "checkpoints" / str(stop), target_is_directory=True)
    if not (workdir / "tb").exists():
        (workdir / "tb").symlink_to(shared / "tb", target_is_directory=True)
    return True


def load_agent_and_terminal(config, agent_dir):
    _, tok, agent_model = checkpoint_io.load_for_inference(agent_dir)
    terminal_config, terminal = checkpoint_io.load_terminal(config.agent.terminal, tok)
    # C's and RL's rollouts run in the terminal (RL's real groups too: one batch, one shape).
    _, learned_config = agent_eval.judge_configs(config, terminal_config)
    return tok, nnx.split(agent_model), terminal, learned_config


# ---------------------------------------------------------------------------- regime C


def learned_passes(verdicts: grounded.Verdicts, min_pass_probability: float) -> np.ndarray:
    """1.0 where the learned verifier passes a session with at least min_pass_probability of exit 0."""
    probability_B = np.array(verdicts.pass_probabilities, float)  # None -> nan
    return metrics.sure_passes(verdicts.rewards_B == 1.0, probability_B, min_pass_probability).astype(np.float32)


def select_verified(episodes, learned_rewards, real_rewards: dict[int, float], trust_unchecked: bool = True):
    """The sessions C trains on: complete turns, passed by the learned verifier (learned_passes),
    and not refuted by the real one where it was asked (real_rewards: index -> reward of the
    re-checked ones). Unchecked sessions count only if trust_unchecked (the re-check confirmed the
    learned verifier often enough)."""
    kept = []
    for index, (episode, learned) in enumerate(zip(episodes, learned_rewards)):
        real = real_rewards.get(index)
        episode.extra.update(learned_reward=float(learned), real_reward=real)
        complete = bool(episode.turns) and all(t.extra.get("complete", True) for t in episode.turns)
        if complete and learned == 1.0 and (real == 1.0 or (real is None and trust_unchecked)):
            kept.append(episode)
    return kept


def observation(config) -> str | bool:
    """The observation command the agent's sessions open with (agent.observe_setup, observe_layout), or False."""
    return task_episodes.observation(bool(config.agent.observe_setup), config.agent.get("observe_layout", "contents_first"))


def task_prompts(config, tok, tasks, rollout_config: rollout.RolloutConfig, learned: bool = True):
    """The sessions' prompts, opened by the tasks' observations with agent.observe_setup (only the
    terminal's with agent.observe_terminal_only): rollout_episodes.session_prompts. `learned`: a
    learned terminal reads the sessions; without one, a terminal-only observation is not made."""
    observe = agent_eval.needed_observation(observation(config), bool(config.agent.observe_terminal_only), learned)
    observations = task_episodes.observe_tasks(tasks, config.agent.backend, int(config.agent.workers), observe) \
        if observe else None
    return rollout_episodes.session_prompts(tok, tasks, rollout_config.cache_len, observations, agent_eval.MAX_PROMPT_LEN,
                                            bool(config.agent.observe_terminal_only))


def imagine_round(config, agent_dir, round_index: int):
    """Rollouts in the learned terminal on fresh tasks, filtered as select_verified says."""
    tok, agent, terminal, rollout_config = load_agent_and_terminal(config, agent_dir)
    tasks = draw_tasks(config, int(config.agent.tasks_per_round), stream=round_index)
    prompts_BxP, lengths_B, given, terminal_prompts = task_prompts(config, tok, tasks, rollout_config)
    state = rollout.rollout(*agent, *terminal, prompts_BxP, lengths_B, jax.random.key(round_index),
                            markers=rollout.Markers.from_tokenizer(tok), config=rollout_config,
                            terminal_prompts=terminal_prompts)
    episodes = rollout_episodes.state_to_episodes(tok, state, [f"{t.id}-imagined-r{round_index}" for t in tasks],
                                                  [t.instruction for t in tasks], {"terminal": "learned"}, given)
    for episode, task in zip(episodes, tasks):
        episode.extra.update(family=task.family, task_id=task.id, kind="imagined", round=round_index)
    verdicts = grounded.learned_verdicts(*agent, *terminal, tok, state, [t.verifier for t in tasks],
                                         config=rollout_config, terminal_prompts=terminal_prompts)
    for episode, probability in zip(episodes, verdicts.pass_probabilities):
        episode.extra["learned_pass_probability"] = probability
    learned = learned_passes(verdicts, float(config.agent.min_pass_probability))
    passed = [i for i, reward in enumerate(learned) if reward == 1.0]
    checked = passed[:math.ceil(float(config.agent.real_check_fraction) * len(passed))]
    real = interleave.real_rewards_by_replay([episodes[i] for i in checked], [tasks[i] for i in checked],
                                             config.agent.backend, int(config.agent.workers)) if checked else []
    precision = sum(real) / len(real) if checked else 1.0
    kept = select_verified(episodes, learned, dict(zip(checked, real)),
                           trust_unchecked=precision >= float(config.agent.min_recheck_precision))
    summary = {"sessions": len(tasks), "greedy_passed": int(verdicts.rewards_B.sum()), "learned_passed": len(passed),
               "rechecked": len(checked), "recheck_confirmed": int(sum(real)), "kept": len(kept)}
    return kept, summary


def regime_c(config, workdir: pathlib.Path, log) -> pathlib.Path:
    rounds, round_steps = int(config.agent.rounds), int(config.agent.round_steps)
    base = base_steps(config, rounds * round_steps)
    agent_dir = a_phase(config, workdir / "sft", base)
    imagined = []
    for k in range(1, rounds + 1):
        path = workdir / "imagined" / f"round-{k}.jsonl"
        if not path.exists():
            kept, summary = imagine_round(config, agent_dir, k)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_jsonl(path, kept)
            log.line(f"C round {k}: {json.dumps(summary)}")
            log.scalars(k, {f"imagine/{name}": float(value) for name, value in summary.items()})
        if path.stat().st_size:
            imagined.append(str(path))
        agent_dir = continue_a_run(config, workdir / f"round-{k}", agent_dir, stop=base + k * round_steps,
                                   data=round_data(config, imagined))
    return agent_dir


def round_data(config, imagined: list[str]) -> dict:
    """A round's data fields: the kept sessions beside A's data, as equals (a few dozen among
    thousands of transcripts) or, with agent.imagined_fraction, drawn at that share of the records."""
    fraction = float(config.agent.imagined_fraction)
    if not imagined:
        return {}
    if fraction:
        return {"upweighted": ",".join(imagined), "upweighted_fraction": fraction}
    return {"train": ",".join([config.data.train, *imagined])}


def continue_a_run(config, workdir: pathlib.Path, previous: pathlib.Path, stop: int, data: dict) -> pathlib.Path:
    """A's run continued from `previous`'s train state through update `stop` with `data`'s fields
    changed, so a round changes what C learns from, not how (the same optimizer and learning rate as A)."""
    if not has_checkpoint(workdir, stop):
        run = a_run_config(config)
        run.data.update(data)
        run.train.update(init_from=str(previous), init_state=True, stop_at=stop)
        train.train(run, workdir)
    return workdir


# ---------------------------------------------------------------------------- regime RL


def rl_batch(config, agent, terminal, tok, rollout_config, step: int, key):
    """One GRPO step's rollouts: tasks_per_step groups of group_size attempts; the first
    round(real_fraction · groups) groups in real sandboxes. -> buffers, rewards, summary."""
    group = int(config.agent.group_size)
    tasks = draw_tasks(config, int(config.agent.tasks_per_step), stream=1000 + step)
    n_real = int(round(float(config.agent.real_fraction) * len(tasks)))
    parts, summary = [], {}
    real_tasks, sim_tasks = agent_eval.repeated(tasks[:n_real], group), agent_eval.repeated(tasks[n_real:], group)
    sim_key, real_key = jax.random.split(key)
    if sim_tasks:
        prompts_BxP, lengths_B, _, terminal_prompts = task_prompts(config, tok, sim_tasks, rollout_config)
        state = rollout.rollout(*agent, *terminal, prompts_BxP, lengths_B, sim_key,
                                markers=rollout.Markers.from_tokenizer(tok), config=rollout_config,
                                terminal_prompts=terminal_prompts)
        buffers = tuple(np.array(x) for x in (state.tokens_BxS, state.roles_BxS, state.length_B))
        rewards = grounded.learned_verdicts(*agent, *terminal, tok, state, [t.verifier for t in sim_tasks],
                                            config=rollout_config, terminal_prompts=terminal_prompts).rewards_B
        parts.append((*buffers, rewards))
        summary["learned_reward"] = float(np.mean(rewards))
    if real_tasks:
        prompts_BxP, lengths_B, _, _ = task_prompts(config, tok, real_tasks, rollout_config, learned=False)
        state, rewards = grounded.grounded_rollout(*agent, tok, real_tasks, prompts_BxP, lengths_B, real_key,
                                                   config=rollout_config, backend=config.agent.backend,
                                                   workers=int(config.agent.workers))
        parts.append((np.array(state.tokens_BxS), np.array(state.roles_BxS), np.array(state.length_B), rewards))
        summary["real_reward"] = float(np.mean(rewards))
    tokens, roles, length, rewards = (np.concatenate(column) for column in zip(*parts))
    return tokens, roles, length, rewards, summary


def save_params(workdir: pathlib.Path, config, params, step: int) -> None:
    """A checkpoint load_for_inference reads (parameters only; an RL run restarts its optimizer)."""
    checkpoint_io.write_run_files(workdir, config)
    checkpoint_io.configure_array_handler()
    manager = ocp.CheckpointManager(checkpoint_io.checkpoints_dir(workdir),
                                    item_names=(checkpoint_io.STATE, checkpoint_io.META),
                                    options=ocp.CheckpointManagerOptions(create=True))
    try:
        manager.save(step, force=True, args=ocp.args.Composite(**{
            checkpoint_io.STATE: ocp.args.StandardSave({"params": params}),
            checkpoint_io.META: ocp.args.JsonSave({"step": step})}))
        manager.wait_until_finished()
    finally:
        manager.close()


def regime_rl(config, workdir: pathlib.Path, log) -> pathlib.Path:
    steps, epochs = int(config.agent.rl_steps), int(config.agent.ppo_epochs)
    sft_dir = a_phase(config, workdir / "sft", base_steps(config, steps))
    out = workdir / "rl"
    if (out / "checkpoints").is_dir():
        return out
    tok, (graphdef, params), terminal, rollout_config = load_agent_and_terminal(config, sft_dir)
    grpo = rl.GRPOConfig(group_size=int(config.agent.group_size), clip_eps=float(config.agent.clip_eps),
                         kl_beta=float(config.agent.kl_beta), lambda_env=float(config.agent.lambda_env))
    optim_config = ml_collections.ConfigDict(config.optim.to_dict())
    optim_config.lr, optim_config.warmup_steps = float(config.agent.rl_lr), 0
    tx = optim.make_optimizer(optim_config, steps * epochs)
    ref_params = jax.tree.map(jnp.copy, params)
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    update, logprobs = rl.make_update_step(graphdef, tx, grpo), rl.make_logprobs_fn(graphdef)
    for step in range(steps):
        agent = (graphdef, state["params"])
        tokens, roles, length, rewards, summary = rl_batch(config, agent, terminal, tok, rollout_config, step,
                                                           jax.random.key(int(config.train.seed) * 7919 + step))
        batch = rl.training_batch(tokens, roles, length, rewards, state["params"], ref_params, logprobs, grpo)
        for _ in range(epochs):
            state, step_metrics = update(state, batch)
        values = {f"rl/{k}": float(v) for k, v in jax.device_get(step_metrics).items()}
        values |= {f"rl/{k}": v for k, v in summary.items()} | {"rl/reward": float(np.mean(rewards))}
        log.scalars(step + 1, values)
        log.line(f"RL step {step + 1}/{steps}: reward {values['rl/reward']:.3f}, loss {values['rl/loss']:.4f}, "
                 f"kl {values['rl/kl']:.4f}, env {values['rl/env_loss']:.4f}")
    save_params(out, checkpoint_io.read_config(sft_dir), state["params"], steps)
    return out


def untrained(config, workdir: pathlib.Path) -> pathlib.Path:
    """The floor: the agent's architecture with its initial weights, saved like any agent."""
    out = workdir / "untrained"
    if not (out / "checkpoints").is_dir():
        run = train.resolve_config(config)
        _, params = agent_eval.untrained_like(run)
        save_params(out, run, params, 0)
    return out


def base_steps(config, later_steps: int) -> int:
    """SFT updates before C's rounds or RL's steps, so every regime makes train.steps updates."""
    steps = int(config.train.steps) - later_steps
    if steps <= 0:
        raise ValueError(f"train.steps {config.train.steps} leaves no SFT updates before {later_steps} later ones")
    return steps


# ---------------------------------------------------------------------------- entry


def eval_families(config) -> tuple[list[str], list[str]]:
    return training_families(config), list(config.agent.held_out_families)


def evaluate(config, agent_dir, episodes_dir: pathlib.Path) -> dict:
    _, tok, agent_model = checkpoint_io.load_for_inference(agent_dir)
    terminal = terminal_config = None
    if pathlib.Path(config.agent.terminal, "config.json").exists():
        terminal_config, terminal = checkpoint_io.load_terminal(config.agent.terminal, tok)
    real_config, learned_config = agent_eval.judge_configs(config, terminal_config)
    return agent_eval.report(
        nnx.split(agent_model), tok, *eval_families(config),
        tasks_per_split=int(config.agent.eval_tasks), samples=int(config.agent.eval_samples),
        ks=tuple(int(k) for k in config.agent.eval_ks), config=real_config, learned_config=learned_config,
        key=jax.random.key(int(config.train.seed)), backend=config.agent.backend, workers=int(config.agent.workers),
        terminal=terminal, greedy=bool(config.agent.eval_greedy), episodes_dir=episodes_dir,
        observe=observation(config), observe_terminal_only=bool(config.agent.observe_terminal_only))


def train_and_judge(config, workdir: pathlib.Path, regime: str) -> dict:
    (workdir / "agent").mkdir(exist_ok=True)
    log = metrics_log.MetricsLog(workdir / "agent", int(config.train.steps), 0, progress=False)
    try:
        if regime == "UNTRAINED":
            final = untrained(config, workdir)
        elif regime == "A":
            final = a_phase(config, workdir, int(config.train.steps))
        elif regime == "B":
            final = sft(config, workdir, "full", int(config.train.steps))
        elif regime == "C":
            final = regime_c(config, workdir, log)
        else:
            final = regime_rl(config, workdir, log)
        (workdir / "agent.json").write_text(json.dumps({"regime": regime, "final": str(final)}) + "\n")
        result = {"regime": regime, "final": str(final)}
        if int(config.agent.eval_tasks) > 0:
            result["eval"] = evaluate(config, final, workdir / "eval")
    finally:
        log.close()
    return result


def agent_train(config, workdir) -> dict:
    workdir = pathlib.Path(workdir)
    config = with_agent_defaults(config)
    workdir.mkdir(parents=True, exist_ok=True)
    if config.agent.shared_sft:  # relative to the trial's workdir, whichever phase directory uses it
        config.agent.shared_sft = str((workdir / config.agent.shared_sft).resolve())
    # Every phase shares the persistent cache, so the rollout and eval programs compile once per grid.
    train.enable_compilation_cache(config.train.compilation_cache)
    regime = config.agent.regime
    if regime == "EXPERT":  # no agent to train: the eval tasks' expert solutions are judged
        result = {"regime": regime, "final": None}
        if int(config.agent.eval_tasks) > 0:
            result["eval"] = agent_eval.ceiling_report(
                *eval_families(config), tasks_per_split=int(config.agent.eval_tasks), backend=config.agent.backend,
                workers=int(config.agent.workers))
    else:
        result = train_and_judge(config, workdir, regime)
    (workdir / "metrics.json").write_text(json.dumps(result, sort_keys=True) + "\n")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/agent.py:tiny",
                        help="config file[:preset] (configs/agent.py, or an experiment file); --config.a.b=value")
    parser.add_argument("--workdir", required=True)


def main(args) -> int:
    config = configlib.load(args.config, args.config_overrides)
    print(json.dumps(agent_train(config, args.workdir), sort_keys=True))
    return 0
