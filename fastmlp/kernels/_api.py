"""The Numba engine's Python entry points: ``loss_and_gradients``, ``predict``, the
:class:`Trainer` of whole epochs, and ``warmup``; and the kernels called by address,
compiled once per dtype."""

import dataclasses
import functools
import threading
import time

import numpy as np
from numba import config

from fastmlp._gc import collection_paused
from fastmlp.activations import HIDDEN_ACTIVATIONS, OUTPUTS
from fastmlp.kernels import _beside, _epochs, _layers, _optimizers, _random, _shallow, _team
from fastmlp.kernels._buffers import FlatNetwork, Workspace, aligned_copy, aligned_zeros
from fastmlp.kernels._calls import CompiledKernel, pointer_type
from fastmlp.kernels._data import Data, empty_weights, kernel_arrays, kernel_X, nonzeros_per_row
from fastmlp.kernels._planner import MIN_ROWS_PER_THREAD, few_nonzeros, plan
from fastmlp.kernels._threads import ThreadChoice, parallel_section

#: Rows of X that ``loss_and_gradients`` and ``predict`` work per engine call: a call on
#: millions of rows is cut into engine calls of this many rows, between which Ctrl-C is
#: honoured, and the segments' gradients are summed in order (fixed by the data, like the
#: chunks).
SEGMENT_ROWS = 32768
#: The time an engine call of training aims at, so that Ctrl-C is honoured within it.
#: Only how the epochs are cut into calls depends on it, never the results.
SECONDS_PER_CALL = 0.1

#: A trainer looks for unusual weights and states at every this-many-th call
#: (``Trainer._careful_steps``).
CAREFUL_CHECK_CALLS = 8


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


def _tile_kind(network, hidden, output, sparse=False):
    units = network.units
    shallow = not sparse and _shallow.is_shallow(units, hidden)
    return (int(units[0]), int(units[2]), int(output)) if shallow else None


def _tile_kernel_for(network, hidden, output, sparse=False):
    return _tile_kernel(network.dtype, _tile_kind(network, hidden, output, sparse))


@functools.cache
def _step_kernel(dtype, solver, careful=False):
    steps = _optimizers.CAREFUL_FINISH_AND_STEP if careful else _optimizers.FINISH_AND_STEP
    return CompiledKernel(steps[solver], _optimizers.finish_and_step_signature(dtype))


def _member_signature(dtype):
    return _epochs.member_epochs_signature(
        dtype,
        pointer_type(_layers.tile_gradient_signature(dtype)),
        pointer_type(_optimizers.finish_and_step_signature(dtype)),
    )


def alone_driver_types(dtype):
    """The argument types ``_epochs.train_epochs_alone`` is called with in ``dtype``
    (the kernels' are known before they are compiled)."""
    member = _member_signature(dtype)
    return (pointer_type(member), *member.args[1:])


@functools.cache
def _member_kernel(dtype):
    if config.DISABLE_JIT:  # called as Python: no signature
        return CompiledKernel(_epochs._member_epochs, None)
    _beside.wait()  # (where a helper process compiles it)
    return CompiledKernel(_epochs._member_epochs, _member_signature(dtype))


@functools.cache  # (looked for once per process)
def _compile_beside(dtype, tile_kind, solver):
    """Where a training call's three kernels (the tile's, the epochs', the step's) all
    need compiling, start a helper process on the epochs' (and the driver that runs
    them) while this one compiles the others (``_beside``). Each is looked for in
    memory, then in Numba's disk cache (and loaded from there)."""
    if not _beside.wanted():
        return
    dtype = np.dtype(dtype)
    tile = _layers.tile_gradient if tile_kind is None else _shallow.tile_gradient_shallow(
        *tile_kind)
    step_signature = _optimizers.finish_and_step_signature(dtype)
    pending = [
        (_epochs._member_epochs, _member_signature(dtype)),
        (_optimizers.FINISH_AND_STEP[solver], step_signature),
        (tile, _layers.tile_gradient_signature(dtype)),
    ]
    with collection_paused():  # (loading a first kernel: see fastmlp._gc)
        if any(_has_code(dispatcher, signature) for dispatcher, signature in pending):
            return
    _beside.start(dtype)


