"""Mixed batches: most sessions in the learned terminal, a fraction in real containers.

In the spirit of DynaWeb's interleaving, every batch grounds part of its sessions in reality. The
learned sessions are scored twice: by the verifier as a turn inside the learned terminal (the
learned reward), and by replaying the agent's commands in a real sandbox and running the real
verifier (the true reward); their agreement says how far the learned reward can be trusted. The
replays are kept as episodes: with the learned ones they are the closed-loop fidelity pairs.
"""
import dataclasses

import jax
import numpy as np

from twjax import grounded, rollout, rollout_episodes
from twjax import tokenizer as tokenizer_lib
from twjax.episode import Episode
from twjax.evaluate import metrics
from twjax.harness.pool import Pool
from twjax.tasks import episodes as task_episodes
from twjax.tasks.base import Task

REPLAY_TIMEOUT_S = 10.0


def replay_for_real(episodes: list[Episode], tasks: list[Task], backend: str, workers: int) -> list[Episode]:
    """Learned-terminal sessions replayed in real sandboxes: the same commands, the real outputs,
    under the same episode id (the closed-loop pairs `twjax evaluate --closed-loop` scores), and
    the true reward (`extra.real_reward`: the real verifier after the agent's last command). The
    verifier's run closes the replay as a "verify" turn, so replays are transcripts a learned
    terminal can train on: its verdicts on the agent's sessions, not only on the expert's. A session
    that opened with the observation of its state opens its replay with the real one, by the same
    observation command."""
    def replay(session, index):
        task, learned = tasks[index], episodes[index]
        observed = task_episodes.prepare(session, task, observe=learned.turns[0].command if learned.n_given else False)
        turns = observed + [session.replay(turn, timeout=REPLAY_TIMEOUT_S)
                            for turn in learned.turns[learned.n_given:]]
        verdict = task_episodes.verify(session, task)
        return index, Episode(id=learned.id, task=learned.task, turns=turns + [verdict],
                              extra={"terminal": "real_replay", "family": task.family, "task_id": task.id,
                                     "real_reward": float(verdict.exit_code == 0)})

    replayed = [None] * len(tasks)
    with Pool(backend=backend, workers=workers) as pool:
        for index, episode in pool.imap_unordered(replay, range(len(tasks))):
            replayed[index] = episode
    return replayed


def judged_by_replay(learned: Episode, replay: Episode) -> Episode:
    """The learned-terminal session as the agent saw it, closed by the real verifier's verdict (the
    replay's last turn): training data for a learned verifier that must judge imagined sessions.
    Its turns after the given ones are labelled "imagined", so their outputs are context, never
    terminal targets."""
    if learned.id != replay.id or [t.command for t in learned.turns] != [t.command for t in replay.turns[:-1]]:
        raise ValueError(f"{learned.id} and {replay.id} are not a learned session and its replay")
    given = learned.n_given
    turns = learned.turns[:given] + [dataclasses.replace(turn, label="imagined") for turn in learned.turns[given:]]
    return Episode(id=learned.id, task=learned.task, turns=turns + [replay.turns[-1]],
                   extra={"terminal": "learned_judged_by_replay", **{key: replay.extra[key] for key in
                                                                      ("family", "task_id", "real_reward")}})


def real_rewards_by_replay(episodes: list[Episode], tasks: list[Task], backend: str, workers: int) -> list[float]:
    return [replay.extra["real_reward"] for replay in replay_for_real(episodes, tasks, backend, workers)]


@dataclasses.dataclass
class MixedBatch:
    episodes: list[Episode]  # learned-terminal sessions, then grounded ones
    replays: list[Episode]  # the learned sessions replayed for real, same ids
    summary: dict


