"""Model: KV-cache decoding equals the full forward pass; packed segments equal separate sequences."""
import math
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from decoding_check import assert_decoding_equals_full_forward
from twjax import model as model_lib

CONFIG = model_lib.ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_len=64)
NEWLINE, RESETS = 5, (3, 4)  # random_tokens makes about one token in five a newline, one in eleven a reset
LINES = dict(line_embeddings=4, newline_id=NEWLINE, line_reset_ids=RESETS)  # 4: lines and columns past 3 share


@pytest.fixture(scope="module", params=[{}, dict(smeared_keys=True), LINES, dict(copy_head=True),
                                        dict(copy_head=True, copy_follow=True)],
                ids=["plain", "smeared_keys", "lines", "copy_head", "copy_follow"])
def model(request):
    config = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, **request.param)
    return model_lib.Transformer(config, rngs=nnx.Rngs(0))


# Jitted once per shape: eager op-by-op dispatch of the model is far slower than compiling it.
forward = nnx.jit(lambda m, tokens, positions=None, segments=None: m(tokens, positions, segments))
forward_cached = nnx.jit(lambda m, tokens, valid, cache: m.forward_cached(tokens, valid, cache))


def random_tokens(shape, seed=1):
    tokens = jax.random.randint(jax.random.key(seed), shape, 0, CONFIG.vocab_size + 28)
    return jnp.where(tokens >= CONFIG.vocab_size + 9, NEWLINE, jnp.where(tokens >= CONFIG.vocab_size, RESETS[0], tokens))


