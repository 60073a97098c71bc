"""Does the model copy? Its accuracy on synthetic copy examples [A, B, A] (twjax.data.CopyExample,
from a seed no training run uses): the share of the second A's tokens, after its first, that the
model's argmax gets right. Copying names and file contents from the session needs this ability
(induction); a model that has it scores near 1, one that does not near 0."""
from typing import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from twjax import data
from twjax.tokenizer import Tokenizer

PROBE_SEED = 2**31 - 1  # training copy examples use config.data.seed (small numbers)

# Module level, so that a trainer probing every evaluation compiles it once per model shape.
_argmax = nnx.jit(lambda model, inputs_BxT: model(inputs_BxT).argmax(-1))


def copy_accuracy(model: nnx.Module, tok: Tokenizer, n_examples: int = 32,
                  predict: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """`predict(inputs_BxT) -> predicted_BxT` defaults to the model's argmax."""
    seq_len = min(model.config.max_len, 512)
    make = data.CopyExample(data.copy_token_ids(tok), seq_len, PROBE_SEED)
    examples = [make.map(i)[0] for i in range(n_examples)]
    width = max(len(e["inputs"]) for e in examples)

    def padded(key, dtype):
        return np.stack([np.pad(e[key], (0, width - len(e[key]))) for e in examples]).astype(dtype)

    inputs_BxT, targets_BxT, weights_BxT = padded("inputs", np.int32), padded("targets", np.int32), padded("weights", np.float32)
    if predict is None:
        predict = lambda x: np.asarray(_argmax(model, jnp.asarray(x)))  # noqa: E731
    # Padding follows each example, so causal attention keeps it out of every scored position.
    hits = float(((predict(inputs_BxT) == targets_BxT) * weights_BxT).sum())
    return {"accuracy": hits / float(weights_BxT.sum()), "examples": n_examples, "targets": int(weights_BxT.sum())}
