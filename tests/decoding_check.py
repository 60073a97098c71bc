"""Token-by-token decoding through the KV cache against the full forward pass (CPU and GPU tests)."""
import numpy as np
from flax import nnx

forward = nnx.jit(lambda m, tokens: m(tokens))
forward_cached = nnx.jit(lambda m, tokens, valid, cache: m.forward_cached(tokens, valid, cache))


def assert_decoding_equals_full_forward(model, tokens_BxT, lengths_B, cache, tolerance: float):
    """Feeds row b's first lengths_B[b] tokens one step at a time (other rows idle); every valid
    step's logits must equal the full pass's at that position. Returns the final cache."""
    full_BxTxV = np.asarray(forward(model, tokens_BxT))
    for t in range(tokens_BxT.shape[1]):
        valid_Bx1 = (t < lengths_B)[:, None]
        logits_Bx1xV, cache = forward_cached(model, tokens_BxT[:, t:t + 1], valid_Bx1, cache)
        for row in np.flatnonzero(valid_Bx1[:, 0]):
            np.testing.assert_allclose(logits_Bx1xV[row, 0], full_BxTxV[row, t], atol=tolerance, rtol=tolerance)
    np.testing.assert_array_equal(cache.end_B, lengths_B)
    return cache
