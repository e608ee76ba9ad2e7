"""Prediction: the forward pass alone, over the rows of a dense X, with little around it.

The training engine's ``predict`` packs the network into a flat vector, plans and
allocates a workspace on every call: about 0.2 ms before the first product, twenty times
what one row of W2's network costs to compute. Here the estimator's own ``coefs_`` and
``intercepts_`` go to the compiled code as they are (a tuple of arrays, one type for any
depth), the layer shapes are checked there, and the only allocations are the output and
one buffer per thread.

The products are those of the training kernels (``_layers``): the fused loops, their
form for narrow layers, or BLAS for wide layers when a call has at least
``BLAS_MIN_ROWS`` rows (a product of fewer rows runs faster on the loops, and holding
BLAS to one thread costs more than such a call). Rows are cut into tiles of a fixed size
that depends only on the network and the call's row count: the tiles, and so every
product's order of summation, are the same whatever the number of threads, and large
calls spread the tiles over the threads.

X's finiteness is checked on the way (the sum of each tile's inputs, as scikit-learn's
first pass does): a call that finds a NaN or an infinity returns ``None``, and the
caller goes through scikit-learn's validation for its error message.
"""

import numpy as np
from numba import prange

from fastmlp.kernels._activations import activate, output_activate
from fastmlp.kernels._calls import jit
from fastmlp.kernels._layers import NARROW_OUTPUTS, _dense_loops, _dense_narrow, _transpose
from fastmlp.kernels._math import FASTMATH, wide_vectors
from fastmlp.kernels._planner import (
    BLAS_MIN_WEIGHTS,
    BLAS_MIN_WEIGHTS_IN_BLAS_PLAN,
    BLAS_TILE_ROWS,
)
from fastmlp.kernels._threads import parallel_regions_allowed, parallel_section

#: Rows per tile where every product runs on the loops: each layer's tile of values
#: stays in L2 cache. On W2's network, 10^5 rows on one thread took 7.5 ms in 256-row
#: tiles against 12 ms in 64-row tiles, timed side by side while other work shared the
#: machine (``python -m benchmarks.bench_predict --networks W2 --max-rows 100000`` on
#: two checkouts that differ in this constant).
LOOP_TILE_ROWS = 256
#: Calls of fewer rows run every product on the fused loops, never on BLAS.
BLAS_MIN_ROWS = 16
#: Calls of fewer tiles than this run on the calling thread: waking a team of threads
#: costs about as much as a tile of W2's network.
PARALLEL_MIN_TILES = 8


@jit("kernels", cache=True, error_model="numpy")
def _shapes_agree(X, coefs, intercepts, out):
    """Whether the layers chain from X's features to ``out``'s columns: a network whose
    arrays do not fit together is refused before any product reads past an array."""
    wide_vectors()
    if len(coefs) != len(intercepts) or len(coefs) == 0:
        return False
    fan_in = X.shape[1]
    for layer in range(len(coefs)):
        W = coefs[layer]
        if W.shape[0] != fan_in or intercepts[layer].shape[0] != W.shape[1]:
            return False
        fan_in = W.shape[1]
    return out.shape[0] == X.shape[0] and out.shape[1] == fan_in


@jit("kernels", cache=True, error_model="numpy")
def _on_blas(coefs, rows):
    """Per layer, whether its products run on BLAS: as the training plan decides
    (``fastmlp.kernels.plan``), from the layer's weights and the call's rows."""
    wide_vectors()
    n_layers = len(coefs)
    blas = np.zeros(n_layers, dtype=np.bool_)
    if rows < BLAS_MIN_ROWS:
        return blas
    wide = False
    for layer in range(n_layers):
        wide = wide or coefs[layer].size >= BLAS_MIN_WEIGHTS
    if wide:
        for layer in range(n_layers):
            blas[layer] = coefs[layer].size >= BLAS_MIN_WEIGHTS_IN_BLAS_PLAN
    return blas


@jit("kernels", cache=True, error_model="numpy")
def _tile_rows(blas):
    return BLAS_TILE_ROWS if blas.any() else LOOP_TILE_ROWS


