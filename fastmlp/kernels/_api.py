"""Python side of the Numba engine: flat parameters, per-shape plans, buffers made once."""

import copy
import dataclasses
import functools
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse
from numba import config

from fastmlp.activations import HIDDEN_ACTIVATIONS, OUTPUTS
from fastmlp.kernels import _layers, _random, _shallow, _sparse, _team, _training
from fastmlp.kernels._calls import CompiledKernel, pointer_type
from fastmlp.kernels._structs import int64s, real_rows, reals
from fastmlp.kernels._threads import (
    ThreadChoice,
    in_main_thread,
    parallel_section,
    resolve_n_threads,
)

#: Rows per tile for the loop kernels: a tile's activations stay in L1/L2 cache.
LOOP_TILE_ROWS = 64
#: Rows per tile for the fused kernel of one hidden ReLU layer on few inputs: fewer
#: tiles, less work per tile (W2's epoch: 0.259 -> 0.228 ms on one thread, against 64).
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
#: Rows of X that ``loss_and_gradients`` and ``predict`` work per engine call: a call on
#: millions of rows lasts well under Ctrl-C's half second, and the segments' gradients
#: are summed in order (fixed by the data, like the chunks).
SEGMENT_ROWS = 32768
#: The time an engine call of training aims at, so that Ctrl-C is honoured within it.
#: Only how the epochs are cut into calls depends on it, never the results.
SECONDS_PER_CALL = 0.1
#: Two threads with fewer parameters each step a copy of the weights of their own (no
#: weights cross between cores); larger networks split the step between the threads.
REPLICATED_STEP_MAX_PARAMS = 16384
#: Bytes in a cache line. The engine's buffers start on one, and so does each thread's row
#: of a per-thread buffer: a vector load never straddles two lines, and no line is
#: written by two threads. Measured: W4-float64's epoch takes 4 to 6 % longer, W5's 9 to
#: 15 %, when the buffers start 8 or 16 bytes past a line (as NumPy's allocations may).
CACHE_LINE = 64


def aligned_zeros(shape, dtype):
    """``np.zeros(shape, dtype)`` whose first element starts a cache line."""
    dtype = np.dtype(dtype)
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(size + CACHE_LINE, dtype=np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start : start + size].view(dtype).reshape(shape)


def aligned_copy(values):
    """A copy of ``values`` that starts a cache line (pickling gives no such promise)."""
    copy = aligned_zeros(values.shape, values.dtype)
    copy[...] = values
    return copy


