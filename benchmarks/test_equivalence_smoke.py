"""The implementations in the benchmark table train the same kind of model: the same
layer shapes, and each learns the (tiny) training set beyond chance."""

import numpy as np
import pytest

from fastmlp.bench.implementations import IMPLEMENTATIONS, Unavailable
from fastmlp.bench.workloads import WORKLOADS, load

SMOKE_ROWS = 300
SMOKE_UNITS = {"W1": 30, "W2": 40, "W3": 15, "W3-float32": 15, "W4-float64": 5,
               "W4-float32": 5, "W5": 40, "W5-float32": 40, "W6": 5}


@pytest.mark.parametrize("workload_id", list(WORKLOADS))
def test_implementations_train_the_same_model(workload_id):
    workload = WORKLOADS[workload_id]
    X, y = load(workload, SMOKE_ROWS)
    chance = np.bincount(y).max() / len(y)
    shapes, trained = None, []
    for name, make in IMPLEMENTATIONS.items():
        try:
            runner = make(workload, (X, y))
        except Unavailable:
            continue
        if shapes is None:
            shapes = runner.layer_shapes
        assert runner.layer_shapes == shapes, name
        for _ in range(SMOKE_UNITS[workload_id]):
            runner.run()
        accuracy = np.mean(runner.predict(X) == y)
        assert accuracy >= min(chance + 0.15, 0.95), (name, accuracy, chance)
        trained.append(name)
    assert "numba" in trained and "numpy reference" in trained


#: The peers that start from the shared initial weights and batch order, and the
#: implementation each is checked against (the notebook's loop for W1's step).
SAME_START = ("jax", "torch.compile")
DENSE = [wid for wid in WORKLOADS if wid != "W6"]


@pytest.mark.parametrize("peer", SAME_START)
@pytest.mark.parametrize("workload_id", DENSE)
def test_peers_train_the_same_weights(workload_id, peer):
    """From the same initial weights and batch order, one epoch (W1: one step) of the
    peer gives the NumPy reference's weights, which are scikit-learn's and fastmlp's
    (tests/), to 1e-10 relative in float64 (1e-4 in float32).

    In float32, Adam moves a weight whose gradient is near its epsilon (1e-8) by a step
    that the float32 rounding of that gradient (sums in another order) changes by up to
    a few percent of the learning rate: one weight of W4-float32's 200704 differed by
    1.1e-5 (1.1 % of it) under torch.compile on a busy machine. Such weights get an
    absolute tolerance of 5 % of the learning rate."""
    workload = WORKLOADS[workload_id]
    X, y = load(workload, SMOKE_ROWS)
    try:
        runner = IMPLEMENTATIONS[peer](workload, (X, y))
    except Unavailable as reason:
        pytest.skip(str(reason))
    baseline = "notebook loop" if workload.solver == "gd" else "numpy reference"
    reference = IMPLEMENTATIONS[baseline](workload, (X, y))
    runner.run()
    reference.run()
    rtol = 1e-10 if workload.dtype == "float64" else 1e-4
    for ours, theirs in zip(runner.params(), reference.params(), strict=True):
        assert ours.dtype == theirs.dtype
        atol = rtol * np.abs(theirs).max()
        if workload.dtype == "float32" and workload.solver == "adam":
            atol = max(atol, 0.05 * workload.learning_rate)
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def test_a_fit_to_convergence_is_scikit_learns():
    """E2 (a default fit on W2's data, scikit-learn's stopping rule) gives fastmlp and
    scikit-learn the same iterations and predictions, so its times compare like with
    like."""
    from benchmarks.bench_end_to_end import estimators, fit_to_convergence
    from fastmlp.bench.workloads import moons_data

    _, X_test, _, _ = moons_data()
    fitted = {name: fit_to_convergence(cls) for name, cls in estimators().items()}
    assert fitted["fastmlp"].n_iter_ == fitted["scikit-learn"].n_iter_
    np.testing.assert_array_equal(fitted["fastmlp"].predict(X_test),
                                  fitted["scikit-learn"].predict(X_test))
    np.testing.assert_allclose(fitted["fastmlp"].loss_curve_,
                               fitted["scikit-learn"].loss_curve_, rtol=1e-9)
