"""The optimizers: their state and settings in one :class:`Optimizer`, scikit-learn's
gradient normalisation, and one step of SGD (with momentum, Nesterov's or not) or Adam
per solver (``FINISH_AND_STEP``), compiled for one signature each and called by address
from the epochs (``_epochs``). The step rounds as scikit-learn's NumPy code does, bit for
bit (``tests/test_kernels.py::test_the_step_rounds_as_numpy_does``).
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from fastmlp.kernels._calls import jit
from fastmlp.kernels._math import quotient, wide_vectors
from fastmlp.kernels._structs import flag, int64, make, numba_type, real, reals

SGD = 0
ADAM = 1
#: The code of each solver's name.
SOLVERS = {"sgd": SGD, "adam": ADAM}


class Optimizer(NamedTuple):
    """An optimizer's state and settings, in one argument: what the epochs and the steps
    read of it. Built by :meth:`of`."""

    state_1: reals  # SGD's velocities, or Adam's first moments: one per parameter
    state_2: reals  # Adam's second moments (empty for SGD)
    solver: int64  # SGD or ADAM
    adam_step: int64  # Adam's steps taken before the call
    learning_rate: real
    alpha: real  # the L2 penalty
    momentum: real  # (SGD)
    nesterov: flag  # (SGD)
    beta_1: real  # (Adam)
    beta_2: real  # (Adam)
    epsilon: real  # (Adam)

    @classmethod
    def of(cls, trainer, learning_rate):
        """The optimizer of a :class:`~fastmlp.kernels._api.Trainer` (its settings and
        state are its attributes of the same names) for a call at ``learning_rate``."""
        return make(
            cls, trainer.network.dtype, state_1=trainer.state_1, state_2=trainer.state_2,
            solver=SOLVERS[trainer.solver], adam_step=trainer.adam_step,
            learning_rate=learning_rate, alpha=trainer.alpha, momentum=trainer.momentum,
            nesterov=trainer.nesterov, beta_1=trainer.beta_1, beta_2=trainer.beta_2,
            epsilon=trainer.epsilon,
        )


@njit(cache=True, error_model="numpy", inline="always")
def with_state(optimizer, state_1, state_2):
    """``optimizer`` with the state ``state_1`` and ``state_2`` (a slice or a copy)."""
    return Optimizer(state_1, state_2, *optimizer[2:])


@njit(cache=True, error_model="numpy", inline="always")
def region(optimizer, lo, hi):
    """``optimizer`` with the state of parameters ``lo`` to ``hi`` only."""
    return with_state(optimizer, optimizer.state_1[lo:hi], optimizer.state_2[lo:hi])


@njit(cache=True, error_model="numpy", inline="always")
def next_step(optimizer, adam_step):
    """The step size of the next batch's step, and the step count after it: for Adam,
    the bias-corrected rate, as scikit-learn computes it, and one step more; for SGD
    (whose step reads the learning rate), 0 and the count unchanged."""
    t = optimizer.state_1.dtype.type
    step_size = t(0)
    if optimizer.solver == ADAM:
        adam_step += 1
        # As scikit-learn: the bias corrections in float64, the step in the data's dtype.
        step_size = t(
            float(optimizer.learning_rate)
            * np.sqrt(1.0 - float(optimizer.beta_2) ** adam_step)
            / (1.0 - float(optimizer.beta_1) ** adam_step)
        )
    return step_size, adam_step


@jit("python", cache=True, error_model="numpy")
def finish_gradient(grad, theta, n_coef_params, alpha, weight_sum):
    """scikit-learn's normalisation: (A.T @ delta + alpha * W) / n and delta.sum(0) / n.

    Returns the penalty term ``0.5 * alpha * ||W||^2 / n`` of the loss.
    """
    wide_vectors()
    t = theta.dtype.type
    squared_norm = t(0)
    for p in range(n_coef_params):
        squared_norm += theta[p] * theta[p]
        grad[p] = (grad[p] + alpha * theta[p]) / weight_sum
    for p in range(n_coef_params, grad.shape[0]):
        grad[p] = grad[p] / weight_sum
    return t(0.5) * alpha * squared_norm / weight_sum


@jit("kernels", cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})
def _squared_norm(values):
    wide_vectors()
    total = values.dtype.type(0)
    for p in range(values.shape[0]):
        total += values[p] * values[p]
    return total


# No fastmath in the updates: they must round exactly as scikit-learn's NumPy code does.
# Each loop is branch-free inside (NumPy's error model: no zero-division check), so LLVM
# vectorizes it, sqrt included, without changing a single rounding. A second gradient
# (``other``: the other thread's chunk, or empty) is added in the same pass, so the sum of
# the two is never stored and read back: the update of a wide network is bound by memory
# traffic. The division by the batch's weight sum is done by its reciprocal
# (``_math.quotient``: the division's rounding, without a division). A division has a
# fifth of a product's throughput here: it took a quarter of a wide network's step.
@njit(cache=True, error_model="numpy", inline="always")
def _reciprocal(theta, scale):
    """``1 / scale`` for ``_math.quotient``; 0 where ``scale`` is 0 or too large or small
    for both it and its reciprocal to be normal numbers (the step then divides)."""
    t = theta.dtype.type
    usable = 1e-37 <= abs(float(scale)) <= 1e37
    return t(1) / scale if usable else t(0)


@njit(cache=True, error_model="numpy", inline="always")
def _sgd_update(theta, optimizer, p, g):
    velocity, learning_rate = optimizer.state_1, optimizer.learning_rate
    momentum, nesterov = optimizer.momentum, optimizer.nesterov
    v = momentum * velocity[p] - learning_rate * g
    velocity[p] = v
    theta[p] = theta[p] + (momentum * v - learning_rate * g) if nesterov else theta[p] + v


# _sgd_step's division loops, for the careful steps below: compiled apart. As a helper
# that Numba inlined into a kernel calling wide_vectors(), it lost _sgd_update's store
# of the velocity (Numba 0.68). The plain steps keep their own copies: calling these
# made a first fit's compile of Adam's step 1.32 to 1.46 s instead of 1.17 to 1.24
# (three alternating processes each on an empty cache, compiling adam_finish_and_step).
@jit("kernels", cache=True, error_model="numpy")
def _sgd_divided(theta, grad, other, optimizer, scale, alpha):
    """The SGD step dividing by ``scale``."""
    wide_vectors()
    if other.shape[0] == 0:
        for p in range(theta.shape[0]):
            g = (grad[p] + alpha * theta[p]) / scale
            _sgd_update(theta, optimizer, p, g)
    else:
        for p in range(theta.shape[0]):
            g = (grad[p] + other[p] + alpha * theta[p]) / scale
            _sgd_update(theta, optimizer, p, g)


@jit("kernels", cache=True, error_model="numpy")
def _sgd_step(theta, grad, other, optimizer, scale, alpha):
    wide_vectors()
    reciprocal = _reciprocal(theta, scale)
    if other.shape[0] == 0 and reciprocal != 0:
        for p in range(theta.shape[0]):
            g = quotient(grad[p] + alpha * theta[p], scale, reciprocal)
            _sgd_update(theta, optimizer, p, g)
    elif other.shape[0] == 0:
        for p in range(theta.shape[0]):
            g = (grad[p] + alpha * theta[p]) / scale
            _sgd_update(theta, optimizer, p, g)
    elif reciprocal != 0:
        for p in range(theta.shape[0]):
            g = quotient(grad[p] + other[p] + alpha * theta[p], scale, reciprocal)
            _sgd_update(theta, optimizer, p, g)
    else:
        for p in range(theta.shape[0]):
            g = (grad[p] + other[p] + alpha * theta[p]) / scale
            _sgd_update(theta, optimizer, p, g)


@njit(cache=True, error_model="numpy", inline="always")
def _adam_update(theta, optimizer, p, g, step_size):
    m, v = optimizer.state_1, optimizer.state_2
    beta_1, beta_2 = optimizer.beta_1, optimizer.beta_2
    one = theta.dtype.type(1)
    m_p = beta_1 * m[p] + (one - beta_1) * g
    v_p = beta_2 * v[p] + (one - beta_2) * (g * g)
    m[p] = m_p
    v[p] = v_p
    theta[p] = theta[p] + -step_size * m_p / (np.sqrt(v_p) + optimizer.epsilon)


@jit("kernels", cache=True, error_model="numpy")
def _adam_divided(theta, grad, other, optimizer, scale, alpha, step_size):
    """Adam's step dividing by ``scale``: _adam_step's division loops, compiled apart as
    _sgd_divided is."""
    wide_vectors()
    if other.shape[0] == 0:
        for p in range(theta.shape[0]):
            g = (grad[p] + alpha * theta[p]) / scale
            _adam_update(theta, optimizer, p, g, step_size)
    else:
        for p in range(theta.shape[0]):
            g = (grad[p] + other[p] + alpha * theta[p]) / scale
            _adam_update(theta, optimizer, p, g, step_size)


@jit("kernels", cache=True, error_model="numpy")
def _adam_step(theta, grad, other, optimizer, scale, alpha, step_size):
    # In LLVM's default vectors, not wide_vectors(): see _math.DEFAULT_VECTORS.
    reciprocal = _reciprocal(theta, scale)
    if other.shape[0] == 0 and reciprocal != 0:
        for p in range(theta.shape[0]):
            g = quotient(grad[p] + alpha * theta[p], scale, reciprocal)
            _adam_update(theta, optimizer, p, g, step_size)
    elif other.shape[0] == 0:
        for p in range(theta.shape[0]):
            g = (grad[p] + alpha * theta[p]) / scale
            _adam_update(theta, optimizer, p, g, step_size)
    elif reciprocal != 0:
        for p in range(theta.shape[0]):
            g = quotient(grad[p] + other[p] + alpha * theta[p], scale, reciprocal)
            _adam_update(theta, optimizer, p, g, step_size)
    else:
        for p in range(theta.shape[0]):
            g = (grad[p] + other[p] + alpha * theta[p]) / scale
            _adam_update(theta, optimizer, p, g, step_size)


# The careful steps. ``quotient`` rounds as a division does only for a float64 dividend
# above about 1e-290 (or zero); float32's holds for every dividend. Dividends that small
# come with weights and first moments that have decayed below the smallest normal
# float64 (those of dead ReLU units, after hundreds of epochs: a subnormal weight's
# penalty gradient is below that bound). Where a trainer finds such values in float64
# (``has_unusual_values``, every few calls: ``Trainer._careful_steps``), it steps with
# the careful steps, which divide: NumPy's results to the bit there too, for a division
# a parameter (a fifth of a product's throughput, see above). Where subnormal numbers are
# slow they are faster, too: the division meets them once where quotient's product and
# two fused multiply-adds met them thrice. Adam's step in W2's subnormal state (139 of
# its 401 weights and first moments subnormal) on a 2-core Intel Xeon: 15.9 us plain,
# 10.8 us careful, 3.4 us plain with those values zeroed (``python -m
# benchmarks.subnormals W2 --blocks 12 --steps``). A careful step that also gathered the
# unusual values and stepped them apart, in fewer vectors, was no faster there (10.7
# us) and made W3-float32's epoch 3 to 5 % slower (its unusual values lie together).

#: Below this magnitude (and not zero) a float64 weight or first state is unusual:
#: 2**64 times the smallest normal number, where its penalty gradient is still above
#: ``quotient``'s bound.
UNUSUAL_BELOW = np.finfo(np.float64).tiny * 2.0**64
#: Values :func:`has_unusual_values` looks at a time: its temporaries stay this small
#: (W6's first layer alone has a million weights).
UNUSUAL_CHUNK = 8192
# A float64's bits shifted left by one drop its sign and order the rest as |x|: with one
# taken away (unsigned, so that zero wraps round to the largest), 0 < |x| < UNUSUAL_BELOW
# is one comparison. Three NumPy calls a chunk instead of six: a look at W2's network
# took 10 us instead of 15 (the timeit in Trainer._careful_steps), which the notebook's
# gradient_step pays at every call (its trainer is reset, and looks, each time).
_ONE = np.uint64(1)
_UNUSUAL_BITS_BELOW = (np.float64(UNUSUAL_BELOW).view(np.uint64) << _ONE) - _ONE


def has_unusual_values(theta, state_1):
    """Whether some float64 weight or first state (velocity, first moment) is unusual:
    not zero, and below ``UNUSUAL_BELOW`` in magnitude. The trainer then runs the careful
    steps (``CAREFUL_FINISH_AND_STEP``). Never in float32."""
    if theta.dtype != np.float64:
        return False
    for values in (theta, state_1):
        for lo in range(0, values.shape[0], UNUSUAL_CHUNK):
            shifted = values[lo : lo + UNUSUAL_CHUNK].view(np.uint64) << _ONE
            np.subtract(shifted, _ONE, out=shifted)  # (temporaries: 9 bytes a value)
            if (shifted < _UNUSUAL_BITS_BELOW).any():
                return True
    return False


# The step is compiled per solver: a first fit compiles the one it runs (SGD's step
# took half a second of an Adam fit's compile). Both take the same arguments, so
# that the loops calling them by address are compiled once for either.
@njit(cache=True, error_model="numpy", inline="always")
def _penalty(theta, n_coef_params, alpha, weight_sum):
    """The penalty of the loss, ``0.5 * alpha * ||W||^2 / n``."""
    return theta.dtype.type(0.5) * alpha * _squared_norm(theta[:n_coef_params]) / weight_sum


@jit("address", cache=True, error_model="numpy")
def sgd_finish_and_step(theta, grad, other, n_coef_params, weight_sum, step_size, optimizer):
    """scikit-learn's gradient normalisation and one SGD step (``optimizer.state_1``
    velocities, of ``theta``'s parameters; Nesterov or not); ``step_size`` and Adam's
    settings are not used.

    Per parameter: ``g = (sum + alpha * w) / n`` (no alpha for intercepts), with ``sum``
    ``grad`` or, given a second gradient ``other`` (empty for none), ``grad + other``,
    and the step fused in the same pass. Returns the penalty of the loss,
    ``0.5 * alpha * ||W||^2 / n``, from the weights before the step.
    """
    wide_vectors()
    alpha = optimizer.alpha
    penalty = _penalty(theta, n_coef_params, alpha, weight_sum)
    for lo, hi, region_alpha in ((0, n_coef_params, alpha),
                                 (n_coef_params, theta.shape[0], theta.dtype.type(0))):
        _sgd_step(theta[lo:hi], grad[lo:hi], other[lo:hi], region(optimizer, lo, hi),
                  weight_sum, region_alpha)
    return penalty


@jit("address", cache=True, error_model="numpy")
def adam_finish_and_step(theta, grad, other, n_coef_params, weight_sum, step_size, optimizer):
    """As :func:`sgd_finish_and_step`, with one Adam step (``optimizer.state_1`` and
    ``state_2`` moments, ``step_size`` the bias-corrected rate); the learning rate and
    SGD's settings are not used."""
    wide_vectors()
    alpha = optimizer.alpha
    penalty = _penalty(theta, n_coef_params, alpha, weight_sum)
    for lo, hi, region_alpha in ((0, n_coef_params, alpha),
                                 (n_coef_params, theta.shape[0], theta.dtype.type(0))):
        _adam_step(theta[lo:hi], grad[lo:hi], other[lo:hi], region(optimizer, lo, hi),
                   weight_sum, region_alpha, step_size)
    return penalty


