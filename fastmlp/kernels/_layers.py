"""Fused forward and backward passes over one tile of rows, for any depth.

Parameters live in one flat vector ``theta`` in scikit-learn's ``_pack`` order (every
coef, row-major, then every intercept); ``coef_off[l]`` and ``int_off[l]`` locate layer
``l``, whose weights have shape ``(units[l], units[l + 1])``. Gradients use the same
layout, so an optimizer step is one loop over a flat vector.

Per tile of at most ``tile`` rows a workspace holds the gathered input rows and, for
every layer, its pre-activations ``z``, activations ``a`` and errors ``delta``. A sparse
X (CSR rows, see ``fastmlp.kernels._sparse``) is never gathered: the first layer's
products run over each row's nonzeros, and its workspace has no block of input rows.

The kernels read the network (its weights, their layout, its activations and the plan's
choices) as one argument, a :class:`Network`, and their data (X, the targets, the sample
weights, the sample order and X's CSR arrays) as another, a :class:`Data`.

Each product is done in one of two ways, chosen per layer by ``use_blas`` (see
``fastmlp.kernels.plan``):

* loops, with bias and activation applied to each row while it is hot in cache, and the
  activation derivative applied inside the backward product. Small layers are dominated
  by per-call overhead, which these loops avoid; they also run inside ``prange``.
* BLAS (``np.dot`` on the whole tile), then one fused pass for bias and activation. Wide
  layers are dominated by the products, where BLAS's blocked kernels win.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from fastmlp.kernels._activations import (
    activate,
    output_activate,
    output_loss_and_delta,
    scale_by_derivative,
)
from fastmlp.kernels._calls import jit
from fastmlp.kernels._data import Data, is_sparse
from fastmlp.kernels._math import FASTMATH, wide_vectors
from fastmlp.kernels._sparse import sparse_forward, sparse_gradient
from fastmlp.kernels._structs import flag, flags, int64, int64s, make, numba_type, real, reals

#: How far a profiling run goes (``fastmlp profile``): gather the batch's rows only, then
#: also the forward pass, then also the backward pass; training runs all and updates.
PHASE_GATHER, PHASE_FORWARD, PHASE_BACKWARD, PHASE_UPDATE = 0, 1, 2, 3

#: Layers with fewer outputs than this run their loops on transposed copies of W and of
#: the gradient: a loop over a few outputs vectorizes poorly (10 outputs: two vectors of
#: four and two lanes alone), one over the inputs well. A 64-row tile of a 128 -> 10
#: layer, forward, gradient and error: 64 us on the plain loops, 31 us transposed in
#: float64; from 16 outputs the plain loops are faster (an AMD EPYC with AVX2:
#: ``python -m benchmarks.narrow_layers``).
NARROW_OUTPUTS = 16

#: Networks of one hidden layer on at most this many inputs may run on
#: ``fastmlp.kernels._shallow``, whose workspace ends with a copy of the hidden layer's
#: coefs (see there).
SHALLOW_MAX_INPUTS = 4

class Network(NamedTuple):
    """The network as a tile kernel runs it, in one argument: its weights and their
    layout (a :class:`~fastmlp.kernels._buffers.FlatNetwork`), its activations, and how
    the plan runs it (:func:`~fastmlp.kernels._planner.plan`). Built by :meth:`of`."""

    theta: reals  # the weights, in scikit-learn's _pack order (see above)
    units: int64s  # the layers' widths, inputs first
    coef_off: int64s  # where layer l's coefs start in theta
    int_off: int64s  # where layer l's intercepts start in theta
    use_blas: flags  # per layer: its products on BLAS, else on the loops
    hidden: int64  # the hidden activation's code (fastmlp.activations)
    output: int64  # the output activation's code
    tile: int64  # rows per tile; a workspace's layout is computed from it

    @classmethod
    def of(cls, network, run_plan, hidden, output):
        """A :class:`~fastmlp.kernels._buffers.FlatNetwork` with activation codes
        ``hidden`` and ``output``, run as ``run_plan`` says."""
        return make(
            cls, network.dtype, theta=network.theta, units=network.units,
            coef_off=network.coef_off, int_off=network.int_off, use_blas=run_plan.use_blas,
            hidden=hidden, output=output, tile=run_plan.tile,
        )


@njit(cache=True, error_model="numpy", inline="always")
def with_weights(network, theta):
    """``network`` with the weights ``theta`` (a copy of its own, of the same layout)."""
    return Network(theta, *network[1:])


@jit("kernels", cache=True, error_model="numpy")
def _layer_start(units, tile, layer, sparse):
    """Where ``layer``'s blocks start in a workspace; for one past the last layer, its
    size. The input rows come first (none for a sparse X), then per layer its z, a and
    delta blocks and, for a narrow layer run on the loops, a block for W.T and one for
    the transposed gradient (a sparse X's first layer runs on neither)."""
    wide_vectors()
    offset = 0 if sparse else tile * units[0]
    for below in range(layer):
        offset += 3 * tile * units[below + 1]
        if units[below + 1] < NARROW_OUTPUTS and not (sparse and below == 0):
            offset += 2 * units[below] * units[below + 1]
    return offset


@jit("kernels", cache=True, error_model="numpy")
def layer_offsets(units, tile, layer, sparse):
    """Where ``layer``'s z, a and delta blocks and its transposed blocks start in a
    workspace (computed, not stored: a tile pays no allocation for them)."""
    z = _layer_start(units, tile, layer, sparse)
    block = tile * units[layer + 1]
    return z, z + block, z + 2 * block, z + 3 * block


def workspace_size(units, tile, sparse=False):
    """A workspace's length for tiles of ``tile`` rows, dense or sparse X; the dense
    layout's is the larger, so its workspace serves sparse rows too."""
    units = np.asarray(units, dtype=np.int64)
    # As Python: a call from Python would compile it on its own, for a few loop steps
    # (with the JIT off it is Python already).
    layer_start = getattr(_layer_start, "py_func", _layer_start)
    size = int(layer_start(units, tile, units.shape[0] - 1, sparse))
    if units.shape[0] == 3 and units[0] <= SHALLOW_MAX_INPUTS:
        size += int(units[0] * units[1])
    return size


@jit("kernels", cache=True, error_model="numpy")
def _block(buffer, offset, rows, cols):
    return buffer[offset : offset + rows * cols].reshape((rows, cols))


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _dense_loops(A, W, b, Z, rows):
    """Z[:rows] = A[:rows] @ W + b, four rows at a time.

    Each pass over four rows of Z adds four inputs to each: sixteen multiply-adds for
    eight loads, where one row at a time needed twenty. The four values of W are loaded
    once, before the stores: written as four expressions on ``w0[j]`` and so on, LLVM
    reloads them after every store to Z, which might alias W (measured: twice as slow).
    The first ``fan_in % 4`` inputs are added with the bias (a 2-input layer takes one
    pass, not three).
    """
    wide_vectors()
    fan_in, fan_out = W.shape
    first = fan_in % 4
    _dense_start(A, W, b, Z, rows, first)
    blocked = rows - rows % 4
    for i in range(0, blocked, 4):
        z0, z1, z2, z3 = Z[i], Z[i + 1], Z[i + 2], Z[i + 3]
        for k in range(first, fan_in, 4):
            w0, w1, w2, w3 = W[k], W[k + 1], W[k + 2], W[k + 3]
            a00, a01, a02, a03 = A[i, k], A[i, k + 1], A[i, k + 2], A[i, k + 3]
            a10, a11, a12, a13 = A[i + 1, k], A[i + 1, k + 1], A[i + 1, k + 2], A[i + 1, k + 3]
            a20, a21, a22, a23 = A[i + 2, k], A[i + 2, k + 1], A[i + 2, k + 2], A[i + 2, k + 3]
            a30, a31, a32, a33 = A[i + 3, k], A[i + 3, k + 1], A[i + 3, k + 2], A[i + 3, k + 3]
            for j in range(fan_out):
                x0, x1, x2, x3 = w0[j], w1[j], w2[j], w3[j]
                z0[j] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
                z1[j] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
                z2[j] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
                z3[j] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3
    for i in range(blocked, rows):
        z = Z[i]
        for k in range(first, fan_in, 4):
            a0, a1, a2, a3 = A[i, k], A[i, k + 1], A[i, k + 2], A[i, k + 3]
            w0, w1, w2, w3 = W[k], W[k + 1], W[k + 2], W[k + 3]
            for j in range(fan_out):
                z[j] += a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j]


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _dense_start(A, W, b, Z, rows, first):
    """Z[:rows] = b + the first ``first`` (0 to 3) inputs' products."""
    wide_vectors()
    fan_out = W.shape[1]
    for i in range(rows):
        z = Z[i]
        if first == 0:
            for j in range(fan_out):
                z[j] = b[j]
        elif first == 1:
            a0, w0 = A[i, 0], W[0]
            for j in range(fan_out):
                z[j] = b[j] + a0 * w0[j]
        elif first == 2:
            a0, a1, w0, w1 = A[i, 0], A[i, 1], W[0], W[1]
            for j in range(fan_out):
                z[j] = b[j] + a0 * w0[j] + a1 * w1[j]
        else:
            a0, a1, a2, w0, w1, w2 = A[i, 0], A[i, 1], A[i, 2], W[0], W[1], W[2]
            for j in range(fan_out):
                z[j] = b[j] + a0 * w0[j] + a1 * w1[j] + a2 * w2[j]


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _grad_loops(A, D, G, g, rows):
    """G += A[:rows].T @ D[:rows] and g += D[:rows].sum(0).

    Blocks of four rows of the batch and two rows of G: each pass loads the four rows
    of D once for eight multiply-adds (30 % faster than one row of G per pass on
    64-unit layers; four rows of G per pass measured no faster at 16 rows). A block
    whose eight inputs are all zero (ReLU) is skipped.
    """
    wide_vectors()
    fan_in, fan_out = G.shape
    blocked = rows - rows % 4
    pairs = fan_in - fan_in % 2
    for i in range(0, blocked, 4):
        d0, d1, d2, d3 = D[i], D[i + 1], D[i + 2], D[i + 3]
        for j in range(fan_out):
            g[j] += d0[j] + d1[j] + d2[j] + d3[j]
        for k in range(0, pairs, 2):
            a0, a1, a2, a3 = A[i, k], A[i + 1, k], A[i + 2, k], A[i + 3, k]
            b0, b1, b2, b3 = A[i, k + 1], A[i + 1, k + 1], A[i + 2, k + 1], A[i + 3, k + 1]
            if (a0 == 0 and a1 == 0 and a2 == 0 and a3 == 0
                    and b0 == 0 and b1 == 0 and b2 == 0 and b3 == 0):
                continue
            gk, gl = G[k], G[k + 1]
            for j in range(fan_out):
                x0, x1, x2, x3 = d0[j], d1[j], d2[j], d3[j]
                gk[j] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
                gl[j] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
        if pairs < fan_in:
            k = pairs
            a0, a1, a2, a3 = A[i, k], A[i + 1, k], A[i + 2, k], A[i + 3, k]
            gk = G[k]
            for j in range(fan_out):
                gk[j] += a0 * d0[j] + a1 * d1[j] + a2 * d2[j] + a3 * d3[j]
    for i in range(blocked, rows):
        d = D[i]
        for j in range(fan_out):
            g[j] += d[j]
        for k in range(fan_in):
            a_ik = A[i, k]
            gk = G[k]
            for j in range(fan_out):
                gk[j] += a_ik * d[j]


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _backprop_loops(D, W, D_prev, rows):
    """D_prev[:rows] = D[:rows] @ W.T, each entry a contiguous dot product.

    Blocks of four rows of D and two rows of W: each pass loads six rows for eight dot
    products, whose sums LLVM keeps in vector registers (measured on 64-unit layers:
    three times as fast as one dot product per pass).
    """
    wide_vectors()
    fan_in, fan_out = W.shape
    row_blocked = rows - rows % 4
    pair_blocked = fan_in - fan_in % 2
    t = W.dtype.type
    for i in range(0, row_blocked, 4):
        d0, d1, d2, d3 = D[i], D[i + 1], D[i + 2], D[i + 3]
        for k in range(0, pair_blocked, 2):
            w, v = W[k], W[k + 1]
            s0, s1, s2, s3 = t(0), t(0), t(0), t(0)
            r0, r1, r2, r3 = t(0), t(0), t(0), t(0)
            for j in range(fan_out):
                s0 += d0[j] * w[j]
                s1 += d1[j] * w[j]
                s2 += d2[j] * w[j]
                s3 += d3[j] * w[j]
                r0 += d0[j] * v[j]
                r1 += d1[j] * v[j]
                r2 += d2[j] * v[j]
                r3 += d3[j] * v[j]
            D_prev[i, k], D_prev[i, k + 1] = s0, r0
            D_prev[i + 1, k], D_prev[i + 1, k + 1] = s1, r1
            D_prev[i + 2, k], D_prev[i + 2, k + 1] = s2, r2
            D_prev[i + 3, k], D_prev[i + 3, k + 1] = s3, r3
        for k in range(pair_blocked, fan_in):
            for row in range(i, i + 4):
                D_prev[row, k] = _dot(D[row], W[k])
    for i in range(row_blocked, rows):
        for k in range(fan_in):
            D_prev[i, k] = _dot(D[i], W[k])


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _dot(x, y):
    wide_vectors()
    total = x[0] * y[0]
    for j in range(1, x.shape[0]):
        total += x[j] * y[j]
    return total


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _transpose(W, WT):
    wide_vectors()
    fan_in, fan_out = W.shape
    for k in range(fan_in):
        for j in range(fan_out):
            WT[j, k] = W[k, j]


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _dense_narrow(A, WT, b, Z, rows):
    """Z[:rows] = A[:rows] @ WT.T + b for few outputs: contiguous dot products.

    From two outputs, in blocks of four rows and two outputs (``_backprop_loops``, whose
    product this is), then the bias: each value of A and of W.T is loaded once per
    block, where one dot product per entry loaded it for each (a 128 -> 10 tile's
    forward 1.3 to 1.8 times as fast in runs of ``python -m benchmarks.narrow_layers``).
    One output has no pairs to block: one dot product per row, begun at the bias.
    """
    wide_vectors()
    fan_out, fan_in = WT.shape
    if fan_out > 1:
        _backprop_loops(A, WT, Z, rows)
        for i in range(rows):
            for j in range(fan_out):
                Z[i, j] += b[j]
        return
    w = WT[0]
    for i in range(rows):
        a = A[i]
        total = b[0]
        for k in range(fan_in):
            total += a[k] * w[k]
        Z[i, 0] = total


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _grad_narrow(A, D, GT, g, rows):
    """GT = D[:rows].T @ A[:rows] (the transposed gradient) and g += D[:rows].sum(0).

    Four rows of A per pass over a row of GT, each value of A loaded once (see
    _dense_loops).
    """
    wide_vectors()
    fan_out, fan_in = GT.shape
    for j in range(fan_out):
        for k in range(fan_in):
            GT[j, k] = 0
    blocked = rows - rows % 4
    for i in range(0, blocked, 4):
        a0, a1, a2, a3 = A[i], A[i + 1], A[i + 2], A[i + 3]
        for j in range(fan_out):
            d0, d1, d2, d3 = D[i, j], D[i + 1, j], D[i + 2, j], D[i + 3, j]
            g[j] += d0 + d1 + d2 + d3
            gt = GT[j]
            for k in range(fan_in):
                x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
                gt[k] += d0 * x0 + d1 * x1 + d2 * x2 + d3 * x3
    for i in range(blocked, rows):
        a = A[i]
        for j in range(fan_out):
            d_ij = D[i, j]
            g[j] += d_ij
            gt = GT[j]
            for k in range(fan_in):
                gt[k] += d_ij * a[k]


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _backprop_narrow(D, WT, D_prev, rows):
    """D_prev[:rows] = D[:rows] @ WT for few outputs: contiguous rows of WT, scaled and
    added (the first written, not added to zeros)."""
    wide_vectors()
    fan_out, fan_in = WT.shape
    for i in range(rows):
        d_prev = D_prev[i]
        d_i0, w = D[i, 0], WT[0]
        for k in range(fan_in):
            d_prev[k] = d_i0 * w[k]
        for j in range(1, fan_out):
            d_ij = D[i, j]
            w = WT[j]
            for k in range(fan_in):
                d_prev[k] += d_ij * w[k]


