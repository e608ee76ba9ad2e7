"""Elementwise pieces of the kernels: hidden activations, their derivatives, output and loss.

The codes are those of ``fastmlp.activations`` (one table for both engines). Every
function branches on the code once, outside its loop, so the inner loops stay simple
enough for LLVM to vectorize. Constants are built in the array's own dtype
(``dtype.type(c)``): a float64 literal would silently promote float32 arithmetic.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

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

# Every kernel is compiled with error_model="numpy": a float division by zero gives inf
# or NaN, as in scikit-learn's NumPy code, where Python's model would raise. Python's
# check is a branch in every division, which keeps LLVM from vectorizing the loop.

# tanh(x) = 1 - 2 / (exp(2|x|) + 1) for |x| >= 0.625, with exp(2|x|) = 2**k * exp(r),
# |r| <= ln(2) / 2, by Cody-Waite reduction, a degree-13 Taylor polynomial and 2**k
# added to the exponent bits; below 0.625, Cephes' rational approximation. Within 2 ulp
# of NumPy's tanh in both dtypes (tests/test_kernels.py::test_tanh_is_numpys), without a
# libm call or a table lookup, so a loop of it vectorizes: 1 ns per value instead of 15.
_TANH_SATURATES = 20.0  # tanh(20) rounds to 1 in float64
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_EXP_TAYLOR = tuple(1.0 / math.factorial(n) for n in range(13, -1, -1))
_TANH_P = (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3)
_TANH_Q = (1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)


def times_pow2(x, k):
    """x * 2**k, exactly, for a float32 or float64 x and an integer k with x * 2**k
    normal: as written here when the JIT is off; compiled, by adding k to the exponent
    bits of x."""
    return x * type(x)(2.0 ** int(k))


def float_bits(x):
    """The bits of a float64 as an int64 (compiled: a bit cast)."""
    return int(np.float64(x).view(np.int64))


def bits_float(bits):
    """The float64 with the bits of an int64 (compiled: a bit cast)."""
    return float(np.int64(bits).view(np.float64))


@intrinsic
def _bit_cast(typingctx, value, target):
    """``value`` reinterpreted as ``target`` (a type of the same width)."""
    result = target.instance_type

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(result))

    return result(value, target), codegen


def quotient(dividend, divisor, reciprocal):
    """``dividend / divisor`` as a division rounds it, given ``reciprocal``, the rounded
    ``1 / divisor`` (both normal numbers).

    Compiled, without a division, whose throughput here is a fifth of a product's:

    * float64: the product ``q = dividend * reciprocal`` is within one unit in the last
      place of the quotient; its remainder ``dividend - q * divisor`` is exact in a fused
      multiply-add, and ``q + remainder * reciprocal``, in another, rounds to the correctly
      rounded quotient (Markstein's theorem). This holds while the remainder is a normal
      number, and the quotient finite: for every dividend above about 1e-290 in
      magnitude (or zero) whose quotient does not overflow.
    * float32: the product in float64, by the float64 reciprocal, rounded to float32. Its
      error (2**-52) is below the distance (2**-49) from a ratio of two 24-bit numbers to
      the nearest float32 midpoint it does not equal, so the rounding is the division's:
      for every dividend.
    """
    return dividend / divisor


@intrinsic
def _fused_multiply_add(typingctx, a, b, c):
    """``a * b + c`` with one rounding (LLVM's fma: one instruction where the CPU has it)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@overload(quotient)
def _quotient_compiled(dividend, divisor, reciprocal):
    if not (isinstance(dividend, types.Float) and dividend == divisor == reciprocal):
        return None
    if dividend.bitwidth == 32:

        def in_float64(dividend, divisor, reciprocal):
            return np.float32(np.float64(dividend) * (1.0 / np.float64(divisor)))

        return in_float64

    def markstein(dividend, divisor, reciprocal):
        product = dividend * reciprocal
        remainder = _fused_multiply_add(-product, divisor, dividend)
        return _fused_multiply_add(remainder, reciprocal, product)

    return markstein


@overload(float_bits)
def _float_bits_compiled(x):
    return lambda x: _bit_cast(np.float64(x), types.int64)


@overload(bits_float)
def _bits_float_compiled(bits):
    return lambda bits: _bit_cast(np.int64(bits), types.float64)


@overload(times_pow2)
def _times_pow2_compiled(x, k):
    """k added to the exponent bits of x: for a normal x with x * 2**k normal, no check
    is made. Unlike a table of powers of two, it vectorizes without a gather."""
    if not isinstance(x, types.Float) or not isinstance(k, types.Integer):
        return None
    float_type = x
    same_width = types.int64 if x.bitwidth == 64 else types.int32
    exponent_shift = 52 if x.bitwidth == 64 else 23

    def add_to_exponent(x, k):
        bits = np.int64(_bit_cast(x, same_width)) + (np.int64(k) << exponent_shift)
        return _bit_cast(same_width(bits), float_type)

    return add_to_exponent


# Only 'contract': reassociation would undo the two-part reduction by ln(2).
@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _tanh_of_abs(x):
    """tanh(|x|) and 1 - tanh(|x|), each to full precision, for a float32 or float64 x
    (see above). The second has no cancellation where tanh(|x|) nears 1: it is the
    quotient 2 / (exp(2|x|) + 1) itself."""
    t = type(x)
    ax = abs(x)
    # Clamped so that 2**k stays in range: NaN (which fails the test) included.
    ax = ax if ax < t(_TANH_SATURATES) else t(_TANH_SATURATES)
    y = t(2) * ax
    k = np.uint64(y * t(_INV_LN2) + t(0.5))
    kf = t(k)
    r = (y - kf * t(_LN2_HI)) - kf * t(_LN2_LO)
    p = t(0)
    for c in _EXP_TAYLOR:
        p = p * r + t(c)
    z = ax * ax
    p0, p1, p2 = _TANH_P
    q0, q1, q2 = _TANH_Q
    # Both branches' quotients share one division, chosen before it:
    # small = ax + ax * z * P(z) / Q(z), large = 1 - 2 / (exp(2 ax) + 1).
    # Every operand is computed, then chosen: a branch would keep the loop scalar.
    small = ax < t(0.625)
    small_numerator = ax * z * ((t(p0) * z + t(p1)) * z + t(p2))
    small_denominator = ((z + t(q0)) * z + t(q1)) * z + t(q2)
    large_denominator = times_pow2(p, k) + t(1)
    numerator = small_numerator if small else t(2)
    denominator = small_denominator if small else large_denominator
    quotient = numerator / denominator
    if small:
        result = ax + quotient
        return result, t(1) - result
    return t(1) - quotient, quotient


@njit(cache=True, error_model="numpy")
def tanh(x):
    """tanh of a float32 or float64 scalar, computed in its dtype (see above)."""
    result = _tanh_of_abs(x)[0]
    if x >= 0:
        return result
    return -result if x < 0 else x  # x is NaN


@njit(cache=True, error_model="numpy")
def _gelu_parts(x):
    """For gelu's tanh form, 0.5 * x * (1 + tanh(u)): the factor 1 + tanh(u) and
    1 - tanh(u)**2, u = sqrt(2 / pi) * (x + 0.044715 * x**3), without cancellation.
    Written as 1 + tanh(u), the factor loses every digit as tanh(u) nears -1 (x below
    about -3): it is 1 - tanh(|u|) there, which ``_tanh_of_abs`` gives exactly."""
    t = type(x)
    u = t(_GELU_C) * (x + t(_GELU_K) * x * x * x)
    magnitude, complement = _tanh_of_abs(u)
    one_plus = complement if u < 0 else t(1) + magnitude
    return one_plus, complement * (t(1) + magnitude)  # (1 - tanh|u|) (1 + tanh|u|)


# exp and log, for the same reason as tanh: without a libm call, a loop of them
# vectorizes. Both work in float64 (float32 values are widened, and the result rounded
# once), and both are within 1 ulp of NumPy's (tests/test_kernels.py).
_LOG_P = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
          2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
          1.479819860511658591e-01)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def exp(x):
    """exp(x) in float64: Cody-Waite reduction and the Taylor polynomial of tanh's, then
    2**k in two halves, so that results below 2**-1022 round as subnormals; inf above
    709.78, 0 below -745.2, NaN for NaN."""
    x = np.float64(x)
    x = x if not x > 710.0 else 710.0
    x = x if not x < -746.0 else -746.0
    kf = np.floor(x * _INV_LN2 + 0.5)
    kf = kf if kf == kf else 0.0  # NaN: r is NaN anyway
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    p = 0.0
    for c in _EXP_TAYLOR:
        p = p * r + c
    k = np.int64(kf)
    half = k >> 1
    return times_pow2(p, half) * times_pow2(1.0, k - half)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def log_positive(x):
    """log(x) in float64 for a positive normal x (as the clipped probabilities of the
    log-losses are), by fdlibm's method without its special cases: x = 2**k * m with
    sqrt(2)/2 <= m < sqrt(2), and log(m) from s = (m - 1) / (m + 1)."""
    bits = float_bits(np.float64(x))
    k = (bits >> 52) - 1023
    mantissa = bits & 0x000FFFFFFFFFFFFF
    upper = (mantissa + 0x00095F6400000000) & 0x0010000000000000  # m >= sqrt(2): halve
    f = bits_float(mantissa | (upper ^ 0x3FF0000000000000)) - 1.0
    kf = np.float64(k + (upper >> 52))
    half_f2 = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    p1, p2, p3, p4, p5, p6, p7 = _LOG_P
    odd = w * (p2 + w * (p4 + w * p6))
    even = z * (p1 + w * (p3 + w * (p5 + w * p7)))
    return kf * _LN2_HI - ((half_f2 - (s * (half_f2 + odd + even) + kf * _LN2_LO)) - f)


@njit(cache=True, error_model="numpy")
def _logistic(z):
    """1 / (1 + exp(-z)) in z's dtype (computed in float64)."""
    return type(z)(1.0 / (1.0 + exp(-np.float64(z))))


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def activate(code, Z, A, rows):
    """A[:rows] = f(Z[:rows]) for a tile of pre-activations (C-contiguous blocks).

    Whole tiles, not rows: a call per row, with its views of the tile, costs as much as
    the arithmetic of a 100-unit row. One flat loop over the tile's values, so that a
    single output unit is vectorized over rows too.
    """
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


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def scale_by_derivative(code, Z, A, D, rows):
    """D[:rows] *= f'(Z[:rows]), with f' written in terms of A = f(Z) where it can be."""
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


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def _xlogy(x, y):
    return x * np.log(y) if x != 0 else x - x


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def _xlog_probability(x, p):
    """x * log(p), 0 where x is 0, for a probability p clipped away from 0: the log is
    taken either way and the choice made after, so a loop of it has no branch."""
    logarithm = type(p)(log_positive(p))
    return x * logarithm if x != 0 else x - x


# Each output activation and loss is a function of its own, and output_activate and
# output_loss_and_delta choose among them: a kernel compiled for one output (the fused
# kernel, ``_shallow.py``) calls only that one, and compiles only its code.
@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def softmax_rows(Z, A, rows):
    """A[:rows] = softmax of each row of Z[:rows]."""
    t = Z.dtype.type
    n = Z.shape[1]
    if n == 2:  # the same steps, straight-line: vectorized over rows
        for i in range(rows):
            largest = max(Z[i, 0], Z[i, 1])
            e0, e1 = t(exp(Z[i, 0] - largest)), t(exp(Z[i, 1] - largest))
            total = e0 + e1
            A[i, 0], A[i, 1] = e0 / total, e1 / total
        return
    for i in range(rows):
        largest = Z[i, 0]
        for j in range(1, n):
            largest = max(largest, Z[i, j])
        total = t(0)
        for j in range(n):
            A[i, j] = t(exp(Z[i, j] - largest))
            total += A[i, j]
        for j in range(n):
            A[i, j] /= total


# The elementwise outputs run one flat loop over the tile (see activate).
@njit(cache=True, error_model="numpy", inline="always")
def _flat(Z, A, rows):
    size = rows * Z.shape[1]
    return Z.reshape(-1)[:size], A.reshape(-1)[:size]


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def logistic_rows(Z, A, rows):
    """A[:rows] = the logistic function of Z[:rows]."""
    z, a = _flat(Z, A, rows)
    for k in range(z.shape[0]):
        a[k] = _logistic(z[k])


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def exp_rows(Z, A, rows):
    """A[:rows] = exp(Z[:rows]) (the Poisson loss's output)."""
    t = Z.dtype.type
    z, a = _flat(Z, A, rows)
    for k in range(z.shape[0]):
        a[k] = t(exp(z[k]))


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def identity_rows(Z, A, rows):
    """A[:rows] = Z[:rows]."""
    z, a = _flat(Z, A, rows)
    for k in range(z.shape[0]):
        a[k] = z[k]


@njit(cache=True, error_model="numpy")
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
def _deltas(A, Y, row, weight, D, i):
    for j in range(A.shape[1]):
        D[i, j] = (A[i, j] - Y[row, j]) * weight


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def binary_log_loss_and_delta(A, Y, order, start, sample_weight, D, rows):
    """The clipped log-loss of a single probability output and its complement: one row
    a lane, a loop LLVM vectorizes."""
    t = A.dtype.type
    one = t(1)
    eps = np.finfo(A.dtype).eps
    total = t(0)
    for i in range(rows):
        row, weight = _row_and_weight(order, start, i, sample_weight)
        a, y = A[i, 0], Y[row, 0]
        p = min(max(a, eps), one - eps)
        loss = _xlog_probability(y, p) + _xlog_probability(one - y, one - p)
        D[i, 0] = (a - y) * weight
        total -= weight * loss
    return total


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def log_loss_and_delta(both_sides, A, Y, order, start, sample_weight, D, rows):
    """The clipped log-loss of softmax outputs, or with ``both_sides`` (logistic
    outputs) that of each output and its complement; two or more outputs."""
    t = A.dtype.type
    one = t(1)
    n = A.shape[1]
    eps = np.finfo(A.dtype).eps
    total = t(0)
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


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def poisson_loss_and_delta(A, Y, order, start, sample_weight, D, rows):
    """The Poisson deviance of exp outputs, summed over the outputs."""
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


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def squared_loss_and_delta(A, Y, order, start, sample_weight, D, rows):
    """Half the squared error, averaged over the outputs."""
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


@njit(cache=True, error_model="numpy")
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
