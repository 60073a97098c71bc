"""Decoder-only transformer (RoPE, RMSNorm, SwiGLU, grouped-query attention) with a KV cache.

Every parameter carries logical axis names in its `out_sharding` metadata (created with
`eager_sharding=False`, so building a model never needs a mesh); twjax.sharding maps them to mesh
axes through a rules table. Key activations are constrained the same way when a mesh is active
(`sharding.constrain`, a no-op otherwise).

Dtype policy: parameters are float32; matmuls run in `config.dtype` ("float32" on CPU,
"bfloat16" on TPU/GPU, "auto" picks by backend); norms, softmax and logits are float32.

Attention is segment-aware: in the training forward pass a token attends only to earlier tokens
of its own segment (packed sequences; segment 0 is padding and attends only to padding), so a
packed row computes exactly what its sequences would compute alone.

KV cache layout (`KVCache`): one pair of arrays per layer, keys and values alike as [batch,
kv_heads, slots, head_dim] ("slot_major"), a per-row fill length `end_B`, and the key at slot s
was computed at position s. A decode step writes one token of each row with a contiguous scatter
and reads, for each (row, KV head), one contiguous slots x head_dim slab of each, which all the
query heads of that group consume in one small matmul each ([G, H] x [S, H]^T, then [G, S] x
[S, H]): GQA's saving in cache reads is real, not a strided gather. With both sides in one stacked
[layers, ...] array, `twjax bench ops --step rollout` showed every decode step on the CPU copying
each layer's slab out of the stack and transposing its keys: 16 copies of 47 MB a step (both
models, batch 1024); one array pair per layer removed them (`twjax bench rollout --sim-only` 112.8
-> 159.8 turns/s, keys then stored [head_dim, slots]). Keys stored [head_dim, slots]
("head_dim_major", kept for comparison) cost a GPU a strided scatter per layer (0.295 ms at batch
65,536 on an H200, profiled): the tiny rollout at batch 131,072 ran 130,926 turns/s slot-major
against 100,961 (`tools/gpu_bench.sh`); on the CPU the two are within noise (165-170 against
164-165 turns/s, `bench rollout --sim-only --key-layout ...`). The batch axis is outermost, so the
cache shards over the mesh's batch axes like the activations; large-batch decoding (B >= 1024)
does its weight matmuls as [B, D] x [D, F] (compute-bound). The cache dtype defaults to the
compute dtype; `init_cache(..., dtype="bfloat16")` halves its memory on any backend.
"""
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from twjax import sharding

NEG_INF = -1e30
ATTENTION_IMPLEMENTATIONS = ("auto", "chunked", "xla", "cudnn")
# A cache array's logical axes say everything about its layout: its shape (init_cache), the einsum
# that reads it (Attention.attend), where a decode step writes (forward_cached) and its sharding.
VALUE_CACHE_AXES = ("batch", "kv_heads", "cache_length", "head_dim")
KEY_CACHE_AXES = {"slot_major": VALUE_CACHE_AXES, "head_dim_major": ("batch", "kv_heads", "head_dim", "cache_length")}
KEY_LAYOUTS = tuple(KEY_CACHE_AXES)
CACHE_AXIS_LETTERS = {"batch": "b", "kv_heads": "k", "cache_length": "s", "head_dim": "h"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    max_len: int
    rope_theta: float = 10_000.0
    attention_chunk: int = 128  # training attention in query chunks of this length (0: one chunk)
    # Training attention: "chunked" (this module's matmuls, above) or jax.nn.dot_product_attention
    # with implementation "xla" or "cudnn" (fused flash attention on NVIDIA GPUs, bfloat16 only);
    # "auto" is "cudnn" on a GPU in bfloat16 (twice the base100m step's MFU on an H200, README
    # "Measured results"), "chunked" elsewhere.
    attention: str = "auto"
    dtype: str = "float32"  # compute dtype: float32 | bfloat16 | auto (bfloat16 on TPU/GPU)
    smeared_keys: bool = False  # each key mixes in the previous token's key (learned, per KV head)
    # > 0: learned embeddings of each token's line and column (line_columns), that many of each
    # (larger indices share the last), added to the token embedding. The token ids that break
    # lines and reset the count come from the tokenizer (train.resolve_config).
    line_embeddings: int = 0
    newline_id: int = -1
    line_reset_ids: tuple[int, ...] = ()
    # A pointer over the context beside the vocabulary (copy_mixture): the next token is drawn from
    # a learned mix of the softmax over the vocabulary and of copies of the token after each
    # earlier position, weighted by one attention head over the final hidden states.
    copy_head: bool = False
    # The pointer follows its own copy (follow_pointer, copy_head only): where the previous step's
    # pointer put weight on a position whose token was the one written, the next step may go on to
    # the position after it, a learned share beside a fresh lookup.
    copy_follow: bool = False
    # The follow share's initial logit is bias + confidence · log(the previous pointer's mass on
    # matching positions). Both zero: half of every step follows any match, however faint. The
    # prior (1, 2) follows a sure copy with share 0.88 and a faint one (mass 1e-3) with 0.007.
    copy_follow_init_confidence: float = 0.0
    copy_follow_init_bias: float = 0.0

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {self.vocab_size}")
        if self.attention not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"unknown attention {self.attention!r}; use {', '.join(ATTENTION_IMPLEMENTATIONS)}")
        # A checkpoint's config comes back from JSON with a list; the graph needs it hashable.
        object.__setattr__(self, "line_reset_ids", tuple(int(i) for i in self.line_reset_ids))
        if self.line_embeddings < 0:
            raise ValueError(f"line_embeddings must be >= 0, got {self.line_embeddings}")
        if self.copy_follow and not self.copy_head:
            raise ValueError("copy_follow needs copy_head: it is the copy head's pointer that follows")
        if self.line_embeddings and not 0 <= self.newline_id < self.vocab_size:
            raise ValueError(f"line_embeddings needs the tokenizer's newline id, got newline_id {self.newline_id}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def compute_dtype(self) -> jnp.dtype:
        return resolve_dtype(self.dtype)

    @property
    def attention_implementation(self) -> str:
        if self.attention != "auto":
            return self.attention
        fused = jax.default_backend() == "gpu" and self.compute_dtype == jnp.bfloat16
        return "cudnn" if fused else "chunked"

    @classmethod
    def from_mapping(cls, mapping: Any, **overrides) -> "ModelConfig":
        """From a dict or ml_collections.ConfigDict; keys that are not fields are ignored."""
        values = dict(mapping.items()) if hasattr(mapping, "items") else dict(mapping)
        values.update(overrides)
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def resolve_dtype(name: str) -> jnp.dtype:
    if name == "auto":
        return jnp.dtype(jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16)
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"unknown dtype {name!r}; use float32, bfloat16 or auto")
    return jnp.dtype(name)


