"""Where a training run keeps its state, and how other commands load a trained model.

Workdir layout:
    W/config.json           the resolved config (vocab size filled in) of the latest invocation
    W/tokenizer.model       a copy of the tokenizer, so a workdir is self-contained
    W/checkpoints/<step>/   orbax: state (params, optimizer state, step), data (the grain iterator,
                            one JSON file per process), meta (JSON: step, tokens seen)
    W/tb/                   TensorBoard events;  W/metrics.jsonl: the same scalars, one JSON a line

There is no RNG state to save: the train step draws no randomness (no dropout), parameter init
depends only on train.seed, and the data order lives in the grain iterator state.
"""
import json
import pathlib
import shutil

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from twjax import model as model_lib
from twjax import sharding
from twjax import tokenizer as tokenizer_lib

STATE, DATA, META = "state", "data", "meta"
VOCAB_MULTIPLE = 128


def resolve_vocab_size(requested: int, tokenizer_vocab: int) -> int:
    """0 -> the tokenizer's vocabulary rounded up to VOCAB_MULTIPLE; else at least the tokenizer's."""
    if requested == 0:
        return -(-tokenizer_vocab // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    if requested < tokenizer_vocab:
        raise ValueError(f"model.vocab_size {requested} is smaller than the tokenizer's {tokenizer_vocab}")
    return requested


def model_config(config: ml_collections.ConfigDict) -> model_lib.ModelConfig:
    return model_lib.ModelConfig.from_mapping(config.model)


def abstract_model(config: ml_collections.ConfigDict):
    """(graphdef, abstract params) of the model a config describes; no memory is allocated."""
    cfg = model_config(config)
    abstract = nnx.eval_shape(lambda: model_lib.Transformer(cfg, rngs=nnx.Rngs(0)))
    return nnx.split(abstract)


def placed(abstract, shardings):
    """ShapeDtypeStructs that say where each array goes (what orbax restores into)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def write_run_files(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    tokenizer_copy = workdir / "tokenizer.model"
    if pathlib.Path(config.data.tokenizer).resolve() != tokenizer_copy.resolve():
        shutil.copyfile(config.data.tokenizer, tokenizer_copy)


# Fields a resumed run may change: how long it runs, how it reports, how its arrays are laid out,
# and which kernel computes its attention (the same function; a GPU run may resume on a CPU).
# Every other field (model, data, optimizer, seeds) defines the run that wrote the checkpoints.
RESUMABLE_CHANGES = ("train.steps", "train.stop_at", "train.log_every", "train.eval_every", "train.eval_batches",
                     "train.ckpt_every", "train.keep_ckpts", "train.progress", "train.compilation_cache",
                     "train.distributed", "data.valid", "mesh.data", "mesh.fsdp", "mesh.tensor", "model.attention")


def check_resumable(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Refuses to resume the checkpoints in workdir under a config that would make it another run
    (the checkpoint would silently become the new run's start). Call before write_run_files."""
    if not any(p.name.isdigit() for p in checkpoints_dir(workdir).glob("*")):
        return
    saved = _flat(read_config(workdir).to_dict())
    wanted = _flat(json.loads(config.to_json_best_effort()))
    # A field the code gained after the run started (absent from its config.json) is no change
    # while it holds an off value: new options default to off.
    added_off = {key for key in wanted.keys() - saved.keys() if wanted[key] in (False, 0, "", None)}
    changed = sorted(key for key in saved.keys() | wanted.keys()
                     if key not in RESUMABLE_CHANGES and key not in added_off and saved.get(key) != wanted.get(key))
    tokenizer_copy = workdir / "tokenizer.model"
    if ("data.tokenizer" in changed and tokenizer_copy.exists()
            and tokenizer_copy.read_bytes() == pathlib.Path(config.data.tokenizer).read_bytes()):
        changed.remove("data.tokenizer")  # The same model from another path (the workdir's copy, say).
    if changed:
        diffs = "; ".join(f"{key}: {saved.get(key)!r} -> {wanted.get(key)!r}" for key in changed)
        raise ValueError(f"{workdir} holds checkpoints of a run with a different config ({diffs}); "
                         "use a new --workdir, or the original values to resume it")


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {workdir} a twjax train workdir?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


_array_handler_configured = False


def configure_array_handler() -> None:
    """Replica-parallel saving (orbax's default) slices every replicated array into one piece per
    replica with an eagerly compiled slice op per shape: 90 s for the first save of a tiny model
    on 8 CPU devices. Slicing only arrays of at least 1 MiB keeps the benefit for big weights.
    (The default handler's array-metadata store only matters for typed PRNG keys; the train state
    holds none.)"""
    global _array_handler_configured
    if not _array_handler_configured:
        ocp.type_handlers.register_type_handler(
            jax.Array, ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=1 << 20),
            override=True)
        _array_handler_configured = True


def checkpoints_dir(workdir: str | pathlib.Path) -> pathlib.Path:
    """Absolute: orbax rejects a relative checkpoint path when it writes (a relative --workdir)."""
    return pathlib.Path(workdir).absolute() / "checkpoints"


