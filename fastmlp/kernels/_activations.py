"""Elementwise pieces of the kernels: hidden activations, their derivatives, output
activations and losses.

The codes are those of ``fastmlp.activations`` (one table for both engines). Every
function branches on the code once, outside its loop, so the inner loops stay simple
enough for LLVM to vectorize. Constants are built in the array's own dtype
(``dtype.type(c)``): a float64 literal would silently promote float32 arithmetic.
"""

import numpy as np
from numba import njit

from fastmlp.activations import HIDDEN_ACTIVATIONS, LEAKY_RELU_SLOPE, OUTPUTS
from fastmlp.kernels._calls import jit
from fastmlp.kernels._math import FASTMATH, exp, log_positive, tanh, tanh_of_abs, wide_vectors

IDENTITY = HIDDEN_ACTIVATIONS["identity"].code
LOGISTIC = HIDDEN_ACTIVATIONS["logistic"].code
TANH = HIDDEN_ACTIVATIONS["tanh"].code
RELU = HIDDEN_ACTIVATIONS["relu"].code
LEAKY_RELU = HIDDEN_ACTIVATIONS["leaky_relu"].code
GELU = HIDDEN_ACTIVATIONS["gelu"].code
SILU = HIDDEN_ACTIVATIONS["silu"].code

OUT_IDENTITY = OUTPUTS["identity"].code
OUT_LOGISTIC = OUTPUTS["logistic"].code
OUT_SOFTMAX = OUTPUTS["softmax"].code
OUT_EXP = OUTPUTS["exp"].code

_GELU_C = float(np.sqrt(2.0 / np.pi))
_GELU_K = 0.044715


@jit("kernels", cache=True, error_model="numpy")
def _gelu_parts(x):
    """For gelu's tanh form, 0.5 * x * (1 + tanh(u)): the factor 1 + tanh(u) and
    1 - tanh(u)**2, u = sqrt(2 / pi) * (x + 0.044715 * x**3), without cancellation.
    Written as 1 + tanh(u), the factor loses every digit as tanh(u) nears -1 (x below
    about -3): it is 1 - tanh(|u|) there, which ``tanh_of_abs`` gives exactly."""
    t = type(x)
    u = t(_GELU_C) * (x + t(_GELU_K) * x * x * x)
    magnitude, complement = tanh_of_abs(u)
    one_plus = complement if u < 0 else t(1) + magnitude
    return one_plus, complement * (t(1) + magnitude)  # (1 - tanh|u|) (1 + tanh|u|)


