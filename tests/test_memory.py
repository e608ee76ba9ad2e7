"""Memory, measured in bytes (never time): what fastmlp keeps alive against what
scikit-learn keeps, on the same calls. NumPy reports its allocations to tracemalloc, and
fastmlp's buffers are NumPy arrays, so both libraries are measured the same way."""

import gc
import tracemalloc

import numpy as np
import sklearn.neural_network

import fastmlp

MB = 1e6


def retained_after_partial_fits(cls):
    """Bytes allocated after 60 ``partial_fit`` calls of varying sizes beyond those after
    the first call (which makes the weights and the optimizer state). Traced from before
    the first call, so that what a later call frees of the first's counts too."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((400, 32)), rng.integers(0, 3, 400)
    gc.collect()
    tracemalloc.start()
    try:
        model = cls(hidden_layer_sizes=(1024, 1024), random_state=0)
        model.partial_fit(X[:50], y[:50], classes=[0, 1, 2])
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for call in range(60):
            rows = 20 + (call * 37) % 380  # every size from 20 to 399 rows, in a jumble
            model.partial_fit(X[:rows], y[:rows])
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_partial_fit_over_many_chunk_sizes_keeps_memory_flat():
    """Buffers are sized by the largest batch and reused, whatever the chunk sizes: no
    more kept than scikit-learn keeps, plus 10 MB (the network has 1.1 million weights,
    8.7 MB in float64)."""
    ours = retained_after_partial_fits(fastmlp.MLPClassifier)
    theirs = retained_after_partial_fits(sklearn.neural_network.MLPClassifier)
    assert ours <= theirs + 10 * MB, (ours / MB, theirs / MB)
