"""Batch gradients (serial and parallel) and whole-epoch training, one optimizer step
(``_optimizers``) per batch.

A batch is split into ``n_chunks`` contiguous row ranges; each chunk is worked tile by
tile into its own gradient buffer, and the buffers are summed in chunk order. The split
depends only on the batch and ``n_chunks`` (the plan's, fixed by the batch's rows),
never on scheduling or on how many threads run the chunks, so results are identical to
the bit for any thread count (``tests/test_engine_robustness.py`` and
``tests/test_kernels.py`` pin it).

Numba's on-disk cache key ignores the ``parallel`` flag, so the serial and parallel batch
gradients are distinct functions rather than one function compiled twice.
"""

from typing import NamedTuple

from numba import njit, prange

from fastmlp.kernels._buffers import Buffers
from fastmlp.kernels._calls import jit
from fastmlp.kernels._data import Data
from fastmlp.kernels._layers import PHASE_UPDATE, Network, with_weights
from fastmlp.kernels._math import wide_vectors
from fastmlp.kernels._optimizers import Optimizer, next_step, region, with_state
from fastmlp.kernels._random import shuffle
from fastmlp.kernels._structs import float64s, int64, numba_type, words
from fastmlp.kernels._team import RESULT, barrier, join


class Epochs(NamedTuple):
    """What one engine call of training runs, in one argument (see
    :func:`_member_epochs`)."""

    batch_size: int64
    first_row: int64  # each epoch's batches start at rows first_row (a multiple of
    stop_row: int64  # batch_size) to stop_row of data.order
    shuffle_state: words  # MT19937's state, to shuffle data.order before each epoch
    #                     # (``fastmlp.kernels._random``; empty: not shuffled)
    losses: float64s  # per epoch (as many as run): its batches' losses times their rows
    #                 # are added to what it holds
    last_phase: int64  # PHASE_UPDATE; lower phases stop each batch early, for profiling
    team_size: int64  # the threads that meet as a team (1: one does every member's work)


@jit("kernels", cache=True, error_model="numpy")
def _chunk_gradient(tile_kernel, network, data, start, stop, work, grad, scratch, last_phase):
    wide_vectors()
    loss = network.theta.dtype.type(0)
    if start == stop:  # an empty chunk contributes nothing
        for p in range(grad.shape[0]):
            grad[p] = 0
    tile = network.tile
    for tile_start in range(start, stop, tile):
        rows = min(tile, stop - tile_start)
        loss += tile_kernel(
            network, data, tile_start, rows, work, grad, scratch, tile_start == start,
            last_phase,
        )
    return loss


@njit(cache=True, error_model="numpy", inline="always")
def _chunk_bounds(start, stop, n_chunks, chunk):
    size = (stop - start + n_chunks - 1) // n_chunks
    lo = min(start + chunk * size, stop)
    return lo, min(lo + size, stop)


@jit("python", cache=True, error_model="numpy")
def batch_gradient_serial(tile_kernel, network, data, start, stop, buffers, last_phase):
    """Unnormalised gradient of rows ``data.order[start:stop]`` into
    ``buffers.grads[0]``; one thread.

    The batch is split into the same chunks (one per row of ``buffers.works``) as
    :func:`batch_gradient_parallel` splits it, worked one after the other and summed in
    the same order: the same result, to the bit, with no parallel region (as in a forked
    child, where the threading layer may not be usable)."""
    wide_vectors()
    n_chunks = buffers.works.shape[0]
    grads, chunk_losses = buffers.grads[:n_chunks], buffers.chunk_losses
    for chunk in range(n_chunks):
        lo, hi = _chunk_bounds(start, stop, n_chunks, chunk)
        chunk_losses[chunk] = _chunk_gradient(
            tile_kernel, network, data, lo, hi, buffers.works[chunk], grads[chunk],
            buffers.scratch[chunk], last_phase,
        )
    return _sum_chunks(grads, chunk_losses)


