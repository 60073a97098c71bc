"""Agent ⇄ learned terminal in one compiled loop.

One `lax.while_loop` step emits one token for every row. Each row carries its own phase: the agent
writes a command until </cmd> (or <eoe> to end the episode); <out> is forced; the terminal writes
output, exit code and cwd until </out>; back to the agent. Both models ingest every token (each
keeps its own KV cache of the whole session), so a step costs one token of each model whatever the
phase, and rows never wait for each other: there is no per-turn synchronisation and no
recompilation per turn. Finished rows stop changing.

The terminal may open its sessions with its own prompt (TerminalPrompts: the task and the
observation of its state, for a terminal trained on observed transcripts) while the agent's open
with the task alone. The token buffer is the agent's view; the terminal's is its prompt followed
by the buffer past the agent's prompt, terminal_extra_B tokens longer.

State is a plain pytree; the models enter as (graphdef, state) pairs and are merged inside the
jitted function, so two different architectures run in one compiled program.
"""
import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from twjax import decode
from twjax import model as model_lib
from twjax import tokenizer as tokenizer_lib

AGENT, FORCED_OUT, TERMINAL = 0, 1, 2
# Why a row stopped. PAUSED: the row waits for the real terminal; SANDBOX_LOST: its real sandbox
# died under the agent's command (grounded mode).
RUNNING, ENDED_BY_AGENT, TURN_LIMIT, CONTEXT_FULL, PAUSED, SANDBOX_LOST = 0, 1, 2, 3, 4, 5


@dataclasses.dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0 means off
    top_p: float = 1.0  # 1 means off


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    max_turns: int = 8
    min_turns: int = 0  # the agent may not write <eoe> before this many turns
    max_command_tokens: int = 48
    max_output_tokens: int = 256
    cache_len: int = 1024
    reserve: int = 0  # context kept free at the end, for the verifier turn
    cache_dtype: str | None = None  # KV cache dtype; None: the models' compute dtype
    key_layout: str = "slot_major"  # KV cache keys, twjax.model.KEY_LAYOUTS
    # The loop runs in this many stages, each with caches of the slots its sessions fill so far
    # (run_loop): a step reads what is filled, not the whole cache. 1: one stage of cache_len slots.
    cache_stages: int = 4
    agent_sampling: Sampling = Sampling(temperature=1.0)
    terminal_sampling: Sampling = Sampling(temperature=0.0)


class Markers(NamedTuple):
    cmd_open: int
    cmd_end: int
    out_open: int
    out_end: int
    eoe: int
    task: int
    exit: int
    cwd: int
    # Ids at or past the tokenizer's vocabulary are padding of the model's (rounded-up) embedding
    # table: never sampled.
    vocab: int = 1 << 30

    @classmethod
    def from_tokenizer(cls, tok) -> "Markers":
        return cls(*(tok.id_of(s) for s in ("<cmd>", "</cmd>", "<out>", "</out>", "<eoe>", "<task>", "<exit>",
                                            "<cwd>")), vocab=tok.vocab_size)


def grammar_masks(markers: Markers, vocab_size: int):
    """Which tokens each phase may sample, so every rollout decodes into well-formed turns: an agent
    span opens with <cmd> or ends the episode with <eoe>; inside a command and inside an output no
    marker of the other side (or <task>) can appear."""
    everything_V = np.arange(vocab_size) < markers.vocab
    opens_V = np.zeros((vocab_size,), bool)
    opens_V[[markers.cmd_open, markers.eoe]] = True
    command_V = everything_V.copy()
    command_V[[markers.cmd_open, markers.eoe, markers.out_open, markers.out_end, markers.exit, markers.cwd,
               markers.task]] = False
    output_V = everything_V.copy()
    output_V[[markers.cmd_open, markers.cmd_end, markers.eoe, markers.out_open, markers.task]] = False
    return jnp.asarray(opens_V), jnp.asarray(command_V), jnp.asarray(output_V)


class TerminalPrompts(NamedTuple):
    """The terminal's own opening of each session, in place of the agent's prompt."""
    prompts_BxQ: jax.Array
    lengths_B: jax.Array