@jit("address", cache=True, error_model="numpy", fastmath=FASTMATH)
def tile_gradient(network, data, start, rows, work, grad, scratch, overwrite, last_phase):
    """Forward and backward of ``network`` over rows ``data.order[start:start + rows]``,
    gradient into ``grad`` (the layout of ``network.theta``).

    With ``overwrite`` the tile's gradient replaces what ``grad`` held (the first tile of a
    chunk: no separate zeroing pass, and a BLAS product lands in place); otherwise it is
    added.

    Given no targets (``data.Y`` with 0 rows) only the forward pass runs, and the output
    is left in the workspace. ``grad`` receives the unnormalised sums ``A.T @ delta`` and
    ``delta.sum(0)``, with the output error weighted by ``data.sample_weight`` (empty for
    unit weights). ``scratch`` holds a BLAS product before it is added to ``grad``.
    Returns the weighted sum of row losses.

    A sparse X's first layer runs on its nonzeros (``_sparse``), whatever ``use_blas``
    says of it; its rows are not gathered.
    """
    wide_vectors()
    theta, units, coef_off, int_off = (
        network.theta, network.units, network.coef_off, network.int_off)
    use_blas, hidden, output, tile = (
        network.use_blas, network.hidden, network.output, network.tile)
    t = theta.dtype.type
    n_layers = units.shape[0] - 1
    X, Y, sample_weight, order = data.X, data.Y, data.sample_weight, data.order
    # Decided at run time, not by literal flags: one compiled signature serves all.
    backward = Y.shape[0] > 0
    sparse = is_sparse(data)

    # Explicit loops instead of array assignment: Numba's broadcasting setitem costs
    # seconds of compile time per signature.
    inputs = work[: 0 if sparse else tile * units[0]].reshape((-1, units[0]))  # first block
    if not sparse:
        for i in range(rows):
            row = order[start + i]
            for k in range(units[0]):
                inputs[i, k] = X[row, k]
    if last_phase == PHASE_GATHER:
        return t(0)

    # Forward: layer by layer; bias and activation fused with each row's product.
    A = inputs
    loss = t(0)
    for layer in range(n_layers):
        fan_in, fan_out = units[layer], units[layer + 1]
        W = _block(theta, coef_off[layer], fan_in, fan_out)
        b = theta[int_off[layer] : int_off[layer] + fan_out]
        z_off, a_off, d_off, t_off = layer_offsets(units, tile, layer, sparse)
        Z = _block(work, z_off, tile, fan_out)
        out = _block(work, a_off, tile, fan_out)
        on_nonzeros = sparse and layer == 0
        if on_nonzeros:
            sparse_forward(data.X_data, data.X_indices, data.X_indptr, order, start, rows, W,
                           b, Z)
        elif use_blas[layer]:
            np.dot(A[:rows], W, Z[:rows])
            for i in range(rows):
                for j in range(fan_out):
                    Z[i, j] += b[j]
        elif fan_out < NARROW_OUTPUTS:
            WT = _block(work, t_off, fan_out, fan_in)
            _transpose(W, WT)
            _dense_narrow(A, WT, b, Z, rows)
        else:
            _dense_loops(A, W, b, Z, rows)
        if layer < n_layers - 1:
            activate(hidden, Z, out, rows)
        else:
            output_activate(output, Z, out, rows)
            if backward:
                D = _block(work, d_off, tile, fan_out)
                loss = output_loss_and_delta(output, out, Y, order, start, sample_weight, D, rows)
        A = out
    if not backward or last_phase == PHASE_FORWARD:
        return loss

    # Backward: gradient of each layer, then its error passed down through its weights.
    for layer in range(n_layers - 1, -1, -1):
        fan_in, fan_out = units[layer], units[layer + 1]
        W = _block(theta, coef_off[layer], fan_in, fan_out)
        G = _block(grad, coef_off[layer], fan_in, fan_out)
        g = grad[int_off[layer] : int_off[layer] + fan_out]
        _, _, d_off, t_off = layer_offsets(units, tile, layer, sparse)
        z_in, a_in, d_in, _ = layer_offsets(units, tile, max(layer - 1, 0), sparse)
        D = _block(work, d_off, tile, fan_out)
        A_in = inputs if layer == 0 else _block(work, a_in, tile, fan_in)
        on_nonzeros = sparse and layer == 0
        blas = use_blas[layer] and not on_nonzeros
        narrow = fan_out < NARROW_OUTPUTS and not use_blas[layer] and not on_nonzeros
        if narrow:
            # W.T is in the workspace from the forward pass; the transposed gradient follows.
            WT = _block(work, t_off, fan_out, fan_in)
            GT = _block(work, t_off + fan_in * fan_out, fan_out, fan_in)
        else:  # unused: wide layers have no transposed blocks
            WT = GT = work[:0].reshape((0, 0))
        if overwrite:
            for j in range(fan_out):
                g[j] = 0
            if not blas:
                for k in range(fan_in):
                    for j in range(fan_out):
                        G[k, j] = 0
        if on_nonzeros:
            sparse_gradient(data.X_data, data.X_indices, data.X_indptr, order, start, rows, D,
                            G, g)
        elif blas:
            if overwrite:
                np.dot(A_in[:rows].T, D[:rows], G)
            else:
                product = scratch[: fan_in * fan_out].reshape((fan_in, fan_out))
                np.dot(A_in[:rows].T, D[:rows], product)
                for k in range(fan_in):
                    for j in range(fan_out):
                        G[k, j] += product[k, j]
            for i in range(rows):
                for j in range(fan_out):
                    g[j] += D[i, j]
        elif narrow:
            _grad_narrow(A_in, D, GT, g, rows)
            for k in range(fan_in):
                for j in range(fan_out):
                    G[k, j] += GT[j, k]
        else:
            _grad_loops(A_in, D, G, g, rows)
        if layer > 0:
            D_prev = _block(work, d_in, tile, fan_in)
            Z_prev = _block(work, z_in, tile, fan_in)
            if use_blas[layer]:
                np.dot(D[:rows], W.T, D_prev[:rows])
            elif narrow:
                _backprop_narrow(D, WT, D_prev, rows)
            else:
                _backprop_loops(D, W, D_prev, rows)
            scale_by_derivative(hidden, Z_prev, A_in, D_prev, rows)
    return loss


