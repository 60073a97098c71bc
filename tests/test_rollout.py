"""The compiled agent ⇄ terminal loop, checked against the plain per-token loop."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from twjax import model as model_lib
from twjax import rollout
from twjax import tokenizer as tok

VOCAB = 48
# The model's embedding is wider than the tokenizer's vocabulary (40), as padded vocabularies are.
MARKERS = rollout.Markers(cmd_open=3, cmd_end=4, out_open=5, out_end=6, eoe=7, task=8, exit=9, cwd=10, vocab=40)


def tiny_model(seed, n_kv_heads=1, smeared_keys=False, line_embeddings=0, copy_head=False, copy_follow=False):
    config = model_lib.ModelConfig(vocab_size=VOCAB, d_model=32, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads,
                                   d_ff=64, max_len=128, smeared_keys=smeared_keys, line_embeddings=line_embeddings,
                                   copy_head=copy_head, copy_follow=copy_follow,
                                   newline_id=11, line_reset_ids=tuple(range(3, 11)))  # markers reset lines
    return nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(seed)))


class NeverStops(nnx.Module):
    """An agent that never writes <eoe>: to drive every row to a full context."""

    def __init__(self, inner):
        self.inner = inner
        self.config = inner.config

    def forward_cached(self, tokens_BxT, valid_BxT, cache):
        logits, cache = self.inner.forward_cached(tokens_BxT, valid_BxT, cache)
        return logits.at[..., MARKERS.eoe].set(-1e9), cache


def prompts(batch):
    rng = np.random.default_rng(0)
    lengths_B = rng.integers(2, 9, size=batch).astype(np.int32)
    prompts_BxP = np.zeros((batch, 8), np.int32)
    for row, n in enumerate(lengths_B):
        prompts_BxP[row, :n] = rng.integers(11, MARKERS.vocab, size=n)
    return jnp.asarray(prompts_BxP), jnp.asarray(lengths_B)


CONFIG = rollout.RolloutConfig(max_turns=3, max_command_tokens=5, max_output_tokens=7, cache_len=64,
                               agent_sampling=rollout.Sampling(temperature=1.0, top_k=20, top_p=0.9),
                               terminal_sampling=rollout.Sampling(temperature=0.7))


@pytest.fixture(scope="module")
def models():
    # The agent counts lines (its cache carries each row's line and column); the terminal has
    # smeared keys (its cache also carries each layer's newest key) and a copy head that follows its
    # copies (each slot's pointer key, token and last pointer weight).
    return (*tiny_model(1, line_embeddings=8),
            *tiny_model(2, n_kv_heads=2, smeared_keys=True, copy_head=True, copy_follow=True))


@pytest.fixture(scope="module")
def finished(models):
    prompts_BxP, lengths_B = prompts(6)
    return rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS, config=CONFIG)


def test_compiled_loop_equals_reference_loop_token_for_token(models, finished):
    prompts_BxP, lengths_B = prompts(6)
    reference = rollout.reference_rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS,
                                          config=CONFIG)
    np.testing.assert_array_equal(finished.tokens_BxS, reference.tokens_BxS)
    np.testing.assert_array_equal(finished.roles_BxS, reference.roles_BxS)
    np.testing.assert_array_equal(finished.stop_B, reference.stop_B)
    assert not np.any(np.asarray(finished.stop_B) == rollout.RUNNING)


def test_head_dim_major_keys_change_no_token(models, finished):
    prompts_BxP, lengths_B = prompts(6)
    head_dim_major = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS,
                                     config=dataclasses.replace(CONFIG, key_layout="head_dim_major"))
    assert head_dim_major.agent_cache.key_layout == "head_dim_major" == head_dim_major.terminal_cache.key_layout
    assert finished.agent_cache.key_layout == "slot_major"
    np.testing.assert_array_equal(head_dim_major.tokens_BxS, finished.tokens_BxS)
    np.testing.assert_array_equal(head_dim_major.stop_B, finished.stop_B)


def test_stages_hold_only_filled_slots_and_change_no_token(models):
    """Caches in 8 stages of 8 slots (the last holds all 64) give the same sessions as one stage
    over the whole cache, and the reference loop steps through the same stages."""
    staged, whole = dataclasses.replace(CONFIG, cache_stages=8), dataclasses.replace(CONFIG, cache_stages=1)
    assert rollout.stage_limits(staged) == (8, 16, 24, 32, 40, 48, 56, 64)
    assert rollout.stage_limits(whole) == (64,)
    assert rollout.stage_limits(dataclasses.replace(CONFIG, cache_len=180, cache_stages=4)) == (48, 96, 136, 180)
    assert rollout.stage_limits(dataclasses.replace(CONFIG, cache_len=12, cache_stages=4)) == (8, 12)
    assert [rollout.stage_limit(np.array([3, n]), staged) for n in (1, 8, 9, 63, 64)] == [8, 8, 16, 64, 64]
    prompts_BxP, lengths_B = prompts(6)
    compiled = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS, config=staged)
    reference = rollout.reference_rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS,
                                          config=staged)
    single = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS, config=whole)
    np.testing.assert_array_equal(compiled.tokens_BxS, reference.tokens_BxS)
    np.testing.assert_array_equal(compiled.tokens_BxS, single.tokens_BxS)
    np.testing.assert_array_equal(compiled.stop_B, single.stop_B)
    assert int(np.max(single.length_B)) > 8  # the sessions did pass through several stages
    assert compiled.agent_cache.max_len == compiled.terminal_cache.max_len == 64


def test_a_stage_the_prompts_outgrew_keeps_their_slots(models):
    """Prompts of up to 20 tokens start past the first two stages (8 and 16 slots): those stages
    run no step and must hand the long rows' slots on untouched."""
    rng = np.random.default_rng(1)
    lengths_B = np.array([3, 20, 12, 17], np.int32)
    prompts_BxP = np.zeros((4, 20), np.int32)
    for row, n in enumerate(lengths_B):
        prompts_BxP[row, :n] = rng.integers(11, MARKERS.vocab, size=n)
    runs = [rollout.rollout(*models, jnp.asarray(prompts_BxP), jnp.asarray(lengths_B), jax.random.key(3),
                            markers=MARKERS, config=dataclasses.replace(CONFIG, cache_stages=stages))
            for stages in (1, 8)]
    np.testing.assert_array_equal(runs[0].tokens_BxS, runs[1].tokens_BxS)
    for whole, staged in zip(runs[0].terminal_cache.keys, runs[1].terminal_cache.keys):
        np.testing.assert_allclose(whole, staged, atol=1e-6)


