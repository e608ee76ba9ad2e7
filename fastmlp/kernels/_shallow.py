"""One hidden ReLU layer on at most four inputs (the notebook's network): two fused passes
over the hidden units, per four rows (the outputs) and per two (the gradient).

``tile_gradient`` runs a layer at a time over a tile, storing each layer's z, a and delta
and reading them back: on a 2-100-1 network that is some ten passes over a 64 x 100
tile, bound by loads and stores. With few inputs a hidden unit's z is two to five
multiply-adds from values in registers, so here it is computed twice instead of stored:
a first pass over the hidden units gives the rows' outputs, a second, after the loss,
their gradient, with every accumulator in L1 (W2's epoch on one thread, measured when
this kernel was written: 0.38 ms on ``tile_gradient``, 0.24 ms here, with 64-row tiles
both; ``python -m benchmarks.ab`` on the commits before and after).

``tile_gradient_shallow(n_in, n_out)`` takes the arguments of ``tile_gradient`` and uses
its workspace layout (the output layer's z, a and delta blocks, and its transposed
blocks), so every caller runs either through the same address (``fastmlp.kernels._calls``).
It reads dense rows only: a sparse X takes ``tile_gradient``, whatever its shape.
"""

import functools

import numpy as np
from numba import njit

from fastmlp.kernels._activations import (
    OUT_EXP,
    OUT_LOGISTIC,
    OUT_SOFTMAX,
    RELU,
    binary_log_loss_and_delta,
    exp_rows,
    identity_rows,
    log_loss_and_delta,
    logistic_rows,
    poisson_loss_and_delta,
    softmax_rows,
    squared_loss_and_delta,
)
from fastmlp.kernels._calls import jit
from fastmlp.kernels._layers import (
    PHASE_FORWARD,
    PHASE_GATHER,
    SHALLOW_MAX_INPUTS,
    _block,
    _layer_start,
    _transpose,
    layer_offsets,
)
from fastmlp.kernels._math import FASTMATH, wide_vectors

SHALLOW_MAX_OUTPUTS = 2


def is_shallow(units, hidden):
    """Whether ``tile_gradient_shallow`` can run this network (hidden: an activation code)."""
    return (
        len(units) == 3
        and units[0] <= SHALLOW_MAX_INPUTS
        and units[2] <= SHALLOW_MAX_OUTPUTS
        and hidden == RELU
    )


# The two passes take the network's shape as arguments, and are inlined (by Numba) into
# a kernel that holds it as constants (tile_gradient_shallow below): every `if n_in > 1`
# is decided at compile time, and what remains is a plain loop over the hidden units,
# which LLVM vectorizes. Rows go four at a time in the outputs' pass and two at a time in
# the gradient's (see _gradient_pass), so that each weight and accumulator is loaded once
# for several rows; a last block of fewer rows is padded with rows of zeros (x = 0 and
# delta = 0), which add exactly nothing.
@jit("kernels", cache=True, error_model="numpy")
def _row(X, order, start, rows, i, n_in):
    """Inputs 0 to 3 of tile row i (zeros past the row's inputs, or past the tile)."""
    t = X.dtype.type
    if i >= rows:
        return t(0), t(0), t(0), t(0)
    x = X[order[start + i]]
    return (
        x[0],
        x[1] if n_in > 1 else t(0),
        x[2] if n_in > 2 else t(0),
        x[3] if n_in > 3 else t(0),
    )


@jit("kernels", cache=True, error_model="numpy")
def _first_rows(M, n):
    """Rows 0 to 3 of M, the last of its n rows standing in for those past it."""
    return M[0], M[min(1, n - 1)], M[min(2, n - 1)], M[min(3, n - 1)]