def _codes(activation, output):
    return HIDDEN_ACTIVATIONS[activation].code, OUTPUTS[output].code


def _batch_gradient(run_plan):
    if run_plan.parallel:
        return _epochs.batch_gradient_parallel
    return _epochs.batch_gradient_serial


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
    X, Y, sample_weight = kernel_arrays(X, Y, sample_weight, dtype)
    n = X.shape[0]
    data = Data.of(network, X, Y, sample_weight, np.arange(n, dtype=np.int64))
    nonzeros = nonzeros_per_row(data)
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
    penalty = _optimizers.finish_gradient(
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
    X = kernel_X(X, network.dtype)
    if X.ndim != 2 or X.shape[1] != network.units[0]:
        raise ValueError(
            f"X must be 2-d with {network.units[0]} features for this network, "
            f"got shape {X.shape}."
        )
    data = Data.of(network, X, None, empty_weights(network.dtype), _NO_ROWS)
    nonzeros = nonzeros_per_row(data)
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


#: Seconds of training a process runs on one thread, where a plan of its own choosing
#: (``Trainer(n_threads=None)``) would run a team, before it compiles the team's driver
#: (``_epochs.train_epochs_parallel``: about a second to compile on a new machine). Only
#: while that driver is neither compiled nor in Numba's cache: a small first fit on a
#: new machine does not pay for a compile that would not pay off, a long one soon does.
#: The results are the same either way, to the bit (the chunks are the plan's).
PARALLEL_COMPILE_AFTER_SECONDS = 1.0


class _ParallelDriver:
    """Whether ``train_epochs_parallel`` runs without compiling, per process."""

    def __init__(self):
        self.ready = {}  # per dtype: compiled, or loaded from the cache
        # Per dtype not ready: how many signatures the driver had when last looked for.
        self.compiled_when_looked = {}
        self.seconds_alone = 0.0  # spent on one thread for want of it

    def available(self, dtype, args):
        """Whether the driver, for the types of ``args``, is compiled or can be loaded
        from Numba's cache (then loaded); or the time on one thread has run out.

        Not found, it is looked for again once the driver has compiled (or loaded) a
        signature since: after ``warmup()``, or a trainer that asked for threads."""
        if not self.ready.get(dtype):
            driver = _epochs.train_epochs_parallel
            if self.compiled_when_looked.get(dtype) != _n_compiled(driver):
                self.ready[dtype] = _load_from_cache(driver, args)
                self.compiled_when_looked[dtype] = _n_compiled(driver)
        return self.ready[dtype] or self.seconds_alone >= PARALLEL_COMPILE_AFTER_SECONDS


def _n_compiled(dispatcher):
    """How many signatures ``dispatcher`` has compiled or loaded (none, the JIT off)."""
    return len(getattr(dispatcher, "overloads", ()))


def _load_from_cache(dispatcher, args):
    """Whether ``dispatcher`` has code for the types of ``args`` without compiling (see
    :func:`_has_code`)."""
    if config.DISABLE_JIT:
        return True
    from numba import typeof

    return _has_code(dispatcher, tuple(typeof(argument) for argument in args))


def _has_code(dispatcher, signature):
    """Whether ``dispatcher`` has code for ``signature`` without compiling: as
    ``Dispatcher.compile`` looks for it, in its signatures and then in Numba's cache
    (loaded from there, as it would be). ``signature`` is a tuple of argument types, or
    a whole signature (a :class:`CompiledKernel`'s), which Numba's cache keys as it is
    (Numba 0.68) or as its argument types (before). Where Numba's internals are not as
    expected, True: the caller compiles as it would without looking."""
    if config.DISABLE_JIT:
        return True
    try:
        from numba.core.compiler_lock import global_compiler_lock

        argument_types = tuple(getattr(signature, "args", signature))
        if argument_types in dispatcher.overloads:
            return True
        with global_compiler_lock:  # (as Dispatcher.compile holds it)
            for key in dict.fromkeys([signature, argument_types]):
                result = dispatcher._cache.load_overload(key, dispatcher.targetctx)
                if result is not None:
                    dispatcher._cache_hits[key] += 1
                    dispatcher.targetctx.insert_user_function(
                        result.entry_point, result.fndesc, [result.library])
                    dispatcher.add_overload(result)
                    return True
        return False
    except Exception:  # (a Numba other than the ones this was written for)
        return True


_parallel_driver = _ParallelDriver()


#: The thread choices of the plans run so far, per network shape and plan (see
#: ``_shared_choice``), at most ``_MAX_CHOICES`` of them.
_choices = {}
_MAX_CHOICES = 256


def _shared_choice(key, n_threads):
    """The :class:`ThreadChoice` of every trainer of one network shape, settings and plan
    in this process: what one fit measured, the next one knows. A grid search makes a
    trainer per fit, and each new choice timed one thread on its third call, a third of
    a short fit (the digits search of ``benchmarks/bench_end_to_end.py``: 37 of its 148
    calls ran alone, 0.69 s of its 1.37 s in the engine). The choice never changes a
    result, only the threads that compute it, so sharing it is safe."""
    choice = _choices.get(key)
    if choice is None:
        if len(_choices) >= _MAX_CHOICES:
            _choices.clear()
        choice = _choices[key] = ThreadChoice(n_threads)
    return choice


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
        self._calls, self._careful = 0, False  # (see _careful_steps)

    def __getstate__(self):
        # A pickled (or deep-copied) trainer gets a lock of its own, and buffers of its
        # own when it next runs.
        state = dict(self.__dict__)
        del state["_running"]
        state["_plans"] = {}
        state["_workspace"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update({"_calls": 0, "_careful": False, **state})
        self._running = threading.Lock()
        self.state_1, self.state_2 = aligned_copy(self.state_1), aligned_copy(self.state_2)

    def reset(self):
        """Forget the optimizer state: velocities or moments zero, no steps taken."""
        self.state_1[:] = 0
        self.state_2[:] = 0
        self.adam_step = 0
        self._calls, self._careful = 0, False

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
        kind = few_nonzeros(units, batch_rows, nonzeros_per_row) if sparse else None
        key = (batch_rows, kind)
        entry = self._plans.get(key)
        if entry is None:
            run_plan = plan(units, batch_rows, self.n_threads, self.hidden, nonzeros_per_row)
            choice = None
            if run_plan.parallel and self.n_threads is None:
                choice = _shared_choice(
                    (tuple(units.tolist()), self.network.dtype.str, self.hidden,
                     self.output, self.solver, key, run_plan.n_chunks),
                    run_plan.n_threads)
            kernel_network = _layers.Network.of(self.network, run_plan, self.hidden, self.output)
            tile_kind = _tile_kind(self.network, self.hidden, self.output, sparse)
            _compile_beside(self.network.dtype, tile_kind, _optimizers.SOLVERS[self.solver])
            tile_kernel = _tile_kernel(self.network.dtype, tile_kind)
            # The last two: the workspace this plan was last checked against, and its
            # buffers as the plan takes them (the check and the view, once per workspace).
            entry = self._plans[key] = [run_plan, choice, kernel_network, tile_kernel, None,
                                        None]
        run_plan, choice, kernel_network, tile_kernel, checked, buffers = entry
        work = self._workspace
        if work is None or work is not checked:
            if work is None or not work.fits(self.network, run_plan, sparse, batch_rows):
                work = self._new_workspace(run_plan, sparse, batch_rows)
            buffers = work.for_chunks(run_plan.n_chunks)
            entry[4:] = work, buffers
        return run_plan, buffers, choice, kernel_network, tile_kernel

    def _new_workspace(self, run_plan, sparse, batch_rows):
        """A workspace for ``run_plan`` and every plan the current one served (see
        ``_plan_for``), which replaces it."""
        work = self._workspace
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
        for entry in self._plans.values():  # let the old workspace go: none holds it now
            entry[4:] = None, None
        return work

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
        data = Data.of(self.network, X, Y, sample_weight, order)
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
        ``stop_row`` of ``data.order`` (see ``_epochs._member_epochs``)."""
        nonzeros = nonzeros_per_row(data)
        run_plan, work, choice, kernel_network, tile_kernel = self._run_for(batch_size, nonzeros)
        network = self.network
        if last_phase != _layers.PHASE_UPDATE:  # profiling: one count, as asked
            choice = None
        n_threads = run_plan.n_threads if choice is None else choice.next()
        team_size = _team_size(run_plan, n_threads)
        with self._running:
            work.sync[:] = 0
            optimizer = _optimizers.Optimizer.of(self, learning_rate)  # (its step count too)
            step_kernel = _step_kernel(network.dtype, optimizer.solver, self._careful_steps())
            # (The step first: on a first fit, a helper process compiles the epochs
            # kernel meanwhile, and _member_kernel waits for it.)
            kernels = (_member_kernel(network.dtype), tile_kernel, step_kernel)
            epochs = _epochs.Epochs(
                batch_size=batch_size, first_row=first_row, stop_row=stop_row,
                shuffle_state=shuffle_state, losses=epoch_sums, last_phase=last_phase,
                team_size=team_size,
            )  # (all ints and arrays: as typed)
            arguments = (*kernels, kernel_network, data, optimizer, work.buffers(), epochs)
            alone_for_now = (team_size > 1 and choice is not None
                             and not _parallel_driver.available(network.dtype, arguments))
            if alone_for_now:
                arguments = (*arguments[:-1], epochs._replace(team_size=1))
            alone = alone_for_now or team_size == 1
            driver = _epochs.train_epochs_alone if alone else _epochs.train_epochs_parallel
            # (else: compiling). Not ``driver.signatures``: that hashes every argument
            # type anew, about 0.1 ms a call for these structures.
            compiled = config.DISABLE_JIT or bool(driver.overloads)
            # One thread alone opens no parallel region: Numba's thread count stays.
            with parallel_section(None if alone else n_threads, run_plan.blas_in_threads):
                started = time.perf_counter()
                self.adam_step = driver(*arguments)
                elapsed = time.perf_counter() - started
        rows = epoch_sums.shape[0] * (stop_row - first_row)
        self.seconds_per_row = elapsed / rows
        if alone_for_now and compiled:
            _parallel_driver.seconds_alone += elapsed
        elif choice is not None:
            choice.record(n_threads, self.seconds_per_row)

    def _careful_steps(self):
        """Whether this call steps with ``_optimizers.CAREFUL_FINISH_AND_STEP``: where
        some weights or first states are unusual, looked for at every
        ``CAREFUL_CHECK_CALLS``-th call. A look takes about 10 us for W2's network, 2.9
        ms for a million parameters (W6's), each a few percent of an epoch: a fraction
        of a percent in all (``python -m timeit -s "import numpy as np; from
        fastmlp.kernels._optimizers import has_unusual_values as h; a =
        np.random.randn(401)" "h(a, a)"``). Calls in between keep the last answer: a
        value that has just become unusual meets the plain step for a few calls more,
        exact but where its float64 dividend is below ``quotient``'s range
        (``_optimizers``). Float32 steps are never careful."""
        if self._calls % CAREFUL_CHECK_CALLS == 0:
            self._careful = _optimizers.has_unusual_values(self.network.theta, self.state_1)
        self._calls += 1
        return self._careful

    def prepare(self, X, Y, sample_weight=None):
        """X, Y and sample_weight as the kernels take them (empty weights for none).

        A SciPy sparse X (any format) comes back as a CSR matrix in the network's dtype
        (``_sparse.as_csr``: a copy of the sparse arrays only where they change), which
        trains on its nonzeros, never densified; a dense X as a C-contiguous aligned
        array."""
        return kernel_arrays(X, Y, sample_weight, self.network.dtype)


def _compiled_signatures():
    """How many signatures each of the engine's kernels has compiled (or loaded)."""
    from numba.core.registry import CPUDispatcher

    from fastmlp.kernels import _activations, _math, _sparse

    counts = {}
    for module in (_layers, _epochs, _optimizers, _random, _sparse, _math, _activations, _team):
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
        for solver in _optimizers.CAREFUL_FINISH_AND_STEP:  # (for decayed weights)
            _step_kernel(dtype, solver, careful=True)
        after = _compiled_signatures()
        report[dtype.name] = {
            "seconds": time.perf_counter() - started,
            "kernels": sorted(name for name, count in after.items()
                              if count > before.get(name, 0)),
        }
    return report