@jit("kernels", cache=True, error_model="numpy", fastmath=FASTMATH)
def _forward_tiles(X, coefs, intercepts, hidden, output, blas, tile, first_tile, stop_tile,
                   out):
    """``out`` rows of tiles ``first_tile`` to ``stop_tile``: the network's outputs.
    Returns whether X's rows there are finite."""
    wide_vectors()
    n_rows, n_features = X.shape
    n_layers = len(coefs)
    width, transposed = 1, 1
    for layer in range(n_layers):
        fan_in, fan_out = coefs[layer].shape
        width = max(width, fan_out)
        if fan_out < NARROW_OUTPUTS and not blas[layer]:
            transposed += fan_in * fan_out
    dtype = out.dtype
    # Buffers for the largest tile here: a call of one row allocates one row's values.
    rows_here = min(stop_tile * tile, n_rows) - first_tile * tile
    most_rows = max(1, min(tile, rows_here))
    pre_activations = np.empty(most_rows * width, dtype=dtype)
    activations = np.empty((2, most_rows * width), dtype=dtype)
    # Narrow layers' loops read W.T (see _layers._dense_narrow): made once per call.
    WT_all = np.empty(transposed, dtype=dtype)
    WT_off = np.zeros(n_layers, dtype=np.int64)
    offset = 0
    for layer in range(n_layers):
        fan_in, fan_out = coefs[layer].shape
        if fan_out < NARROW_OUTPUTS and not blas[layer]:
            WT_off[layer] = offset
            _transpose(coefs[layer], WT_all[offset : offset + fan_in * fan_out].reshape(
                (fan_out, fan_in)))
            offset += fan_in * fan_out
    flat_X = X.reshape(-1)
    finite = True
    for index in range(first_tile, stop_tile):
        start = index * tile
        rows = min(tile, n_rows - start)
        inputs = flat_X[start * n_features : (start + rows) * n_features]
        total = dtype.type(0)
        for k in range(inputs.shape[0]):
            total += inputs[k]
        finite = finite and np.isfinite(total)
        A = X[start : start + rows]
        for layer in range(n_layers):
            W, b = coefs[layer], intercepts[layer]
            fan_in, fan_out = W.shape
            Z = pre_activations[: rows * fan_out].reshape((rows, fan_out))
            if blas[layer]:
                np.dot(A, W, Z)
                for i in range(rows):
                    for j in range(fan_out):
                        Z[i, j] += b[j]
            elif fan_out < NARROW_OUTPUTS:
                WT = WT_all[WT_off[layer] : WT_off[layer] + fan_in * fan_out].reshape(
                    (fan_out, fan_in))
                _dense_narrow(A, WT, b, Z, rows)
            else:
                _dense_loops(A, W, b, Z, rows)
            if layer == n_layers - 1:
                output_activate(output, Z, out[start : start + rows], rows)
            else:
                A = activations[layer % 2, : rows * fan_out].reshape((rows, fan_out))
                activate(hidden, Z, A, rows)
    return finite


# The entry points release the GIL: a threaded server predicts on several cores at once.
@jit("python", cache=True, error_model="numpy", nogil=True)
def forward_serial(X, coefs, intercepts, hidden, output, out):
    """``out[:] =`` the network's outputs for X's rows, on this thread. Returns 1 when X
    is finite, 0 when it is not, -1 when the layers do not fit together (nothing run)."""
    if not _shapes_agree(X, coefs, intercepts, out):
        return -1
    blas = _on_blas(coefs, X.shape[0])
    tile = _tile_rows(blas)
    n_tiles = (X.shape[0] + tile - 1) // tile
    return 1 if _forward_tiles(X, coefs, intercepts, hidden, output, blas, tile, 0, n_tiles,
                               out) else 0


@jit("python", cache=True, error_model="numpy", parallel=True, nogil=True)
def forward_parallel(X, coefs, intercepts, hidden, output, n_workers, out):
    """:func:`forward_serial` with the tiles shared out among ``n_workers`` threads, each
    a run of consecutive tiles."""
    if not _shapes_agree(X, coefs, intercepts, out):
        return -1
    blas = _on_blas(coefs, X.shape[0])
    tile = _tile_rows(blas)
    n_tiles = (X.shape[0] + tile - 1) // tile
    finite = np.ones(n_workers, dtype=np.bool_)
    for worker in prange(n_workers):
        first = worker * n_tiles // n_workers
        stop = (worker + 1) * n_tiles // n_workers
        finite[worker] = _forward_tiles(X, coefs, intercepts, hidden, output, blas, tile,
                                        first, stop, out)
    return 1 if finite.all() else 0


def _uses_blas(coefs, rows):
    if rows < BLAS_MIN_ROWS:
        return False
    return any(coef.size >= BLAS_MIN_WEIGHTS for coef in coefs)


def forward(X, coefs, intercepts, hidden, output, n_threads):
    """The outputs of the network ``coefs``, ``intercepts`` (tuples of C-contiguous,
    writeable arrays of X's dtype) for every row of ``X`` (2-d, C-contiguous, float32 or
    float64), on at most ``n_threads`` threads; ``hidden`` and ``output`` are the codes of
    ``fastmlp.activations``. ``None`` when X holds a NaN or an infinity; ``ValueError``
    when the layers do not chain from X's features."""
    n_rows = X.shape[0]
    n_outputs = coefs[-1].shape[1] if len(coefs) else 0
    out = np.empty((n_rows, n_outputs), dtype=X.dtype)
    blas = _uses_blas(coefs, n_rows)
    tile = BLAS_TILE_ROWS if blas else LOOP_TILE_ROWS
    n_workers = min(n_threads, -(-n_rows // tile))
    if n_rows < PARALLEL_MIN_TILES * tile or not parallel_regions_allowed():
        n_workers = 1
    if n_workers == 1 and not blas:  # one row's call: nothing to set up
        status = forward_serial(X, coefs, intercepts, hidden, output, out)
    else:
        # BLAS on one thread of its own in each worker: OpenBLAS's threads would round a
        # product otherwise than its single thread does (see _threads).
        with parallel_section(n_workers, blas_in_threads=blas):
            if n_workers == 1:
                status = forward_serial(X, coefs, intercepts, hidden, output, out)
            else:
                status = forward_parallel(X, coefs, intercepts, hidden, output, n_workers,
                                          out)
    if status < 0:
        raise ValueError("The network's coefs_ and intercepts_ do not chain from X's "
                         f"{X.shape[1]} features to its outputs.")
    return out if status else None