@jit("kernels", cache=True, error_model="numpy")
def _block_rows(X, order, start, rows, i, n_in):
    """The inputs of tile rows i to i + 3 (see _row)."""
    return (
        _row(X, order, start, rows, i, n_in),
        _row(X, order, start, rows, i + 1, n_in),
        _row(X, order, start, rows, i + 2, n_in),
        _row(X, order, start, rows, i + 3, n_in),
    )


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _hidden_z(n_in, j, b1, w, x):
    """z of hidden unit j for the four rows x (see _block_rows; the gradient's pass
    gives two rows and two of zeros, whose z it does not use); w: the rows of W1."""
    bias, u = b1[j], w[0][j]
    za, zb, zc, zd = bias + x[0][0] * u, bias + x[1][0] * u, bias + x[2][0] * u, bias + x[3][0] * u
    if n_in > 1:
        u = w[1][j]
        za, zb, zc, zd = za + x[0][1] * u, zb + x[1][1] * u, zc + x[2][1] * u, zd + x[3][1] * u
    if n_in > 2:
        u = w[2][j]
        za, zb, zc, zd = za + x[0][2] * u, zb + x[1][2] * u, zc + x[2][2] * u, zd + x[3][2] * u
    if n_in > 3:
        u = w[3][j]
        za, zb, zc, zd = za + x[0][3] * u, zb + x[1][3] * u, zc + x[2][3] * u, zd + x[3][3] * u
    return za, zb, zc, zd


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def _outputs_pass(n_in, n_out, X, order, start, rows, W1, b1, W2T, b2, Z):
    """Z[:rows] = relu(x @ W1 + b1) @ W2T.T + b2 for the rows x = X[order[start + i]]."""
    t = Z.dtype.type
    w = _first_rows(W1, n_in)
    v0, v1 = W2T[0], W2T[min(1, n_out - 1)]
    for i in range(0, rows, 4):
        x = _block_rows(X, order, start, rows, i, n_in)
        sa0 = sb0 = sc0 = sd0 = sa1 = sb1 = sc1 = sd1 = t(0)
        for j in range(b1.shape[0]):
            za, zb, zc, zd = _hidden_z(n_in, j, b1, w, x)
            aa, ab = (za if za > 0 else t(0)), (zb if zb > 0 else t(0))
            ac, ad = (zc if zc > 0 else t(0)), (zd if zd > 0 else t(0))
            p0 = v0[j]
            sa0, sb0, sc0, sd0 = sa0 + aa * p0, sb0 + ab * p0, sc0 + ac * p0, sd0 + ad * p0
            if n_out > 1:
                p1 = v1[j]
                sa1, sb1, sc1, sd1 = sa1 + aa * p1, sb1 + ab * p1, sc1 + ac * p1, sd1 + ad * p1
        for r, s0, s1 in ((0, sa0, sa1), (1, sb0, sb1), (2, sc0, sc1), (3, sd0, sd1)):
            if i + r < rows:
                Z[i + r, 0] = b2[0] + s0
                if n_out > 1:
                    Z[i + r, 1] = b2[1] + s1


@jit("kernels", cache=True, error_model="numpy")
def _deltas(D, rows, i, n_out):
    """Output errors 0 and 1 of tile row i (zeros past the outputs, or past the tile)."""
    t = D.dtype.type
    if i >= rows:
        return t(0), t(0)
    return D[i, 0], D[i, 1] if n_out > 1 else t(0)


@jit("kernels", cache=True, error_model="numpy")
def _pair_rows(X, order, start, rows, i, n_in):
    """The inputs of tile rows i and i + 1 (see _row)."""
    return _row(X, order, start, rows, i, n_in), _row(X, order, start, rows, i + 1, n_in)


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def _gradient_pass(n_in, n_out, X, order, start, rows, W1, b1, W2T, D, G1, g1, G2T):
    """G1 += x.T @ delta_h, g1 += delta_h.sum(0) and G2T += D.T @ a over the rows, with
    a = relu(z) and delta_h = (D @ W2T) * (z > 0) computed afresh per hidden unit.

    Two rows at a time, not four as in the outputs' pass: this pass holds each row's
    inputs and output errors in registers across the loop, and for four rows they
    outnumber AVX2's 16 vector registers, so that LLVM spilled them to the stack and
    read them back at every step of the loop (W2's network: 19 of the loop's 31 memory
    operands were stack reloads)."""
    t = G1.dtype.type
    w = _first_rows(W1, n_in)
    h0, h1, h2, h3 = _first_rows(G1, n_in)
    v0, v1 = W2T[0], W2T[min(1, n_out - 1)]
    q0, q1 = G2T[0], G2T[min(1, n_out - 1)]
    zero_row = (t(0), t(0), t(0), t(0))
    for i in range(0, rows, 2):
        xa, xb = _pair_rows(X, order, start, rows, i, n_in)
        (xa0, xa1, xa2, xa3), (xb0, xb1, xb2, xb3) = xa, xb
        da0, da1 = _deltas(D, rows, i, n_out)
        db0, db1 = _deltas(D, rows, i + 1, n_out)
        x = (xa, xb, zero_row, zero_row)
        for j in range(b1.shape[0]):
            za, zb, _, _ = _hidden_z(n_in, j, b1, w, x)
            p0 = v0[j]
            ba, bb = da0 * p0, db0 * p0
            if n_out > 1:
                p1 = v1[j]
                ba, bb = ba + da1 * p1, bb + db1 * p1
            ea = ba if za > 0 else t(0)
            eb = bb if zb > 0 else t(0)
            aa, ab = (za if za > 0 else t(0)), (zb if zb > 0 else t(0))
            g1[j] += ea + eb
            h0[j] += xa0 * ea + xb0 * eb
            if n_in > 1:
                h1[j] += xa1 * ea + xb1 * eb
            if n_in > 2:
                h2[j] += xa2 * ea + xb2 * eb
            if n_in > 3:
                h3[j] += xa3 * ea + xb3 * eb
            q0[j] += da0 * aa + db0 * ab
            if n_out > 1:
                q1[j] += da1 * aa + db1 * ab