def test_line_columns_on_a_hand_made_sequence():
    config = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, **LINES)
    n, r = NEWLINE, RESETS[1]
    tokens = jnp.array([[7, 8, n, 9, n, n, 7, r, 8, n, 9, 9],
                        [7, n, 8, 8, r, 9, n, 7, 7, 7, 7, 7]])
    starts = jnp.zeros((2, 12), bool).at[1, 7].set(True)  # row 1: a new segment at 7
    line, column = model_lib.line_columns(tokens, starts, config, jnp.array([2, 0]), jnp.array([5, 0]))
    # Row 0 continues line 2 at column 5 (a chunk after earlier tokens); the reset at 7 restarts.
    np.testing.assert_array_equal(line[0], [2, 2, 2, 3, 3, 4, 5, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(column[0], [5, 6, 7, 0, 1, 0, 0, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(line[1], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(column[1], [0, 1, 0, 1, 0, 1, 2, 0, 1, 2, 3, 4])


def test_line_embeddings_start_as_the_model_without_them():
    """Zero at init and drawn after every other parameter: the same seed gives the same function."""
    plain = model_lib.Transformer(CONFIG, rngs=nnx.Rngs(0))
    lines = model_lib.Transformer(model_lib.ModelConfig.from_mapping(CONFIG.__dict__, **LINES), rngs=nnx.Rngs(0))
    tokens = random_tokens((2, 12), seed=6)
    np.testing.assert_array_equal(forward(lines, tokens), forward(plain, tokens))
    lines.line_embed_LxD[...] = lines.line_embed_LxD[...] + 1.0  # and once they are not zero, they count
    assert np.abs(np.asarray(forward(lines, tokens)) - np.asarray(forward(plain, tokens))).max() > 1e-3


def test_line_embeddings_need_a_newline_id():
    with pytest.raises(ValueError, match="newline id"):
        model_lib.ModelConfig.from_mapping(CONFIG.__dict__, line_embeddings=4)
    config = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, **dict(LINES, line_reset_ids=[3, 4]))
    assert config.line_reset_ids == RESETS  # as a checkpoint's JSON config gives it: a list


def test_forward_shapes_and_dtype(model):
    logits = forward(model, random_tokens((2, 7)))
    assert logits.shape == (2, 7, CONFIG.vocab_size) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize("key_layout", ["head_dim_major", "slot_major"])
def test_token_by_token_decoding_equals_full_forward(model, key_layout):
    cache = model_lib.init_cache(model.config, 3, 16, key_layout=key_layout)
    assert cache.keys[0].shape[2:] == {"head_dim_major": (8, 16), "slot_major": (16, 8)}[key_layout]
    with pytest.raises(ValueError, match="unknown key layout"):
        model_lib.init_cache(model.config, 3, 16, key_layout="head_major")
    # Ragged rows; the last row never gets a token.
    cache = assert_decoding_equals_full_forward(model, random_tokens((3, 12)), np.array([12, 5, 0]), cache,
                                                tolerance=1e-4)
    layers = cache.keys + cache.values_BxKxSxH + cache.last_keys_BxKxH
    assert not any(np.asarray(layer[2]).any() for layer in layers), "a row with no valid token changed"


def test_chunked_prefill_with_ragged_rows_equals_full_forward(model):
    tokens = random_tokens((3, 14), seed=2)
    full = np.asarray(forward(model, tokens))
    cache = model_lib.init_cache(model.config, 3, 20)
    # Per chunk, each row appends a different number of tokens (valid first, padding after).
    counts = np.array([[5, 3, 0], [6, 0, 0], [3, 4, 0]])
    done = np.zeros(3, int)
    for count in counts:
        chunk = np.zeros((3, 6), np.int32)
        valid = np.arange(6)[None] < count[:, None]
        for row in range(3):
            chunk[row, :count[row]] = tokens[row, done[row]:done[row] + count[row]]
        before = jax.tree.map(np.asarray, cache)
        logits, cache = forward_cached(model, jnp.asarray(chunk), jnp.asarray(valid), cache)
        for row in range(3):
            if count[row]:
                np.testing.assert_allclose(logits[row, :count[row]], full[row, done[row]:done[row] + count[row]],
                                           atol=1e-4, rtol=1e-4)
            else:
                for got, want in zip(cache.keys + cache.values_BxKxSxH + cache.last_keys_BxKxH,
                                     before.keys + before.values_BxKxSxH + before.last_keys_BxKxH):
                    np.testing.assert_array_equal(got[row], want[row])
        done += count
    np.testing.assert_array_equal(cache.end_B, done)


@pytest.mark.parametrize("key_layout", ["head_dim_major", "slot_major"])
def test_a_grown_cache_decodes_on_as_the_full_forward(model, key_layout):
    """Prefill 6 tokens into 8 slots, grow to 16, then decode 6 more: the logits stay the full forward's."""
    tokens = random_tokens((2, 12), seed=4)
    full = np.asarray(forward(model, tokens))
    cache = model_lib.init_cache(model.config, 2, 8, key_layout=key_layout)
    _, cache = forward_cached(model, tokens[:, :6], jnp.ones((2, 6), bool), cache)
    grown = model_lib.resize_cache(cache, 16)
    assert grown.max_len == 16 and grown.keys[0].shape[2:] == {"head_dim_major": (8, 16),
                                                               "slot_major": (16, 8)}[key_layout]
    np.testing.assert_array_equal(grown.end_B, cache.end_B)
    logits, _ = forward_cached(model, tokens[:, 6:], jnp.ones((2, 6), bool), grown)
    np.testing.assert_allclose(logits, full[:, 6:], atol=1e-4, rtol=1e-4)
    # cut back to the 6 filled slots, then grown again: the same cache
    cut = model_lib.resize_cache(cache, 6)
    assert cut.max_len == 6
    regrown = model_lib.resize_cache(cut, 16)
    for a, b in zip(regrown.keys + regrown.values_BxKxSxH, grown.keys + grown.values_BxKxSxH):
        np.testing.assert_array_equal(a, b)


def test_bfloat16_cache_stays_close(model):
    tokens = random_tokens((2, 6), seed=3)
    full = np.asarray(forward(model, tokens))
    cache = model_lib.init_cache(model.config, 2, 8, dtype="bfloat16")
    assert {layer.dtype for layer in cache.keys + cache.values_BxKxSxH} == {jnp.dtype(jnp.bfloat16)}
    logits, _ = forward_cached(model, tokens, jnp.ones((2, 6), bool), cache)
    np.testing.assert_allclose(logits, full, atol=0.1)


def test_packed_segments_equal_separate_sequences(model):
    a, b = random_tokens((1, 5), seed=4), random_tokens((1, 4), seed=5)
    packed = jnp.concatenate([a, b, jnp.zeros((1, 3), jnp.int32)], axis=1)
    segments = jnp.array([[1] * 5 + [2] * 4 + [0] * 3])
    positions = jnp.array([list(range(5)) + list(range(4)) + [0] * 3])
    logits = np.asarray(forward(model, packed, positions, segments))
    np.testing.assert_allclose(logits[0, :5], forward(model, a)[0], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(logits[0, 5:9], forward(model, b)[0], atol=1e-5, rtol=1e-5)
    assert np.isfinite(logits).all()


def test_chunked_causal_attention_equals_one_chunk():
    # Chunks of 8 over 21 tokens (the last one short), packed segments crossing chunk borders.
    tokens = random_tokens((2, 21), seed=6)
    segments = jnp.array([[1] * 10 + [2] * 9 + [0] * 2, [1] * 21])
    positions = jnp.array([list(range(10)) + list(range(9)) + [0, 0], list(range(21))])
    chunked_config = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, attention_chunk=8)
    whole_config = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, attention_chunk=0)
    chunked = forward(model_lib.Transformer(chunked_config, rngs=nnx.Rngs(0)), tokens, positions, segments)
    whole = forward(model_lib.Transformer(whole_config, rngs=nnx.Rngs(0)), tokens, positions, segments)
    np.testing.assert_allclose(chunked, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("smeared_keys", [False, True], ids=["plain", "smeared_keys"])
def test_fused_attention_equals_chunked_in_value_and_gradient(smeared_keys):
    # jax.nn.dot_product_attention (implementation "xla" here; "cudnn" takes the same arguments on a
    # GPU) against the chunked matmuls: packed segments, a padding tail, grouped KV heads.
    tokens = random_tokens((2, 21), seed=7)
    segments = jnp.array([[1] * 10 + [2] * 9 + [0] * 2, [1] * 21])
    positions = jnp.array([list(range(10)) + list(range(9)) + [0, 0], list(range(21))])
    weights = jax.random.normal(jax.random.key(3), (2, 21, CONFIG.vocab_size))

    def loss_and_grads(attention):
        config = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, attention=attention, attention_chunk=8,
                                                    smeared_keys=smeared_keys)
        model = model_lib.Transformer(config, rngs=nnx.Rngs(0))
        loss = lambda m: jnp.sum(m(tokens, positions, segments) * weights)
        return nnx.jit(nnx.value_and_grad(loss))(model)

    chunked_loss, chunked_grads = loss_and_grads("chunked")
    fused_loss, fused_grads = loss_and_grads("xla")
    np.testing.assert_allclose(fused_loss, chunked_loss, rtol=1e-5)
    for fused, chunked in zip(jax.tree.leaves(fused_grads), jax.tree.leaves(chunked_grads)):
        np.testing.assert_allclose(fused, chunked, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="attention"):
        model_lib.ModelConfig.from_mapping(CONFIG.__dict__, attention="flash")
    # cuDNN's fused attention needs a GPU and 16-bit operands.
    bfloat16 = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, dtype="bfloat16")
    assert bfloat16.attention == "auto" and bfloat16.attention_implementation == "chunked"


def test_bfloat16_compute_gives_float32_logits():
    config = model_lib.ModelConfig.from_mapping(dict(CONFIG.__dict__, dtype="bfloat16", unknown_key=1))
    model = model_lib.Transformer(config, rngs=nnx.Rngs(0))
    logits = forward(model, random_tokens((2, 5)))
    assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_every_parameter_has_logical_axes(model):
    for path, variable in jax.tree.leaves_with_path(nnx.state(model, nnx.Param),
                                                     is_leaf=lambda x: isinstance(x, nnx.Variable)):
        axes = variable.get_metadata().get("out_sharding")
        assert axes and len(axes) == variable[...].ndim, path


def test_config_validation():
    with pytest.raises(ValueError, match="n_kv_heads"):
        model_lib.ModelConfig(vocab_size=10, d_model=32, n_layers=1, n_heads=4, n_kv_heads=3, d_ff=8, max_len=8)
    with pytest.raises(ValueError, match="dtype"):
        model_lib.resolve_dtype("float16")


def test_flops_parameter_count_matches_the_model(model):
    from twjax import flops
    assert flops.total_params(model.config) == model_lib.param_count(nnx.state(model, nnx.Param))
    assert flops.train_flops_per_token(CONFIG, 16) == 6 * flops.matmul_params(CONFIG) + 6 * 2 * 16 * 32


def train_to_copy(make_batch, steps: int, smeared_keys: bool = False) -> float:
    """Trains two layers with one shared KV head on `make_batch(step) -> (inputs_BxT, targets_BxT,
    weights_BxT)` (fresh examples every step) and returns the weighted argmax accuracy on the last."""
    import optax
    config = model_lib.ModelConfig(vocab_size=512, d_model=128, n_layers=2, n_heads=4, n_kv_heads=1,
                                   d_ff=384, max_len=128, attention_chunk=32, smeared_keys=smeared_keys)
    graphdef, params = nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(0)))
    tx = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 30, steps, 3e-4), weight_decay=0.1)

    def copy_loss(params, inputs_BxT, targets_BxT, weights_BxT):
        logits_BxTxV = nnx.merge(graphdef, params)(inputs_BxT)
        nll_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, targets_BxT)
        hits_BxT = logits_BxTxV.argmax(-1) == targets_BxT
        return (nll_BxT * weights_BxT).sum() / weights_BxT.sum(), (hits_BxT * weights_BxT).sum() / weights_BxT.sum()

    @jax.jit
    def step(params, opt_state, batch):
        (_, accuracy), grads = jax.value_and_grad(copy_loss, has_aux=True)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, accuracy

    opt_state = tx.init(params)
    for i in range(steps):
        params, opt_state, accuracy = step(params, opt_state, tuple(map(jnp.asarray, make_batch(i))))
    return float(accuracy)


