"""Input checks shared by the public functions: clear errors, no copies unless needed."""

import numbers

import numpy as np
import scipy.sparse

from fastmlp.activations import hidden_activation, output_function

BACKENDS = ("numpy", "numba")


def check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; expected one of {list(BACKENDS)}.")
    return backend


def float_dtype(*arrays):
    """float32 if every array is float32, else float64 (scikit-learn's rule for MLPs)."""
    if all(np.asarray(a).dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check_finite_array(array, name, dtype, ndim):
    """An array of ``dtype`` and ``ndim`` dimensions, finite, with scikit-learn's wording.

    A light check on purpose: the notebook functions and ``loss_and_gradients`` are called
    once per step, where scikit-learn's ``check_array`` would cost more than the step.
    """
    if scipy.sparse.issparse(array):
        raise ValueError(f"{name} must be a dense array; got a sparse matrix.")
    if np.iscomplexobj(array):  # a cast to float would drop the imaginary parts
        raise ValueError(f"Complex data not supported: {name} is complex.")
    try:
        array = np.asarray(array, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be an array of numbers: {error}") from None
    if array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array, got shape {array.shape}.")
    # Summing first is the fast path (scikit-learn's trick): a NaN or inf anywhere makes
    # the sum non-finite; only then look for which one it is.
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(array.sum()) if array.size else True
    if not finite and not np.isfinite(array).all():
        if np.isnan(array).any():
            raise ValueError(f"Input {name} contains NaN.")
        raise ValueError(
            f"Input {name} contains infinity or a value too large for {array.dtype!r}."
        )
    return array


def check_network(coefs, intercepts, dtype):
    """Check that coefs and intercepts form a chain of layers; return them as dtype arrays."""
    if isinstance(coefs, np.ndarray) or isinstance(intercepts, np.ndarray):
        raise ValueError("coefs and intercepts must be sequences of arrays, one per layer.")
    coefs, intercepts = list(coefs), list(intercepts)
    if len(coefs) == 0 or len(coefs) != len(intercepts):
        raise ValueError(
            "coefs and intercepts must be non-empty and of equal length, got "
            f"{len(coefs)} coefs and {len(intercepts)} intercepts."
        )
    coefs = [check_finite_array(c, f"coefs[{i}]", dtype, 2) for i, c in enumerate(coefs)]
    intercepts = [
        check_finite_array(b, f"intercepts[{i}]", dtype, 1) for i, b in enumerate(intercepts)
    ]
    for i, (coef, intercept) in enumerate(zip(coefs, intercepts)):
        if coef.shape[0] == 0 or coef.shape[1] == 0:
            raise ValueError(f"coefs[{i}] has an empty dimension: shape {coef.shape}.")
        if intercept.shape[0] != coef.shape[1]:
            raise ValueError(
                f"intercepts[{i}] has shape {intercept.shape}, expected ({coef.shape[1]},) "
                f"to match coefs[{i}] of shape {coef.shape}."
            )
        if i > 0 and coefs[i - 1].shape[1] != coef.shape[0]:
            raise ValueError(
                f"coefs[{i - 1}] has {coefs[i - 1].shape[1]} outputs but coefs[{i}] has "
                f"{coef.shape[0]} inputs."
            )
    return coefs, intercepts


def check_alpha(alpha):
    if (
        not isinstance(alpha, numbers.Real)
        or isinstance(alpha, bool)
        or not np.isfinite(alpha)
        or alpha < 0
    ):
        raise ValueError(f"alpha must be a finite non-negative real number, got {alpha!r}.")
    return float(alpha)


def check_sample_weight(sample_weight, n_samples, dtype):
    if sample_weight is None:
        return None
    sample_weight = check_finite_array(sample_weight, "sample_weight", dtype, 1)
    if sample_weight.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight.shape == {sample_weight.shape}, expected ({n_samples},)!"
        )
    if np.any(sample_weight < 0):
        raise ValueError("Negative values in data passed to sample_weight")
    if not sample_weight.sum() > 0:
        raise ValueError("sample_weight must have a positive sum.")
    return sample_weight


def check_problem(coefs, intercepts, X, Y, activation, output, alpha, sample_weight):
    """Validate every argument of ``loss_and_gradients``; return them in one float dtype."""
    hidden_activation(activation)
    output_function(output)
    alpha = check_alpha(alpha)
    dtype = float_dtype(X, *coefs, *intercepts)
    coefs, intercepts = check_network(coefs, intercepts, dtype)

    X = check_finite_array(X, "X", dtype, 2)
    if X.shape[0] == 0:
        raise ValueError("X has 0 samples; at least 1 is required.")
    if X.shape[1] != coefs[0].shape[0]:
        raise ValueError(
            f"X has {X.shape[1]} features, but coefs[0] expects {coefs[0].shape[0]}."
        )
    Y = check_finite_array(Y, "Y", dtype, np.ndim(Y))
    n_outputs = coefs[-1].shape[1]
    if Y.ndim == 1 and n_outputs == 1:
        Y = Y.reshape(-1, 1)
    if Y.shape != (X.shape[0], n_outputs):
        raise ValueError(
            f"Y has shape {Y.shape}, expected ({X.shape[0]}, {n_outputs}) for "
            f"{X.shape[0]} samples and {n_outputs} outputs."
        )
    if output == "exp" and np.any(Y < 0):
        raise ValueError(
            "Some value(s) of y are negative which is not allowed for Poisson regression."
        )
    sample_weight = check_sample_weight(sample_weight, X.shape[0], dtype)
    return coefs, intercepts, X, Y, alpha, sample_weight
