"""The agent loop against the real terminal, and the learned and real verifier rewards.

Grounded mode keeps the agent's decoding compiled (every row writes its command inside one
`lax.while_loop`), then runs the whole batch's commands concurrently in real sandboxes, and feeds
their real outputs back into the agent's cache in one batched append. Mixed batches put a
configurable fraction of sessions on real containers beside the learned terminal (DynaWeb-style
interleaving), so a policy trained in the learned terminal is regularly grounded in reality.
"""
import concurrent.futures
import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from twjax import tokenizer as tokenizer_lib
from twjax.evaluate import fidelity
from twjax.harness.session import open_session
from twjax.harness.shell import SandboxError
from twjax.rollout import (AGENT, CONTEXT_FULL, ENDED_BY_AGENT, FORCED_OUT, PAUSED, RUNNING, SANDBOX_LOST,
                           TURN_LIMIT, LoopState, Markers, RolloutConfig, Sampling, TerminalPrompts, append_tokens,
                           grow_state, initial_state, loop_body, run_in_first_slots, run_loop, stage_limit,
                           view_lengths)
from twjax.tasks import episodes as task_episodes
from twjax.tasks.base import Task


@functools.partial(jax.jit, static_argnames=("agent_graph", "config"))
def agent_prefill(agent_graph, agent_params, prompts_BxP, prompt_lengths_B, *, config: RolloutConfig):
    return initial_state(nnx.merge(agent_graph, agent_params), None, prompts_BxP, prompt_lengths_B, config)


@functools.partial(jax.jit, static_argnames=("agent_graph", "markers", "config", "slots"), donate_argnames=("state",))
def agent_commands(agent_graph, agent_params, state: LoopState, key, *, markers: Markers,
                   config: RolloutConfig, slots: int) -> LoopState:
    """Every running row writes its next command; a row that closes it pauses for the terminal.
    The agent's cache is cut to its first `slots` slots meanwhile (command_slots), as run_loop's
    stages cut it, so a step reads what the sessions have filled."""
    body = loop_body(nnx.merge(agent_graph, agent_params), None, key, markers, config)

    def pause_finished_commands(state: LoopState) -> LoopState:
        waiting_B = (state.stop_B == RUNNING) & (state.phase_B != AGENT)
        return state._replace(stop_B=jnp.where(waiting_B, PAUSED, state.stop_B))

    return run_in_first_slots(state, slots, functools.partial(
        jax.lax.while_loop, lambda s: jnp.any(s.stop_B == RUNNING), lambda s: pause_finished_commands(body(s))))


def command_slots(state: LoopState, config: RolloutConfig) -> int:
    """The stage (rollout.stage_limits) whose slots hold every running session through its next
    command: a command adds at most max_command_tokens + 1 tokens (</cmd> is forced after
    max_command_tokens), and its last step feeds the token before them."""
    length_B = np.asarray(state.length_B)[np.asarray(state.stop_B) == RUNNING]
    longest = int(length_B.max(initial=0)) + config.max_command_tokens
    return stage_limit(np.array([min(longest, config.cache_len)]), config)


@functools.partial(jax.jit, static_argnames=("agent_graph",), donate_argnames=("state",))
def append_terminal_spans(agent_graph, agent_params, state: LoopState, spans_BxN, span_lengths_B,
                          stop_after_B) -> LoopState:
    """Appends `<out> OUTPUT <exit> CODE <cwd> CWD </out>` to each paused row and hands the turn
    back to the agent (or stops the row, per stop_after_B)."""
    appending_B = state.stop_B == PAUSED
    roles_BxN = jnp.full(spans_BxN.shape, tokenizer_lib.ROLE_TERMINAL).at[:, 0].set(tokenizer_lib.ROLE_CONTROL)
    state = append_tokens(nnx.merge(agent_graph, agent_params), None, state, spans_BxN,
                          jnp.where(appending_B, span_lengths_B, 0), roles_BxN, appending_B)
    return state._replace(phase_B=jnp.where(appending_B, AGENT, state.phase_B),
                          span_len_B=jnp.where(appending_B, 0, state.span_len_B),
                          turns_B=state.turns_B + appending_B,
                          stop_B=jnp.where(appending_B, stop_after_B, state.stop_B))


