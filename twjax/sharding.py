"""Device mesh from the config, and the logical-axis rules that place parameters, optimizer state,
batches, KV caches and activations on it (maxtext style).

Model code names axes logically (`("embed", "mlp")`, `("batch", "length", "embed")`); `RULES` maps
each logical name to mesh axes. The mapping is shape-aware: a mesh axis is used only if it divides
the dimension and is not already used by an earlier dimension of the same array, so e.g. a
1-kv-head model on tensor=2 keeps its kv heads replicated instead of failing, and activations
named ("batch", ..., "embed") shard the batch over data x fsdp while parameters shard "embed"
over fsdp (FSDP: weights all-gathered per layer, gradients reduce-scattered by XLA).

Mesh axes: data (pure data parallel), fsdp (data parallel with sharded weights and optimizer
state), tensor (Megatron-style: heads, mlp and vocab split).
"""
import contextlib
import math
import threading
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axes to try, in order.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", ()),
    ("cache_length", ()),
    ("embed", ("fsdp",)),
    ("vocab", ("tensor",)),
    ("mlp", ("tensor",)),
    ("heads", ("tensor",)),
    ("kv_heads", ("tensor",)),
    ("head_dim", ()),
    ("norm", ()),
    ("lines", ()),
    ("layers", ()),
)


def mesh_shape(mesh_config: Any, n_devices: int) -> tuple[int, int, int]:
    """(data, fsdp, tensor) with at most one -1, which takes the remaining devices."""
    sizes = [int(mesh_config[name] if hasattr(mesh_config, "__getitem__") else getattr(mesh_config, name))
             for name in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n_devices % known:
            raise ValueError(f"{n_devices} devices do not divide by the fixed mesh axes {sizes}")
        sizes[sizes.index(-1)] = n_devices // known
    if math.prod(sizes) != n_devices:
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                         f"{n_devices} are present")
    return tuple(sizes)


def make_mesh(mesh_config: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_config, len(devices))
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


def logical_to_spec(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules=RULES) -> P:
    """PartitionSpec for an array with logical `axes` and `shape` on `mesh`."""
    if len(axes) != len(shape):
        raise ValueError(f"logical axes {tuple(axes)} do not match shape {tuple(shape)}")
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for name, size in zip(axes, shape):
        if name is not None and name not in table:
            raise KeyError(f"no sharding rule for logical axis {name!r}")
        chosen = []
        for mesh_axis in table.get(name, ()) if name is not None else ():
            width = mesh.shape[mesh_axis]
            if mesh_axis in used or width == 1 or size % (math.prod(mesh.shape[a] for a in chosen) * width):
                continue
            chosen.append(mesh_axis)
        used.update(chosen)
        spec.append(None if not chosen else chosen[0] if len(chosen) == 1 else tuple(chosen))
    return P(*spec)


def _variable_axes(variable: nnx.Variable) -> tuple[str, ...] | None:
    return variable.get_metadata().get("out_sharding") or None


def shardings(tree: Any, mesh: Mesh, rules=RULES) -> Any:
    """NamedShardings for a pytree of nnx Variables (model state, or optimizer state built from it)
    and plain arrays; anything without logical axes is replicated. Same structure as `tree`."""
    def one(leaf):
        if isinstance(leaf, nnx.Variable):
            axes = _variable_axes(leaf)
            value = leaf.get_value() if hasattr(leaf, "get_value") else leaf.value
            spec = logical_to_spec(axes, value.shape, mesh, rules) if axes else P()
            return leaf.replace(NamedSharding(mesh, spec))
        return NamedSharding(mesh, P())
    return jax.tree.map(one, tree, is_leaf=lambda x: isinstance(x, nnx.Variable))


def array_sharding(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules=RULES) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(axes, shape, mesh, rules))


def batch_shardings(batch: dict, mesh: Mesh, rules=RULES) -> dict:
    """Every [B, ...] batch array sharded on its batch axis."""
    return {k: array_sharding(("batch",) + (None,) * (np.ndim(v) - 1), np.shape(v), mesh, rules)
            for k, v in batch.items()}


def shard_batch(batch: dict, mesh: Mesh, rules=RULES) -> dict:
    """Places a per-process batch of numpy arrays on the mesh (global batch = sum over processes)."""
    out = {}
    for key, local in batch.items():
        local = np.asarray(local)
        global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
        sharding = array_sharding(("batch",) + (None,) * (local.ndim - 1), global_shape, mesh, rules)
        out[key] = jax.make_array_from_process_local_data(sharding, local, global_shape)
    return out


def cache_shardings(cache: Any, mesh: Mesh, rules=RULES) -> Any:
    from twjax.model import KEY_CACHE_AXES, LAST_KEY_AXES, SLOT_ARRAYS, VALUE_CACHE_AXES
    return type(cache)(
        tuple(array_sharding(KEY_CACHE_AXES[cache.key_layout], keys.shape, mesh, rules) for keys in cache.keys),
        tuple(array_sharding(VALUE_CACHE_AXES, values.shape, mesh, rules) for values in cache.values_BxKxSxH),
        array_sharding(("batch",), cache.end_B.shape, mesh, rules),
        tuple(array_sharding(LAST_KEY_AXES, last.shape, mesh, rules) for last in cache.last_keys_BxKxH),
        *(None if counts is None else array_sharding(("batch",), counts.shape, mesh, rules)
          for counts in (cache.line_B, cache.column_B)),
        *(None if getattr(cache, name) is None else array_sharding(axes, getattr(cache, name).shape, mesh, rules)
          for name, axes in SLOT_ARRAYS.items()),
        cache.key_layout)


def create_sharded(constructor, mesh: Mesh, rules=RULES):
    """Builds an nnx module with every parameter born sharded (never whole on one device).

    `constructor()` returns the module (e.g. `lambda: Transformer(cfg, rngs=nnx.Rngs(0))`).
    Returns (graphdef, state).
    """
    abstract = nnx.eval_shape(constructor)
    graphdef, abstract_state = nnx.split(abstract)
    out_shardings = shardings(abstract_state, mesh, rules)

    def init():
        return nnx.split(constructor())[1]

    state = jax.jit(init, out_shardings=out_shardings)()
    return graphdef, state


def shard_state(state: Any, mesh: Mesh, rules=RULES) -> Any:
    return jax.device_put(state, shardings(state, mesh, rules))


# Activation constraints: active only inside `activation_sharding(mesh)`, where jitted model code
# is traced; elsewhere (single device, tests, decoding without a mesh) they do nothing.
_ACTIVE = threading.local()


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules=RULES):
    previous = getattr(_ACTIVE, "value", None)
    _ACTIVE.value = (mesh, rules)
    try:
        yield
    finally:
        _ACTIVE.value = previous


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    active = getattr(_ACTIVE, "value", None)
    if active is None:
        return x
    mesh, rules = active
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(axes, x.shape, mesh, rules)))