def test_layout_of_every_row(finished):
    """Each row: prompt, then turns of <cmd>..</cmd> <out> ..</out>, ending with <eoe>, the turn
    limit, or a full context; per-turn token limits hold."""
    prompt_len_B = np.asarray(prompts(6)[1])
    for row in range(6):
        ids = np.asarray(finished.tokens_BxS[row, :finished.length_B[row]]).tolist()[prompt_len_B[row]:]
        stop = int(finished.stop_B[row])
        turns = 0
        while ids:
            command = ids[:ids.index(MARKERS.cmd_end) + 1] if MARKERS.cmd_end in ids else ids
            assert command[0] in (MARKERS.cmd_open, MARKERS.eoe)
            if MARKERS.eoe in command:
                assert command.index(MARKERS.eoe) == len(ids) - 1 and stop == rollout.ENDED_BY_AGENT
                break
            assert len(command) <= CONFIG.max_command_tokens + 1
            ids = ids[len(command):]
            if not ids:
                break
            assert ids[0] == MARKERS.out_open
            output = ids[1:ids.index(MARKERS.out_end) + 1] if MARKERS.out_end in ids else ids[1:]
            assert len(output) <= CONFIG.max_output_tokens + 1
            ids = ids[1 + len(output):]
            turns += output[-1:] == [MARKERS.out_end]
        assert turns == int(finished.turns_B[row]) <= CONFIG.max_turns
        if stop == rollout.TURN_LIMIT:
            assert turns == CONFIG.max_turns


def test_roles_follow_the_phase(finished):
    tokens, roles = np.asarray(finished.tokens_BxS), np.asarray(finished.roles_BxS)
    assert tokens.max() < MARKERS.vocab  # padding ids of the embedding are never sampled
    written = np.arange(tokens.shape[1])[None] < np.asarray(finished.length_B)[:, None]
    assert np.all(roles[written & (tokens == MARKERS.out_open)] == tok.ROLE_CONTROL)
    assert np.all(roles[written & (tokens == MARKERS.cmd_end)] == tok.ROLE_AGENT)
    assert np.all(roles[written & (tokens == MARKERS.out_end)] == tok.ROLE_TERMINAL)
    prompt = np.arange(tokens.shape[1])[None] < np.asarray(prompts(6)[1])[:, None]
    assert np.all(roles[prompt] == tok.ROLE_TASK)
    generated = written & ~prompt
    assert set(np.unique(roles[generated])) <= {tok.ROLE_AGENT, tok.ROLE_CONTROL, tok.ROLE_TERMINAL}