@jit("kernels", cache=True, error_model="numpy", parallel=True)
def _chunk_gradients_parallel(tile_kernel, network, data, start, stop, buffers, last_phase):
    """One chunk of the batch per thread, each into its own ``grads[chunk]`` and
    ``chunk_losses[chunk]``, left unsummed. BLAS layers call BLAS from each thread
    (limited to one thread of its own by the caller, see ``fastmlp.kernels._threads``)."""
    n_chunks = buffers.works.shape[0]
    works, grads, scratch = buffers.works, buffers.grads, buffers.scratch
    chunk_losses = buffers.chunk_losses
    for chunk in prange(n_chunks):
        lo, hi = _chunk_bounds(start, stop, n_chunks, chunk)
        chunk_losses[chunk] = _chunk_gradient(
            tile_kernel, network, data, lo, hi, works[chunk], grads[chunk], scratch[chunk],
            last_phase,
        )


@jit("kernels", cache=True, error_model="numpy")
def _sum_chunks(grads, chunk_losses):
    """The chunks' gradients summed into ``grads[0]``, and their losses, in chunk order."""
    wide_vectors()
    loss = chunk_losses[0]
    for chunk in range(1, grads.shape[0]):
        loss += chunk_losses[chunk]
        _add_to(grads[0], grads[chunk], 0, grads.shape[1])
    return loss


@jit("python", cache=True, error_model="numpy")
def batch_gradient_parallel(tile_kernel, network, data, start, stop, buffers, last_phase):
    """As ``batch_gradient_serial``, one chunk per thread, summed in chunk order."""
    _chunk_gradients_parallel(tile_kernel, network, data, start, stop, buffers, last_phase)
    n_chunks = buffers.works.shape[0]
    return _sum_chunks(buffers.grads[:n_chunks], buffers.chunk_losses)


@njit(cache=True, error_model="numpy", inline="always")
def _add_to(total, part, lo, hi):
    for p in range(lo, hi):
        total[p] += part[p]


@njit(cache=True, error_model="numpy", inline="always")
def weight_sum_of(sample_weight, order, start, stop, default):
    if sample_weight.shape[0] == 0:
        return default
    total = sample_weight.dtype.type(0)
    for i in range(start, stop):
        total += sample_weight[order[i]]
    return total


@njit(cache=True, error_model="numpy", inline="always")
def _other_gradient(grads, lo, hi):
    """What the step adds to ``grads[0, lo:hi]``: with two chunks, the second's gradient
    (added inside the step); with more, they are first summed into ``grads[0]`` in chunk
    order, and nothing is left to add."""
    if grads.shape[0] == 2:
        return grads[1, lo:hi]
    for part in range(1, grads.shape[0]):
        _add_to(grads[0], grads[part], lo, hi)
    return grads[0, :0]


@jit("kernels", cache=True, error_model="numpy")
def _sum_and_step(
    step_kernel, part, n_parts, theta, grads, n_coef_params, weight_sum, step_size, optimizer,
):
    """The chunks' gradients ``grads`` summed in chunk order, and the solver's step
    (``step_kernel``: one of ``FINISH_AND_STEP``, by address), on slice ``part`` of
    ``n_parts`` of the parameters (0 of 1: all); returns the slice's share of the
    penalty."""
    wide_vectors()
    lo, hi = _chunk_bounds(0, theta.shape[0], n_parts, part)
    n_coefs = min(max(n_coef_params - lo, 0), hi - lo)
    return step_kernel(
        theta[lo:hi], grads[0, lo:hi], _other_gradient(grads, lo, hi), n_coefs, weight_sum,
        step_size, region(optimizer, lo, hi),
    )


@njit(cache=True, error_model="numpy", inline="always")
def _batch_scale(data, start, stop, optimizer, adam_step):
    """A batch's weight sum (its length, unweighted), and for Adam the step count and
    the bias-corrected step size, as scikit-learn computes them."""
    sample_weight = data.sample_weight
    t = sample_weight.dtype.type
    weight_sum = weight_sum_of(sample_weight, data.order, start, stop, t(stop - start))
    step_size, adam_step = next_step(optimizer, adam_step)
    return weight_sum, step_size, adam_step