@jit("kernels", cache=True, error_model="numpy")
def _logistic(z):
    """1 / (1 + exp(-z)) in z's dtype (computed in float64)."""
    return type(z)(1.0 / (1.0 + exp(-np.float64(z))))


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def activate(code, Z, A, rows):
    """A[:rows] = f(Z[:rows]) for a tile of pre-activations (C-contiguous blocks).

    Whole tiles, not rows: a call per row, with its views of the tile, costs as much as
    the arithmetic of a 100-unit row. One flat loop over the tile's values, so that a
    single output unit is vectorized over rows too.
    """
    wide_vectors()
    t = Z.dtype.type
    size = rows * Z.shape[1]
    z, a = Z.reshape(-1)[:size], A.reshape(-1)[:size]
    if code == RELU:
        for k in range(size):
            a[k] = z[k] if z[k] > 0 else t(0)
    elif code == TANH:
        for k in range(size):
            a[k] = tanh(z[k])
    elif code == LOGISTIC:
        for k in range(size):
            a[k] = _logistic(z[k])
    elif code == IDENTITY:
        for k in range(size):
            a[k] = z[k]
    elif code == LEAKY_RELU:
        slope = t(LEAKY_RELU_SLOPE)
        for k in range(size):
            a[k] = z[k] if z[k] > 0 else slope * z[k]
    elif code == GELU:
        half = t(0.5)
        for k in range(size):
            a[k] = half * z[k] * _gelu_parts(z[k])[0]
    else:  # SILU
        for k in range(size):
            a[k] = z[k] * _logistic(z[k])


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def scale_by_derivative(code, Z, A, D, rows):
    """D[:rows] *= f'(Z[:rows]), with f' written in terms of A = f(Z) where it can be."""
    wide_vectors()
    t = Z.dtype.type
    one = t(1)
    n = Z.shape[1]
    if code == RELU:
        for i in range(rows):
            for j in range(n):
                if A[i, j] == 0:
                    D[i, j] = t(0)
    elif code == TANH:
        for i in range(rows):
            for j in range(n):
                D[i, j] *= one - A[i, j] * A[i, j]
    elif code == LOGISTIC:
        for i in range(rows):
            for j in range(n):
                D[i, j] *= A[i, j] * (one - A[i, j])
    elif code == IDENTITY:
        pass
    elif code == LEAKY_RELU:
        slope = t(LEAKY_RELU_SLOPE)
        for i in range(rows):
            for j in range(n):
                if not Z[i, j] > 0:
                    D[i, j] *= slope
    elif code == GELU:
        c, k, half, three = t(_GELU_C), t(_GELU_K), t(0.5), t(3)
        for i in range(rows):
            for j in range(n):
                x = Z[i, j]
                one_plus, squared_complement = _gelu_parts(x)
                slope = half * x * squared_complement * c * (one + three * k * x * x)
                D[i, j] *= half * one_plus + slope
    else:  # SILU
        for i in range(rows):
            for j in range(n):
                s = _logistic(Z[i, j])
                D[i, j] *= s * (one + Z[i, j] * (one - s))


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _xlogy(x, y):
    return x * np.log(y) if x != 0 else x - x


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _xlog_probability(x, p):
    """x * log(p), 0 where x is 0, for a probability p clipped away from 0: the log is
    taken either way and the choice made after, so a loop of it has no branch."""
    logarithm = type(p)(log_positive(p))
    return x * logarithm if x != 0 else x - x


# Each output activation and loss is a function of its own, and output_activate and
# output_loss_and_delta choose among them: a kernel compiled for one output (the fused
# kernel, ``_shallow.py``) calls only that one, and compiles only its code.
@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def softmax_rows(Z, A, rows):
    """A[:rows] = softmax of each row of Z[:rows]."""
    wide_vectors()
    t = Z.dtype.type
    n = Z.shape[1]
    if n == 2:  # the same steps, straight-line: vectorized over rows
        # On the flat tiles: indexed as Z[i, 0] and Z[i, 1], LLVM kept this loop scalar
        # (float64, 256-row tiles: 22 ns a row, 7 flat; ``python -m
        # benchmarks.output_rows``, as below).
        z, a = _flat(Z, A, rows)
        for i in range(rows):
            z0, z1 = z[2 * i], z[2 * i + 1]
            largest = max(z0, z1)
            e0, e1 = t(exp(z0 - largest)), t(exp(z1 - largest))
            total = e0 + e1
            a[2 * i], a[2 * i + 1] = e0 / total, e1 / total
        return
    # Three passes, with the exps in one loop over the flat tile, which LLVM vectorizes;
    # within each row's loops they ran on few lanes (float64, 256-row tiles, three
    # classes: 48 ns a row, 21 in three passes; ten: 65 and 47; ``python -m
    # benchmarks.output_rows`` on the commits before and after). The same operations,
    # but the row sums, which LLVM may reassociate, can round apart from the one-pass
    # form's in the last bit (5, 17 and 40 classes did; 3 and 10 did not).
    for i in range(rows):
        largest = Z[i, 0]
        for j in range(1, n):
            largest = max(largest, Z[i, j])
        for j in range(n):
            A[i, j] = Z[i, j] - largest
    a = A.reshape(-1)[: rows * n]
    for k in range(a.shape[0]):
        a[k] = t(exp(a[k]))
    for i in range(rows):
        total = t(0)
        for j in range(n):
            total += A[i, j]
        for j in range(n):
            A[i, j] /= total