# Subnormal weights. After some hundreds of epochs with Adam and an L2 penalty, the
# weights of a dead ReLU unit (z <= 0 on every row, so that only the penalty moves them)
# decay below the dtype's smallest normal number. Many CPUs compute with such numbers
# far more slowly: an Intel Xeon runs every vector instruction that meets one through a
# microcode assist, and in both passes every block of hidden units holding a dead one
# does. W2's epoch there took 0.3 ms up to some 600 epochs, then 2.5 to 3.6 ms with 21
# of its 100 units dead and their weights subnormal; with what follows, 0.6 to 0.9 ms
# (``python -m benchmarks.subnormals W2 --blocks 12``, to 2,400 epochs; the rest is
# mostly the step's, ``_optimizers``).
#
# Where all of a unit's incoming coefs are subnormal (or zero) and its intercept b is
# far larger than any of their products with the tile's inputs can be, z = b exactly on
# every row, whatever order the sums run in (each product is below half an ulp of b),
# and also with those coefs zero: so the passes read a copy of W1 with them zero. Where
# moreover b < 0, the unit's activation and error are 0 on every row, its outgoing
# weights multiply only zeros, and their copy in W2T is zeroed too. The same results to
# the bit, without the slow arithmetic.
@jit("kernels", cache=True, error_model="numpy")
def _without_subnormal_units(n_in, X, order, start, rows, W1, b1, W2T, W1_copy):
    """W1, or where some hidden units' incoming coefs are all subnormal (see above), a
    copy of it in ``W1_copy`` with them zero (and the outgoing coefs of those with b < 0
    zero in ``W2T``): the passes give the same results on either."""
    wide_vectors()
    t = W1.dtype.type
    tiny = np.finfo(W1.dtype).tiny
    n_hidden = b1.shape[0]
    found = False
    for j in range(n_hidden):
        if _subnormal_unit(W1, j, n_in, tiny):
            found = True
            break
    if not found:
        return W1
    # The largest |x| of the tile (NaN stays NaN: no unit is then dropped).
    x_max = t(0)
    for i in range(rows):
        x = X[order[start + i]]
        for k in range(n_in):
            if not abs(x[k]) <= x_max:
                x_max = abs(x[k])
    # Each product |x u| < x_max * tiny; rounded, and summed n_in <= 4 at a time with
    # each sum rounded, they stay below 8 * (x_max + eps) * tiny (eps: a subnormal's
    # spacing over tiny), while half the spacing of the floats next to b is at least
    # |b| * eps / 4. The limit keeps a factor of 4 more (inf or NaN where x_max is huge
    # or NaN: then no unit qualifies).
    eps = np.finfo(W1.dtype).eps
    limit = t(128) * (x_max + eps) * (tiny / eps)
    for k in range(n_in):
        for j in range(n_hidden):
            W1_copy[k, j] = W1[k, j]
    for j in range(n_hidden):
        if abs(b1[j]) > limit and _subnormal_unit(W1, j, n_in, tiny):
            for k in range(n_in):
                W1_copy[k, j] = t(0)
            if b1[j] < 0:
                for k in range(W2T.shape[0]):
                    W2T[k, j] = t(0)
    return W1_copy


@njit(cache=True, error_model="numpy", inline="always")
def _subnormal_unit(W1, j, n_in, tiny):
    """Whether hidden unit j's incoming coefs are all below ``tiny`` in magnitude."""
    for k in range(n_in):
        if not abs(W1[k, j]) < tiny:
            return False
    return True