def tile_gradient_signature(dtype):
    """The one signature :func:`tile_gradient` is compiled for in ``dtype``: the argument
    types its callers pass, all arrays C-contiguous and aligned."""
    return real(dtype)(
        numba_type(Network, dtype), numba_type(Data, dtype), int64(dtype), int64(dtype),
        reals(dtype), reals(dtype), reals(dtype), flag(dtype), int64(dtype),
    )  # network, data, start, rows, work, grad, scratch, overwrite, last_phase


@jit("python", cache=True, error_model="numpy")
def forward_rows(tile_kernel, network, data, work, out):
    """out[i] = the network's output for row ``data.order[i]`` of X, tile by tile (forward
    pass only; ``data.Y`` has no rows).

    ``tile_kernel`` is :func:`tile_gradient` (or its fused form, ``_shallow.py``), compiled
    for X's dtype and passed by address (``fastmlp.kernels._calls``).
    """
    wide_vectors()
    n = data.order.shape[0]
    units, tile = network.units, network.tile
    output_off = layer_offsets(units, tile, units.shape[0] - 2, is_sparse(data))[1]
    result = _block(work, output_off, tile, units[-1])
    for start in range(0, n, tile):
        rows = min(tile, n - start)
        unused = network.theta  # the gradient and scratch of a forward pass
        tile_kernel(network, data, start, rows, work, unused, unused, False, PHASE_FORWARD)
        for i in range(rows):
            for j in range(result.shape[1]):
                out[start + i, j] = result[i, j]
