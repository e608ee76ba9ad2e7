"""Plans: how to run one network on batches of a given size.

Per layer, BLAS over whole tiles or the fused loops; the batch's chunks (fixed by its
rows, never by the threads); the threads that work them; the tile's rows; and whether
each thread steps a copy of the weights of its own. The thresholds were measured on the
benchmark workloads (``docs/kernels.md``).
"""

from dataclasses import dataclass

import numpy as np

from fastmlp.kernels import _shallow
from fastmlp.kernels._threads import resolve_n_threads

#: Rows per tile for the loop kernels: a tile's activations stay in L1/L2 cache.
LOOP_TILE_ROWS = 64
#: Rows per tile for the fused kernel of one hidden ReLU layer on few inputs: fewer
#: tiles, less work per tile (W2's epoch on one thread, measured when it was chosen:
#: 0.228 ms against 0.259 ms with 64-row tiles; ``python -m benchmarks.ab`` on two
#: checkouts that differ in this constant).
SHALLOW_TILE_ROWS = 256
#: Rows per tile for BLAS layers: large enough for BLAS to run at full speed.
BLAS_TILE_ROWS = 512
#: A layer with at least this many weights runs its products on BLAS (measured on W3/W4).
BLAS_MIN_WEIGHTS = 32768
#: Once a plan runs on BLAS (and so serially), layers from this size go to BLAS too: a
#: 256 x 10 product takes BLAS a fifth of the loops' time.
BLAS_MIN_WEIGHTS_IN_BLAS_PLAN = 1024
#: A batch is split into this many chunks of rows, each worked into a gradient of its
#: own, and the chunks' gradients are summed in chunk order. The split is the data's,
#: never the threads': one thread works the chunks one after the other, two threads one
#: each, and the weights are the same to the bit (so a seed gives the same model on any
#: machine of the same CPU type and library versions, whatever its cores).
CHUNKS = 2
#: Below this many rows per chunk a batch is one chunk: a parallel region costs more
#: than it saves.
MIN_ROWS_PER_THREAD = 16
#: Two threads with fewer parameters each step a copy of the weights of their own (no
#: weights cross between cores); larger networks split the step between the threads.
REPLICATED_STEP_MAX_PARAMS = 16384


@dataclass(frozen=True)
class Plan:
    """How to run one network on batches of a given size."""

    use_blas: np.ndarray  # per layer: products on BLAS (True) or on the fused loops
    n_chunks: int  # the batch's chunks (fixed by its rows)
    tile: int
    n_threads: int  # the threads that work the chunks (at most one per chunk)
    replicated_step: bool  # each thread steps its own copy of the weights (two chunks)

    @property
    def parallel(self):
        """The chunks run on a team of threads in a parallel region (else on one)."""
        return self.n_threads > 1

    @property
    def blas_in_threads(self):
        """Each chunk's products call BLAS on the chunk's rows, with BLAS held to one
        thread meanwhile, whether the chunks run on threads or one after the other:
        OpenBLAS's threads would give a product other roundings than its single thread."""
        return bool(self.use_blas.any())


def few_nonzeros(units, batch_rows, nonzeros_per_row):
    """Whether a batch of sparse rows holds fewer nonzeros than the network has inputs.

    Each chunk of a batch has a first-layer gradient of its own, a dense block of
    ``units[0] * units[1]`` values that the chunk zeroes and the step reads, where the
    chunk's products over its nonzeros touch only some of its rows: with fewer nonzeros
    than rows, splitting the batch costs more memory traffic than the split products
    save."""
    return nonzeros_per_row is not None and batch_rows * nonzeros_per_row < units[0]


def plan(units, batch_rows, n_threads=None, hidden=None, nonzeros_per_row=None):
    """Choose BLAS or loops per layer, the batch's chunks, the threads and the tile size.

    Wide layers (at least ``BLAS_MIN_WEIGHTS`` weights) go to BLAS, and so do the plan's
    mid-sized layers; the others run on the fused loops. A sparse X (``nonzeros_per_row``
    its mean count of nonzeros a row; None for a dense X) runs its first layer on its
    nonzeros (``_sparse``), neither on BLAS nor on the loops, and the other layers as
    they would run on dense rows; a batch of fewer nonzeros than the network's inputs
    is one chunk (see ``few_nonzeros``). A batch of at least
    ``CHUNKS * MIN_ROWS_PER_THREAD`` rows is split into ``CHUNKS`` chunks, whatever the
    thread count; each thread that works a chunk calls single-threaded BLAS on its own
    rows (on small products BLAS's own threads wait on each other, and the work between
    the products runs in parallel too). The thresholds were measured on the workloads of
    ``fastmlp/bench/workloads.py``. Given the hidden activation's code, a network the fused
    kernel runs (``_shallow``, dense X only), which keeps no hidden layer in the
    workspace, gets larger tiles.
    """
    n_threads = resolve_n_threads(n_threads)
    units = np.asarray(units)
    sparse = nonzeros_per_row is not None
    weights = units[:-1] * units[1:]
    dense_layers = np.arange(len(weights)) >= (1 if sparse else 0)
    use_blas = (weights >= BLAS_MIN_WEIGHTS) & (batch_rows >= 16) & dense_layers
    if use_blas.any():
        use_blas = (weights >= BLAS_MIN_WEIGHTS_IN_BLAS_PLAN) & dense_layers
    n_chunks = CHUNKS if batch_rows >= MIN_ROWS_PER_THREAD * CHUNKS else 1
    if few_nonzeros(units, batch_rows, nonzeros_per_row):
        n_chunks = 1
    threads = min(n_threads, n_chunks)
    rows_per_chunk = -(-batch_rows // n_chunks)
    if use_blas.any():
        tile_rows = BLAS_TILE_ROWS
    elif hidden is not None and not sparse and _shallow.is_shallow(units, hidden):
        tile_rows = SHALLOW_TILE_ROWS
    else:
        tile_rows = LOOP_TILE_ROWS
    replicated_step = n_chunks == 2 and int(weights.sum() + units[1:].sum()) < (
        REPLICATED_STEP_MAX_PARAMS
    )
    return Plan(use_blas, n_chunks, max(1, min(tile_rows, rows_per_chunk)), threads,
                replicated_step)