def make_manager(workdir: pathlib.Path, keep: int) -> ocp.CheckpointManager:
    configure_array_handler()
    # A save cut short by a hard kill leaves a temporary directory that is never a valid step: clean it.
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(checkpoints_dir(workdir), item_names=(STATE, DATA, META), options=options)


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator, meta: dict) -> None:
    """Asynchronous for the arrays (they are copied off the device before this returns), so the next
    train step may donate them; the iterator state is written now, matching `step` exactly."""
    manager.save(step, force=True, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state),
        DATA: grain.checkpoint.CheckpointSave(data_iterator),
        META: ocp.args.JsonSave(meta),
    }))


def restore(manager: ocp.CheckpointManager, step: int, abstract_state, data_iterator):
    """-> (state placed as `abstract_state`'s shardings say, meta); `data_iterator` is set in place."""
    restored = manager.restore(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardRestore(abstract_state),
        DATA: grain.checkpoint.CheckpointRestore(data_iterator),
        META: ocp.args.JsonRestore(),
    }))
    return restored[STATE], restored[META]


def state_directory(path: str | pathlib.Path, step: int | None = None) -> pathlib.Path:
    """The orbax `state` directory of a workdir, its checkpoints/ directory, or one step directory."""
    path = pathlib.Path(path).absolute()
    if (path / STATE).is_dir():
        return path / STATE
    checkpoints = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit() and (p / STATE).is_dir()) \
        if checkpoints.is_dir() else []
    if not steps:
        raise FileNotFoundError(f"no checkpoint under {path}")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise FileNotFoundError(f"no checkpoint of step {step} under {path} (have {steps})")
    return checkpoints / str(step) / STATE


def restore_parts(path: str | pathlib.Path, target: dict, step: int | None = None) -> dict:
    """The parts of a checkpoint's state that `target` names ("params"; "opt_state" and "step"
    too), placed as its arrays say; the data iterator is not read."""
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(state_directory(path, step), args=ocp.args.PyTreeRestore(
            item=target, restore_args=restore_args, partial_restore=True))


# Parameters a model may gain over the run it starts from (train.init_from): zero at init, they
# leave the function of the weights they join as it was.
GAINABLE_PARAMS = ("line_embed_LxD", "column_embed_LxD")


def gained_params(config: ml_collections.ConfigDict, init_from: str | pathlib.Path) -> tuple[str, ...]:
    """The GAINABLE_PARAMS that `config`'s model has and the run `init_from` (its workdir, its
    checkpoints/ or one step directory) lacks."""
    path = pathlib.Path(init_from).absolute()
    workdir = next((p for p in (path, path.parent, path.parent.parent) if (p / "config.json").exists()), None)
    if workdir is None:
        raise FileNotFoundError(f"no config.json at or above {path}: is it a twjax train workdir?")
    theirs = read_config(workdir).model
    for flag in ("copy_head", "copy_follow"):
        if config.model.get(flag, False) != theirs.get(flag, False):
            # A pointer (or its following) gained or dropped changes what the model computes from the
            # start: no warm start.
            raise ValueError(f"model.{flag} is {config.model.get(flag, False)} here and "
                             f"{theirs.get(flag, False)} in {workdir}: train.init_from needs the same")
    if config.model.get("line_embeddings", 0) and not theirs.get("line_embeddings", 0):
        return GAINABLE_PARAMS
    return ()


def restore_params(path: str | pathlib.Path, abstract_params, step: int | None = None):
    """Only the parameters of a checkpoint (no optimizer state), placed as `abstract_params` says."""
    return restore_parts(path, {"params": abstract_params}, step)["params"]


def load_for_inference(workdir: str | pathlib.Path, step: int | None = None, mesh=None):
    """-> (config, tokenizer, model) of a training workdir, at its latest (or the given) checkpoint.

    Parameters go to the first device, or are sharded over `mesh` by the model's logical axes.
    """
    workdir = pathlib.Path(workdir)
    config = read_config(workdir)
    tokenizer_path = workdir / "tokenizer.model"
    tokenizer = tokenizer_lib.Tokenizer.load(str(tokenizer_path if tokenizer_path.exists() else config.data.tokenizer))
    graphdef, abstract_params = abstract_model(config)
    if mesh is None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        placements = jax.tree.map(lambda _: device, abstract_params)
    else:
        placements = sharding.shardings(abstract_params, mesh)
    params = restore_params(workdir, placed(abstract_params, placements), step)
    return config, tokenizer, nnx.merge(graphdef, params)


def load_terminal(workdir: str | pathlib.Path, agent_tokenizer: tokenizer_lib.Tokenizer):
    """-> (config, (graphdef, params)) of the learned terminal in `workdir`, for an agent that uses
    `agent_tokenizer`: the two models share one token stream, so their tokenizers must be the same."""
    config, tokenizer, model = load_for_inference(workdir)
    if tokenizer.model_proto != agent_tokenizer.model_proto:
        raise SystemExit(f"the agent and the terminal in {workdir} were trained with different tokenizers")
    return config, nnx.split(model)