# The epochs of a call run in one member kernel (``_member_epochs``), by a team of
# threads in a parallel region (``train_epochs_parallel``) or by the calling thread alone
# (``train_epochs_alone``, which never compiles or enters a parallel region). The chunks
# of a batch, and the order their gradients and losses are summed in, are the plan's,
# fixed by the batch's rows: the weights are the same to the bit for any thread count.
# Each batch's share of scikit-learn's epoch loss is its loss times its length;
# profiling runs (``last_phase`` below ``PHASE_UPDATE``) skip the step and count the raw
# data loss.
@jit("address", cache=True, error_model="numpy")
def _member_epochs(member, tile_kernel, step_kernel, network, data, optimizer, buffers,
                   epochs):
    """The work of team member ``member`` (see :func:`train_epochs_parallel`): after the
    handshake, that of members ``lo`` to ``hi - 1`` (all of them, alone), or none.

    Each epoch runs the batches that start at rows ``epochs.first_row`` (a multiple of
    ``epochs.batch_size``) to ``epochs.stop_row`` of ``data.order``: ``0`` and
    ``len(order)`` for whole epochs; a part of one epoch (one epoch) lets a long epoch run
    over several calls, so that Ctrl-C is honoured between them. The order is shuffled
    only before an epoch's first row. ``epochs.losses[e]`` gets the epoch's batch losses
    times their lengths added to what it held (the caller divides by the rows once an
    epoch is whole).
    """
    wide_vectors()
    works, grads, scratch = buffers.works, buffers.grads, buffers.scratch
    chunk_losses, sync = buffers.chunk_losses, buffers.sync
    batch_size, first_row, stop_row = epochs.batch_size, epochs.first_row, epochs.stop_row
    shuffle_state, epoch_losses, last_phase = (
        epochs.shuffle_state, epochs.losses, epochs.last_phase)
    n_chunks = works.shape[0]
    order = data.order
    adam_step = optimizer.adam_step
    lo, hi, team_size = join(sync, member, epochs.team_size, n_chunks)
    if hi == 0:
        return adam_step
    theta, state_1, state_2 = network.theta, optimizer.state_1, optimizer.state_2
    replicated = buffers.theta_copies.shape[0] > 0
    n_buffers = 2 if replicated else 1
    penalties = 2 * n_chunks  # where chunk_losses keeps the slices' penalties
    # The parts of the parameters this thread steps: all of its own copy, or its slices.
    # Variables, not constants at the call: Numba compiles a callee once per constant.
    first_part, last_part, n_parts = (0, 1, 1) if replicated else (lo, hi, n_chunks)
    own_theta, own_state_1, own_state_2 = theta, state_1, state_2
    if replicated and lo > 0:  # each member steps weights of its own, all alike
        # (Each row of a per-thread buffer is padded to whole cache lines.)
        own_theta = buffers.theta_copies[lo - 1, : theta.shape[0]]
        own_state_1 = buffers.state_1_copies[lo - 1, : state_1.shape[0]]
        own_state_2 = buffers.state_2_copies[lo - 1, : state_2.shape[0]]
        # Member 0 changes its weights and state only after the first barrier.
        for p in range(theta.shape[0]):
            own_theta[p] = theta[p]
        for p in range(state_1.shape[0]):
            own_state_1[p] = state_1[p]
        for p in range(state_2.shape[0]):
            own_state_2[p] = state_2[p]
    own_network = with_weights(network, own_theta)
    own_optimizer = with_state(optimizer, own_state_1, own_state_2)
    passed = 0
    batch = 0
    for epoch in range(epoch_losses.shape[0]):
        if shuffle_state.shape[0] > 0 and first_row == 0:
            if lo == 0:  # the others have read the last order before the last barrier
                shuffle(order, shuffle_state)
            passed = barrier(sync, team_size, passed)
        accumulated = epoch_losses[epoch]
        for start in range(first_row, stop_row, batch_size):
            stop = min(start + batch_size, order.shape[0])
            buffer = (batch % n_buffers) * n_chunks
            losses = (batch % 2) * n_chunks  # read after the barrier, while others go on
            batch += 1
            for member in range(lo, hi):
                chunk_lo, chunk_hi = _chunk_bounds(start, stop, n_chunks, member)
                chunk_losses[losses + member] = _chunk_gradient(
                    tile_kernel, own_network, data, chunk_lo, chunk_hi, works[member],
                    grads[buffer + member], scratch[member], last_phase,
                )
            # Read before the barrier: once past it, the leader may shuffle the order.
            weight_sum, step_size, adam_step = _batch_scale(
                data, start, stop, optimizer, adam_step)
            passed = barrier(sync, team_size, passed)
            data_loss = chunk_losses[losses]
            for member in range(1, n_chunks):
                data_loss += chunk_losses[losses + member]
            if last_phase < PHASE_UPDATE:
                accumulated += float(data_loss)
                continue
            batch_grads = grads[buffer : buffer + n_chunks]
            penalty = theta.dtype.type(0)
            for part in range(first_part, last_part):
                penalty = _sum_and_step(
                    step_kernel, part, n_parts, own_theta, batch_grads, network.int_off[0],
                    weight_sum, step_size, own_optimizer,
                )
                if not replicated:
                    chunk_losses[penalties + part] = penalty
            if not replicated:
                passed = barrier(sync, team_size, passed)
                penalty = chunk_losses[penalties]
                for part in range(1, n_parts):
                    penalty += chunk_losses[penalties + part]
            accumulated += float(data_loss / weight_sum + penalty) * (stop - start)
        if lo == 0:
            epoch_losses[epoch] = accumulated
    if lo == 0:
        sync[RESULT] = adam_step
    return adam_step


