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


# Unusual values: the careful steps. ``quotient`` rounds as a division does only for a
# float64 dividend above about 1e-290 (or zero). And some CPUs run an instruction that
# meets a subnormal number far more slowly: an Intel Xeon through a microcode assist, for
# a whole vector at a time. Both meet the weights and moments of dead ReLU units once
# they have decayed below the smallest normal number, after some hundreds of epochs.
# Where a trainer finds such a weight or first state (``has_unusual_values``, looked for
# every few calls: ``Trainer._careful_steps``), it steps with the careful steps below,
# until it finds none. They are compiled on their first use, for a few seconds
# (``python -m fastmlp warmup`` compiles them with the rest).
#
# A careful step runs over blocks of parameters, first checking each block's in vectors
# (the block stays in L1 for the update). A block whose parameters are all usual
# (``_usual``) runs the plain loop. In another, the vector loop updates the usual ones,
# computing on zeros in the other lanes and storing those lanes back unchanged; the
# unusual ones are gathered first and updated together in a loop of their own,
# dividing: a CPU that assists each instruction meeting a subnormal number takes one
# assist per vector of them, not one for every vector holding one. Every parameter gets
# the same formula either way (``_values``: ``_sgd_update``'s and ``_adam_update``'s),
# so the results are NumPy's, to the bit. Adam's step on a 2-core Intel Xeon, in W2's
# subnormal state (139 of its 401 weights and first moments subnormal): 16.0 us plain,
# 10.7 us careful, 3.4 us plain with those values zeroed; in W3-float32's (some 2,900
# of its 50,826 first moments subnormal, and many more a little above the smallest
# normal number, whose products are subnormal): 302, 259 and 294 us (``python -m
# benchmarks.subnormals W2 --blocks 12 --steps``, and ``W3-float32 --blocks 6 --epochs
# 150 --steps``): most of what subnormal numbers cost there is the arithmetic itself.
#: Parameters per block of a careful step: a block of each array it reads (20 KiB in
#: float64) stays in L1 between the check and the update.
STEP_BLOCK = 512


@njit(cache=True, error_model="numpy", inline="always")
def _bounds(theta):
    """``(small, large, zero)``: a parameter is usual where its weight and first state are
    zero or at least ``small`` in magnitude (2**64 times the smallest normal float64, so
    that ``quotient``'s dividend is above its bound as well, and products with the
    step's constants stay normal; float32, whose quotient holds for every dividend:
    2**12 times) and, in float64, where its dividend is zero or between ``small`` and
    ``large`` (a quotient by a reciprocal of up to 1e37, ``_reciprocal``, stays finite).
    ``zero``: the dtype's."""
    t = theta.dtype.type
    finfo = np.finfo(theta.dtype)
    if finfo.tiny < 1e-300:  # float64
        return t(finfo.tiny * 2.0**64), t(2.0**900), t(0)
    return t(finfo.tiny * 2.0**12), t(finfo.max), t(0)


@njit(cache=True, error_model="numpy", inline="always")
def _small(x, small):
    return (abs(x) < small) & (x != 0)


#: Per dtype, ``_bounds``'s ``small``, for :func:`has_unusual_values`.
UNUSUAL_BELOW = {
    np.dtype(np.float64): np.finfo(np.float64).tiny * 2.0**64,
    np.dtype(np.float32): np.float32(np.finfo(np.float32).tiny * 2.0**12),
}


#: Values :func:`has_unusual_values` looks at a time: its temporaries stay this small
#: (W6's first layer alone has a million weights).
UNUSUAL_CHUNK = 16384


def has_unusual_values(theta, state_1):
    """Whether some weight or first state (velocity, first moment) is unusual: not zero,
    and below ``_bounds``'s ``small``. The trainer then runs the careful steps
    (``CAREFUL_FINISH_AND_STEP``)."""
    small = UNUSUAL_BELOW[theta.dtype]
    for values in (theta, state_1):
        for lo in range(0, values.shape[0], UNUSUAL_CHUNK):
            chunk = values[lo : lo + UNUSUAL_CHUNK]
            near_zero = (chunk < small) & (chunk > -small)  # (masks: 1 byte a value)
            if np.any(near_zero & (chunk != 0)):
                return True
    return False


@njit(cache=True, error_model="numpy", inline="always")
def _dividend(grad, other, theta_p, p, alpha, has_other):
    """The numerator of a parameter's gradient, as scikit-learn sums it."""
    if has_other:
        return grad[p] + other[p] + alpha * theta_p
    return grad[p] + alpha * theta_p


@njit(cache=True, error_model="numpy", inline="always")
def _usual(theta_p, state_1_p, grad, other, p, alpha, has_other, bounds):
    """Whether parameter p is usual (see ``_bounds``), and its dividend where it is (0
    where it is not; no arithmetic meets its unusual values)."""
    small, large, zero = bounds
    usual = not (_small(theta_p, small) | _small(state_1_p, small))
    dividend = _dividend(grad, other, theta_p if usual else zero, p, alpha, has_other)
    if small < 1e-200:  # float64 (decided at compile time)
        size = abs(dividend)
        usual = usual & (size < large) & ((size >= small) | (dividend == 0))  # NaN: unusual
    return usual, dividend if usual else zero


