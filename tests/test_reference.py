"""The reference engine against finite differences and against scikit-learn's own backprop."""

import numpy as np
import pytest
from sklearn_oracle import sklearn_backprop

import fastmlp
from conftest import (
    ALL_ACTIVATIONS,
    ALL_OUTPUTS,
    assert_gradients_close,
    random_problem,
)
from fastmlp import reference
from fastmlp.activations import SKLEARN_ACTIVATIONS


def fd_objective(coefs, intercepts, X, Y, activation, output, alpha, sample_weight):
    """The function whose exact gradient ``loss_and_gradients`` returns.

    It is the loss itself, except for squared error with several outputs: scikit-learn
    averages that loss over outputs but sums its gradient over them.
    """
    loss, _, _ = reference.loss_and_gradients(
        coefs, intercepts, X, Y, activation, output, alpha, sample_weight
    )
    if output != "identity" or Y.shape[1] == 1:
        return loss
    n = X.shape[0] if sample_weight is None else sample_weight.sum()
    penalty = 0.5 * alpha * sum(np.sum(c * c) for c in coefs) / n
    return Y.shape[1] * (loss - penalty) + penalty


def central_differences(params, objective, step=1e-6):
    """d objective / d p for every entry of every array in ``params``, by central differences."""
    grads = []
    for array in params:
        grad = np.empty_like(array)
        for index in np.ndindex(array.shape):
            original = array[index]
            array[index] = original + step
            plus = objective()
            array[index] = original - step
            minus = objective()
            array[index] = original
            grad[index] = (plus - minus) / (2 * step)
        grads.append(grad)
    return grads


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("output", ALL_OUTPUTS)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_gradients_equal_finite_differences(rng, depth, output, activation, weighted, alpha):
    coefs, intercepts, X, Y = random_problem(rng, depth, output)
    sample_weight = rng.uniform(0.2, 3.0, X.shape[0]) if weighted else None

    def objective():
        return fd_objective(coefs, intercepts, X, Y, activation, output, alpha, sample_weight)

    _, coef_grads, intercept_grads = fastmlp.loss_and_gradients(
        coefs, intercepts, X, Y, activation=activation, output=output,
        alpha=alpha, sample_weight=sample_weight,
    )
    numeric = central_differences(coefs + intercepts, objective)
    analytic = np.concatenate([g.ravel() for g in coef_grads + intercept_grads])
    estimate = np.concatenate([g.ravel() for g in numeric])
    # Relative to the whole gradient: a 1e-6 central step leaves about 1e-9 of error.
    assert np.linalg.norm(analytic - estimate) <= 1e-6 * np.linalg.norm(estimate)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("output", ALL_OUTPUTS)
@pytest.mark.parametrize("activation", SKLEARN_ACTIVATIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_equals_sklearn_backprop(rng, depth, output, activation, weighted):
    coefs, intercepts, X, Y = random_problem(rng, depth, output, n_samples=29, max_width=9)
    sample_weight = rng.uniform(0.2, 3.0, X.shape[0]) if weighted else None
    alpha = float(rng.uniform(0, 1))
    ours = fastmlp.loss_and_gradients(
        coefs, intercepts, X, Y, activation=activation, output=output,
        alpha=alpha, sample_weight=sample_weight,
    )
    theirs = sklearn_backprop(coefs, intercepts, X, Y, activation, output, alpha, sample_weight)
    # Same operations in the same order: equal to a few float64 roundings.
    assert_gradients_close(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize("output", ALL_OUTPUTS)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_float32_stays_float32(rng, activation, output):
    coefs, intercepts, X, Y = random_problem(rng, 3, output, dtype=np.float32)
    sample_weight = rng.uniform(0.2, 3.0, X.shape[0]).astype(np.float32)
    loss, coef_grads, intercept_grads = fastmlp.loss_and_gradients(
        coefs, intercepts, X, Y, activation=activation, output=output,
        alpha=np.float32(0.1), sample_weight=sample_weight,
    )
    assert loss.dtype == np.float32
    assert all(g.dtype == np.float32 for g in coef_grads + intercept_grads)
    in_float64 = fastmlp.loss_and_gradients(
        [c.astype(np.float64) for c in coefs], [b.astype(np.float64) for b in intercepts],
        X.astype(np.float64), Y.astype(np.float64), activation=activation, output=output,
        alpha=0.1, sample_weight=sample_weight.astype(np.float64),
    )
    # float32 arithmetic over a handful of layers: a few units of 1e-7 per operation.
    assert_gradients_close((loss, coef_grads, intercept_grads), in_float64, rtol=1e-5)


def test_mixed_dtypes_compute_in_float64(rng):
    coefs, intercepts, X, Y = random_problem(rng, 2, "softmax", dtype=np.float32)
    loss, coef_grads, _ = fastmlp.loss_and_gradients(coefs, intercepts, X.astype(np.float64), Y)
    assert loss.dtype == np.float64 and coef_grads[0].dtype == np.float64


def test_one_dimensional_targets_for_one_output(rng):
    coefs, intercepts, X, Y = random_problem(rng, 2, "identity")
    coefs[-1], intercepts[-1] = coefs[-1][:, :1], intercepts[-1][:1]
    as_column = fastmlp.loss_and_gradients(coefs, intercepts, X, Y[:, :1], output="identity")
    as_vector = fastmlp.loss_and_gradients(coefs, intercepts, X, Y[:, 0], output="identity")
    assert_gradients_close(as_vector, as_column, rtol=0)