def terminal_span_ids(tok: tokenizer_lib.Tokenizer, output: str, exit_code: int, cwd: str,
                      max_output_tokens: int) -> list[int]:
    """`<out>` + the terminal span, the output cut to the per-turn token limit as the learned
    terminal's own spans are."""
    output_ids = tok.encode_text(output)[:max_output_tokens]
    tail = tok.encode_terminal("", exit_code, cwd).tolist()
    return [tok.out_id] + output_ids + tail


def command_of_row(tok: tokenizer_lib.Tokenizer, ids: list[int]) -> str:
    start = len(ids) - 1 - ids[::-1].index(tok.cmd_id)
    end = ids.index(tok.end_cmd_id, start) if tok.end_cmd_id in ids[start:] else len(ids)
    return tok.decode(ids[start + 1:end])


def open_task_sessions(tasks: list[Task], backend: str, workers: int):
    """One live sandbox per task, its setup already run (setup is not part of the transcript)."""
    def start(task: Task):
        session = open_session(backend=backend, workdir="/root")
        try:
            task_episodes.prepare(session, task)
        except BaseException:
            session.close()
            raise
        return session

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(start, tasks))


def verified(session, task: Task) -> bool:
    """The real verifier's verdict; a sandbox the agent's last command took down has failed."""
    try:
        return task_episodes.verify(session, task).exit_code == 0
    except SandboxError:
        return False


def grounded_rollout(agent_graph, agent_params, tok: tokenizer_lib.Tokenizer, tasks: list[Task],
                     prompts_BxP, prompt_lengths_B, key, *, config: RolloutConfig, backend: str = "auto",
                     workers: int = 8, command_timeout: float = 10.0):
    """The agent against real sandboxes. Returns the final LoopState and each task's real reward
    (its verifier's exit code is 0 after the agent's last command)."""
    markers = Markers.from_tokenizer(tok)
    state = agent_prefill(agent_graph, agent_params, prompts_BxP, prompt_lengths_B, config=config)
    sessions = open_task_sessions(tasks, backend, workers)
    lost = set()

    def run_command(row: int, command: str):
        try:
            return sessions[row].run(command, command_timeout)
        except SandboxError:  # e.g. `kill -9 -1` took the sandbox down: only this row stops
            return None

    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for turn in range(config.max_turns):
                state = agent_commands(agent_graph, agent_params, state, jax.random.fold_in(key, turn),
                                       markers=markers, config=config, slots=command_slots(state, config))
                stop_B, length_B = np.asarray(state.stop_B), np.asarray(state.length_B)
                paused = np.flatnonzero(stop_B == PAUSED)
                if paused.size == 0:
                    break
                tokens_BxS = np.asarray(state.tokens_BxS)
                commands = [command_of_row(tok, tokens_BxS[row, :length_B[row]].tolist()) for row in paused]
                turns = dict(zip(paused, pool.map(run_command, paused, commands)))
                lost |= {row for row, t in turns.items() if t is None}
                if lost:
                    state = state._replace(stop_B=state.stop_B.at[np.array(sorted(lost))].set(SANDBOX_LOST))
                spans = {row: terminal_span_ids(tok, t.output, t.exit_code, t.cwd, config.max_output_tokens)
                         for row, t in turns.items() if t is not None}
                state = append_spans(agent_graph, agent_params, state, spans, config)
            rewards = list(pool.map(lambda row: row not in lost and verified(sessions[row], tasks[row]),
                                    range(len(tasks))))
    finally:
        for session in sessions:
            try:
                session.close()
            except SandboxError:
                pass  # a dead sandbox has nothing left to close
    return state, np.array(rewards, np.float32)