def member_epochs_signature(dtype, tile_kernel_type, step_kernel_type):
    """The one signature :func:`_member_epochs` is compiled for in ``dtype``, given the
    types of the kernels it calls."""
    return int64(dtype)(
        int64(dtype), tile_kernel_type, step_kernel_type, numba_type(Network, dtype),
        numba_type(Data, dtype), numba_type(Optimizer, dtype), numba_type(Buffers, dtype),
        numba_type(Epochs, dtype),
    )  # member, tile_kernel, step_kernel, network, data, optimizer, buffers, epochs


@jit("python", cache=True, error_model="numpy")
def train_epochs_alone(member_kernel, tile_kernel, step_kernel, network, data, optimizer,
                       buffers, epochs):
    """:func:`train_epochs_parallel` on the calling thread alone: every member's work, in
    member order, with no parallel region; the same results, to the bit."""
    return member_kernel(0, tile_kernel, step_kernel, network, data, optimizer, buffers,
                         epochs)


@jit("python", cache=True, error_model="numpy", parallel=True)
def train_epochs_parallel(member_kernel, tile_kernel, step_kernel, network, data, optimizer,
                          buffers, epochs):
    """Run the epochs of ``epochs`` of minibatch training over the sample order
    ``data.order``, shuffled in place before each epoch, as ``RandomState.shuffle``
    shuffles it, from the generator state ``epochs.shuffle_state``
    (``fastmlp.kernels._random``) unless that is empty; the rows of each epoch as
    :func:`_member_epochs` says.

    Each batch: forward, backward (``tile_kernel``), scikit-learn's normalisation and one
    optimizer step (``step_kernel``; ``optimizer.solver`` SGD: ``state_1`` velocities;
    Adam: ``state_1``/``state_2`` moments and ``adam_step`` the number of steps taken
    before). Each batch is split in ``buffers.works.shape[0]`` chunks, one per member of
    a team of threads that stays in one parallel region for the whole call
    (``fastmlp.kernels._team``), meeting at a barrier once the chunks' gradients are in.

    The step then runs one of two ways. With ``buffers.theta_copies`` (one copy per
    member after the first, and as many of the optimizer's state), every member steps
    weights of its own: all alike, from the same summed gradient, so no weights cross
    between cores, and no second barrier is needed (the gradients are in two buffers by
    batch parity, so a member may start the next batch while another still reads).
    Without, each member steps its slice of the parameters, and a second barrier waits
    for all slices.

    ``epochs.team_size`` 1 runs every member's work on the first thread to come, in the
    same order: the same results, to the bit. ``buffers.sync`` (``_team.SYNC_SIZE``
    zeros) is the team's meeting place; ``buffers.chunk_losses`` (3 per chunk) holds the
    chunks' losses, by batch parity, and their penalties. Returns the Adam step count
    after the last batch. ``member_kernel`` is :func:`_member_epochs`, passed by address
    (``fastmlp.kernels._calls``): inside a parallel region Numba would compile a direct
    callee's code three times over. ``epochs.last_phase`` below ``PHASE_UPDATE`` runs
    only part of each batch, for ``fastmlp profile``.
    """
    for member in prange(buffers.works.shape[0]):
        member_kernel(member, tile_kernel, step_kernel, network, data, optimizer, buffers,
                      epochs)
    return buffers.sync[RESULT]