def param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str, ...], stddev: float) -> nnx.Param:
    value = jax.random.normal(rngs.params(), shape, jnp.float32) * stddev
    return nnx.Param(value, out_sharding=axes, eager_sharding=False)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32), out_sharding=("norm",), eager_sharding=False)
        self.eps = eps

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        x = x_BxTxD.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return (x * self.scale[...]).astype(x_BxTxD.dtype)


def rope(x_BxNxTxH: jax.Array, positions_BxT: jax.Array, theta: float) -> jax.Array:
    half = x_BxNxTxH.shape[-1] // 2
    inv_freq_F = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles_Bx1xTxF = (positions_BxT.astype(jnp.float32)[..., None] * inv_freq_F)[:, None]
    sin, cos = jnp.sin(angles_Bx1xTxF), jnp.cos(angles_Bx1xTxF)
    x = x_BxNxTxH.astype(jnp.float32)
    x1, x2 = x[..., :half], x[..., half:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxNxTxH.dtype)


def line_columns(tokens_BxT: jax.Array, starts_BxT: jax.Array, config: ModelConfig,
                 line_B: jax.Array, column_B: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(line_BxT, column_BxT): each token's line, the newlines since the latest reset (a token of
    `config.line_reset_ids`, or where `starts_BxT` is set: a segment's first token), and its column,
    the tokens since that reset or the latest newline (a newline ends its line; a reset token is
    line 0, column 0). Before any reset or newline in the chunk the count goes on from `line_B`
    and `column_B`, the first token's line and column.

    Why: a names column (`ls` after `ls -l`) writes the name of the listing's line k+1 after that
    of line k, behind a prefix of varying length; with no notion of lines, that takes a two-hop
    circuit that the tiny model never learns (README, "The names column"), while a token's line
    and column make "the name on the line after the one just copied" addressable by position.
    (The warm-ups there learn it where the names column and the listing align, each counted from
    its `<out>`, as data.copy_sessions shapes them; not on selections that start at any line.)
    """
    t = tokens_BxT.shape[1]
    index_1xT = jnp.arange(t, dtype=jnp.int32)[None]
    is_newline_BxT = tokens_BxT == config.newline_id
    is_reset_BxT = starts_BxT | jnp.isin(tokens_BxT, jnp.asarray(config.line_reset_ids, jnp.int32))
    newlines_before_BxT = jnp.cumsum(is_newline_BxT, axis=1, dtype=jnp.int32) - is_newline_BxT
    reset_at_BxT = jax.lax.cummax(jnp.where(is_reset_BxT, index_1xT, -1), axis=1)
    newlines_at_reset_BxT = jnp.take_along_axis(newlines_before_BxT, jnp.maximum(reset_at_BxT, 0), axis=1)
    line_BxT = jnp.where(reset_at_BxT >= 0, newlines_before_BxT - newlines_at_reset_BxT,
                         line_B[:, None] + newlines_before_BxT)
    newline_at_BxT = jax.lax.cummax(jnp.where(is_newline_BxT, index_1xT, -1), axis=1)
    line_start_BxT = jnp.maximum(reset_at_BxT, jnp.pad(newline_at_BxT[:, :-1], ((0, 0), (1, 0)), constant_values=-1) + 1)
    column_BxT = jnp.where(line_start_BxT > 0, index_1xT - line_start_BxT,
                           jnp.where(reset_at_BxT == 0, index_1xT, column_B[:, None] + index_1xT))
    return line_BxT, column_BxT


class Attention(nnx.Module):
    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        d, n, k, h = config.d_model, config.n_heads, config.n_kv_heads, config.head_dim
        self.config = config
        self.wq_DxNxH = param(rngs, (d, n, h), ("embed", "heads", "head_dim"), d ** -0.5)
        self.wk_DxKxH = param(rngs, (d, k, h), ("embed", "kv_heads", "head_dim"), d ** -0.5)
        self.wv_DxKxH = param(rngs, (d, k, h), ("embed", "kv_heads", "head_dim"), d ** -0.5)
        self.wo_NxHxD = param(rngs, (n, h, d), ("heads", "head_dim", "embed"),
                              (n * h) ** -0.5 / (2 * config.n_layers) ** 0.5)
        if config.smeared_keys:
            # sigmoid(0) = 0.5: each key starts as the mean of its own and its predecessor's.
            self.key_mix_K = nnx.Param(jnp.zeros((k,), jnp.float32), out_sharding=("kv_heads",), eager_sharding=False)

    def project(self, x_BxTxD: jax.Array, positions_BxT: jax.Array, previous_fn=None):
        """Head-major queries [B,N,T,H] and keys/values [B,K,T,H], RoPE applied to queries and keys.

        With smeared keys, `previous_fn(k_BxKxTxH)` gives each position's predecessor key (before
        RoPE; zero at a segment's first token) and the key becomes a learned mix of the two, so a
        query can match "the token before me was X" in one layer: the induction step that a plain
        transformer has to build from a previous-token head and a second layer (Olsson et al.
        2022, "In-context learning and induction heads", smeared keys).

        Head-major because the score and mix matmuls then batch over (B, heads) with no transposes:
        on CPU this made the training step ~25% faster than [B,T,N,H] (measured, tiny d=256 T=1024).
        """
        dtype, theta = x_BxTxD.dtype, self.config.rope_theta
        b, t, d = x_BxTxD.shape
        x_MxD = x_BxTxD.reshape(b * t, d)

        def heads(w_DxNxH):
            n, h = w_DxNxH.shape[1:]
            y_MxNH = x_MxD @ w_DxNxH[...].astype(dtype).reshape(d, n * h)
            return y_MxNH.reshape(b, t, n, h).transpose(0, 2, 1, 3)

        q, k, v = heads(self.wq_DxNxH), heads(self.wk_DxKxH), heads(self.wv_DxKxH)
        q = sharding.constrain(q, ("batch", "heads", "length", "head_dim"))
        if self.config.smeared_keys:
            mix_1xKx1x1 = jax.nn.sigmoid(self.key_mix_K[...]).astype(dtype)[None, :, None, None]
            k = mix_1xKx1x1 * k + (1 - mix_1xKx1x1) * previous_fn(k)
        return rope(q, positions_BxT, theta), rope(k, positions_BxT, theta), v

    def attend(self, q_BxNxTxH, keys, v_BxKxSxH, bias_BxTxS, *, key_layout: str) -> jax.Array:
        """`bias_BxTxS` is 0 where a query may attend to a key and NEG_INF elsewhere.

        Keys come as [B, K, H, S] ("head_dim_major") or [B, K, S, H] ("slot_major"), and the query
        heads of a group are folded into the query axis, so both products are plain [M, H] x [H, S]
        and [M, S] x [S, H] matmuls per (row, KV head).
        """
        b, n, t, h = q_BxNxTxH.shape
        kv, s = v_BxKxSxH.shape[1], v_BxKxSxH.shape[2]
        g = n // kv
        dtype = q_BxNxTxH.dtype
        q_BxKxMxH = q_BxNxTxH.reshape(b, kv, g * t, h) * jnp.asarray(h ** -0.5, dtype)
        key_spec = "".join(CACHE_AXIS_LETTERS[axis] for axis in KEY_CACHE_AXES[key_layout])
        scores_BxKxMxS = jnp.einsum(f"bkmh,{key_spec}->bkms", q_BxKxMxH, keys.astype(dtype),
                                    preferred_element_type=jnp.float32)
        scores_BxKxGxTxS = scores_BxKxMxS.reshape(b, kv, g, t, s) + bias_BxTxS[:, None, None]
        # Softmax normalised after the mix, as flash attention does: the division then touches
        # [M, H] outputs instead of [M, S] probabilities, and the max (softmax is invariant to
        # it) needs no gradient.
        max_BxKxGxTx1 = jax.lax.stop_gradient(scores_BxKxGxTxS.max(axis=-1, keepdims=True))
        weights_BxKxGxTxS = jnp.exp(scores_BxKxGxTxS - max_BxKxGxTx1)
        inverse_sum_BxKxMx1 = (1.0 / weights_BxKxGxTxS.sum(axis=-1, keepdims=True)).reshape(b, kv, g * t, 1)
        mixed_BxKxMxH = jnp.einsum("bkms,bksh->bkmh", weights_BxKxGxTxS.astype(dtype).reshape(b, kv, g * t, s),
                                   v_BxKxSxH.astype(dtype), preferred_element_type=jnp.float32)
        out_BxKxMxH = (mixed_BxKxMxH * inverse_sum_BxKxMx1).astype(dtype)
        return self.output(out_BxKxMxH.reshape(b, n, t, h).transpose(0, 2, 1, 3))

    def attend_fused(self, q_BxNxTxH, k_BxKxTxH, v_BxKxTxH, mask_Bx1xTxT, implementation: str) -> jax.Array:
        """Causal attention within `mask_Bx1xTxT` through jax.nn.dot_product_attention, which
        never materialises the scores with implementation="cudnn" (flash attention: the [T, T]
        score traffic of the chunked path is what bounds a long-sequence step on a GPU)."""
        def token_major(x_BxNxTxH):
            return x_BxNxTxH.transpose(0, 2, 1, 3)

        out_BxTxNxH = jax.nn.dot_product_attention(
            token_major(q_BxNxTxH), token_major(k_BxKxTxH), token_major(v_BxKxTxH), mask=mask_Bx1xTxT,
            is_causal=True, implementation=implementation)
        return self.output(out_BxTxNxH)

    def output(self, out_BxTxNxH: jax.Array) -> jax.Array:
        b, t, n, h = out_BxTxNxH.shape
        wo_NHxD = self.wo_NxHxD[...].astype(out_BxTxNxH.dtype).reshape(n * h, -1)
        return (out_BxTxNxH.reshape(b * t, n * h) @ wo_NHxD).reshape(b, t, -1)


class MLP(nnx.Module):
    """SwiGLU."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        d, f = config.d_model, config.d_ff
        self.w_gate_DxF = param(rngs, (d, f), ("embed", "mlp"), d ** -0.5)
        self.w_up_DxF = param(rngs, (d, f), ("embed", "mlp"), d ** -0.5)
        self.w_down_FxD = param(rngs, (f, d), ("mlp", "embed"), f ** -0.5 / (2 * config.n_layers) ** 0.5)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        # Tokens flattened to one axis: XLA:CPU fuses SwiGLU's backward into 2-D matmuls without the
        # transposed copies it makes for 3-D ones (the MLP's gradient ran 2.2x faster, tiny shape).
        b, t, d = x_BxTxD.shape
        dtype = x_BxTxD.dtype
        x_MxD = x_BxTxD.reshape(b * t, d)
        gate_MxF = x_MxD @ self.w_gate_DxF[...].astype(dtype)
        up_MxF = x_MxD @ self.w_up_DxF[...].astype(dtype)
        hidden_MxF = sharding.constrain(jax.nn.silu(gate_MxF) * up_MxF, ("batch", "mlp"))
        return (hidden_MxF @ self.w_down_FxD[...].astype(dtype)).reshape(b, t, d)


class Block(nnx.Module):
    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(config.d_model)
        self.attn = Attention(config, rngs)
        self.mlp_norm = RMSNorm(config.d_model)
        self.mlp = MLP(config, rngs)

    def __call__(self, x_BxTxD, positions_BxT, attend_fn, previous_fn=None):
        """`attend_fn(q, k, v) -> attention output [B,T,D]` hides where keys and values live;
        `previous_fn` (smeared keys) where the previous token's key comes from."""
        q, k, v = self.attn.project(self.attn_norm(x_BxTxD), positions_BxT, previous_fn)
        x_BxTxD = x_BxTxD + attend_fn(q, k, v)
        x_BxTxD = sharding.constrain(x_BxTxD, ("batch", "length", "embed"))
        x_BxTxD = x_BxTxD + self.mlp(self.mlp_norm(x_BxTxD))
        return sharding.constrain(x_BxTxD, ("batch", "length", "embed"))


@struct.dataclass
class KVCache:
    keys: tuple[jax.Array, ...]  # one array per layer: [B, K, H, S] or [B, K, S, H], by key_layout
    values_BxKxSxH: tuple[jax.Array, ...]  # one array per layer
    end_B: jax.Array  # int32: slots filled per row; the next token of row b goes to slot end_B[b]
    # Smeared keys only (else empty): per layer, the newest token's key before smearing and RoPE.
    last_keys_BxKxH: tuple[jax.Array, ...] = ()
    # Line embeddings only (else None): the line and column of row b's next token (line_columns).
    line_B: jax.Array | None = None
    column_B: jax.Array | None = None
    # Copy head only (else None): each slot's pointer key and token.
    copy_keys_BxSxC: jax.Array | None = None
    tokens_BxS: jax.Array | None = None
    # copy_follow only (else None): the newest token's pointer weights over the slots (float32).
    pointer_BxS: jax.Array | None = None
    key_layout: str = struct.field(pytree_node=False, default="slot_major")

    @property
    def max_len(self) -> int:
        return self.values_BxKxSxH[0].shape[2]


LAST_KEY_AXES = ("batch", "kv_heads", "head_dim")
COPY_KEY_AXES = ("batch", "cache_length", "head_dim")
SLOT_TOKEN_AXES = ("batch", "cache_length")


def init_cache(config: ModelConfig, batch: int, max_len: int, dtype: str | None = None,
               key_layout: str = "slot_major") -> KVCache:
    """An empty cache; `dtype` defaults to the compute dtype ("bfloat16" halves its memory)."""
    if key_layout not in KEY_LAYOUTS:
        raise ValueError(f"unknown key layout {key_layout!r}; choose one of {', '.join(KEY_LAYOUTS)}")
    cache_dtype = config.compute_dtype if dtype is None else resolve_dtype(dtype)
    sizes = {"batch": batch, "kv_heads": config.n_kv_heads, "cache_length": max_len, "head_dim": config.head_dim}
    keys_shape = tuple(sizes[axis] for axis in KEY_CACHE_AXES[key_layout])
    values_shape = tuple(sizes[axis] for axis in VALUE_CACHE_AXES)
    last_keys = tuple(jnp.zeros((batch, config.n_kv_heads, config.head_dim), config.compute_dtype)
                      for _ in range(config.n_layers) if config.smeared_keys)
    # Two arrays, not one twice: the decode loop donates the cache, and a buffer can go once.
    line_B, column_B = (jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,), jnp.int32)) if config.line_embeddings \
        else (None, None)
    copy_keys, slot_tokens = ((jnp.zeros((batch, max_len, config.head_dim), cache_dtype),
                               jnp.zeros((batch, max_len), jnp.int32)) if config.copy_head else (None, None))
    pointer = jnp.zeros((batch, max_len), jnp.float32) if config.copy_follow else None
    return KVCache(tuple(jnp.zeros(keys_shape, cache_dtype) for _ in range(config.n_layers)),
                   tuple(jnp.zeros(values_shape, cache_dtype) for _ in range(config.n_layers)),
                   jnp.zeros((batch,), jnp.int32), last_keys, line_B, column_B, copy_keys, slot_tokens, pointer,
                   key_layout)


