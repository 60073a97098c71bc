"""GPU only (`TWJAX_TEST_ACCELERATOR=1 JAX_PLATFORMS=cuda pytest tests/test_gpu.py`, as
tools/gpu_bench.sh runs it): cuDNN's fused attention computes what the chunked attention computes,
and decoding with either KV-cache key layout computes what the full forward pass does."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from decoding_check import assert_decoding_equals_full_forward
from twjax import model as model_lib

pytestmark = pytest.mark.gpu

SHAPE = dict(vocab_size=1024, d_model=256, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=512, max_len=512)


def relative_error(x, reference) -> float:
    x, reference = np.asarray(x, np.float64), np.asarray(reference, np.float64)
    return float(np.linalg.norm(x - reference) / np.linalg.norm(reference))


def test_cudnn_attention_matches_a_float32_reference_as_closely_as_bfloat16_chunked():
    rows, length = 4, 512
    tokens = jax.random.randint(jax.random.key(1), (rows, length), 0, SHAPE["vocab_size"])
    # Two packed episodes per row, the border at a different place in each row, then padding.
    borders = np.array([100, 257, 300, 511])
    index = np.arange(length)
    segments = np.where(index < borders[:, None], 1, 2)
    segments[:, -7:] = 0
    positions = np.where(segments == 2, index - borders[:, None], index)
    weights = jax.random.normal(jax.random.key(2), (rows, length, SHAPE["vocab_size"]))

    def logits_and_grads(dtype, attention):
        config = model_lib.ModelConfig(**SHAPE, dtype=dtype, attention=attention)
        model = model_lib.Transformer(config, rngs=nnx.Rngs(0))
        loss = lambda m: jnp.sum(m(tokens, positions, segments) * weights)
        grads = nnx.jit(nnx.grad(loss))(model)
        logits = nnx.jit(lambda m: m(tokens, positions, segments))(model)
        return logits, jax.tree.leaves(grads)

    with jax.default_matmul_precision("highest"):
        reference_logits, reference_grads = logits_and_grads("float32", "chunked")
    chunked_logits, chunked_grads = logits_and_grads("bfloat16", "chunked")
    cudnn_logits, cudnn_grads = logits_and_grads("bfloat16", "cudnn")
    assert np.isfinite(np.asarray(cudnn_logits)).all()
    chunked_error = relative_error(chunked_logits, reference_logits)
    cudnn_error = relative_error(cudnn_logits, reference_logits)
    print(f"logits: bf16 chunked {chunked_error:.2e}, bf16 cudnn {cudnn_error:.2e}")
    assert cudnn_error < 2 * chunked_error + 1e-3
    for cudnn, chunked, reference in zip(cudnn_grads, chunked_grads, reference_grads):
        chunked_error, cudnn_error = relative_error(chunked, reference), relative_error(cudnn, reference)
        assert cudnn_error < 2 * chunked_error + 1e-3, (cudnn_error, chunked_error)


@pytest.mark.parametrize("key_layout", ["slot_major", "head_dim_major"])
def test_decoding_with_either_key_layout_equals_the_full_forward_pass(key_layout):
    config = model_lib.ModelConfig(**SHAPE)  # float32
    model = model_lib.Transformer(config, rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(3), (3, 40), 0, SHAPE["vocab_size"])
    with jax.default_matmul_precision("highest"):
        cache = model_lib.init_cache(config, 3, 64, key_layout=key_layout)
        # Ragged rows; the last never gets a token.
        assert_decoding_equals_full_forward(model, tokens, np.array([40, 17, 0]), cache, tolerance=1e-3)