@pytest.mark.slow
def test_learns_to_copy_from_a_fixed_offset():
    """[random, same random]: every target sits exactly 64 tokens back, so one positional head
    copies it (no induction needed). Learned in ~150 updates (a jump near update 120); a bug in
    RoPE, masking or chunked attention shows as no jump. ~110 s on 2 cores."""
    rng, half = np.random.default_rng(0), 64

    def make_batch(_):
        tokens_BxT = np.tile(rng.integers(0, 512, (32, half)), 2)
        weights_BxT = np.zeros((32, 2 * half - 1), np.float32)
        weights_BxT[:, half:] = 1.0  # targets of the second half but its first token
        return tokens_BxT[:, :-1], tokens_BxT[:, 1:], weights_BxT
    assert train_to_copy(make_batch, 300) > 0.95


def copy_example_batch(i: int) -> tuple[np.ndarray, ...]:
    """32 training copy examples (twjax.data.CopyExample: [A, B, A], A of 8-42 tokens, filler B of
    0-21), one a row: the copy source sits at a varying distance, so only induction (find the
    earlier occurrence of the current token, copy what followed it) predicts the second A."""
    from twjax import data
    make = data.CopyExample(np.arange(512, dtype=np.int32), seq_len=128, seed=0)
    examples = [make.map(i * 32 + row)[0] for row in range(32)]
    return tuple(np.stack([np.pad(e[key], (0, 127 - len(e[key]))) for e in examples])
                 for key in ("inputs", "targets", "weights"))