class LoopState(NamedTuple):
    tokens_BxS: jax.Array
    roles_BxS: jax.Array
    length_B: jax.Array  # tokens in the buffer; the agent's cache holds all but the last
    phase_B: jax.Array
    span_len_B: jax.Array  # tokens written in the current agent or terminal span
    turns_B: jax.Array
    stop_B: jax.Array  # RUNNING or why the row stopped
    step: jax.Array
    agent_cache: object
    terminal_cache: object
    # How many more tokens the terminal's view of a row holds than the buffer (its own prompt less
    # the agent's; 0 when they share one): its cache fills that much sooner.
    terminal_extra_B: jax.Array
    # The terminal's cache already holds its whole prompt, so it skips the buffer's last token (the
    # agent's prompt's) on the row's first step.
    terminal_ahead_B: jax.Array


def view_lengths(length_B, terminal_extra_B):
    """Each row's longest view, the agent's or the terminal's: what its caches must hold."""
    return length_B + jnp.maximum(terminal_extra_B, 0)


def row_keys(key: jax.Array, step: jax.Array, batch: int) -> jax.Array:
    """Per-row, per-step keys, so the compiled and the reference loop draw the same numbers."""
    step_key = jax.random.fold_in(key, step)
    return jax.vmap(lambda row: jax.random.fold_in(step_key, row))(jnp.arange(batch))


def next_tokens(state: LoopState, agent_logits_BxV, terminal_logits_BxV, key, markers: Markers,
                config: RolloutConfig):
    """The per-row transition: picks each row's next token and its new phase. Shared, as a pure
    function, by the compiled loop and the reference loop."""
    batch = state.length_B.shape[0]
    opens_V, command_V, output_V = grammar_masks(markers, agent_logits_BxV.shape[-1])
    may_stop_B = state.turns_B >= config.min_turns
    opens_BxV = opens_V[None, :] & (may_stop_B[:, None] | (jnp.arange(opens_V.shape[0]) != markers.eoe)[None, :])
    agent_allowed_BxV = jnp.where((state.span_len_B == 0)[:, None], opens_BxV, command_V[None, :])
    agent_logits_BxV = jnp.where(agent_allowed_BxV, agent_logits_BxV, -jnp.inf)
    terminal_logits_BxV = jnp.where(output_V, terminal_logits_BxV, -jnp.inf)
    agent_key, terminal_key = jax.random.split(key)
    agent_token_B = decode.sample_tokens(agent_logits_BxV, row_keys(agent_key, state.step, batch),
                                  config.agent_sampling)
    terminal_token_B = decode.sample_tokens(terminal_logits_BxV, row_keys(terminal_key, state.step, batch),
                                     config.terminal_sampling)
    in_agent, in_terminal = state.phase_B == AGENT, state.phase_B == TERMINAL
    agent_token_B = jnp.where(state.span_len_B >= config.max_command_tokens, markers.cmd_end, agent_token_B)
    terminal_token_B = jnp.where(state.span_len_B >= config.max_output_tokens, markers.out_end,
                                 terminal_token_B)
    token_B = jnp.where(in_agent, agent_token_B, jnp.where(in_terminal, terminal_token_B, markers.out_open))
    role_B = jnp.where(in_agent, tokenizer_lib.ROLE_AGENT,
                       jnp.where(in_terminal, tokenizer_lib.ROLE_TERMINAL, tokenizer_lib.ROLE_CONTROL))

    ends_command = in_agent & (token_B == markers.cmd_end)
    ends_output = in_terminal & (token_B == markers.out_end)
    phase_B = jnp.where(ends_command, FORCED_OUT,
                        jnp.where(state.phase_B == FORCED_OUT, TERMINAL,
                                  jnp.where(ends_output, AGENT, state.phase_B)))
    span_len_B = jnp.where(phase_B != state.phase_B, 0, state.span_len_B + 1)
    turns_B = state.turns_B + ends_output
    stop_B = jnp.where(in_agent & (token_B == markers.eoe), ENDED_BY_AGENT,
                       jnp.where(ends_output & (turns_B >= config.max_turns), TURN_LIMIT, RUNNING))
    full_B = view_lengths(state.length_B, state.terminal_extra_B) + 1 >= config.cache_len - config.reserve
    stop_B = jnp.where((stop_B == RUNNING) & full_B, CONTEXT_FULL, stop_B)
    return token_B, role_B, phase_B, span_len_B, turns_B, stop_B