# The copy head's per-slot arrays, resized and written back with the layers' keys and values.
SLOT_ARRAYS = {"copy_keys_BxSxC": COPY_KEY_AXES, "tokens_BxS": SLOT_TOKEN_AXES, "pointer_BxS": SLOT_TOKEN_AXES}


def follow_pointer(log_fresh_BxTxS, matches_BxTxS, follow_logit_BxT, confidence, valid_BxT, pointer_BxS):
    """The copy head's pointer weights when it may follow its own copies, from the fresh lookup's
    log-weights -> (weights_BxTxS, the last valid step's weights_BxS, or `pointer_BxS` in a row with
    none).

    Weight w_{t-1}(s - 1) copied the token at s. If that is the token t holds (matches_BxTxS[t, s],
    visible positions only), step t may go on to s, which copies the token after it: follow_t(s) =
    w_{t-1}(s - 1) · matches[t, s], normalised, takes the share sigmoid(follow_logit_t + confidence ·
    log Σ_s follow_t(s)) of w_t, and the fresh lookup the rest (all of it where less than 1e-20
    matches). Why: a pointer that matches content alone loses its place in a run of lines (a line
    start such as a newline matches everywhere); following keeps it, as a reader's finger does. A
    scan over t, in log space: w_t depends on w_{t-1}, and the normalisation's gradient, 1 / Σ
    follow² in linear space, overflowed float32 (a 1,500-step terminal run went to NaN at step
    ~1,485, README); cut instead, it left that run's loss behind the copy head's."""
    def step(log_previous_BxS, inputs):
        log_fresh_BxS, matches_BxS, follow_logit_B, valid_B = inputs
        log_follow_BxS = jnp.where(matches_BxS, jnp.pad(log_previous_BxS[:, :-1], ((0, 0), (1, 0)),
                                                        constant_values=NEG_INF), NEG_INF)
        log_mass_Bx1 = jax.nn.logsumexp(log_follow_BxS, axis=-1, keepdims=True)
        some_Bx1 = log_mass_Bx1 > math.log(1e-20)
        share_logit_Bx1 = follow_logit_B[:, None] + confidence * jnp.where(some_Bx1, log_mass_Bx1, 0.0)
        log_weights_BxS = jnp.where(some_Bx1, jnp.logaddexp(jax.nn.log_sigmoid(-share_logit_Bx1) + log_fresh_BxS,
                                                            jax.nn.log_sigmoid(share_logit_Bx1)
                                                            + log_follow_BxS - log_mass_Bx1), log_fresh_BxS)
        return jnp.where(valid_B[:, None], log_weights_BxS, log_previous_BxS), log_weights_BxS

    time_major = (jnp.moveaxis(log_fresh_BxTxS, 1, 0), jnp.moveaxis(matches_BxTxS, 1, 0), follow_logit_BxT.T,
                  valid_BxT.T)
    log_pointer_BxS = jnp.where(pointer_BxS > 0, jnp.log(jnp.where(pointer_BxS > 0, pointer_BxS, 1.0)), NEG_INF)
    log_last_BxS, log_weights_TxBxS = jax.lax.scan(step, log_pointer_BxS, time_major)
    return jnp.exp(jnp.moveaxis(log_weights_TxBxS, 0, 1)), jnp.exp(log_last_BxS)