def append_spans(agent_graph, agent_params, state: LoopState, spans: dict[int, list[int]],
                 config: RolloutConfig) -> LoopState:
    """Pads the rows' spans to one static width (the longest possible span), cuts a span that
    would overflow the context, and marks which rows stop after it."""
    batch = state.length_B.shape[0]
    width = config.max_output_tokens + 32
    length_B, turns_B = np.asarray(state.length_B), np.asarray(state.turns_B)
    spans_BxN = np.zeros((batch, width), np.int32)
    span_lengths_B = np.zeros((batch,), np.int32)
    stop_after_B = np.full((batch,), RUNNING, np.int32)
    for row, ids in spans.items():
        room = config.cache_len - int(length_B[row])
        ids = ids[:min(width, room)]
        spans_BxN[row, :len(ids)] = ids
        span_lengths_B[row] = len(ids)
        if len(ids) >= room:
            stop_after_B[row] = CONTEXT_FULL
        elif turns_B[row] + 1 >= config.max_turns:
            stop_after_B[row] = TURN_LIMIT
    return append_terminal_spans(agent_graph, agent_params, state, jnp.asarray(spans_BxN),
                                 jnp.asarray(span_lengths_B), jnp.asarray(stop_after_B))


VERDICT_CHUNK = 64  # verifier tokens fed per call: a long script never costs B x N x S attention at once


@functools.partial(jax.jit, static_argnames=("agent_graph", "terminal_graph"), donate_argnames=("state",))
def _append_verifier_chunk(agent_graph, agent_params, terminal_graph, terminal_params, state: LoopState, chunk_BxC,
                           chunk_lengths_B, feed_pending_B) -> LoopState:
    roles_BxC = jnp.full(chunk_BxC.shape, tokenizer_lib.ROLE_AGENT)
    return append_tokens(nnx.merge(agent_graph, agent_params), nnx.merge(terminal_graph, terminal_params), state,
                         chunk_BxC, chunk_lengths_B, roles_BxC, feed_pending_B)