def apply_transition(state: LoopState, transition, agent_cache, terminal_cache) -> LoopState:
    """Writes each running row's token; finished rows keep every field as it was."""
    token_B, role_B, phase_B, span_len_B, turns_B, stop_B = transition
    running_B = state.stop_B == RUNNING
    rows = jnp.arange(token_B.shape[0])
    write_at_B = jnp.minimum(state.length_B, state.tokens_BxS.shape[1] - 1)
    keep = lambda new, old: jnp.where(running_B, new, old)  # noqa: E731
    return state._replace(
        tokens_BxS=state.tokens_BxS.at[rows, write_at_B].set(keep(token_B, state.tokens_BxS[rows, write_at_B])),
        roles_BxS=state.roles_BxS.at[rows, write_at_B].set(keep(role_B, state.roles_BxS[rows, write_at_B])),
        length_B=keep(state.length_B + 1, state.length_B),
        phase_B=keep(phase_B, state.phase_B),
        span_len_B=keep(span_len_B, state.span_len_B),
        turns_B=keep(turns_B, state.turns_B),
        stop_B=keep(stop_B, state.stop_B),
        step=state.step + 1,
        agent_cache=agent_cache,
        terminal_cache=terminal_cache,
        terminal_ahead_B=state.terminal_ahead_B & ~running_B,
    )


def last_tokens(state: LoopState) -> jax.Array:
    rows = jnp.arange(state.length_B.shape[0])
    return state.tokens_BxS[rows, state.length_B - 1]


def feed_last_token(agent, terminal, state: LoopState):
    """Both models ingest each running row's newest token; returns their next-token logits.
    With no terminal model (grounded mode) its logits are zeros that no row in the agent phase reads;
    nor are the terminal's on a row's first step, where it skips the token (terminal_ahead_B)."""
    running_Bx1 = (state.stop_B == RUNNING)[:, None]
    token_Bx1 = last_tokens(state)[:, None]
    agent_logits, agent_cache = agent.forward_cached(token_Bx1, running_Bx1, state.agent_cache)
    if terminal is None:
        return agent_logits[:, -1], jnp.zeros_like(agent_logits[:, -1]), agent_cache, None
    terminal_logits, terminal_cache = terminal.forward_cached(
        token_Bx1, running_Bx1 & ~state.terminal_ahead_B[:, None], state.terminal_cache)
    return agent_logits[:, -1], terminal_logits[:, -1], agent_cache, terminal_cache


def initial_state(agent, terminal, prompts_BxP: jax.Array, prompt_lengths_B: jax.Array,
                  config: RolloutConfig, terminal_prompts: TerminalPrompts | None = None) -> LoopState:
    """Prefills both caches with every prompt token but the last, which the first step feeds; or,
    with terminal_prompts, the terminal's with the whole of its own prompt."""
    batch, prompt_len = prompts_BxP.shape
    valid_BxP = jnp.arange(prompt_len)[None, :] < (prompt_lengths_B - 1)[:, None]

    def empty_cache(model):
        return model_lib.init_cache(model.config, batch, config.cache_len, config.cache_dtype, config.key_layout)

    _, agent_cache = agent.forward_cached(prompts_BxP, valid_BxP, empty_cache(agent))
    terminal_cache = None
    terminal_extra_B = jnp.zeros((batch,), jnp.int32)
    terminal_ahead_B = jnp.zeros((batch,), bool)
    if terminal is not None and terminal_prompts is not None:
        prompts_BxQ, lengths_B = terminal_prompts
        whole_BxQ = jnp.arange(prompts_BxQ.shape[1])[None, :] < lengths_B[:, None]
        _, terminal_cache = terminal.forward_cached(prompts_BxQ, whole_BxQ, empty_cache(terminal))
        terminal_extra_B = (lengths_B - prompt_lengths_B).astype(jnp.int32)
        terminal_ahead_B = jnp.ones((batch,), bool)
    elif terminal is not None:
        _, terminal_cache = terminal.forward_cached(prompts_BxP, valid_BxP, empty_cache(terminal))
    in_prompt_BxP = jnp.arange(prompt_len)[None, :] < prompt_lengths_B[:, None]
    tokens_BxS = jnp.zeros((batch, config.cache_len), jnp.int32).at[:, :prompt_len].set(
        jnp.where(in_prompt_BxP, prompts_BxP, 0))
    roles_BxS = jnp.zeros((batch, config.cache_len), jnp.int32).at[:, :prompt_len].set(
        jnp.where(in_prompt_BxP, tokenizer_lib.ROLE_TASK, 0))
    zeros_B = jnp.zeros((batch,), jnp.int32)
    return LoopState(tokens_BxS, roles_BxS, prompt_lengths_B.astype(jnp.int32), zeros_B + AGENT, zeros_B,
                     zeros_B, zeros_B + RUNNING, jnp.zeros((), jnp.int32), agent_cache, terminal_cache,
                     terminal_extra_B, terminal_ahead_B)


