"""The kernels' floating-point policy and math: the fastmath flags, bit casts, a division
by its reciprocal with the division's rounding (``quotient``), and tanh, exp and log of
the engine's own, which vectorize where libm's calls would not."""

import math

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from fastmlp.kernels._calls import jit

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


def wide_vectors():
    """Called first in a kernel: LLVM vectorizes the kernel's loops in the widest
    vectors the CPU has. Does nothing as Python (the JIT off).

    On an Intel CPU with AVX-512, LLVM prefers 256-bit vectors unless a function asks
    for wider ones (its ``"prefer-vector-width"`` attribute, which this sets on the
    calling function). On a 2-core Intel Xeon with AVX-512, against the engine before
    (``python -m benchmarks.ab <checkout before> . numba W1,W2,W3,W3-float32,W4-float32,
    W5,W5-float32,W6 8``): W5's epoch 1.19x as fast, W5-float32's 1.08x to 1.36x (three
    runs), W1's step 1.11x, W2's epoch 1.29x (in its subnormal state, README), W6's
    1.04x; W3, W3-float32 and W4-float32 within 2 % (their time is in BLAS).
    Without AVX-512 nothing changes: 256-bit vectors are the widest there. (Adam's step
    is the exception: ``DEFAULT_VECTORS``.) Each kernel compiled on its own needs
    the call: a loop is vectorized in its own function, before LLVM inlines that into
    a caller. (Vectors of other widths sum a reduction's lanes in another order: models
    trained on CPUs of different vector widths may differ in their last bits, as
    ``docs/threads-and-reproducibility.md`` says.)
    """


#: The LLVM function attribute :func:`wide_vectors` sets.
PREFER_WIDE_VECTORS = '"prefer-vector-width"="512"'

#: The kernels that loop but keep LLVM's default vectors, and why (measured with
#: ``python -m benchmarks.ab <checkout before> . numba W6,W5 8`` against the engine
#: before the wide vectors; tests/test_kernels.py::test_kernels_ask_for_wide_vectors
#: holds every other kernel to the call).
DEFAULT_VECTORS = {
    "_optimizers._adam_step": "in 512 bits W6's epoch (Adam on a million parameters, "
    "bound by memory) took 1.03x as long as before; in 256, 0.97x",
}


@intrinsic
def _prefer_wide_vectors(typingctx):
    def codegen(context, builder, signature, args):
        # llvmlite's attribute set names only LLVM's keyword attributes; a string
        # attribute goes in as its text, which the IR prints as written. Where an
        # llvmlite keeps its attributes otherwise, the kernel compiles as before
        # (tests/test_kernels.py::test_kernels_ask_for_wide_vectors says so).
        attributes = builder.function.attributes
        if isinstance(attributes, set):
            set.add(attributes, PREFER_WIDE_VECTORS)
        return context.get_dummy_value()

    return types.none(), codegen


@overload(wide_vectors, inline="always")  # inlined, so that the kernel gets the attribute
def _wide_vectors_compiled():
    return lambda: _prefer_wide_vectors()


# Only 'contract': reassociation would undo the two-part reduction by ln(2).
@jit("kernels", cache=True, error_model="numpy", fastmath={"contract"})
def tanh_of_abs(x):
    """tanh(|x|) and 1 - tanh(|x|), each to full precision, for a float32 or float64 x
    (see above). The second has no cancellation where tanh(|x|) nears 1: it is the
    quotient 2 / (exp(2|x|) + 1) itself."""
    wide_vectors()
    t = type(x)
    ax = abs(x)
    # Clamped so that 2**k stays in range: NaN (which fails the test) included.
    ax = ax if ax < t(_TANH_SATURATES) else t(_TANH_SATURATES)
    y = t(2) * ax
    # int32, not int64 or unsigned: only a conversion to int32 is one vector instruction
    # without AVX-512 (an unsigned one made tanh a scalar loop on an AVX2 machine: 3.9 ns
    # a value, against about 1; W5's forward pass, ``python -m fastmlp profile W5``).
    k = np.int32(y * t(_INV_LN2) + t(0.5))
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


@jit("kernels", cache=True, error_model="numpy")
def tanh(x):
    """tanh of a float32 or float64 scalar, computed in its dtype (see above)."""
    result = tanh_of_abs(x)[0]
    if x >= 0:
        return result
    return -result if x < 0 else x  # x is NaN


# exp and log, for the same reason as tanh: without a libm call, a loop of them
# vectorizes. Both work in float64 (float32 values are widened, and the result rounded
# once), and both are within 1 ulp of NumPy's (tests/test_kernels.py).
_LOG_P = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
          2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
          1.479819860511658591e-01)


@jit("kernels", cache=True, error_model="numpy", fastmath={"contract"})
def exp(x):
    """exp(x) in float64: Cody-Waite reduction and the Taylor polynomial of tanh's, then
    2**k in two halves, so that results below 2**-1022 round as subnormals; inf above
    709.78, 0 below -745.2, NaN for NaN."""
    wide_vectors()
    x = np.float64(x)
    x = x if not x > 710.0 else 710.0
    x = x if not x < -746.0 else -746.0
    kf = np.floor(x * _INV_LN2 + 0.5)
    kf = kf if kf == kf else 0.0  # NaN: r is NaN anyway
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    p = 0.0
    for c in _EXP_TAYLOR:
        p = p * r + c
    k = np.int32(kf)  # (int32: see tanh_of_abs)
    half = k >> 1
    return times_pow2(p, half) * times_pow2(1.0, k - half)


@jit("kernels", cache=True, error_model="numpy", fastmath={"contract"})
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
