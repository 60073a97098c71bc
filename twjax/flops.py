"""Model FLOPs per token and a measured peak, for MFU.

Counting (PaLM appendix B convention, causal attention counted at its useful half):
  N = parameters that take part in matmuls: everything but the input embedding table (a gather).
  training, per token:  6·N + 6·n_layers·T·d_model        (T = sequence length)
  decoding, per token:  2·N + 4·n_layers·C·d_model        (C = context length attended)
The attention term is QKᵀ and AV (2·2·d FLOPs per attended key, forward), averaged over the causal
triangle (T/2 keys), times 3 for forward + backward. The implementation computes the full masked
T×T scores, so real FLOPs are higher than the model FLOPs counted here; MFU reports useful work.

The peak is measured, not taken from a datasheet: one large jitted matmul per device (float32 on
CPU, bfloat16 on TPU/GPU), timed in the calling process, so MFU compares with what this machine,
under its current load, actually delivers.
"""
import math
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from twjax.model import ModelConfig


def matmul_params(config: ModelConfig) -> int:
    d, f, n, k, h = config.d_model, config.d_ff, config.n_heads, config.n_kv_heads, config.head_dim
    per_layer = d * n * h + 2 * d * k * h + n * h * d + 3 * d * f
    copy_head = 2 * d * h + d + 1 if config.copy_head else 0  # its query, key and gate
    copy_head += d + 2 if config.copy_follow else 0  # the follow gate, its bias and confidence
    return config.n_layers * per_layer + d * config.vocab_size + copy_head


def total_params(config: ModelConfig) -> int:
    """All parameters (norm scales, key-smearing mixes and the input embeddings included)."""
    smear = config.n_layers * config.n_kv_heads if config.smeared_keys else 0
    embeddings = (config.vocab_size + 2 * config.line_embeddings) * config.d_model  # tokens, lines, columns
    return matmul_params(config) + embeddings + (2 * config.n_layers + 1) * config.d_model + smear


def pointer_width(config: ModelConfig) -> int:
    """The copy head's attention: QKᵀ only (2·C FLOPs per key), its values are a scatter."""
    return config.head_dim // 2 if config.copy_head else 0


def train_flops_per_token(config: ModelConfig, seq_len: int) -> float:
    return 6.0 * matmul_params(config) + 6.0 * seq_len * (config.n_layers * config.d_model + pointer_width(config))


def decode_flops_per_token(config: ModelConfig, context_len: int) -> float:
    return 2.0 * matmul_params(config) + 4.0 * context_len * (config.n_layers * config.d_model + pointer_width(config))


def default_peak_dtype() -> jnp.dtype:
    return jnp.dtype(jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16)


def measure_peak_flops(size: int = 4096, dtype=None, repeats: int = 3, min_seconds: float = 0.02) -> float:
    """FLOP/s of back-to-back size×size matmuls on every device at once (best of `repeats`).

    The chain of dependent products doubles until one call takes `min_seconds`: a single 4096²
    bfloat16 product takes ~0.2 ms on an H100-class GPU, where dispatch would halve the figure.
    """
    dtype = default_peak_dtype() if dtype is None else jnp.dtype(dtype)
    devices = jax.devices()
    mesh = jax.sharding.Mesh(devices, ("d",))
    placement = NamedSharding(mesh, P("d"))
    keys = jax.random.split(jax.random.key(0), 2)
    a = jax.device_put(jax.random.normal(keys[0], (len(devices), size, size), dtype) / size ** 0.5, placement)
    b = jax.device_put(jax.random.normal(keys[1], (len(devices), size, size), dtype) / size ** 0.5, placement)

    def best_seconds(chain: int) -> float:
        @jax.jit
        def matmuls(a, b):
            for _ in range(chain):  # dependent products: no call overhead between them, no dead code
                a = jnp.einsum("nij,njk->nik", a, b, preferred_element_type=dtype)
            return a

        matmuls(a, b).block_until_ready()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            matmuls(a, b).block_until_ready()
            best = min(best, time.perf_counter() - start)
        return best

    chain = 1
    seconds = best_seconds(chain)
    while seconds < min_seconds and chain < 1024:
        # Straight to the power of two the last timing predicts, not one doubling (one compile) at
        # a time; dispatch inflates short timings, so the prediction may fall short and go again.
        chain = min(1024, chain * 2 ** math.ceil(math.log2(min_seconds / seconds)))
        seconds = best_seconds(chain)
    return chain * 2.0 * size ** 3 * len(devices) / seconds