def per_thread_zeros(rows, length, dtype):
    """Zeros for ``rows`` threads, ``length`` used per row, each row starting a cache line
    (its end padded)."""
    per_line = CACHE_LINE // np.dtype(dtype).itemsize
    return aligned_zeros((rows, -(-length // per_line) * per_line), dtype)


class FlatNetwork:
    """A network's weights in one flat vector, in scikit-learn's ``_pack`` order.

    ``coefs`` and ``intercepts`` are views into ``theta``: updating ``theta`` in place
    updates them, so an estimator's ``coefs_`` can be these views.
    """

    def __init__(self, units, dtype):
        self.units = np.asarray(units, dtype=np.int64)
        self.dtype = np.dtype(dtype)
        fan_ins, fan_outs = self.units[:-1], self.units[1:]
        coef_sizes = fan_ins * fan_outs
        self.coef_off = np.concatenate([[0], np.cumsum(coef_sizes)[:-1]]).astype(np.int64)
        n_coef_params = int(coef_sizes.sum())
        self.int_off = (n_coef_params + np.concatenate([[0], np.cumsum(fan_outs)[:-1]])).astype(
            np.int64
        )
        self.n_params = n_coef_params + int(fan_outs.sum())
        self.theta = aligned_zeros(self.n_params, self.dtype)

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.theta = aligned_copy(self.theta)

    @classmethod
    def from_arrays(cls, coefs, intercepts, dtype=None):
        dtype = coefs[0].dtype if dtype is None else dtype
        units = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        network = cls(units, dtype)
        network.load(coefs, intercepts)
        return network

    def load(self, coefs, intercepts):
        """Copy the given weights (scikit-learn's lists, of this network's shapes) in."""
        for target, source in zip(self.coefs + self.intercepts, coefs + intercepts):
            target[...] = source

    @property
    def n_layers(self):
        return len(self.units) - 1

    def coef_views(self, flat):
        return [
            flat[off : off + fi * fo].reshape(fi, fo)
            for off, fi, fo in zip(self.coef_off, self.units[:-1], self.units[1:])
        ]

    def intercept_views(self, flat):
        return [flat[off : off + fo] for off, fo in zip(self.int_off, self.units[1:])]

    @property
    def coefs(self):
        return self.coef_views(self.theta)

    @property
    def intercepts(self):
        return self.intercept_views(self.theta)


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


def _few_nonzeros(units, batch_rows, nonzeros_per_row):
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
    is one chunk (see ``_few_nonzeros``). A batch of at least
    ``CHUNKS * MIN_ROWS_PER_THREAD`` rows is split into ``CHUNKS`` chunks, whatever the
    thread count; each thread that works a chunk calls single-threaded BLAS on its own
    rows (on small products BLAS's own threads wait on each other, and the work between
    the products runs in parallel too). The thresholds were measured on the workloads of
    ``benchmarks/workloads.py``. Given the hidden activation's code, a network the fused
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
    if _few_nonzeros(units, batch_rows, nonzeros_per_row):
        n_chunks = 1
    # BLAS layers inside threads need BLAS held to one thread of its own, which OpenBLAS
    # has been seen to honour only when set from the main thread: from other threads
    # BLAS plans work their chunks on one thread (still with BLAS held to one thread).
    threads = min(n_threads, n_chunks)
    if use_blas.any() and not in_main_thread():
        threads = 1
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


def _blas_scratch_size(network, run_plan, batch_rows=None):
    """Room for the largest BLAS product of a tile: needed only where a chunk has more
    than one tile (the first tile's product lands in the gradient itself). Given the
    batch's rows, none where each chunk is one tile (W4's 256 x 784 product: 1.6 MB a
    thread in float64)."""
    if batch_rows is not None and -(-batch_rows // run_plan.n_chunks) <= run_plan.tile:
        return 1
    blas_layers = network.units[:-1] * network.units[1:] * run_plan.use_blas
    return max(1, int(blas_layers.max()))


class Buffers(NamedTuple):
    """A :class:`Workspace`'s arrays as the kernels take them, in one argument (built by
    :meth:`Workspace.buffers`). Each row of a matrix is one chunk's (or thread's)."""

    works: real_rows  # a tile's input rows and its layers' blocks (see _layers)
    grads: real_rows  # the chunks' gradients (twice over, by batch parity, for copies)
    scratch: real_rows  # a BLAS product, before it is added to the gradient
    chunk_losses: reals  # the chunks' losses (two sets, by batch parity), their penalties
    sync: int64s  # the team's meeting place (_team.SYNC_SIZE)
    theta_copies: real_rows  # the weights each member after the first steps (or no rows)
    state_1_copies: real_rows  # and its copies of the optimizer's state
    state_2_copies: real_rows


class Workspace:
    """Buffers for one network and plan, made once and reused for every batch.

    A parallel plan's team (``_training.train_epochs_parallel``) also gets the place it
    meets (``sync``) and, where each thread steps weights of its own, those copies and
    a second gradient buffer per chunk. ``tile`` and ``scratch_size`` make room for
    other plans of the same chunks too (see :meth:`fits`): a trainer keeps one workspace
    per chunk count, as large as its largest batch needs, whatever the batch sizes. A
    workspace made for a ``sparse`` X only (``gathers`` False) has no room for a tile of
    dense input rows (on 10000 features, 80 kB a row).
    """

    def __init__(self, network, run_plan, n_states=0, tile=0, scratch_size=0, sparse=False,
                 batch_rows=None):
        dtype = network.dtype
        n_chunks, n_params = run_plan.n_chunks, network.n_params
        self.n_chunks, self.replicated = n_chunks, run_plan.replicated_step
        self.tile = max(tile, run_plan.tile)
        self.scratch_size = max(scratch_size,
                                _blas_scratch_size(network, run_plan, batch_rows))
        self.gathers = not sparse
        size = _layers.workspace_size(network.units, self.tile, sparse)
        self.works = per_thread_zeros(n_chunks, size, dtype)
        n_buffers = 2 if run_plan.replicated_step else 1
        self.grads = per_thread_zeros(n_buffers * n_chunks, n_params, dtype)
        self.scratch = per_thread_zeros(n_chunks, self.scratch_size, dtype)
        # The chunks' losses (two sets, by batch parity) and their penalties.
        self.chunk_losses = aligned_zeros(3 * n_chunks, dtype)
        self.sync = aligned_zeros(_team.SYNC_SIZE, np.int64)
        n_copies = n_chunks - 1 if run_plan.replicated_step else 0
        self.theta_copies = per_thread_zeros(n_copies, n_params, dtype)
        self.state_copies = [
            per_thread_zeros(n_copies, n_params if state < n_states else 0, dtype)
            for state in range(2)
        ]
        self._buffers = None

    def fits(self, network, run_plan, sparse=False, batch_rows=None):
        """Whether ``run_plan`` can run in these buffers (see :meth:`for_chunks`): no
        more chunks, the same step (one chunk steps no copies), a tile and BLAS products
        no larger (a workspace row's layout is computed from the plan's tile, so a longer
        row only leaves its end unused), and room for the input rows of a dense X."""
        return (
            run_plan.n_chunks <= self.n_chunks
            and (run_plan.replicated_step == self.replicated or run_plan.n_chunks == 1)
            and run_plan.tile <= self.tile
            and _blas_scratch_size(network, run_plan, batch_rows) <= self.scratch_size
            and (sparse or self.gathers)
        )

    def for_chunks(self, n_chunks):
        """These buffers as a plan of ``n_chunks`` takes them: all of them, or for one
        chunk (which steps no copies of the weights) views of the first rows, so that a
        trainer's batches of one chunk and of two share one workspace."""
        if n_chunks == self.n_chunks:
            return self
        view = copy.copy(self)
        view.n_chunks, view.replicated, view._buffers = n_chunks, False, None
        view.works, view.grads = self.works[:n_chunks], self.grads[:n_chunks]
        view.scratch = self.scratch[:n_chunks]
        view.chunk_losses = self.chunk_losses[: 3 * n_chunks]
        view.theta_copies = self.theta_copies[:0]
        view.state_copies = [copies[:0] for copies in self.state_copies]
        return view

    def buffers(self):
        """These buffers as the kernels take them (a :class:`Buffers`, made once)."""
        if self._buffers is None:
            state_1_copies, state_2_copies = self.state_copies
            self._buffers = Buffers(
                works=self.works, grads=self.grads, scratch=self.scratch,
                chunk_losses=self.chunk_losses, sync=self.sync,
                theta_copies=self.theta_copies, state_1_copies=state_1_copies,
                state_2_copies=state_2_copies,
            )
        return self._buffers


# The kernels that others call by address (see fastmlp.kernels._calls), per dtype: a
# tile's forward and backward pass (tile_gradient, or its fused form for one hidden ReLU
# layer on few inputs), the optimizer step, and the summing of the chunks' gradients
# around it (on the calling thread, or split across threads for larger networks).
@functools.cache
def _tile_kernel(dtype, shallow_kind):
    if shallow_kind is None:
        kernel = _layers.tile_gradient
    else:
        kernel = _shallow.tile_gradient_shallow(*shallow_kind)
    return CompiledKernel(kernel, _layers.tile_gradient_signature(dtype))


def _tile_kernel_for(network, hidden, output, sparse=False):
    units = network.units
    shallow = not sparse and _shallow.is_shallow(units, hidden)
    kind = (int(units[0]), int(units[2]), int(output)) if shallow else None
    return _tile_kernel(network.dtype, kind)


@functools.cache
def _step_kernel(dtype, solver):
    return CompiledKernel(
        _training.FINISH_AND_STEP[solver], _training.finish_and_step_signature(dtype)
    )


@functools.cache
def _member_kernel(dtype):
    if config.DISABLE_JIT:  # called as Python: no signature
        return CompiledKernel(_training._member_epochs, None)
    signature = _training.member_epochs_signature(
        dtype,
        pointer_type(_layers.tile_gradient_signature(dtype)),
        pointer_type(_training.finish_and_step_signature(dtype)),
    )
    return CompiledKernel(_training._member_epochs, signature)


def _codes(activation, output):
    return HIDDEN_ACTIVATIONS[activation].code, OUTPUTS[output].code


def _empty_weights(dtype):
    return np.empty(0, dtype=dtype)


def _kernel_array(values, dtype):
    """``values`` as the kernels take them: C-contiguous and aligned, copied only if not."""
    return np.require(values, dtype=dtype, requirements=("C", "A"))


def _kernel_X(X, dtype):
    """X as the kernels take it: a dense array (see ``_kernel_array``), or a SciPy sparse
    matrix as CSR rows (``_sparse.as_csr``: never densified)."""
    if scipy.sparse.issparse(X):
        return _sparse.as_csr(X, dtype)
    return _kernel_array(X, dtype)


def _kernel_arrays(X, Y, sample_weight, dtype):
    if sample_weight is None:
        sample_weight = _empty_weights(dtype)
    return _kernel_X(X, dtype), _kernel_array(Y, dtype), _kernel_array(sample_weight, dtype)


def _read_only(values):
    """``values`` read-only (a view, if they were not): the kernels' data has one type
    whatever the caller's flags."""
    if not values.flags.writeable:
        return values
    view = values.view()
    view.flags.writeable = False
    return view


@functools.cache
def _no_csr_arrays(dtype):
    """A dense X's CSR arrays, as a :data:`~fastmlp.kernels._layers.Data` holds them:
    empty, made once per dtype."""
    return tuple(_read_only(np.empty(0, kind)) for kind in (dtype, np.int32, np.int64))


def _kernel_data(network, X, Y, sample_weight, order):
    """The kernels' :data:`~fastmlp.kernels._layers.Data` of X (dense, or a CSR matrix), Y
    (None: a forward pass), sample_weight and order (as :meth:`Trainer.prepare` returns
    them; ``order`` int64). Every shape and dtype, and a sparse X's structure, is checked
    before any kernel runs: the kernels index all of them without bounds checks."""
    units, dtype = network.units, network.dtype
    forward_only = Y is None
    if forward_only:
        Y = np.empty((0, units[-1]), dtype)
    if scipy.sparse.issparse(X):
        X_data, X_indices, X_indptr = _sparse.csr_arrays(X, dtype)
        dense = np.empty((0, X.shape[1]), dtype)
    else:
        dense = X
        X_data, X_indices, X_indptr = _no_csr_arrays(dtype)
    for name, values, ndim in (("X", dense, 2), ("Y", Y, 2), ("sample_weight", sample_weight, 1)):
        if not isinstance(values, np.ndarray) or values.ndim != ndim or values.dtype != dtype:
            raise ValueError(f"{name} must be a {ndim}-d {dtype} array for this network.")
        if not (values.flags.c_contiguous and values.flags.aligned):
            raise ValueError(f"{name} must be C-contiguous and aligned.")
    n_rows, n_features = X.shape
    if n_features != units[0]:
        raise ValueError(f"X has {n_features} features, but the network takes {units[0]}.")
    if Y.shape != (0 if forward_only else n_rows, units[-1]):
        raise ValueError(
            f"Y must have shape ({n_rows}, {units[-1]}) for this X and network, "
            f"got {Y.shape}."
        )
    if sample_weight.shape[0] not in (0, n_rows):
        raise ValueError(f"sample_weight has {sample_weight.shape[0]} values for {n_rows} rows.")
    if order.dtype != np.int64 or order.ndim != 1 or not order.flags.c_contiguous:
        raise ValueError("order must be a 1-d C-contiguous int64 array.")
    if order.shape[0] > 0 and (order.min() < 0 or order.max() >= n_rows):
        raise ValueError(f"order must hold row indices of X, in [0, {n_rows}).")
    return _layers.Data(
        X=_read_only(dense), Y=_read_only(Y), sample_weight=_read_only(sample_weight),
        order=order, X_data=_read_only(X_data), X_indices=_read_only(X_indices),
        X_indptr=_read_only(X_indptr),
    )


def _nonzeros_per_row(data):
    """A sparse X's mean count of nonzeros a row, as :func:`plan` takes it (None: dense)."""
    if data.X_indptr.shape[0] == 0:
        return None
    return data.X_indptr[-1] / max(data.X_indptr.shape[0] - 1, 1)


def _batch_gradient(run_plan):
    if run_plan.parallel:
        return _training.batch_gradient_parallel
    return _training.batch_gradient_serial


def loss_and_gradients(
    coefs, intercepts, X, Y, activation, output, alpha, sample_weight, n_threads=None
):
    """The Numba engine's ``loss_and_gradients`` (inputs validated by the caller; X dense
    or a SciPy sparse matrix, which runs as CSR rows, never densified).

    The rows are worked ``SEGMENT_ROWS`` at a time, one engine call each (so Ctrl-C is
    honoured between them), each split into the plan's chunks; the segments' gradients
    are summed in order."""
    network = FlatNetwork.from_arrays(coefs, intercepts)
    dtype = network.dtype
    X, Y, sample_weight = _kernel_arrays(X, Y, sample_weight, dtype)
    n = X.shape[0]
    data = _kernel_data(network, X, Y, sample_weight, np.arange(n, dtype=np.int64))
    nonzeros = _nonzeros_per_row(data)
    hidden, out = _codes(activation, output)
    run_plan = plan(network.units, min(n, SEGMENT_ROWS), n_threads, hidden, nonzeros)
    work = Workspace(network, run_plan, sparse=nonzeros is not None)
    batch_gradient = _batch_gradient(run_plan)
    tile_kernel = _tile_kernel_for(network, hidden, out, nonzeros is not None)
    kernel_network, buffers = _layers.Network.of(network, run_plan, hidden, out), work.buffers()
    grad = work.grads[0, : network.n_params]  # (its row is padded)
    total = grad if n <= SEGMENT_ROWS else np.zeros_like(grad)
    data_loss = dtype.type(0)
    with parallel_section(run_plan.n_threads, run_plan.blas_in_threads):
        for start in range(0, n, SEGMENT_ROWS):
            data_loss += batch_gradient(
                tile_kernel, kernel_network, data, start, min(start + SEGMENT_ROWS, n),
                buffers, _layers.PHASE_BACKWARD,
            )
            if total is not grad:
                total += grad
    weight_sum = dtype.type(n) if sample_weight.size == 0 else sample_weight.sum()
    penalty = _training.finish_gradient(
        total, network.theta, network.int_off[0], dtype.type(alpha), weight_sum
    )
    loss = data_loss / weight_sum + penalty
    coef_grads = [g.copy() for g in network.coef_views(total)]
    intercept_grads = [g.copy() for g in network.intercept_views(total)]
    return dtype.type(loss), coef_grads, intercept_grads


def predict(network, X, activation, output):
    """The network's output for every row of ``X`` (probabilities or predictions), worked
    ``SEGMENT_ROWS`` rows per engine call (so Ctrl-C is honoured between them). X is
    dense, or a SciPy sparse matrix, which runs as CSR rows (never densified)."""
    X = _kernel_X(X, network.dtype)
    if X.ndim != 2 or X.shape[1] != network.units[0]:
        raise ValueError(
            f"X must be 2-d with {network.units[0]} features for this network, "
            f"got shape {X.shape}."
        )
    data = _kernel_data(network, X, None, _empty_weights(network.dtype), _NO_ROWS)
    nonzeros = _nonzeros_per_row(data)
    sparse = nonzeros is not None
    hidden, out_code = _codes(activation, output)
    run_plan = plan(network.units, min(X.shape[0], SEGMENT_ROWS), 1, hidden, nonzeros)
    tile = run_plan.tile
    work = np.empty(_layers.workspace_size(network.units, tile, sparse), dtype=network.dtype)
    out = np.empty((X.shape[0], network.units[-1]), dtype=network.dtype)
    tile_kernel = _tile_kernel_for(network, hidden, out_code, sparse)
    kernel_network = _layers.Network.of(network, run_plan, hidden, out_code)
    for start in range(0, X.shape[0], SEGMENT_ROWS):
        stop = min(start + SEGMENT_ROWS, X.shape[0])
        rows = data._replace(order=np.arange(start, stop, dtype=np.int64))
        _layers.forward_rows(tile_kernel, kernel_network, rows, work, out[start:stop])
    return out


_NO_ROWS = np.empty(0, dtype=np.int64)
_NO_SHUFFLE = np.empty(0, dtype=np.uint32)


def _team_size(run_plan, n_threads):
    """A team of all the plan's chunks where each gets a thread (see ``_team``); else
    1: one thread runs every chunk's work, to the same results."""
    together = n_threads >= run_plan.n_chunks and not config.DISABLE_JIT
    return run_plan.n_chunks if together else 1


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Trainer.run_epochs`: ``losses`` holds the losses of the epochs
    that were completed; the weights and optimizer state are those after the last batch
    that ran (an epoch may have been left part-way, as scikit-learn's loop leaves it)."""

    def __init__(self, losses):
        super().__init__()
        self.losses = losses


class Trainer:
    """Whole-epoch minibatch training of a :class:`FlatNetwork` with SGD or Adam.

    The optimizer state (velocities, or Adam's moments and step count) lives here between
    calls, so epochs can be run one call at a time (for scikit-learn's per-epoch stopping
    rules) or many per call.
    """

    def __init__(
        self, network, activation, output, *, solver="adam", alpha=0.0, batch_size=200,
        momentum=0.9, nesterov=True, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_threads=None,
    ):
        if solver not in ("sgd", "adam"):
            raise ValueError(f"solver must be 'sgd' or 'adam', got {solver!r}.")
        self.network = network
        self.hidden, self.output = _codes(activation, output)
        self.solver = solver
        t = network.dtype.type
        self.alpha = t(alpha)
        self.batch_size = int(batch_size)
        self.momentum, self.nesterov = t(momentum), bool(nesterov)
        self.beta_1, self.beta_2, self.epsilon = t(beta_1), t(beta_2), t(epsilon)
        self.n_threads = n_threads
        self.state_1 = aligned_zeros(network.n_params, network.dtype)
        self.state_2 = aligned_zeros(network.n_params if solver == "adam" else 0, network.dtype)
        self.adam_step = 0
        self._plans = {}
        self._workspace = None
        # Until measured: a guess of a row's time (forward and backward, about 6 flops a
        # parameter, at 10 GFLOP/s), so the first call on a long epoch is short too.
        self.seconds_per_row = 6 * network.n_params / 1e10
        # One call at a time: a call's threads share its buffers and meeting place.
        self._running = threading.Lock()

    def __getstate__(self):
        # A pickled (or deep-copied) trainer gets a lock of its own, and buffers of its
        # own when it next runs.
        state = dict(self.__dict__)
        del state["_running"]
        state["_plans"] = {}
        state["_workspace"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._running = threading.Lock()
        self.state_1, self.state_2 = aligned_copy(self.state_1), aligned_copy(self.state_2)

    def reset(self):
        """Forget the optimizer state: velocities or moments zero, no steps taken."""
        self.state_1[:] = 0
        self.state_2[:] = 0
        self.adam_step = 0

    def _plan_for(self, batch_rows, nonzeros_per_row=None):
        """The plan, its buffers and its thread choice (None where the count is not
        fastmlp's to choose), made once per batch size and kind of X (dense, or sparse
        with few or many nonzeros a batch: see :func:`plan`). The buffers are one
        workspace per chunk count, grown to the largest plan that used it (memory stays
        bounded by the largest batch, however many batch sizes are seen)."""
        return self._run_for(batch_rows, nonzeros_per_row)[:3]

    def _run_for(self, batch_rows, nonzeros_per_row=None):
        """As :meth:`_plan_for`, then the network as the kernels run it on this plan (a
        :class:`~fastmlp.kernels._layers.Network`) and its tile kernel, made with the
        plan."""
        units = self.network.units
        sparse = nonzeros_per_row is not None
        kind = _few_nonzeros(units, batch_rows, nonzeros_per_row) if sparse else None
        key = (batch_rows, in_main_thread(), kind)  # see plan(): BLAS plans depend on the thread
        if key not in self._plans:
            run_plan = plan(units, batch_rows, self.n_threads, self.hidden, nonzeros_per_row)
            choice = None
            if run_plan.parallel and self.n_threads is None:
                choice = ThreadChoice(run_plan.n_threads)
            kernel_network = _layers.Network.of(self.network, run_plan, self.hidden, self.output)
            tile_kernel = _tile_kernel_for(self.network, self.hidden, self.output, sparse)
            self._plans[key] = (run_plan, choice, kernel_network, tile_kernel)
        run_plan, choice, kernel_network, tile_kernel = self._plans[key]
        work = self._workspace
        if work is None or not work.fits(self.network, run_plan, sparse, batch_rows):
            n_states = 2 if self.solver == "adam" else 1
            tile, scratch = (0, 0) if work is None else (work.tile, work.scratch_size)
            # Room for dense rows once any run needed it: a workspace serves both kinds.
            sparse = sparse and (work is None or not work.gathers)
            # As many chunks as any plan so far (the plan of the most, its step).
            widest = run_plan
            if work is not None and work.n_chunks > run_plan.n_chunks:
                widest = dataclasses.replace(run_plan, n_chunks=work.n_chunks,
                                             replicated_step=work.replicated)
            work = Workspace(self.network, widest, n_states, tile, scratch, sparse, batch_rows)
            self._workspace = work
        return run_plan, work.for_chunks(run_plan.n_chunks), choice, kernel_network, tile_kernel

    def run_epochs(self, X, Y, sample_weight, order, learning_rate, n_epochs=1,
                   last_phase=_layers.PHASE_UPDATE, random_state=None):
        """Train ``n_epochs`` epochs over the rows ``order`` of X; return each epoch's loss.

        ``X``, ``Y`` and ``sample_weight`` must be as :meth:`prepare` returns them
        (C-contiguous and aligned, in the network's dtype; X dense, or a CSR matrix whose
        values are in that dtype); ``order`` is the epoch's sample order. Given
        ``random_state`` (a ``numpy.random.RandomState``), ``order`` (then a writable
        C-contiguous int64 array) is shuffled in place before each epoch, with the same
        draws and result as ``random_state.shuffle(order)``: in compiled code on an MT19937
        generator (the usual one), by that call on any other. ``last_phase``
        (``fastmlp.kernels._layers.PHASE_*``) stops each batch early, for profiling; the
        weights then stay as they are.

        Raises :class:`TrainingInterrupted` on Ctrl-C, which is honoured within about
        ``SECONDS_PER_CALL``: long epochs run over several engine calls.
        """
        if random_state is None:
            order = np.require(order, dtype=np.int64, requirements=("C", "W"))
        elif order.dtype != np.int64 or not order.flags.c_contiguous or not order.flags.writeable:
            raise ValueError("order must be a writable C-contiguous int64 array to shuffle.")
        data = _kernel_data(self.network, X, Y, sample_weight, order)
        if random_state is None:
            return self._train(data, _NO_SHUFFLE, learning_rate, n_epochs, last_phase)
        shuffle_state = _random.shuffle_state(random_state, order.shape[0])
        if shuffle_state is not None:
            with random_state._bit_generator.lock:  # as RandomState.shuffle holds it
                return self._train(data, shuffle_state, learning_rate, n_epochs, last_phase)
        losses = []
        for _ in range(n_epochs):
            random_state.shuffle(order)  # in place: data.order is this array
            try:
                losses.append(self._train(data, _NO_SHUFFLE, learning_rate, 1, last_phase))
            except TrainingInterrupted as interrupted:
                raise TrainingInterrupted(np.concatenate(losses + [interrupted.losses])) from None
        return np.concatenate(losses)

    def _train(self, data, shuffle_state, learning_rate, n_epochs, last_phase):
        """The epochs in engine calls of about ``SECONDS_PER_CALL``: whole epochs where
        one is shorter, else parts of an epoch, a whole number of batches each. Where
        the calls are cut depends on the measured speed; the results do not."""
        n = data.order.shape[0]
        if n == 0:
            raise ValueError("An epoch needs at least one row: order is empty.")
        batch_size = min(self.batch_size, n)
        sums = np.zeros(n_epochs, dtype=np.float64)  # each epoch's loss times its rows
        done, row = 0, 0  # epochs completed; rows of the next one done
        try:
            while done < n_epochs:
                rows = self._rows_per_call(batch_size, n * (n_epochs - done))
                if row == 0 and rows >= n:
                    epochs = min(n_epochs - done, rows // n)
                    self._call(data, shuffle_state, learning_rate, batch_size, 0, n,
                               sums[done : done + epochs], last_phase)
                    done += epochs
                else:
                    stop = min(row + rows, n)
                    self._call(data, shuffle_state, learning_rate, batch_size, row,
                               stop, sums[done : done + 1], last_phase)
                    row = 0 if stop == n else stop
                    done += stop == n
        except KeyboardInterrupt:
            raise TrainingInterrupted(sums[:done] / n) from None
        return sums / n

    def _rows_per_call(self, batch_size, rows_left):
        """Whole batches lasting about ``SECONDS_PER_CALL`` at the last measured speed (one
        at least), or all that is left where it fits, whether its last batch is whole or
        not: rounded down to whole batches, an epoch of 3500 rows in batches of 200 ran
        as two calls, the second of 100 rows."""
        rows = SECONDS_PER_CALL / max(self.seconds_per_row, 1e-12)
        if rows >= rows_left:
            return rows_left
        return max(batch_size, int(rows) // batch_size * batch_size)

    def _call(self, data, shuffle_state, learning_rate, batch_size, first_row, stop_row,
              epoch_sums, last_phase):
        """One engine call: ``len(epoch_sums)`` epochs over rows ``first_row`` to
        ``stop_row`` of ``data.order`` (see ``_training._member_epochs``)."""
        nonzeros = _nonzeros_per_row(data)
        run_plan, work, choice, kernel_network, tile_kernel = self._run_for(batch_size, nonzeros)
        network = self.network
        if last_phase != _layers.PHASE_UPDATE:  # profiling: one count, as asked
            choice = None
        n_threads = run_plan.n_threads if choice is None else choice.next()
        team_size = _team_size(run_plan, n_threads)
        driver = _training.train_epochs_parallel if team_size > 1 else (
            _training.train_epochs_alone)
        epochs = _training.Epochs(
            batch_size=batch_size, first_row=first_row, stop_row=stop_row,
            shuffle_state=shuffle_state, losses=epoch_sums, last_phase=last_phase,
            team_size=team_size,
        )  # (all ints and arrays: as typed)
        started = time.perf_counter()
        with self._running, parallel_section(n_threads, run_plan.blas_in_threads):
            work.sync[:] = 0
            optimizer = _training.Optimizer.of(self, learning_rate)  # (its step count too)
            self.adam_step = driver(
                _member_kernel(network.dtype), tile_kernel,
                _step_kernel(network.dtype, optimizer.solver), kernel_network, data, optimizer,
                work.buffers(), epochs,
            )
        rows = epoch_sums.shape[0] * (stop_row - first_row)
        seconds_per_row = (time.perf_counter() - started) / rows
        self.seconds_per_row = seconds_per_row
        if choice is not None:
            choice.record(n_threads, seconds_per_row)

    def prepare(self, X, Y, sample_weight=None):
        """X, Y and sample_weight as the kernels take them (empty weights for none).

        A SciPy sparse X (any format) comes back as a CSR matrix in the network's dtype
        (``_sparse.as_csr``: a copy of the sparse arrays only where they change), which
        trains on its nonzeros, never densified; a dense X as a C-contiguous aligned
        array."""
        return _kernel_arrays(X, Y, sample_weight, self.network.dtype)


def _compiled_signatures():
    """How many signatures each of the engine's kernels has compiled (or loaded)."""
    from numba.core.registry import CPUDispatcher

    from fastmlp.kernels import _math, _sparse

    counts = {}
    for module in (_layers, _training, _random, _sparse, _math, _team):
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.__module__ == module.__name__:
                counts[f"{module.__name__.rsplit('.', 1)[-1]}.{name}"] = len(value.signatures)
    return counts


def warmup(dtypes=("float64", "float32")):
    """Compile (or load from Numba's on-disk cache) every kernel for the given dtypes.

    Each kernel has one compiled signature per dtype, whatever the layer sizes, batch
    size, activation or solver, so no shapes are needed: this pays the whole compile
    cost up front, once per machine and environment (later processes load the kernels
    from the cache). Call it at start-up, before timing anything; ``python -m fastmlp
    warmup`` does the same from the shell. A sparse X runs on the same kernels. The one
    exception is the fused kernel for one hidden ReLU layer on few inputs
    (``_shallow.py``), compiled for each count of inputs and outputs, and each output
    activation, when a network of that kind first runs.

    Parameters
    ----------
    dtypes : sequence of str or numpy.dtype, default=("float64", "float32")
        The dtypes to compile the kernels for: ``"float64"`` (the estimators train in
        it on any X but float32) and ``"float32"`` (float32 X). No other is supported.

    Returns
    -------
    report : dict
        ``{dtype name: {"seconds": float, "kernels": [name, ...]}}``: for each dtype,
        the time it took (seconds of compiling on a new machine, milliseconds from the
        cache) and the kernels that got a new signature (empty where all were ready).

    Raises
    ------
    TypeError
        Where NumPy does not know a dtype's name. A dtype other than float64 and
        float32 fails while compiling, with Numba's error.

    Examples
    --------
    >>> import fastmlp
    >>> report = fastmlp.warmup(["float64"])
    >>> sorted(report), sorted(report["float64"])
    (['float64'], ['kernels', 'seconds'])
    """
    from numba import config

    rng = np.random.default_rng(0)
    n_rows = 2 * MIN_ROWS_PER_THREAD
    thread_counts = (1, 2) if config.NUMBA_NUM_THREADS >= 2 else (1,)
    report = {}
    for dtype in dtypes:
        dtype = np.dtype(dtype)
        before, started = _compiled_signatures(), time.perf_counter()
        network = FlatNetwork([3, 4, 4, 2], dtype)  # two hidden layers: not the fused kernel
        network.theta[:] = rng.standard_normal(network.n_params)
        X = rng.standard_normal((n_rows, 3)).astype(dtype)
        Y = np.eye(2, dtype=dtype)[rng.integers(0, 2, n_rows)]
        for n_threads in thread_counts:  # the serial and the parallel kernels
            loss_and_gradients(
                network.coefs, network.intercepts, X, Y, "relu", "softmax", 0.0, None, n_threads
            )
            for solver in ("sgd", "adam"):  # each solver's step
                trainer = Trainer(network, "relu", "softmax", solver=solver, batch_size=n_rows,
                                  n_threads=n_threads)
                Xc, Yc, no_weights = trainer.prepare(X, Y)
                trainer.run_epochs(Xc, Yc, no_weights, np.arange(n_rows, dtype=np.int64), 1e-3)
        predict(network, X, "relu", "softmax")
        after = _compiled_signatures()
        report[dtype.name] = {
            "seconds": time.perf_counter() - started,
            "kernels": sorted(name for name, count in after.items()
                              if count > before.get(name, 0)),
        }
    return report