def mixed_batch(agent, terminal, tok: tokenizer_lib.Tokenizer, tasks: list[Task], key, *,
                config: rollout.RolloutConfig, real_fraction: float, backend: str = "auto", workers: int = 8,
                max_prompt_len: int = 128, observe: bool | str = False, observe_terminal_only: bool = False) -> MixedBatch:
    """`agent` and `terminal` are (graphdef, params) pairs. The first round(real_fraction · B)
    tasks run against real sandboxes, the rest inside the learned terminal. With `observe` (True or
    the observation command, as tasks.episodes.prepare takes it) every session opens with the
    observation of its task's state (tasks.episodes.observe_tasks, once per task;
    rollout_episodes.task_prompts); with observe_terminal_only, only the learned terminal's view
    of it does (rollout_episodes.session_prompts), and the grounded sessions hold none. The learned
    sessions are recorded as the terminal saw them, opened by the observation: so are their
    replays, and the judged sessions are training data for a terminal that reads it."""
    n_real = int(round(real_fraction * len(tasks)))
    real_tasks, sim_tasks = tasks[:n_real], tasks[n_real:]
    episodes, replays = [], []
    summary = {"sessions": len(tasks), "real_sessions": n_real, "learned_sessions": len(sim_tasks)}
    real_key, sim_key = jax.random.split(key)
    observations = task_episodes.observe_tasks(tasks, backend, workers, observe) if observe else None

    if sim_tasks:
        prompts_BxP, lengths_B, sim_given, terminal_prompts = rollout_episodes.session_prompts(
            tok, sim_tasks, config.cache_len, observations, max_prompt_len, observe_terminal_only)
        if terminal_prompts is not None:
            sim_given = [[observations[t.id]] for t in sim_tasks]
        state = rollout.rollout(*agent, *terminal, prompts_BxP, lengths_B, sim_key,
                                markers=rollout.Markers.from_tokenizer(tok), config=config,
                                terminal_prompts=terminal_prompts)
        sim_episodes = rollout_episodes.state_to_episodes(
            tok, state, [f"{t.id}-learned" for t in sim_tasks], [t.instruction for t in sim_tasks],
            {"terminal": "learned"}, sim_given)
        codes, learned, probability = grounded.learned_verdicts(*agent, *terminal, tok, state,
                                                                [t.verifier for t in sim_tasks], config=config,
                                                                terminal_prompts=terminal_prompts)
        replays = replay_for_real(sim_episodes, sim_tasks, backend, workers)
        true = [replay.extra["real_reward"] for replay in replays]
        for episode, task, code, learned_reward, pass_probability, true_reward in zip(
                sim_episodes, sim_tasks, codes, learned, probability, true):
            episode.extra.update(family=task.family, task_id=task.id, predicted_verifier_exit=code,
                                 learned_reward=float(learned_reward), real_reward=true_reward,
                                 learned_pass_probability=pass_probability)
        episodes += sim_episodes
        learned_N, true_N = np.asarray(learned) == 1.0, np.asarray(true) == 1.0
        # Precision is what selecting sessions by the learned reward keeps (regime C); None without a pass.
        summary.update(learned_reward_mean=float(np.mean(learned)), replayed_real_reward_mean=float(np.mean(true)),
                       reward_agreement=float(np.mean(learned_N == true_N)), learned_passes=int(learned_N.sum()),
                       learned_pass_precision=float(true_N[learned_N].mean()) if learned_N.any() else None,
                       learned_passes_by_probability=metrics.passes_by_probability(learned_N, true_N,
                                                                                     np.array(probability, float)))

    if real_tasks:
        prompts_BxP, lengths_B, real_given = rollout_episodes.task_prompts(
            tok, real_tasks, config.cache_len, None if observe_terminal_only else observations, max_prompt_len)
        state, rewards = grounded.grounded_rollout(*agent, tok, real_tasks, prompts_BxP, lengths_B, real_key,
                                                   config=config, backend=backend, workers=workers)
        real_episodes = rollout_episodes.state_to_episodes(
            tok, state, [f"{t.id}-real" for t in real_tasks], [t.instruction for t in real_tasks],
            {"terminal": "real"}, real_given)
        for episode, task, reward in zip(real_episodes, real_tasks, rewards):
            episode.extra.update(family=task.family, task_id=task.id, real_reward=float(reward))
        episodes += real_episodes
        summary["grounded_real_reward_mean"] = float(np.mean(rewards))
    return MixedBatch(episodes, replays, summary)
