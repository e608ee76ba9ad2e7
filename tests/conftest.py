import gc
import tracemalloc
import zlib

import numpy as np
import pytest

from fastmlp.activations import HIDDEN_ACTIVATIONS, OUTPUTS


def random_network(rng, units, dtype=np.float64, scale=0.5):
    """Weights for layer sizes ``units`` (inputs first), in scikit-learn's layout."""
    coefs = [
        (scale * rng.standard_normal((fan_in, fan_out))).astype(dtype)
        for fan_in, fan_out in zip(units[:-1], units[1:])
    ]
    intercepts = [(scale * rng.standard_normal(fan_out)).astype(dtype) for fan_out in units[1:]]
    return coefs, intercepts


def random_targets(rng, output, n_samples, n_outputs, dtype=np.float64):
    """Targets in the layout scikit-learn's ``_backprop`` receives for each output."""
    if output == "softmax":
        return np.eye(n_outputs, dtype=dtype)[rng.integers(0, n_outputs, n_samples)]
    if output == "logistic":
        return rng.integers(0, 2, (n_samples, n_outputs)).astype(dtype)
    if output == "exp":
        return rng.poisson(2.0, (n_samples, n_outputs)).astype(dtype)
    return rng.standard_normal((n_samples, n_outputs)).astype(dtype)


def random_problem(rng, depth, output, n_samples=13, dtype=np.float64, max_width=6):
    """A random network of ``depth`` layers with data and targets to match."""
    n_outputs = int(rng.integers(2, 4)) if output == "softmax" else int(rng.integers(1, 4))
    units = [int(rng.integers(1, max_width + 1)) for _ in range(depth)] + [n_outputs]
    coefs, intercepts = random_network(rng, units, dtype)
    X = rng.standard_normal((n_samples, units[0])).astype(dtype)
    Y = random_targets(rng, output, n_samples, n_outputs, dtype)
    return coefs, intercepts, X, Y


def relative_error(actual, expected):
    """Largest entry of |actual - expected| over the largest entry of |expected|."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(np.max(np.abs(expected)), np.finfo(np.float64).tiny)
    return np.max(np.abs(actual - expected)) / scale


def assert_gradients_close(actual, expected, rtol):
    """Compare (loss, coef_grads, intercept_grads) triples array by array."""
    loss, coef_grads, intercept_grads = actual
    expected_loss, expected_coef_grads, expected_intercept_grads = expected
    assert relative_error(loss, expected_loss) <= rtol
    assert len(coef_grads) == len(expected_coef_grads)
    expected_arrays = expected_coef_grads + expected_intercept_grads
    for got, want in zip(coef_grads + intercept_grads, expected_arrays):
        assert got.shape == want.shape
        assert relative_error(got, want) <= rtol


def traced_peak(work):
    """``(bytes, result)``: the peak of NumPy's and Python's allocations during ``work()``,
    above what was allocated before it, and what it returned. Bytes, never time."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = work()
        return tracemalloc.get_traced_memory()[1] - base, result
    finally:
        tracemalloc.stop()


ALL_ACTIVATIONS = sorted(HIDDEN_ACTIVATIONS)
ALL_OUTPUTS = sorted(OUTPUTS)


@pytest.fixture
def rng(request):
    # A fresh, reproducible stream per test: the seed comes from the test's name.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(autouse=True)
def _own_thread_choices(monkeypatch):
    """Each test starts with no thread choices measured: trainers of one shape share
    theirs in a process (``fastmlp.kernels._api._shared_choice``), and a test that counts
    which driver ran must not depend on what earlier tests timed."""
    from fastmlp.kernels import _api

    monkeypatch.setattr(_api, "_choices", {})