def _open_verifier_turn(models, state: LoopState, commands: list[list[int]], verifiable_B, ended_B,
                        turn_limit: int) -> LoopState:
    """Writes each verifiable row's verifier command (chunk by chunk) and hands the turn to the
    terminal. An episode the agent ended has <eoe> as its pending token: the command replaces it."""
    state = state._replace(length_B=state.length_B - (ended_B & verifiable_B))
    width = -(-max(len(c) for c in commands) // VERDICT_CHUNK) * VERDICT_CHUNK
    spans_BxN = np.zeros((len(commands), width), np.int32)
    for row, ids in enumerate(commands):
        spans_BxN[row, :len(ids)] = ids
    lengths_B = np.where(verifiable_B, [len(c) for c in commands], 0)
    for offset in range(0, width, VERDICT_CHUNK):
        # After the first chunk every row's pending token is its command's: it is fed with the next.
        feed_pending_B = verifiable_B & ~ended_B if offset == 0 else verifiable_B
        state = _append_verifier_chunk(*models, state, jnp.asarray(spans_BxN[:, offset:offset + VERDICT_CHUNK]),
                                       jnp.asarray(np.clip(lengths_B - offset, 0, VERDICT_CHUNK)), feed_pending_B)
    return state._replace(phase_B=jnp.where(verifiable_B, FORCED_OUT, state.phase_B),
                          span_len_B=jnp.where(verifiable_B, 0, state.span_len_B),
                          turns_B=jnp.where(verifiable_B, turn_limit - 1, state.turns_B),
                          stop_B=jnp.where(verifiable_B, RUNNING, state.stop_B))


class Verdicts(NamedTuple):
    exit_codes: list  # the predicted exit code of each verifier; None: no room for the turn, or no parse
    rewards_B: np.ndarray  # 1.0 where the prediction is exit 0
    pass_probabilities: list  # the terminal's P(exit 0) (fidelity.pass_probabilities); None: no <exit> to score


def terminal_views(tokens_BxS: np.ndarray, lengths_B, terminal_extra_B: np.ndarray,
                   terminal_prompts: TerminalPrompts | None) -> list[np.ndarray]:
    """The terminal's view of each row's first lengths_B[b] buffer tokens: the buffer itself, or
    with its own prompt (rollout.TerminalPrompts) in place of the agent's."""
    if terminal_prompts is None:
        return [tokens_BxS[row, :n] for row, n in enumerate(lengths_B)]
    prompts_BxQ, prompt_lengths_B = (np.asarray(x) for x in terminal_prompts)
    return [np.concatenate([prompts_BxQ[row, :q], tokens_BxS[row, q - extra:n]])
            for row, (n, q, extra) in enumerate(zip(lengths_B, prompt_lengths_B, terminal_extra_B))]


def learned_verdicts(agent_graph, agent_params, terminal_graph, terminal_params, tok: tokenizer_lib.Tokenizer,
                     state: LoopState, verifiers: list[str], *, config: RolloutConfig,
                     terminal_prompts: TerminalPrompts | None = None) -> Verdicts:
    """The learned reward: each task's verifier as one more turn inside the learned terminal
    (greedy). Returns the predicted exit codes (None where the session left no room for the turn,
    or the terminal's span did not parse), the rewards (1 where the prediction is exit 0) and the
    terminal's probability of exit 0 after the output it wrote (fidelity.pass_probabilities).
    Only the terminal reads the verdict, so where the agent's context is shorter than the
    terminal's and a verifier does not fit, the sessions' context grows to the terminal's.
    `terminal_prompts`: the terminal's own prompts the rollout opened with, if any.
    `state` is consumed; decode episodes from it before calling."""
    markers = Markers.from_tokenizer(tok)
    batch = len(verifiers)
    models = (agent_graph, agent_params, terminal_graph, terminal_params)
    commands = [tok.encode_command(v).tolist() for v in verifiers]
    ended_B = np.asarray(state.stop_B) == ENDED_BY_AGENT
    start_B = np.asarray(state.length_B) - ended_B + np.array([len(c) for c in commands])
    terminal_extra_B = np.asarray(state.terminal_extra_B)
    view_start_B = np.asarray(view_lengths(start_B, terminal_extra_B))
    cache_len = config.cache_len
    terminal_len = int(nnx.merge(terminal_graph, terminal_params).config.max_len)
    if view_start_B.max() + config.max_output_tokens > cache_len and terminal_len > cache_len:
        cache_len = terminal_len
        state = grow_state(state, cache_len)
    verifiable_B = view_start_B + 2 <= cache_len  # room for <out> and one token at least
    verify_config = dataclasses.replace(config, cache_len=cache_len, reserve=0, max_turns=config.max_turns + 1,
                                        terminal_sampling=Sampling(temperature=0.0))
    state = _open_verifier_turn(models, state, commands, verifiable_B, ended_B, verify_config.max_turns)
    state = run_loop(*models, state, jax.random.key(0), markers=markers, config=verify_config)
    tokens_BxS, length_B = np.asarray(state.tokens_BxS), np.asarray(state.length_B)
    exit_codes = []
    for row in range(batch):
        if not verifiable_B[row]:
            exit_codes.append(None)
            continue
        _, exit_code, _ = tok.parse_terminal_span(tokens_BxS[row, start_B[row]:length_B[row]].tolist())
        exit_codes.append(exit_code)
    # A row without room for the verdict has an empty span: nothing to score.
    spans = [tokens_BxS[row, start_B[row]:length_B[row]] if verifiable_B[row] else [] for row in range(batch)]
    probabilities = fidelity.pass_probabilities(terminal_graph, terminal_params, tok,
                                                terminal_views(tokens_BxS, start_B, terminal_extra_B, terminal_prompts),
                                                spans, terminal_len)
    return Verdicts(exit_codes, np.array([code == 0 for code in exit_codes], np.float32), probabilities)