def grow_state(state: LoopState, cache_len: int) -> LoopState:
    """The same sessions with a longer context: empty buffer columns and cache slots appended."""
    def grown(array_BxS):
        return jnp.pad(array_BxS, ((0, 0), (0, cache_len - array_BxS.shape[1])))
    return resize_caches(state, cache_len)._replace(tokens_BxS=grown(state.tokens_BxS),
                                                    roles_BxS=grown(state.roles_BxS))


def resize_caches(state: LoopState, slots: int) -> LoopState:
    """The same sessions with both models' caches resized to `slots` (model.resize_cache)."""
    agent_cache, terminal_cache = [None if cache is None else model_lib.resize_cache(cache, slots)
                                   for cache in (state.agent_cache, state.terminal_cache)]
    return state._replace(agent_cache=agent_cache, terminal_cache=terminal_cache)


def run_in_first_slots(state: LoopState, slots: int, step_fn) -> LoopState:
    """`step_fn` on the sessions with caches of their first `slots` slots only, then those slots
    written back into the whole caches: slots past them are kept, even for a row that reaches
    past them (for whom `step_fn` must not run)."""
    stepped = step_fn(resize_caches(state, slots))
    agent_cache, terminal_cache = [None if whole is None else model_lib.with_first_slots(whole, first)
                                   for whole, first in ((state.agent_cache, stepped.agent_cache),
                                                        (state.terminal_cache, stepped.terminal_cache))]
    return stepped._replace(agent_cache=agent_cache, terminal_cache=terminal_cache)


def append_tokens(agent, terminal, state: LoopState, spans_BxN, span_lengths_B, roles_BxN,
                  feed_pending_B) -> LoopState:
    """Writes each row's first span_lengths_B[b] tokens of spans_BxN after its buffer, and lets
    the models' caches catch up: they ingest the row's pending last token (where feed_pending_B;
    a row whose last token was dropped from the buffer has none, nor has a terminal ahead of the
    buffer) and all but the span's last token, which becomes the new pending token. Rows with
    length 0 are untouched."""
    batch, span_len = spans_BxN.shape
    rows_B = jnp.arange(batch)
    pending_B = state.tokens_BxS[rows_B, state.length_B - 1]
    with_pending_BxN = jnp.concatenate([pending_B[:, None], spans_BxN[:, :-1]], axis=1)

    def catch_up(model, cache, feed_pending_B):
        feed_BxN = jnp.where(feed_pending_B[:, None], with_pending_BxN, spans_BxN)
        feed_len_B = jnp.where(feed_pending_B, span_lengths_B, span_lengths_B - 1)
        return model.forward_cached(feed_BxN, jnp.arange(span_len)[None, :] < feed_len_B[:, None], cache)[1]

    agent_cache = catch_up(agent, state.agent_cache, feed_pending_B)
    terminal_cache = (None if terminal is None
                      else catch_up(terminal, state.terminal_cache, feed_pending_B & ~state.terminal_ahead_B))
    written_BxN = jnp.arange(span_len)[None, :] < span_lengths_B[:, None]
    columns_BxN = jnp.where(written_BxN, state.length_B[:, None] + jnp.arange(span_len)[None, :],
                            state.tokens_BxS.shape[1])  # out of range: dropped
    return state._replace(
        tokens_BxS=state.tokens_BxS.at[rows_B[:, None], columns_BxN].set(spans_BxN, mode="drop"),
        roles_BxS=state.roles_BxS.at[rows_B[:, None], columns_BxN].set(roles_BxN, mode="drop"),
        length_B=state.length_B + span_lengths_B, agent_cache=agent_cache, terminal_cache=terminal_cache,
        terminal_ahead_B=state.terminal_ahead_B & (span_lengths_B == 0))


def loop_body(agent, terminal, key, markers: Markers, config: RolloutConfig):
    def body(state: LoopState) -> LoopState:
        agent_logits, terminal_logits, agent_cache, terminal_cache = feed_last_token(agent, terminal, state)
        transition = next_tokens(state, agent_logits, terminal_logits, key, markers, config)
        return apply_transition(state, transition, agent_cache, terminal_cache)
    return body