def resize_cache(cache: KVCache, max_len: int) -> KVCache:
    """The same cache with `max_len` slots: empty slots appended to every layer, or the last ones
    cut (the caller keeps every row's `end_B` within them)."""
    def resized(array, axes):
        axis = axes.index("cache_length")
        if max_len <= cache.max_len:
            return jax.lax.slice_in_dim(array, 0, max_len, axis=axis)
        return jnp.pad(array, [(0, max_len - cache.max_len if i == axis else 0) for i in range(array.ndim)])
    return cache.replace(keys=tuple(resized(k, KEY_CACHE_AXES[cache.key_layout]) for k in cache.keys),
                         values_BxKxSxH=tuple(resized(v, VALUE_CACHE_AXES) for v in cache.values_BxKxSxH),
                         **{name: resized(getattr(cache, name), axes) for name, axes in SLOT_ARRAYS.items()
                            if getattr(cache, name) is not None})


def with_first_slots(cache: KVCache, first: KVCache) -> KVCache:
    """`cache` with its first slots replaced by all of `first`'s, a smaller copy of it that went on
    decoding (and with `first`'s per-row state: fill lengths, newest keys, lines)."""
    def written(array, part, axes):
        return jax.lax.dynamic_update_slice_in_dim(array, part.astype(array.dtype), 0, axes.index("cache_length"))
    return first.replace(
        keys=tuple(written(k, p, KEY_CACHE_AXES[cache.key_layout]) for k, p in zip(cache.keys, first.keys)),
        values_BxKxSxH=tuple(written(v, p, VALUE_CACHE_AXES) for v, p in zip(cache.values_BxKxSxH, first.values_BxKxSxH)),
        **{name: written(getattr(cache, name), getattr(first, name), axes) for name, axes in SLOT_ARRAYS.items()
           if getattr(cache, name) is not None})