@jit("address", cache=True, error_model="numpy")
def careful_sgd_finish_and_step(theta, grad, other, n_coef_params, weight_sum, step_size,
                                optimizer):
    """As :func:`sgd_finish_and_step`, dividing (the careful steps, above): compiled on
    its first use."""
    wide_vectors()
    alpha = optimizer.alpha
    penalty = _penalty(theta, n_coef_params, alpha, weight_sum)
    for lo, hi, region_alpha in ((0, n_coef_params, alpha),
                                 (n_coef_params, theta.shape[0], theta.dtype.type(0))):
        _sgd_divided(theta[lo:hi], grad[lo:hi], other[lo:hi], region(optimizer, lo, hi),
                     weight_sum, region_alpha)
    return penalty


@jit("address", cache=True, error_model="numpy")
def careful_adam_finish_and_step(theta, grad, other, n_coef_params, weight_sum, step_size,
                                 optimizer):
    """As :func:`adam_finish_and_step`, dividing (the careful steps, above): compiled on
    its first use."""
    wide_vectors()
    alpha = optimizer.alpha
    penalty = _penalty(theta, n_coef_params, alpha, weight_sum)
    for lo, hi, region_alpha in ((0, n_coef_params, alpha),
                                 (n_coef_params, theta.shape[0], theta.dtype.type(0))):
        _adam_divided(theta[lo:hi], grad[lo:hi], other[lo:hi], region(optimizer, lo, hi),
                      weight_sum, region_alpha, step_size)
    return penalty


#: The step of each solver code.
FINISH_AND_STEP = {SGD: sgd_finish_and_step, ADAM: adam_finish_and_step}
#: The careful step of each solver code (see the careful steps, above).
CAREFUL_FINISH_AND_STEP = {SGD: careful_sgd_finish_and_step, ADAM: careful_adam_finish_and_step}


def finish_and_step_signature(dtype):
    """The one signature each step of ``FINISH_AND_STEP`` is compiled for in ``dtype``."""
    return real(dtype)(
        reals(dtype), reals(dtype), reals(dtype), int64(dtype), real(dtype), real(dtype),
        numba_type(Optimizer, dtype),
    )  # theta, grad, other, n_coef_params, weight_sum, step_size, optimizer