@njit(cache=True, error_model="numpy", inline="always")
def _values(solver, theta_p, state_1_p, state_2_p, g, optimizer, step_size):
    """A parameter and its state after a step with gradient ``g``: SGD's (Nesterov's or
    not; its one state, the velocity) or Adam's (its two moments)."""
    if solver == ADAM:
        beta_1, beta_2 = optimizer.beta_1, optimizer.beta_2
        one = optimizer.state_1.dtype.type(1)
        m = beta_1 * state_1_p + (one - beta_1) * g
        v = beta_2 * state_2_p + (one - beta_2) * (g * g)
        return theta_p + -step_size * m / (np.sqrt(v) + optimizer.epsilon), m, v
    momentum, learning_rate = optimizer.momentum, optimizer.learning_rate
    velocity = momentum * state_1_p - learning_rate * g
    if optimizer.nesterov:
        return theta_p + (momentum * velocity - learning_rate * g), velocity, state_2_p
    return theta_p + velocity, velocity, state_2_p


@njit(cache=True, error_model="numpy", inline="always")
def _state_2(optimizer, p, solver):
    return optimizer.state_2[p] if solver == ADAM else optimizer.state_1.dtype.type(0)


# Not inlined by Numba (LLVM inlines it): so inlined, into a kernel that calls
# wide_vectors(), its store to the first state was lost (Numba 0.68).
@jit("kernels", cache=True, error_model="numpy")
def _store(theta, optimizer, p, solver, values):
    theta[p], optimizer.state_1[p] = values[0], values[1]
    if solver == ADAM:
        optimizer.state_2[p] = values[2]


@njit(cache=True, error_model="numpy", inline="always")
def _divided(theta, grad, other, optimizer, scale, alpha, step_size, solver, has_other):
    """The step dividing by ``scale`` (where its reciprocal is not usable)."""
    for p in range(theta.shape[0]):
        g = _dividend(grad, other, theta[p], p, alpha, has_other) / scale
        _store(theta, optimizer, p, solver,
               _values(solver, theta[p], optimizer.state_1[p], _state_2(optimizer, p, solver),
                       g, optimizer, step_size))


@njit(cache=True, error_model="numpy", inline="always")
def _block(theta, grad, other, optimizer, scale, reciprocal, alpha, step_size, solver,
           has_other):
    bounds = _bounds(theta)
    usual = True
    for p in range(theta.shape[0]):
        usual &= _usual(theta[p], optimizer.state_1[p], grad, other, p, alpha, has_other,
                        bounds)[0]
    if usual:
        _plain(theta, grad, other, optimizer, scale, reciprocal, alpha, step_size, solver,
               has_other)
    else:
        _unusual_block(theta, grad, other, optimizer, scale, reciprocal, alpha, step_size,
                       solver, has_other)


@njit(cache=True, error_model="numpy", inline="always")
def _plain(theta, grad, other, optimizer, scale, reciprocal, alpha, step_size, solver,
           has_other):
    """The step in one vector loop (see above)."""
    for p in range(theta.shape[0]):
        g = quotient(_dividend(grad, other, theta[p], p, alpha, has_other), scale,
                     reciprocal)
        _store(theta, optimizer, p, solver,
               _values(solver, theta[p], optimizer.state_1[p], _state_2(optimizer, p, solver),
                       g, optimizer, step_size))


@jit("kernels", cache=True, error_model="numpy")
def _unusual_block(theta, grad, other, optimizer, scale, reciprocal, alpha, step_size,
                   solver, has_other):
    """The step on a block some of whose parameters are unusual (see above)."""
    wide_vectors()
    t = theta.dtype.type
    zero = t(0)
    bounds = _bounds(theta)
    state_1, n = optimizer.state_1, theta.shape[0]
    # The unusual ones' values, gathered before the loop below updates the others
    # (without a branch: each value is written, and kept where it is unusual).
    where = np.empty(n, np.int64)
    gathered = np.empty((5, n), theta.dtype)
    count = 0
    for p in range(n):
        theta_p, state_1_p = theta[p], state_1[p]
        where[count] = p
        gathered[0, count], gathered[1, count] = theta_p, state_1_p
        gathered[2, count] = _state_2(optimizer, p, solver)
        gathered[3, count] = grad[p]
        gathered[4, count] = other[p] if has_other else zero
        usual = _usual(theta_p, state_1_p, grad, other, p, alpha, has_other, bounds)[0]
        count += 0 if usual else 1
    for p in range(n):
        theta_p, state_1_p, state_2_p = theta[p], state_1[p], _state_2(optimizer, p, solver)
        usual, dividend = _usual(theta_p, state_1_p, grad, other, p, alpha, has_other,
                                 bounds)
        values = _values(solver, theta_p if usual else zero, state_1_p if usual else zero,
                         state_2_p if usual else zero, quotient(dividend, scale, reciprocal),
                         optimizer, step_size)
        _store(theta, optimizer, p, solver,
               (values[0] if usual else theta_p, values[1] if usual else state_1_p,
                values[2] if usual else state_2_p))
    values, grads, others = gathered[:3, :count], gathered[3], gathered[4]
    for i in range(count):
        g = _dividend(grads, others, values[0, i], i, alpha, has_other) / scale
        values[0, i], values[1, i], values[2, i] = _values(
            solver, values[0, i], values[1, i], values[2, i], g, optimizer, step_size)
    for i in range(count):
        _store(theta, optimizer, where[i], solver, (values[0, i], values[1, i], values[2, i]))