def test_done_rows_never_change_and_caches_never_overflow(models):
    prompts_BxP, lengths_B = prompts(4)
    config = rollout.RolloutConfig(max_turns=50, max_command_tokens=5, max_output_tokens=7, cache_len=40)
    models = (*nnx.split(NeverStops(nnx.merge(*models[:2]))), *models[2:])
    state = rollout.prefill(*models, prompts_BxP, lengths_B, config=config)
    state = state._replace(stop_B=state.stop_B.at[1].set(rollout.ENDED_BY_AGENT))
    before = [np.asarray(layer[1]) for layer in jax.tree.leaves((state.agent_cache, state.terminal_cache))]
    assert state.terminal_cache.last_keys_BxKxH
    final = rollout.run_loop(*models, jax.tree.map(jnp.copy, state), jax.random.key(3), markers=MARKERS,
                             config=config)
    assert int(final.length_B[1]) == int(lengths_B[1])
    np.testing.assert_array_equal(final.tokens_BxS[1], np.asarray(state.tokens_BxS[1]))
    for got, want in zip(jax.tree.leaves((final.agent_cache, final.terminal_cache)), before):
        np.testing.assert_array_equal(got[1], want)
    others = np.asarray(final.stop_B)[[0, 2, 3]]
    assert np.all(others == rollout.CONTEXT_FULL)
    assert np.all(np.asarray(final.length_B)[[0, 2, 3]] == config.cache_len)
    assert np.all(np.asarray(final.agent_cache.end_B) < config.cache_len)
    assert np.all(np.asarray(final.terminal_cache.end_B) < config.cache_len)


def test_greedy_rows_are_independent_of_their_batch(models):
    """A session's greedy rollout does not depend on which other sessions share its batch."""
    config = CONFIG.__class__(**{**CONFIG.__dict__, "agent_sampling": rollout.Sampling(temperature=0.0),
                                 "terminal_sampling": rollout.Sampling(temperature=0.0)})
    prompts_BxP, lengths_B = prompts(6)
    together = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS, config=config)
    alone = rollout.rollout(*models, prompts_BxP[2:3], lengths_B[2:3], jax.random.key(0), markers=MARKERS,
                            config=config)
    np.testing.assert_array_equal(together.tokens_BxS[2], alone.tokens_BxS[0])


def test_a_bfloat16_cache_keeps_the_loop_greedy_close_to_float32(models):
    """The cache dtype knob (half the cache traffic on accelerators): the caches really are bf16,
    and greedy decoding of random models mostly agrees with the float32 cache's."""
    prompts_BxP, lengths_B = prompts(6)
    greedy = dataclasses.replace(CONFIG, agent_sampling=rollout.Sampling(temperature=0.0),
                                 terminal_sampling=rollout.Sampling(temperature=0.0))
    full = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS, config=greedy)
    half = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS,
                           config=dataclasses.replace(greedy, cache_dtype="bfloat16"))
    assert half.agent_cache.keys[0].dtype == jnp.bfloat16 == half.terminal_cache.values_BxKxSxH[-1].dtype
    assert full.agent_cache.keys[0].dtype == jnp.float32
    assert not np.any(np.asarray(half.stop_B) == rollout.RUNNING)
    same = np.asarray(full.tokens_BxS) == np.asarray(half.tokens_BxS)
    assert same[:, :8].all() and same.mean() > 0.5


def observed_prompts(prompts_BxP, lengths_B, seed=5):
    """The terminal's own prompts: each agent prompt with 3-9 more tokens (an observation) after it."""
    rng = np.random.default_rng(seed)
    extra_B = rng.integers(3, 10, size=len(lengths_B))
    prompts_BxQ = np.zeros((len(lengths_B), prompts_BxP.shape[1] + 9), np.int32)
    for row, (n, extra) in enumerate(zip(np.asarray(lengths_B), extra_B)):
        prompts_BxQ[row, :n] = np.asarray(prompts_BxP)[row, :n]
        prompts_BxQ[row, n:n + extra] = rng.integers(11, MARKERS.vocab, size=extra)
    return rollout.TerminalPrompts(jnp.asarray(prompts_BxQ), jnp.asarray(np.asarray(lengths_B) + extra_B))


def test_a_terminal_given_the_agents_prompt_as_its_own_changes_no_token(models, finished):
    """Its own prompt prefilled whole, then skipping the first step's token, is the shared prompt's
    cache by another road."""
    prompts_BxP, lengths_B = prompts(6)
    state = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS, config=CONFIG,
                            terminal_prompts=rollout.TerminalPrompts(prompts_BxP, lengths_B))
    np.testing.assert_array_equal(state.tokens_BxS, finished.tokens_BxS)
    np.testing.assert_array_equal(state.stop_B, finished.stop_B)
    assert not np.any(np.asarray(state.terminal_extra_B)) and not np.any(np.asarray(state.terminal_ahead_B))