@pytest.mark.slow
def test_learns_induction_on_copy_examples():
    """The plain model sits on a plateau at chance for ~500 updates, then jumps (0.9 near update
    750). ~300 s on 2 cores."""
    assert train_to_copy(copy_example_batch, 1000) > 0.8


@pytest.mark.slow
def test_smeared_keys_learn_induction_without_the_plateau():
    """With smeared keys a query can match "the token before me" in one layer: the same model and
    data pass 0.8 after 300 updates, where the plain model is still on its plateau (the test
    above). ~100 s on 2 cores."""
    assert train_to_copy(copy_example_batch, 300, smeared_keys=True) > 0.8


def test_copy_head_mixes_the_vocabulary_with_copies_of_what_followed_earlier_positions():
    config = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, copy_head=True)
    model = model_lib.Transformer(config, rngs=nnx.Rngs(0))
    tokens = jnp.array([[5, 6, 5, 7, 5, 9, 9, 9]])
    segments = jnp.array([[1, 1, 1, 1, 1, 2, 2, 2]])
    logits = np.asarray(forward(model, tokens, None, segments))
    np.testing.assert_allclose(jax.scipy.special.logsumexp(logits, axis=-1), 0.0, atol=1e-5)  # log-probabilities
    # The pointer alone (gate -> copy), attending evenly (zero query): position 4 (a 5) copies what
    # followed positions 0-3 (6, 5, 7, 5); a segment's first token has nothing to copy.
    model.copy_query_DxC[...] = jnp.zeros_like(model.copy_query_DxC[...])
    model.copy_gate_bias_1[...] = jnp.full((1,), -60.0)
    probabilities = np.exp(np.asarray(forward(model, tokens, None, segments)))
    expected = np.zeros(config.vocab_size)
    expected[[5, 6, 7]] = [0.5, 0.25, 0.25]
    np.testing.assert_allclose(probabilities[0, 4], expected, atol=1e-6)
    np.testing.assert_allclose(probabilities[0, 6], np.eye(config.vocab_size)[9], atol=1e-6)  # segment 2 only
    vocabulary_only = np.exp(np.asarray(forward(model_lib.Transformer(CONFIG, rngs=nnx.Rngs(0)), tokens, None,
                                                segments)))
    vocabulary_only /= vocabulary_only.sum(-1, keepdims=True)
    np.testing.assert_allclose(probabilities[0, 5], vocabulary_only[0, 5], atol=1e-5)


