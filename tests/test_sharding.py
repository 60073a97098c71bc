"""Sharding: mesh from config, logical-axis rules, and 8-device (data 2 x fsdp 2 x tensor 2) loss and
gradients equal to the single-device ones."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from twjax import model as model_lib
from twjax import sharding

CONFIG = model_lib.ModelConfig(vocab_size=128, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=64, max_len=16)


def test_mesh_shape_fills_minus_one():
    assert sharding.mesh_shape(dict(data=-1, fsdp=2, tensor=1), 8) == (4, 2, 1)
    with pytest.raises(ValueError, match="at most one"):
        sharding.mesh_shape(dict(data=-1, fsdp=-1, tensor=1), 8)
    with pytest.raises(ValueError, match="needs 6 devices"):
        sharding.mesh_shape(dict(data=3, fsdp=2, tensor=1), 8)


def test_logical_rules_are_shape_aware():
    mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
    assert sharding.logical_to_spec(("embed", "mlp"), (32, 64), mesh) == P("fsdp", "tensor")
    assert sharding.logical_to_spec(("batch", "length", "embed"), (8, 4, 32), mesh) == P(("data", "fsdp"), None, None)
    # A dimension the mesh axis does not divide stays replicated instead of failing.
    assert sharding.logical_to_spec(("embed", "kv_heads", "head_dim"), (32, 1, 8), mesh) == P("fsdp", None, None)
    assert sharding.logical_to_spec(("batch",), (2,), mesh) == P("data")
    with pytest.raises(KeyError):
        sharding.logical_to_spec(("nonsense",), (4,), mesh)


def loss_fn(model, batch):
    logits = model(batch["inputs_BxT"], batch["positions_BxT"], batch["segment_ids_BxT"])
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets_BxT"])
    return jnp.sum(losses * batch["weights_BxT"]) / jnp.sum(batch["weights_BxT"])


def make_batch(rng):
    b, t = 8, 16
    segments = np.ones((b, t), np.int32)
    segments[:, 10:] = 2
    segments[::3, 14:] = 0
    positions = np.concatenate([np.arange(10), np.arange(6)])[None].repeat(b, 0).astype(np.int32)
    inputs = rng.integers(0, 128, (b, t), dtype=np.int32)
    inputs[:, ::3] = 5  # newlines, for the model with line embeddings (LINES)
    return dict(inputs_BxT=inputs,
                targets_BxT=rng.integers(0, 128, (b, t), dtype=np.int32),
                positions_BxT=positions, segment_ids_BxT=segments,
                weights_BxT=(segments > 0).astype(np.float32))


LINES = dict(line_embeddings=8, newline_id=5, line_reset_ids=(3,))


@pytest.mark.parametrize("features", [{}, dict(smeared_keys=True), LINES], ids=["plain", "smeared_keys", "lines"])
def test_eight_devices_match_one_device(features):
    assert jax.device_count() == 8, "tests/conftest.py sets 8 fake CPU devices"
    config = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, **features)
    constructor = lambda: model_lib.Transformer(config, rngs=nnx.Rngs(0))
    batch = make_batch(np.random.default_rng(0))

    graphdef, state = nnx.split(constructor())

    def value_and_grad(state, batch):
        return jax.value_and_grad(lambda s: loss_fn(nnx.merge(graphdef, s), batch))(state)

    loss_1, grads_1 = jax.jit(value_and_grad)(state, batch)

    mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
    graphdef_8, state_8 = sharding.create_sharded(constructor, mesh)
    assert graphdef_8 == graphdef
    wq = state_8["blocks"][0]["attn"]["wq_DxNxH"][...]
    assert wq.sharding.spec == P("fsdp", "tensor", None) and len(wq.addressable_shards) == 8
    batch_8 = sharding.shard_batch(batch, mesh)
    assert batch_8["inputs_BxT"].sharding.spec == P(("data", "fsdp"), None)
    state_shardings = sharding.shardings(state_8, mesh)
    with sharding.activation_sharding(mesh):
        step = jax.jit(value_and_grad, in_shardings=(state_shardings, sharding.batch_shardings(batch_8, mesh)),
                       out_shardings=(sharding.shardings(loss_1, mesh), state_shardings))
        loss_8, grads_8 = step(state_8, batch_8)
    np.testing.assert_allclose(loss_8, loss_1, rtol=1e-5)
    for g1, g8 in zip(jax.tree.leaves(grads_1), jax.tree.leaves(grads_8)):
        np.testing.assert_allclose(np.asarray(g8), np.asarray(g1), rtol=1e-4, atol=1e-6)
    assert grads_8["embed_VxD"][...].sharding.spec == P("tensor", "fsdp")


def test_optimizer_state_follows_parameter_shardings():
    mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
    _, state = nnx.split(nnx.eval_shape(lambda: model_lib.Transformer(CONFIG, rngs=nnx.Rngs(0))))
    opt_state = jax.eval_shape(optax.adamw(1e-3).init, state)
    specs = sharding.shardings(opt_state, mesh)
    mu = specs[0].mu
    assert mu["blocks"][0]["mlp"]["w_down_FxD"].get_value().spec == P("tensor", "fsdp")
    assert specs[0].count.spec == P()


@pytest.mark.parametrize("key_layout", ["head_dim_major", "slot_major"])
def test_cache_shardings(key_layout):
    mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
    smeared = model_lib.ModelConfig.from_mapping(CONFIG.__dict__, smeared_keys=True, copy_head=True, copy_follow=True,
                                                 **LINES)
    cache = jax.eval_shape(lambda: model_lib.init_cache(smeared, 8, 16, key_layout=key_layout))
    specs = sharding.cache_shardings(cache, mesh)
    assert specs.key_layout == key_layout
    assert len(specs.keys) == len(specs.values_BxKxSxH) == len(specs.last_keys_BxKxH) == CONFIG.n_layers
    assert {keys.spec for keys in specs.keys} == {P(("data", "fsdp"), "tensor", None, None)}
    assert {values.spec for values in specs.values_BxKxSxH} == {P(("data", "fsdp"), "tensor", None, None)}
    assert {last.spec for last in specs.last_keys_BxKxH} == {P(("data", "fsdp"), "tensor", None)}
    assert specs.end_B.spec == specs.line_B.spec == specs.column_B.spec == P(("data", "fsdp"))
    assert specs.tokens_BxS.spec == specs.pointer_BxS.spec == P(("data", "fsdp"), None)
    assert specs.copy_keys_BxSxC.spec == P(("data", "fsdp"), None, None)