def next_token_logits(model_graph, model_params, view):
    """The model's logits after each prefix of `view`, from a fresh, uncached forward pass."""
    return np.asarray(nnx.merge(model_graph, model_params)(jnp.asarray(view[None]))[0])


def greedy_choice_holds(logits_TxV, view, at, allowed_V):
    """Whether view[at] is the greedy choice among allowed_V after view[:at]."""
    logits_V = np.where(allowed_V, logits_TxV[at - 1], -np.inf)
    return logits_V[view[at]] >= logits_V.max() - 1e-4


def test_each_model_decodes_from_its_own_view(models):
    """With its own prompt (an observation the agent does not see), the terminal writes what it
    would greedily write after its prompt and the session past the agent's; the agent what it
    would after its own. The compiled loop is the reference loop's, token for token."""
    config = dataclasses.replace(CONFIG, min_turns=CONFIG.max_turns, agent_sampling=rollout.Sampling(temperature=0.0),
                                 terminal_sampling=rollout.Sampling(temperature=0.0))
    prompts_BxP, lengths_B = prompts(4)
    terminal_prompts = observed_prompts(prompts_BxP, lengths_B)
    state = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS, config=config,
                            terminal_prompts=terminal_prompts)
    reference = rollout.reference_rollout(*models, prompts_BxP, lengths_B, jax.random.key(0), markers=MARKERS,
                                          config=config, terminal_prompts=terminal_prompts)
    np.testing.assert_array_equal(state.tokens_BxS, reference.tokens_BxS)
    opens_V, command_V, output_V = (np.asarray(mask) for mask in rollout.grammar_masks(MARKERS, VOCAB))
    opens_V = opens_V & (np.arange(VOCAB) != MARKERS.eoe)  # min_turns: never before the last turn
    tokens_BxS, roles_BxS = np.asarray(state.tokens_BxS), np.asarray(state.roles_BxS)
    checked = {tok.ROLE_AGENT: 0, tok.ROLE_TERMINAL: 0}
    for row, (p, q) in enumerate(zip(np.asarray(lengths_B), np.asarray(terminal_prompts.lengths_B))):
        length = int(state.length_B[row])
        agent_view = tokens_BxS[row, :length]
        terminal_view = np.concatenate([np.asarray(terminal_prompts.prompts_BxQ)[row, :q], agent_view[p:]])
        agent_logits_TxV = next_token_logits(*models[:2], agent_view)
        terminal_logits_TxV = next_token_logits(*models[2:], terminal_view)
        for at in range(p, length):
            role, token = roles_BxS[row, at], tokens_BxS[row, at]
            if token in (MARKERS.cmd_end, MARKERS.out_end):
                continue  # the span limit may have forced it
            if role == tok.ROLE_AGENT:
                opens = at == p or tokens_BxS[row, at - 1] == MARKERS.out_end
                assert greedy_choice_holds(agent_logits_TxV, agent_view, at, opens_V if opens else command_V)
            elif role == tok.ROLE_TERMINAL:
                assert greedy_choice_holds(terminal_logits_TxV, terminal_view, at - p + q, output_V)
            else:
                continue
            checked[role] += 1
    assert checked[tok.ROLE_AGENT] > 10 and checked[tok.ROLE_TERMINAL] > 10, checked


def test_the_terminals_longer_view_fills_the_context_first(models):
    prompts_BxP, lengths_B = prompts(4)
    terminal_prompts = observed_prompts(prompts_BxP, lengths_B)
    config = rollout.RolloutConfig(max_turns=50, max_command_tokens=5, max_output_tokens=7, cache_len=40,
                                   cache_stages=4)
    models = (*nnx.split(NeverStops(nnx.merge(*models[:2]))), *models[2:])
    final = rollout.rollout(*models, prompts_BxP, lengths_B, jax.random.key(3), markers=MARKERS, config=config,
                            terminal_prompts=terminal_prompts)
    extra_B = np.asarray(terminal_prompts.lengths_B) - np.asarray(lengths_B)
    np.testing.assert_array_equal(final.terminal_extra_B, extra_B)
    assert np.all(np.asarray(final.stop_B) == rollout.CONTEXT_FULL)
    np.testing.assert_array_equal(np.asarray(final.length_B) + extra_B, config.cache_len)
    np.testing.assert_array_equal(final.terminal_cache.end_B, config.cache_len - 1)
    np.testing.assert_array_equal(final.agent_cache.end_B, np.asarray(final.length_B) - 1)