def test_copy_follow_goes_on_from_where_the_pointer_copied():
    """a b c d a b c: with an even fresh lookup, position 4 (the second a) has no copy to follow
    (nothing before a at 0); at 5, the weight 1/4 that 4 put on position 0 copied b, the token 5
    holds, so following goes on to position 1 and copies c; at 6, from there, d. A follow share of
    one (bias 60) makes it exact; a share of zero leaves the even lookup."""
    config = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, copy_head=True, copy_follow=True)
    model = model_lib.Transformer(config, rngs=nnx.Rngs(0))
    tokens = jnp.array([[10, 11, 12, 13, 10, 11, 12]])
    model.copy_query_DxC[...] = jnp.zeros_like(model.copy_query_DxC[...])
    model.copy_gate_bias_1[...] = jnp.full((1,), -60.0)
    model.follow_bias_1[...] = jnp.full((1,), 60.0)
    probabilities = np.exp(np.asarray(forward(model, tokens)))[0]
    np.testing.assert_allclose(probabilities[4, [11, 12, 13, 10]], 0.25, atol=1e-6)
    np.testing.assert_allclose(probabilities[5, 12], 1.0, atol=1e-6)
    np.testing.assert_allclose(probabilities[6, 13], 1.0, atol=1e-6)
    model.follow_bias_1[...] = jnp.full((1,), -60.0)
    probabilities = np.exp(np.asarray(forward(model, tokens)))[0]
    # 5 sees 0-4, whose next tokens are b c d a b.
    np.testing.assert_allclose(probabilities[5, [11, 12, 13, 10]], [0.4, 0.2, 0.2, 0.2], atol=1e-6)
    # The confidence prior: at 5 the mass to follow is 1/4, so the share is sigmoid(2 + log 1/4).
    prior = model_lib.ModelConfig.from_mapping(config.__dict__, copy_follow_init_confidence=1.0,
                                               copy_follow_init_bias=2.0)
    model = model_lib.Transformer(prior, rngs=nnx.Rngs(0))
    model.copy_query_DxC[...] = jnp.zeros_like(model.copy_query_DxC[...])
    model.copy_gate_bias_1[...] = jnp.full((1,), -60.0)
    probabilities = np.exp(np.asarray(forward(model, tokens)))[0]
    share = 1 / (1 + math.exp(-(2 + math.log(0.25))))
    np.testing.assert_allclose(probabilities[5, [11, 12, 13, 10]],
                               [(1 - share) * 0.4, share + (1 - share) * 0.2, (1 - share) * 0.2, (1 - share) * 0.2],
                               atol=1e-6)
    with pytest.raises(ValueError, match="copy_follow needs copy_head"):
        model_lib.ModelConfig.from_mapping(CONFIG.__dict__, copy_follow=True)


