"""Elementwise pieces of the kernels: hidden activations, their derivatives, output and loss.

The codes are those of ``fastmlp.activations`` (one table for both engines). Every
function branches on the code once, outside its loop, so the inner loops stay simple
enough for LLVM to vectorize. Constants are built in the array's own dtype
(``dtype.type(c)``): a float64 literal would silently promote float32 arithmetic.
"""

import numpy as np
from numba import njit

from fastmlp.activations import HIDDEN_ACTIVATIONS, LEAKY_RELU_SLOPE, OUTPUTS

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

# Not 'nnan'/'ninf': NaN and inf checks must survive. 'reassoc' lets the dot products
# and row sums vectorize; results stay identical run to run for one thread count.
FASTMATH = {"reassoc", "contract", "nsz"}


@njit(cache=True, fastmath=FASTMATH)
def activate_row(code, z, a):
    """a[:] = f(z) for one row of pre-activations."""
    t = z.dtype.type
    one = t(1)
    n = z.shape[0]
    if code == RELU:
        for j in range(n):
            a[j] = z[j] if z[j] > 0 else t(0)
    elif code == TANH:
        for j in range(n):
            a[j] = np.tanh(z[j])
    elif code == LOGISTIC:
        for j in range(n):
            a[j] = one / (one + np.exp(-z[j]))
    elif code == IDENTITY:
        for j in range(n):
            a[j] = z[j]
    elif code == LEAKY_RELU:
        slope = t(LEAKY_RELU_SLOPE)
        for j in range(n):
            a[j] = z[j] if z[j] > 0 else slope * z[j]
    elif code == GELU:
        c, k, half = t(_GELU_C), t(_GELU_K), t(0.5)
        for j in range(n):
            x = z[j]
            a[j] = half * x * (one + np.tanh(c * (x + k * x * x * x)))
    else:  # SILU
        for j in range(n):
            a[j] = z[j] / (one + np.exp(-z[j]))


@njit(cache=True, fastmath=FASTMATH)
def scale_by_derivative(code, z, a, delta):
    """delta[:] *= f'(z) for one row, with f' written in terms of a = f(z) where it can be."""
    t = z.dtype.type
    one = t(1)
    n = z.shape[0]
    if code == RELU:
        for j in range(n):
            if a[j] == 0:
                delta[j] = t(0)
    elif code == TANH:
        for j in range(n):
            delta[j] *= one - a[j] * a[j]
    elif code == LOGISTIC:
        for j in range(n):
            delta[j] *= a[j] * (one - a[j])
    elif code == IDENTITY:
        pass
    elif code == LEAKY_RELU:
        slope = t(LEAKY_RELU_SLOPE)
        for j in range(n):
            if not z[j] > 0:
                delta[j] *= slope
    elif code == GELU:
        c, k, half, three = t(_GELU_C), t(_GELU_K), t(0.5), t(3)
        for j in range(n):
            x = z[j]
            th = np.tanh(c * (x + k * x * x * x))
            slope = half * x * (one - th * th) * c * (one + three * k * x * x)
            delta[j] *= half * (one + th) + slope
    else:  # SILU
        for j in range(n):
            s = one / (one + np.exp(-z[j]))
            delta[j] *= s * (one + z[j] * (one - s))


@njit(cache=True, fastmath=FASTMATH)
def _xlogy(x, y):
    return x * np.log(y) if x != 0 else x - x


@njit(cache=True, fastmath=FASTMATH)
def output_loss_and_delta(code, z, y, weight, a, delta):
    """Output activation, the row's loss and the output error ``(a - y) * weight``, fused.

    Returns the row's unweighted loss, defined as in scikit-learn's ``_base.py``: clipped
    log-losses, squared error averaged over outputs, Poisson deviance summed over them.
    """
    t = z.dtype.type
    one = t(1)
    n = z.shape[0]
    loss = t(0)
    if code == OUT_SOFTMAX:
        largest = z[0]
        for j in range(1, n):
            largest = max(largest, z[j])
        total = t(0)
        for j in range(n):
            a[j] = np.exp(z[j] - largest)
            total += a[j]
        for j in range(n):
            a[j] /= total
    elif code == OUT_LOGISTIC:
        for j in range(n):
            a[j] = one / (one + np.exp(-z[j]))
    elif code == OUT_EXP:
        for j in range(n):
            a[j] = np.exp(z[j])
    else:
        for j in range(n):
            a[j] = z[j]

    if code == OUT_SOFTMAX or code == OUT_LOGISTIC:
        eps = np.finfo(z.dtype).eps
        both_sides = code == OUT_LOGISTIC or n == 1
        for j in range(n):
            p = min(max(a[j], eps), one - eps)
            loss -= _xlogy(y[j], p)
            if both_sides:
                loss -= _xlogy(one - y[j], one - p)
    elif code == OUT_EXP:
        for j in range(n):
            loss += _xlogy(y[j], y[j] / a[j]) - y[j] + a[j]
    else:
        for j in range(n):
            diff = y[j] - a[j]
            loss += diff * diff
        loss = t(0.5) * loss / t(n)

    for j in range(n):
        delta[j] = (a[j] - y[j]) * weight
    return loss
