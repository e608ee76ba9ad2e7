"""The engine's buffers: arrays that start a cache line, the network's weights in one
flat vector (:class:`FlatNetwork`), and a plan's :class:`Workspace`, made once and reused
for every batch (its arrays reach the kernels as one :class:`Buffers`)."""

import copy
from typing import NamedTuple

import numpy as np

from fastmlp.kernels import _layers, _team
from fastmlp.kernels._structs import int64s, real_rows, reals

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

    def _views(self):
        """The views of ``theta`` (made once per ``theta``: a notebook step reads them
        twice, and making them took a tenth of its Python time)."""
        cached = self.__dict__.get("_cached_views")
        if cached is None or cached[0] is not self.theta:
            cached = (self.theta, tuple(self.coef_views(self.theta)),
                      tuple(self.intercept_views(self.theta)))
            self._cached_views = cached
        return cached

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_cached_views", None)
        return state

    @property
    def coefs(self):
        return list(self._views()[1])

    @property
    def intercepts(self):
        return list(self._views()[2])


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

    A parallel plan's team (``_epochs.train_epochs_parallel``) also gets the place it
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