def test_copy_head_lets_one_layer_copy_a_repeated_sequence():
    """Induction takes a plain transformer two layers; with the pointer, one layer copies the
    second occurrence of 8 distinct tokens, repeated after 0-8 filler tokens (so no fixed offset
    finds them), after a few hundred steps."""
    import optax

    def batch(seed):
        rng = np.random.default_rng(seed)
        tokens_BxT = rng.integers(48, 64, size=(32, 25))  # filler
        weights_BxT = np.zeros((32, 24), np.float32)
        for row in range(32):
            half, gap = rng.permutation(48)[:8], rng.integers(0, 9)
            tokens_BxT[row, :8] = tokens_BxT[row, 8 + gap:16 + gap] = half
            weights_BxT[row, 8 + gap:15 + gap] = 1  # predicting the repeat's 2nd to 8th token
        return jnp.asarray(tokens_BxT), jnp.asarray(weights_BxT)

    def accuracy_after_training(copy_head):
        config = model_lib.ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64,
                                       max_len=32, copy_head=copy_head)
        graphdef, params = nnx.split(model_lib.Transformer(config, rngs=nnx.Rngs(0)))
        tx = optax.adam(1e-2)

        def loss(params, tokens_BxT, weights_BxT):
            logits = nnx.merge(graphdef, params)(tokens_BxT[:, :-1])
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, tokens_BxT[:, 1:])
            return jnp.sum(ce * weights_BxT) / jnp.sum(weights_BxT)

        @jax.jit
        def step(params, opt_state, tokens_BxT, weights_BxT):
            grads = jax.grad(loss)(params, tokens_BxT, weights_BxT)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        opt_state = tx.init(params)
        for seed in range(300):
            params, opt_state = step(params, opt_state, *batch(seed))
        tokens_BxT, weights_BxT = batch(10_000)
        right_BxT = nnx.merge(graphdef, params)(tokens_BxT[:, :-1]).argmax(-1) == tokens_BxT[:, 1:]
        return float(jnp.sum(right_BxT * weights_BxT) / jnp.sum(weights_BxT))

    with_pointer, without = accuracy_after_training(copy_head=True), accuracy_after_training(copy_head=False)
    print(f"copied right: {with_pointer:.3f} with the pointer, {without:.3f} without")
    assert with_pointer > 0.95 and without < 0.5


def test_follow_pointer_gradient_stays_finite_when_the_followed_weight_is_tiny():
    """The weight followed at step 1 is 3e-20 (above the 1e-20 floor): normalising it in log space
    is exact, and its gradient stays finite (in linear space, 1 / mass² overflowed float32)."""
    log_fresh_BxTxS = jnp.log(jnp.array([[[3e-20, 1.0, 1e-38], [0.5, 0.25, 0.25]]]))
    matches_BxTxS = jnp.array([[[False, False, False], [False, True, False]]])

    def loss(log_fresh_BxTxS, follow_logit_BxT):
        weights_BxTxS, _ = model_lib.follow_pointer(log_fresh_BxTxS, matches_BxTxS, follow_logit_BxT, 0.0,
                                                    jnp.ones((1, 2), bool), jnp.zeros((1, 3)))
        return -jnp.log(weights_BxTxS[0, 1, 1])

    grads = jax.grad(loss, argnums=(0, 1))(log_fresh_BxTxS, jnp.zeros((1, 2)))
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)
    # Step 1's loss reaches step 0's lookup: with confidence 1 the share of following is
    # sigmoid(log w_0(0)) = 1/3 for w_0(0) = 0.5, and d loss / d log w_0(0) = -1/3.
    def loss_at_half(log_fresh_BxTxS):
        weights_BxTxS, _ = model_lib.follow_pointer(log_fresh_BxTxS, matches_BxTxS, jnp.zeros((1, 2)), 1.0,
                                                    jnp.ones((1, 2), bool), jnp.zeros((1, 3)))
        return -jnp.log(weights_BxTxS[0, 1, 1])

    half_BxTxS = jnp.log(jnp.array([[[0.5, 0.5, 1e-38], [0.5, 0.25, 0.25]]]))
    np.testing.assert_allclose(jax.grad(loss_at_half)(half_BxTxS)[0, 0, 0], -1 / 3, rtol=1e-5)
    weights_BxTxS, last_BxS = model_lib.follow_pointer(log_fresh_BxTxS, matches_BxTxS, jnp.zeros((1, 2)), 0.0,
                                                       jnp.ones((1, 2), bool), jnp.zeros((1, 3)))
    np.testing.assert_allclose(weights_BxTxS[0, 1], [0.25, 0.625, 0.125], rtol=1e-5)  # half fresh, half followed
    np.testing.assert_allclose(last_BxS, weights_BxTxS[:, 1])