class Transformer(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embed_VxD = param(rngs, (config.vocab_size, config.d_model), ("vocab", "embed"), 1.0)
        self.blocks = nnx.List([Block(config, rngs) for _ in range(config.n_layers)])
        self.final_norm = RMSNorm(config.d_model)
        self.unembed_DxV = param(rngs, (config.d_model, config.vocab_size), ("embed", "vocab"),
                                 config.d_model ** -0.5)
        if config.line_embeddings:
            # Zero, and drawn last: at init the model is the one without them (same seed, same
            # function), so it can also start from such a model's weights (train.init_from). Drawn at
            # unit scale, as the token embeddings are, they kept a names-column warm-up from
            # forming even one-token induction in 1,110 steps (README, "The names column").
            self.line_embed_LxD = param(rngs, (config.line_embeddings, config.d_model), ("lines", "embed"), 0.0)
            self.column_embed_LxD = param(rngs, (config.line_embeddings, config.d_model), ("lines", "embed"), 0.0)
        if config.copy_head:
            d, c = config.d_model, config.head_dim
            self.copy_query_DxC = param(rngs, (d, c), ("embed", "head_dim"), d ** -0.5)
            self.copy_key_DxC = param(rngs, (d, c), ("embed", "head_dim"), d ** -0.5)
            # Zero: each next token starts as an even mix of the vocabulary's and the pointer's.
            self.copy_gate_D = param(rngs, (d,), ("norm",), 0.0)
            self.copy_gate_bias_1 = param(rngs, (1,), ("norm",), 0.0)
        if config.copy_follow:
            self.follow_gate_D = param(rngs, (config.d_model,), ("norm",), 0.0)
            self.follow_bias_1 = param(rngs, (1,), ("norm",), 0.0)
            self.follow_confidence_1 = param(rngs, (1,), ("norm",), 0.0)
            self.follow_bias_1[...] += config.copy_follow_init_bias
            self.follow_confidence_1[...] += config.copy_follow_init_confidence

    def embed(self, tokens_BxT: jax.Array, lines=None) -> jax.Array:
        """`lines`: (line_BxT, column_BxT) from line_columns, with line embeddings only."""
        # The tables are gathered whole (like any FSDP weight) so that the lookup with batch-sharded
        # tokens yields batch-sharded activations locally; a lookup into a sharded table makes
        # XLA replicate the [B, T, D] activations instead.
        def lookup(table):
            return sharding.constrain(table[...].astype(self.config.compute_dtype), (None, None))

        x_BxTxD = lookup(self.embed_VxD)[tokens_BxT]
        if self.config.line_embeddings:
            last = self.config.line_embeddings - 1
            line_BxT, column_BxT = lines
            x_BxTxD = (x_BxTxD + lookup(self.line_embed_LxD)[jnp.minimum(line_BxT, last)]
                       + lookup(self.column_embed_LxD)[jnp.minimum(column_BxT, last)])
        return sharding.constrain(x_BxTxD, ("batch", "length", "embed"))

    def logits(self, x_BxTxD: jax.Array, pointer=None) -> jax.Array:
        """float32 next-token logits. With the copy head, `pointer(copy_keys_BxTxC)` -> (keys_BxSxC,
        next_tokens_BxS, bias_BxTxS, follow) says what the pointer attends to (`follow(log_fresh_BxTxS,
        follow_logit_BxT, confidence)` -> its weights, with copy_follow), and the logits are the
        mixture's log-probabilities (copy_mixture)."""
        b, t, d = x_BxTxD.shape
        h_BxTxD = self.final_norm(x_BxTxD)
        logits_MxV = jnp.dot(h_BxTxD.reshape(b * t, d), self.unembed_DxV[...].astype(h_BxTxD.dtype),
                             preferred_element_type=jnp.float32)
        logits_BxTxV = sharding.constrain(logits_MxV.reshape(b, t, -1), ("batch", "length", "vocab"))
        if not self.config.copy_head:
            return logits_BxTxV
        copy_keys_BxTxC = h_BxTxD @ self.copy_key_DxC[...].astype(h_BxTxD.dtype)
        return self.copy_mixture(h_BxTxD, logits_BxTxV, *pointer(copy_keys_BxTxC))

    def copy_mixture(self, h_BxTxD, logits_BxTxV, keys_BxSxC, next_tokens_BxS, bias_BxTxS, follow) -> jax.Array:
        """log(p_vocab * softmax(logits) + (1 - p_vocab) * copy), copy putting each visible
        position's pointer weight on the token that followed it (a pointer-generator, See et al.
        2017, over a decoder's own context).

        Why: the learned terminal's outputs are mostly copies (listings, file contents), and a tiny
        transformer learns induction heads slowly and imprecisely; here, matching a position's
        state to an earlier one is one attention, and the copied token never passes through the
        vocabulary's projection. A query that sees no earlier position gets the vocabulary alone."""
        b, t, _ = h_BxTxD.shape
        c = keys_BxSxC.shape[-1]
        queries_BxTxC = h_BxTxD @ self.copy_query_DxC[...].astype(h_BxTxD.dtype)
        scores_BxTxS = jnp.einsum("btc,bsc->bts", queries_BxTxC, keys_BxSxC.astype(h_BxTxD.dtype),
                                  preferred_element_type=jnp.float32) * c ** -0.5 + bias_BxTxS
        sees_any_BxTx1 = jnp.any(bias_BxTxS == 0, axis=-1, keepdims=True)
        if self.config.copy_follow:
            follow_logit_BxT = h_BxTxD.astype(jnp.float32) @ self.follow_gate_D[...] + self.follow_bias_1[...]
            weights_BxTxS = follow(jax.nn.log_softmax(scores_BxTxS, axis=-1), follow_logit_BxT,
                                   self.follow_confidence_1[0])
        else:
            weights_BxTxS = jax.nn.softmax(scores_BxTxS, axis=-1)
        copy_BxTxV = jnp.zeros(logits_BxTxV.shape, jnp.float32).at[
            jnp.arange(b)[:, None, None], jnp.arange(t)[None, :, None], next_tokens_BxS[:, None, :]].add(weights_BxTxS)
        gate_BxTx1 = (h_BxTxD.astype(jnp.float32) @ self.copy_gate_D[...])[..., None] + self.copy_gate_bias_1[...]
        log_vocab_share_BxTx1 = jnp.where(sees_any_BxTx1, jax.nn.log_sigmoid(gate_BxTx1), 0.0)
        copy_share_BxTx1 = jnp.where(sees_any_BxTx1, jax.nn.sigmoid(-gate_BxTx1), 0.0)
        mixture_BxTxV = jnp.exp(log_vocab_share_BxTx1 + jax.nn.log_softmax(logits_BxTxV)) + copy_share_BxTx1 * copy_BxTxV
        # The floor keeps the log finite where both parts underflow (its gradient stays bounded).
        return jnp.log(mixture_BxTxV + 1e-30)

    def __call__(self, tokens_BxT: jax.Array, positions_BxT: jax.Array | None = None,
                 segment_ids_BxT: jax.Array | None = None) -> jax.Array:
        """Training / scoring forward pass -> float32 logits [B, T, V]."""
        b, t = tokens_BxT.shape
        if positions_BxT is None:
            positions_BxT = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        if segment_ids_BxT is None:
            segment_ids_BxT = jnp.ones((b, t), jnp.int32)
        causal_TxT = jnp.tril(jnp.ones((t, t), bool))
        mask_BxTxT = (segment_ids_BxT[:, :, None] == segment_ids_BxT[:, None, :]) & causal_TxT
        bias_BxTxT = jnp.where(mask_BxTxT, 0.0, NEG_INF).astype(jnp.float32)

        chunk = self.config.attention_chunk or t
        implementation = self.config.attention_implementation

        def attend_causal(q_BxNxTxH, k_BxKxTxH, v_BxKxTxH, block):
            if implementation != "chunked":
                return block.attn.attend_fused(q_BxNxTxH, k_BxKxTxH, v_BxKxTxH, mask_BxTxT[:, None],
                                               implementation)
            # The queries of chunk [start, stop) see no key at or past `stop`: those scores (up to
            # half of T x T) are never computed.
            kt_BxKxHxT = k_BxKxTxH.transpose(0, 1, 3, 2)
            return jnp.concatenate([
                block.attn.attend(q_BxNxTxH[:, :, start:start + chunk], kt_BxKxHxT[..., :start + chunk],
                                  v_BxKxTxH[:, :, :start + chunk], bias_BxTxT[:, start:start + chunk, :start + chunk],
                                  key_layout="head_dim_major")
                for start in range(0, t, chunk)], axis=1)

        # The previous token's key, zero at each segment's first token (no key crosses episodes).
        continues_Bx1xTx1 = jnp.concatenate(
            [jnp.zeros((b, 1), bool), segment_ids_BxT[:, 1:] == segment_ids_BxT[:, :-1]], axis=1)[:, None, :, None]

        def previous(k_BxKxTxH):
            shifted = jnp.pad(k_BxKxTxH[:, :, :-1], ((0, 0), (0, 0), (1, 0), (0, 0)))
            return jnp.where(continues_Bx1xTx1, shifted, 0)

        lines = None
        if self.config.line_embeddings:
            zeros_B = jnp.zeros((b,), jnp.int32)
            lines = line_columns(tokens_BxT, ~continues_Bx1xTx1[:, 0, :, 0], self.config, zeros_B, zeros_B)
        x = self.embed(tokens_BxT, lines)
        for block in self.blocks:
            x = block(x, positions_BxT, lambda q, k, v, block=block: attend_causal(q, k, v, block), previous)

        def pointer(copy_keys_BxTxC):
            # Position s points at the token after it; a query sees the earlier positions of its segment.
            next_tokens_BxT = jnp.pad(tokens_BxT[:, 1:], ((0, 0), (0, 1)))
            strictly_before_BxTxT = mask_BxTxT & ~jnp.eye(t, dtype=bool)[None]

            def follow(log_fresh_BxTxS, follow_logit_BxT, confidence):
                matches_BxTxT = strictly_before_BxTxT & (tokens_BxT[:, None, :] == tokens_BxT[:, :, None])
                return follow_pointer(log_fresh_BxTxS, matches_BxTxT, follow_logit_BxT, confidence,
                                      jnp.ones((b, t), bool), jnp.zeros((b, t), jnp.float32))[0]
            return copy_keys_BxTxC, next_tokens_BxT, jnp.where(strictly_before_BxTxT, 0.0, NEG_INF), follow
        return self.logits(x, pointer)

    def forward_cached(self, tokens_BxT: jax.Array, valid_BxT: jax.Array, cache: KVCache):
        """Appends each row's valid tokens (valid first, padding after) at that row's `end_B`.

        Returns float32 logits [B, T, V] (meaningful at valid positions) and the new cache. Rows
        with no valid token keep their cache unchanged. Tokens past the cache's last slot are
        dropped (callers stop before the cache fills).
        """
        b, t = tokens_BxT.shape
        slots = cache.max_len
        valid_BxT = valid_BxT.astype(bool)
        positions_BxT = cache.end_B[:, None] + jnp.arange(t, dtype=jnp.int32)
        # Invalid tokens are scattered to an out-of-range slot, which mode="drop" discards.
        write_slot_BxT = jnp.where(valid_BxT, positions_BxT, slots)
        visible_BxTxS = jnp.arange(slots, dtype=jnp.int32)[None, None, :] <= positions_BxT[:, :, None]
        bias_BxTxS = jnp.where(visible_BxTxS, 0.0, NEG_INF).astype(jnp.float32)
        rows_Bx1 = jnp.arange(b)[:, None]
        count_B = valid_BxT.sum(axis=1, dtype=jnp.int32)

        def write(cache_array, new_BxKxTxH, axes):
            # Indexed by (row, slot) with the head axes sliced, the update is laid out [B,T,K,H].
            at_slots = tuple({"batch": rows_Bx1, "cache_length": write_slot_BxT}.get(axis, slice(None))
                             for axis in axes)
            return cache_array.at[at_slots].set(new_BxKxTxH.transpose(0, 2, 1, 3).astype(cache_array.dtype),
                                                mode="drop")

        keys, values, last_keys = list(cache.keys), list(cache.values_BxKxSxH), list(cache.last_keys_BxKxH)
        lines, line_B, column_B = None, cache.line_B, cache.column_B
        if self.config.line_embeddings:
            lines = line_columns(tokens_BxT, jnp.zeros((b, t), bool), self.config, line_B, column_B)
            last_1 = jnp.maximum(count_B - 1, 0)[:, None]
            ends_line_B = jnp.take_along_axis(tokens_BxT, last_1, axis=1)[:, 0] == self.config.newline_id
            line_B = jnp.where(count_B > 0, jnp.take_along_axis(lines[0], last_1, axis=1)[:, 0] + ends_line_B, line_B)
            column_B = jnp.where(count_B > 0, jnp.where(
                ends_line_B, 0, jnp.take_along_axis(lines[1], last_1, axis=1)[:, 0] + 1), column_B)
        x = self.embed(tokens_BxT, lines)
        for layer, block in enumerate(self.blocks):
            def previous(k_BxKxTxH, layer=layer):
                # The first new token's predecessor is the cache's newest token (zeros in an empty row).
                first_BxKx1xH = last_keys[layer][:, :, None]
                newest_BxKxH = jnp.take_along_axis(
                    k_BxKxTxH, jnp.maximum(count_B - 1, 0)[:, None, None, None], axis=2)[:, :, 0]
                last_keys[layer] = jnp.where((count_B > 0)[:, None, None], newest_BxKxH, last_keys[layer])
                return jnp.concatenate([first_BxKx1xH.astype(k_BxKxTxH.dtype), k_BxKxTxH[:, :, :-1]], axis=2)

            def attend(q, k_BxKxTxH, v_BxKxTxH, layer=layer, block=block):
                keys[layer] = write(keys[layer], k_BxKxTxH, KEY_CACHE_AXES[cache.key_layout])
                values[layer] = write(values[layer], v_BxKxTxH, VALUE_CACHE_AXES)
                return block.attn.attend(q, keys[layer], values[layer], bias_BxTxS, key_layout=cache.key_layout)
            x = block(x, positions_BxT, attend, previous)
        copy_keys, slot_tokens, pointer_BxS = cache.copy_keys_BxSxC, cache.tokens_BxS, cache.pointer_BxS

        def pointer(copy_keys_BxTxC):
            nonlocal copy_keys, slot_tokens
            copy_keys = copy_keys.at[rows_Bx1, write_slot_BxT].set(copy_keys_BxTxC.astype(copy_keys.dtype), mode="drop")
            slot_tokens = slot_tokens.at[rows_Bx1, write_slot_BxT].set(tokens_BxT, mode="drop")
            # Slot s points at the token of slot s + 1, written by the time a query sees slot s.
            strictly_before_BxTxS = jnp.arange(slots)[None, None, :] < positions_BxT[:, :, None]

            def follow(log_fresh_BxTxS, follow_logit_BxT, confidence):
                nonlocal pointer_BxS
                matches_BxTxS = strictly_before_BxTxS & (slot_tokens[:, None, :] == tokens_BxT[:, :, None])
                weights_BxTxS, pointer_BxS = follow_pointer(log_fresh_BxTxS, matches_BxTxS, follow_logit_BxT, confidence,
                                                            valid_BxT, pointer_BxS)
                return weights_BxTxS
            return (copy_keys, jnp.pad(slot_tokens[:, 1:], ((0, 0), (0, 1))),
                    jnp.where(strictly_before_BxTxS, 0.0, NEG_INF), follow)
        logits = self.logits(x, pointer)
        end_B = jnp.minimum(cache.end_B + count_B, slots)
        return logits, KVCache(tuple(keys), tuple(values), end_B, tuple(last_keys), line_B, column_B, copy_keys,
                               slot_tokens, pointer_BxS, cache.key_layout)


def param_count(state) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(state))