@functools.cache
def tile_gradient_shallow(n_in, n_out, output_kind):
    """``tile_gradient`` for a network :func:`is_shallow` accepts, with ``n_in`` inputs,
    ``n_out`` outputs and the output activation of code ``output_kind``: same arguments,
    same results to rounding (the network's ``use_blas``, ``hidden`` and ``output``, and
    ``scratch``, are not used).

    The counts and the code are constants of the compiled code, so each triple is
    compiled on its first use, and only then (Numba's disk cache keys a closure by the
    values it holds). Numba drops the branches of the other outputs before compiling:
    their functions are not compiled (a first fit's compile: about 0.7 s less).
    """

    @jit("address", cache=True, error_model="numpy", fastmath=FASTMATH)
    def tile_gradient_shallow(network, data, start, rows, work, grad, scratch, overwrite,
                              last_phase):
        wide_vectors()
        theta, units, coef_off, int_off, tile = (
            network.theta, network.units, network.coef_off, network.int_off, network.tile)
        t = theta.dtype.type
        X, Y, sample_weight, order = data.X, data.Y, data.sample_weight, data.order
        # The block shapes as run-time values: a call with a constant argument is compiled
        # apart for that constant, and these helpers would be compiled three times over.
        inputs, n_hidden, outputs = units[0], units[1], units[2]
        z_off, a_off, d_off, t_off = layer_offsets(units, tile, units.shape[0] - 2, False)
        backward = Y.shape[0] > 0
        if last_phase == PHASE_GATHER:  # nothing is gathered: rows are read where they are
            return t(0)

        W1 = _block(theta, coef_off[0], inputs, n_hidden)
        b1 = theta[int_off[0] : int_off[0] + n_hidden]
        W2T = _block(work, t_off, outputs, n_hidden)
        _transpose(_block(theta, coef_off[1], n_hidden, outputs), W2T)
        W1 = _without_subnormal_units(
            n_in, X, order, start, rows, W1, b1, W2T,
            _block(work, _layer_start(units, tile, 2, False), inputs, n_hidden))
        b2 = theta[int_off[1] : int_off[1] + n_out]
        Z = _block(work, z_off, tile, outputs)
        A = _block(work, a_off, tile, outputs)
        _outputs_pass(n_in, n_out, X, order, start, rows, W1, b1, W2T, b2, Z)
        if output_kind == OUT_SOFTMAX:  # (a comparison of constants: see above)
            softmax_rows(Z, A, rows)
        elif output_kind == OUT_LOGISTIC:
            logistic_rows(Z, A, rows)
        elif output_kind == OUT_EXP:
            exp_rows(Z, A, rows)
        else:
            identity_rows(Z, A, rows)
        if not backward:
            return t(0)
        D = _block(work, d_off, tile, outputs)
        if output_kind == OUT_SOFTMAX or output_kind == OUT_LOGISTIC:
            if n_out == 1:
                loss = binary_log_loss_and_delta(A, Y, order, start, sample_weight, D, rows)
            else:
                both_sides = output_kind == OUT_LOGISTIC
                loss = log_loss_and_delta(both_sides, A, Y, order, start, sample_weight, D,
                                          rows)
        elif output_kind == OUT_EXP:
            loss = poisson_loss_and_delta(A, Y, order, start, sample_weight, D, rows)
        else:
            loss = squared_loss_and_delta(A, Y, order, start, sample_weight, D, rows)
        if last_phase == PHASE_FORWARD:
            return loss

        G1 = _block(grad, coef_off[0], inputs, n_hidden)
        g1 = grad[int_off[0] : int_off[0] + n_hidden]
        G2 = _block(grad, coef_off[1], n_hidden, outputs)
        g2 = grad[int_off[1] : int_off[1] + n_out]
        G2T = _block(work, t_off + n_hidden * outputs, outputs, n_hidden)
        if overwrite:
            for p in range(grad.shape[0]):
                grad[p] = 0
        for k in range(n_out):
            for j in range(n_hidden):
                G2T[k, j] = 0
        _gradient_pass(n_in, n_out, X, order, start, rows, W1, b1, W2T, D, G1, g1, G2T)
        for i in range(rows):
            for k in range(n_out):
                g2[k] += D[i, k]
        for j in range(n_hidden):
            for k in range(n_out):
                G2[j, k] += G2T[k, j]
        return loss

    return tile_gradient_shallow
