"""decode.py: greedy equals the argmax of the full forward pass; done rows never change; top-k=1 is
greedy; a seed is deterministic; a second call with the same shapes does not recompile."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from twjax import decode
from twjax import model as model_lib

CONFIG = model_lib.ModelConfig(vocab_size=61, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_len=32)
BATCH, PROMPT, SLOTS, NEW = 4, 6, 24, 8


# With line embeddings the cache also carries each row's line and column (newline 3, markers 1 and 2).
LINES = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, line_embeddings=4, newline_id=3, line_reset_ids=(1, 2))


@pytest.fixture(scope="module", params=[CONFIG, LINES], ids=["plain", "lines"])
def split_model(request):
    return nnx.split(model_lib.Transformer(request.param, rngs=nnx.Rngs(0)))


def prefilled(split_model, lengths):
    """Cache holding each row's prompt but its last token, and that last token."""
    graphdef, state = split_model
    prompts = np.asarray(jax.random.randint(jax.random.key(7), (BATCH, PROMPT), 0, CONFIG.vocab_size))
    cache = decode.prefill_jit(graphdef, state, jnp.asarray(prompts), jnp.asarray(lengths) - 1,
                               model_lib.init_cache(nnx.merge(graphdef, state).config, BATCH, SLOTS))
    last = prompts[np.arange(BATCH), np.asarray(lengths) - 1]
    return prompts, cache, jnp.asarray(last)


def run(split_model, sampler, lengths=(6, 3, 5, 1), active=(True,) * BATCH, seed=0):
    graphdef, state = split_model
    prompts, cache, last = prefilled(split_model, np.array(lengths))
    span = decode.sample_span(graphdef, state, cache, last, jax.random.key(seed), jnp.asarray(active),
                              sampler=sampler)
    return prompts, jax.tree.map(np.asarray, span)


def test_greedy_equals_argmax_of_full_forward(split_model):
    graphdef, state = split_model
    lengths = (6, 3, 5, 1)
    prompts, span = run(split_model, decode.SpanSampler(max_new_tokens=NEW))
    assert (span.lengths_B == NEW).all() and not span.stopped_B.any()
    model = nnx.merge(graphdef, state)
    for row, length in enumerate(lengths):
        sequence = np.concatenate([prompts[row, :length], span.tokens_BxN[row]])[None]
        logits = np.asarray(nnx.jit(lambda m, t: m(t))(model, jnp.asarray(sequence)))[0]
        np.testing.assert_array_equal(logits[length - 1:length - 1 + NEW].argmax(-1), span.tokens_BxN[row])
    np.testing.assert_array_equal(span.cache.end_B, np.array(lengths) - 1 + NEW)


def test_stop_tokens_freeze_rows_and_inactive_rows_never_change(split_model):
    _, greedy = run(split_model, decode.SpanSampler(max_new_tokens=NEW))
    stop = int(greedy.tokens_BxN[0, 2])  # row 0 emits this at step 2 (maybe others earlier)
    sampler = decode.SpanSampler(max_new_tokens=NEW, stop_ids=(stop, CONFIG.vocab_size + 5), pad_id=-1)
    prompts, span = run(split_model, sampler, active=(True, True, True, False))
    for row in range(3):
        hits = np.flatnonzero(greedy.tokens_BxN[row] == stop)
        expected_length = hits[0] + 1 if hits.size else NEW
        assert span.lengths_B[row] == expected_length and span.stopped_B[row] == bool(hits.size)
        np.testing.assert_array_equal(span.tokens_BxN[row, :expected_length], greedy.tokens_BxN[row, :expected_length])
        assert (span.tokens_BxN[row, expected_length:] == -1).all()
    assert span.lengths_B[0] == 3 and span.stopped_B[0]
    # The inactive row: nothing sampled, its cache exactly as prefilled.
    assert span.lengths_B[3] == 0 and (span.tokens_BxN[3] == -1).all()
    cache_before = jax.tree.map(np.asarray, prefilled(split_model, np.array((6, 3, 5, 1)))[1])
    for got, want in zip(span.cache.keys + span.cache.values_BxKxSxH,
                         cache_before.keys + cache_before.values_BxKxSxH):
        np.testing.assert_array_equal(got[3], want[3])
    assert span.cache.end_B[3] == cache_before.end_B[3] == 0


def test_top_k_one_equals_greedy_and_seeds_are_deterministic(split_model):
    _, greedy = run(split_model, decode.SpanSampler(max_new_tokens=NEW))
    _, top1 = run(split_model, decode.SpanSampler(max_new_tokens=NEW, temperature=1.3, top_k=1), seed=3)
    np.testing.assert_array_equal(top1.tokens_BxN, greedy.tokens_BxN)
    sampler = decode.SpanSampler(max_new_tokens=NEW, temperature=1.0, top_p=0.9)
    _, a = run(split_model, sampler, seed=11)
    _, b = run(split_model, sampler, seed=11)
    _, c = run(split_model, sampler, seed=12)
    np.testing.assert_array_equal(a.tokens_BxN, b.tokens_BxN)
    assert (a.tokens_BxN != c.tokens_BxN).any()


def test_second_call_does_not_recompile(split_model):
    sampler = decode.SpanSampler(max_new_tokens=NEW, temperature=0.7, top_k=5)
    run(split_model, sampler, seed=1)
    sizes = decode.sample_span._cache_size(), decode.prefill_jit._cache_size()
    run(split_model, sampler, lengths=(2, 2, 6, 4), seed=2)
    assert (decode.sample_span._cache_size(), decode.prefill_jit._cache_size()) == sizes


def test_filters():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = np.isfinite(np.asarray(decode.filter_logits(logits, 1.0, 0, 0.7)))
    np.testing.assert_array_equal(kept, [[True, True, False, False]])
    kept = np.isfinite(np.asarray(decode.filter_logits(logits, 1.0, 3, 1.0)))
    np.testing.assert_array_equal(kept, [[True, True, True, False]])


def test_sampling_follows_the_softmax_and_never_picks_a_filtered_token():
    probs = np.array([0.5, 0.0, 0.3, 0.15, 0.0, 0.05])
    logits_BxV = jnp.broadcast_to(jnp.log(jnp.asarray(probs, jnp.float32)), (20_000, probs.size))
    keys_B = jax.random.split(jax.random.key(3), 20_000)
    tokens = np.asarray(jax.jit(decode.sample_categorical)(logits_BxV, keys_B))
    frequencies = np.bincount(tokens, minlength=probs.size) / tokens.size
    assert frequencies[1] == 0 and frequencies[4] == 0
    # 20,000 draws: the standard error of a frequency is at most 0.0036; 4 of them is a loose bound.
    np.testing.assert_allclose(frequencies, probs, atol=0.015)