@njit(cache=True, error_model="numpy", inline="always")
def _careful_step(theta, grad, other, optimizer, scale, alpha, step_size, solver):
    """One step of ``solver`` over ``theta`` by blocks (see above), dividing where the
    reciprocal is not usable. A second gradient is added to the first block by block
    (the dividend's sum as the plain loops add it): the loops are compiled once, for
    one gradient. Each block's loops run on views of it: with its bounds as the
    loops' (``range(lo, hi)``), LLVM left them scalar."""
    reciprocal = _reciprocal(theta, scale)
    has_other = other.shape[0] > 0
    if reciprocal == 0:
        _divided(theta, grad, other, optimizer, scale, alpha, step_size, solver, has_other)
        return
    summed = np.empty(STEP_BLOCK if has_other else 0, theta.dtype)
    for lo in range(0, theta.shape[0], STEP_BLOCK):
        hi = min(lo + STEP_BLOCK, theta.shape[0])
        block_grad = grad[lo:hi]
        if has_other:
            block_grad = summed[: hi - lo]
            for p in range(hi - lo):
                block_grad[p] = grad[lo + p] + other[lo + p]
        _block(theta[lo:hi], block_grad, other[:0], region(optimizer, lo, hi), scale,
               reciprocal, alpha, step_size, solver, False)


@jit("kernels", cache=True, error_model="numpy")
def _careful_sgd_step(theta, grad, other, optimizer, scale, alpha):
    wide_vectors()
    _careful_step(theta, grad, other, optimizer, scale, alpha, theta.dtype.type(0), SGD)


@jit("kernels", cache=True, error_model="numpy")
def _careful_adam_step(theta, grad, other, optimizer, scale, alpha, step_size):
    # In wide vectors, unlike _adam_step: more unusual values to a vector.
    wide_vectors()
    _careful_step(theta, grad, other, optimizer, scale, alpha, step_size, ADAM)


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
    """As :func:`sgd_finish_and_step`, by blocks, the unusual values set apart (see
    above): the same results, to the bit, with ``quotient``'s range kept and few
    instructions meeting a subnormal number. Compiled on its first use: where weights or
    states have decayed that far."""
    wide_vectors()
    alpha = optimizer.alpha
    penalty = _penalty(theta, n_coef_params, alpha, weight_sum)
    for lo, hi, region_alpha in ((0, n_coef_params, alpha),
                                 (n_coef_params, theta.shape[0], theta.dtype.type(0))):
        _careful_sgd_step(theta[lo:hi], grad[lo:hi], other[lo:hi],
                          region(optimizer, lo, hi), weight_sum, region_alpha)
    return penalty


@jit("address", cache=True, error_model="numpy")
def careful_adam_finish_and_step(theta, grad, other, n_coef_params, weight_sum, step_size,
                                 optimizer):
    """As :func:`adam_finish_and_step`, as :func:`careful_sgd_finish_and_step` is
    :func:`sgd_finish_and_step`."""
    wide_vectors()
    alpha = optimizer.alpha
    penalty = _penalty(theta, n_coef_params, alpha, weight_sum)
    for lo, hi, region_alpha in ((0, n_coef_params, alpha),
                                 (n_coef_params, theta.shape[0], theta.dtype.type(0))):
        _careful_adam_step(theta[lo:hi], grad[lo:hi], other[lo:hi],
                           region(optimizer, lo, hi), weight_sum, region_alpha, step_size)
    return penalty


#: The step of each solver code.
FINISH_AND_STEP = {SGD: sgd_finish_and_step, ADAM: adam_finish_and_step}
#: The careful step of each solver code (see above).
CAREFUL_FINISH_AND_STEP = {SGD: careful_sgd_finish_and_step, ADAM: careful_adam_finish_and_step}


def finish_and_step_signature(dtype):
    """The one signature each step of ``FINISH_AND_STEP`` is compiled for in ``dtype``."""
    return real(dtype)(
        reals(dtype), reals(dtype), reals(dtype), int64(dtype), real(dtype), real(dtype),
        numba_type(Optimizer, dtype),
    )  # theta, grad, other, n_coef_params, weight_sum, step_size, optimizer