def stage_limits(config: RolloutConfig) -> tuple[int, ...]:
    """The caches' slots in each stage of the loop: equal parts of cache_len, rounded up to a
    multiple of 8, the last all of it."""
    stages = max(1, int(config.cache_stages))
    parts = (-(-config.cache_len * i // stages) for i in range(1, stages))
    return tuple(sorted({min(-(-part // 8) * 8, config.cache_len) for part in parts} | {config.cache_len}))


def stage_limit(length_B: np.ndarray, config: RolloutConfig) -> int:
    """The stage a step runs in: the first whose slots hold every row's session (view_lengths). A
    step feeds a row's token at slot length - 1 and attends to the slots before it, so length <= limit."""
    return next(limit for limit in stage_limits(config) if int(np.max(length_B)) <= limit)


@functools.partial(jax.jit, static_argnames=("agent_graph", "terminal_graph", "config"))
def prefill(agent_graph, agent_params, terminal_graph, terminal_params, prompts_BxP, prompt_lengths_B,
            terminal_prompts: TerminalPrompts | None = None, *, config: RolloutConfig) -> LoopState:
    return initial_state(nnx.merge(agent_graph, agent_params), nnx.merge(terminal_graph, terminal_params),
                         prompts_BxP, prompt_lengths_B, config, terminal_prompts)


@functools.partial(jax.jit, static_argnames=("agent_graph", "terminal_graph", "markers", "config"),
                   donate_argnames=("state",))
def run_loop(agent_graph, agent_params, terminal_graph, terminal_params, state: LoopState, key, *,
             markers: Markers, config: RolloutConfig) -> LoopState:
    """Steps every running row until it stops (agent's <eoe>, turn limit, or a full context).

    One while_loop per stage (stage_limits): while every session fits in a stage's slots, the
    caches hold only those, so a step's cache reads grow with the sessions instead of being the
    whole cache's from the first token. Lengths only grow, so the stages run in order (a stage the
    sessions have outgrown runs no step); each costs a copy of the caches' first slots out and
    back, and is a copy of the loop in the compiled program. (A slice of the whole cache, read in
    place, is no substitute: XLA:CPU copies it out every step.)"""
    agent = nnx.merge(agent_graph, agent_params)
    terminal = nnx.merge(terminal_graph, terminal_params)

    # Terminates: every step lengthens each running row by one, and a row stops at cache_len.
    for limit in stage_limits(config):
        def cond(state: LoopState, limit=limit):
            return jnp.any(state.stop_B == RUNNING) & (jnp.max(view_lengths(state.length_B, state.terminal_extra_B))
                                                       <= limit)

        state = run_in_first_slots(state, limit, functools.partial(
            jax.lax.while_loop, cond, loop_body(agent, terminal, key, markers, config)))
    return state


def rollout(agent_graph, agent_params, terminal_graph, terminal_params, prompts_BxP, prompt_lengths_B, key,
            *, markers: Markers, config: RolloutConfig, terminal_prompts: TerminalPrompts | None = None) -> LoopState:
    models = (agent_graph, agent_params, terminal_graph, terminal_params)
    state = prefill(*models, prompts_BxP, prompt_lengths_B, terminal_prompts, config=config)
    return run_loop(*models, state, key, markers=markers, config=config)


@functools.partial(jax.jit, static_argnames=("agent_graph", "terminal_graph", "markers", "config", "slots"))
def _reference_step(agent_graph, agent_params, terminal_graph, terminal_params, state, key, *, markers,
                    config, slots):
    agent = nnx.merge(agent_graph, agent_params)
    terminal = nnx.merge(terminal_graph, terminal_params)
    return run_in_first_slots(state, slots, loop_body(agent, terminal, key, markers, config))


def reference_rollout(agent_graph, agent_params, terminal_graph, terminal_params, prompts_BxP,
                      prompt_lengths_B, key, *, markers: Markers, config: RolloutConfig,
                      terminal_prompts: TerminalPrompts | None = None) -> LoopState:
    """The plain per-token Python loop: the same transition, one dispatch and one host sync per
    token. The check that the compiled loop is right, and the baseline the benchmark compares."""
    models = (agent_graph, agent_params, terminal_graph, terminal_params)
    state = prefill(*models, prompts_BxP, prompt_lengths_B, terminal_prompts, config=config)
    while np.any(np.asarray(state.stop_B) == RUNNING):
        state = _reference_step(*models, state, key, markers=markers, config=config,
                                slots=stage_limit(np.asarray(view_lengths(state.length_B, state.terminal_extra_B)), config))
    return state