# The elementwise outputs run one flat loop over the tile (see activate).
@njit(cache=True, error_model="numpy", inline="always")
def _flat(Z, A, rows):
    size = rows * Z.shape[1]
    return Z.reshape(-1)[:size], A.reshape(-1)[:size]


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def logistic_rows(Z, A, rows):
    """A[:rows] = the logistic function of Z[:rows]."""
    wide_vectors()
    z, a = _flat(Z, A, rows)
    for k in range(z.shape[0]):
        a[k] = _logistic(z[k])


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def exp_rows(Z, A, rows):
    """A[:rows] = exp(Z[:rows]) (the Poisson loss's output)."""
    wide_vectors()
    t = Z.dtype.type
    z, a = _flat(Z, A, rows)
    for k in range(z.shape[0]):
        a[k] = t(exp(z[k]))


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def identity_rows(Z, A, rows):
    """A[:rows] = Z[:rows]."""
    wide_vectors()
    z, a = _flat(Z, A, rows)
    for k in range(z.shape[0]):
        a[k] = z[k]


@jit("kernels", cache=True, error_model="numpy")
def output_activate(code, Z, A, rows):
    """A[:rows] = the output activation ``code`` of Z[:rows] (softmax per row)."""
    if code == OUT_SOFTMAX:
        softmax_rows(Z, A, rows)
    elif code == OUT_LOGISTIC:
        logistic_rows(Z, A, rows)
    elif code == OUT_EXP:
        exp_rows(Z, A, rows)
    else:
        identity_rows(Z, A, rows)


# The losses below: each row's loss and output error ``(a - y) * weight`` for the output
# tile A. The targets of tile row ``i`` are ``Y[order[start + i]]``, its weight likewise
# (``sample_weight`` empty: unit weights). Each returns the weighted sum of the row
# losses, each defined as in scikit-learn's ``_base.py``.
@njit(cache=True, error_model="numpy", inline="always")
def _row_and_weight(order, start, i, sample_weight):
    row = order[start + i]
    if sample_weight.shape[0] > 0:
        return row, sample_weight[row]
    return row, sample_weight.dtype.type(1)


@njit(cache=True, error_model="numpy", inline="always")
def _gather_targets(Y, order, start, D, rows):
    """D[:rows] = the targets of the tile's rows, ``Y[order[start + i]]``. With unit
    weights the log-losses then run on contiguous targets and outputs, and LLVM
    vectorizes their loops, logs included; reading Y through ``order`` in the same loop
    kept them scalar (float64, 256-row tiles: one output 19.5 ns a row before, 9.4
    after; two classes 20 and 10.5; ten 70 and 41; ``python -m benchmarks.output_rows``
    on the commits before and after)."""
    for i in range(rows):
        row = order[start + i]
        for j in range(D.shape[1]):
            D[i, j] = Y[row, j]


@njit(cache=True, error_model="numpy", inline="always")
def _deltas(A, Y, row, weight, D, i):
    for j in range(A.shape[1]):
        D[i, j] = (A[i, j] - Y[row, j]) * weight


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def binary_log_loss_and_delta(A, Y, order, start, sample_weight, D, rows):
    """The clipped log-loss of a single probability output and its complement: one row
    a lane, a loop LLVM vectorizes (unit weights: on the gathered targets)."""
    wide_vectors()
    t = A.dtype.type
    one = t(1)
    eps = np.finfo(A.dtype).eps
    total = t(0)
    if sample_weight.shape[0] == 0:
        _gather_targets(Y, order, start, D, rows)
        for i in range(rows):
            a, y = A[i, 0], D[i, 0]
            p = min(max(a, eps), one - eps)
            total -= _xlog_probability(y, p) + _xlog_probability(one - y, one - p)
            D[i, 0] = a - y
        return total
    for i in range(rows):
        row, weight = _row_and_weight(order, start, i, sample_weight)
        a, y = A[i, 0], Y[row, 0]
        p = min(max(a, eps), one - eps)
        loss = _xlog_probability(y, p) + _xlog_probability(one - y, one - p)
        D[i, 0] = (a - y) * weight
        total -= weight * loss
    return total


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def log_loss_and_delta(both_sides, A, Y, order, start, sample_weight, D, rows):
    """The clipped log-loss of softmax outputs, or with ``both_sides`` (logistic
    outputs) that of each output and its complement; two or more outputs."""
    wide_vectors()
    t = A.dtype.type
    one = t(1)
    n = A.shape[1]
    eps = np.finfo(A.dtype).eps
    total = t(0)
    if sample_weight.shape[0] == 0:  # one loop over the flat tile, on the gathered targets
        _gather_targets(Y, order, start, D, rows)
        a, d = _flat(A, D, rows)
        for k in range(a.shape[0]):
            ak, yk = a[k], d[k]
            p = min(max(ak, eps), one - eps)
            loss = _xlog_probability(yk, p)
            if both_sides:
                loss += _xlog_probability(one - yk, one - p)
            total -= loss
            d[k] = ak - yk
        return total
    if not both_sides and n == 2:  # as above: two classes, straight-line
        for i in range(rows):
            row, weight = _row_and_weight(order, start, i, sample_weight)
            a0, a1, y0, y1 = A[i, 0], A[i, 1], Y[row, 0], Y[row, 1]
            p0, p1 = min(max(a0, eps), one - eps), min(max(a1, eps), one - eps)
            loss = _xlog_probability(y0, p0) + _xlog_probability(y1, p1)
            D[i, 0], D[i, 1] = (a0 - y0) * weight, (a1 - y1) * weight
            total -= weight * loss
        return total
    for i in range(rows):
        row, weight = _row_and_weight(order, start, i, sample_weight)
        loss = t(0)
        for j in range(n):
            p = min(max(A[i, j], eps), one - eps)
            loss -= _xlog_probability(Y[row, j], p)
            if both_sides:
                loss -= _xlog_probability(one - Y[row, j], one - p)
        _deltas(A, Y, row, weight, D, i)
        total += weight * loss
    return total


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def poisson_loss_and_delta(A, Y, order, start, sample_weight, D, rows):
    """The Poisson deviance of exp outputs, summed over the outputs."""
    wide_vectors()
    t = A.dtype.type
    total = t(0)
    for i in range(rows):
        row, weight = _row_and_weight(order, start, i, sample_weight)
        loss = t(0)
        for j in range(A.shape[1]):
            y = Y[row, j]
            loss += _xlogy(y, y / A[i, j]) - y + A[i, j]
        _deltas(A, Y, row, weight, D, i)
        total += weight * loss
    return total


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def squared_loss_and_delta(A, Y, order, start, sample_weight, D, rows):
    """Half the squared error, averaged over the outputs."""
    wide_vectors()
    t = A.dtype.type
    n = A.shape[1]
    total = t(0)
    for i in range(rows):
        row, weight = _row_and_weight(order, start, i, sample_weight)
        loss = t(0)
        for j in range(n):
            diff = Y[row, j] - A[i, j]
            loss += diff * diff
        _deltas(A, Y, row, weight, D, i)
        total += weight * (t(0.5) * loss / t(n))
    return total


@jit("kernels", cache=True, error_model="numpy")
def output_loss_and_delta(code, A, Y, order, start, sample_weight, D, rows):
    """The loss and output error of output activation ``code`` (see above): the
    log-loss for softmax and logistic outputs, the Poisson deviance for exp outputs,
    the squared error for identity outputs."""
    if code == OUT_SOFTMAX or code == OUT_LOGISTIC:
        if A.shape[1] == 1:
            return binary_log_loss_and_delta(A, Y, order, start, sample_weight, D, rows)
        both_sides = code == OUT_LOGISTIC
        return log_loss_and_delta(both_sides, A, Y, order, start, sample_weight, D, rows)
    if code == OUT_EXP:
        return poisson_loss_and_delta(A, Y, order, start, sample_weight, D, rows)
    return squared_loss_and_delta(A, Y, order, start, sample_weight, D, rows)
