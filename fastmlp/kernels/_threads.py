"""Threads: a thread-safe Numba threading layer, thread counts set and restored per call.

Numba's ``workqueue`` threading layer aborts the process when two Python threads enter
parallel regions at once. Unless the user chose a layer (``NUMBA_THREADING_LAYER``),
fastmlp asks for a thread-safe one (TBB or OpenMP); where neither can be loaded, parallel
sections take a process-wide lock instead. ``tests/test_kernels.py`` calls the engine
from four Python threads at once.

GNU OpenMP cannot run a parallel region in a child forked from a process that has run
one (Numba's OpenMP layer then kills the child: "fork() called from a process already
using GNU OpenMP"), so such a child runs the engine on one thread, with no parallel
region: the chunks and the order of every sum are the data's, so the weights are the
same as in the parent. TBB's layer is fork-safe, and so is a child of a process that
never ran a region.

Plans whose threads call BLAS themselves hold BLAS to one thread of its own while they
run, and give it back its thread count after (the libraries found by threadpoolctl,
OpenBLAS's count set directly: see ``_openblas_setter``).
"""

import ctypes
import functools
import itertools
import os
import threading
from contextlib import ExitStack
from numbers import Integral

import numba
from numba import config


def _safe_layer_available():
    for module in ("tbbpool", "omppool"):
        try:
            __import__(f"numba.np.ufunc.{module}")
            return True
        except ImportError:
            continue
    return False


if "NUMBA_THREADING_LAYER" not in os.environ and config.THREADING_LAYER == "default":
    if _safe_layer_available():
        config.THREADING_LAYER = "threadsafe"

_PARALLEL_LOCK = threading.Lock()


_layer = {}  # the threading layer, once a parallel region has chosen it


def _layer_is_thread_safe():
    if "name" not in _layer:
        try:
            _layer["name"] = numba.threading_layer()  # (fixed for the process once chosen)
        except ValueError:  # no parallel region launched yet: decided by the configured layer
            return config.THREADING_LAYER in ("threadsafe", "tbb", "omp")
    return _layer["name"] != "workqueue"


_state = {"forked_after_openmp": False}


def _after_fork_in_child():
    try:
        layer = numba.threading_layer()
    except ValueError:  # the parent never ran a parallel region: the child may
        return
    if layer == "omp":
        _state["forked_after_openmp"] = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_regions_allowed():
    """False in a child forked after the parent ran OpenMP regions (see above)."""
    return not _state["forked_after_openmp"]


def resolve_n_threads(n_threads):
    """The number of threads to use: all of Numba's by default, at most that many; one in
    a child forked after OpenMP regions ran."""
    available = config.NUMBA_NUM_THREADS if parallel_regions_allowed() else 1
    if n_threads is None:
        return available
    if isinstance(n_threads, bool) or not isinstance(n_threads, Integral) or n_threads == 0:
        raise ValueError(f"n_threads must be a non-zero integer or None, got {n_threads!r}.")
    n_threads = int(n_threads)
    if n_threads < 0:  # joblib's convention: -1 is all threads, -2 all but one, ...
        return max(1, available + 1 + n_threads)
    return min(n_threads, available)


_BLAS_LOCK = threading.Lock()
_blas = {"users": 0, "saved": ()}


def _openblas_setter(library):
    """OpenBLAS's own ``openblas_set_num_threads`` (with the library's symbol affixes),
    called directly.

    threadpoolctl lets only the first Python thread that sets OpenBLAS's process-wide
    count change it again while that thread lives, and ignores every other thread
    without a word. Sections run on any thread, and one that ends may not be the one
    that began the limit, so fastmlp sets the count itself."""
    dynlib = ctypes.CDLL(library.filepath)
    for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
        if hasattr(dynlib, f"{prefix}openblas_get_num_threads{suffix}"):
            setter = getattr(dynlib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if setter is not None:
                setter.restype, setter.argtypes = None, [ctypes.c_int]
            return setter
    return None


@functools.cache
def _blas_libraries():
    """Each BLAS library loaded, as ``(get, set, per_thread)``: its thread count's getter
    and setter, and whether that count is the calling thread's own (OpenBLAS built on
    OpenMP) rather than the process's (OpenBLAS's own threads, MKL, BLIS)."""
    import scipy.linalg.cython_blas  # noqa: F401  (Numba's BLAS, loaded first)
    from threadpoolctl import ThreadpoolController

    libraries = []
    for library in ThreadpoolController().select(user_api="blas").lib_controllers:
        per_thread = getattr(library, "threading_layer", None) == "openmp"
        setter = None
        if library.internal_api == "openblas" and not per_thread:
            setter = _openblas_setter(library)
        libraries.append((library.get_num_threads, setter or library.set_num_threads,
                          per_thread))
    return tuple(libraries)


def _limit_blas():
    """Hold BLAS to one thread until the matching :func:`_unlimit_blas` (given what this
    returns). A process-wide count is set by the first section to start and restored by
    the last to end, whichever threads they run on: a section that restored the count
    it found while another still ran would let that one's products run on BLAS's
    threads, with other roundings (four Python threads calling the engine at once
    were seen to differ in the last bit that way). A count of the calling thread's own
    is set and restored by each section."""
    libraries = _blas_libraries()
    with _BLAS_LOCK:
        if _blas["users"] == 0:
            _blas["saved"] = [(set_, get()) for get, set_, per_thread in libraries
                              if not per_thread]
            for set_, _ in _blas["saved"]:
                set_(1)
        _blas["users"] += 1
    own = [(set_, get()) for get, set_, per_thread in libraries if per_thread]
    for set_, _ in own:
        set_(1)
    return own


def _unlimit_blas(own):
    for set_, count in reversed(own):
        set_(count)
    with _BLAS_LOCK:
        _blas["users"] -= 1
        if _blas["users"] == 0:
            for set_, count in reversed(_blas["saved"]):
                set_(count)
            _blas["saved"] = ()


def _set_num_threads(n_threads):
    """Set Numba's thread count for this thread; the count before, or None where it was
    ``n_threads`` already (then nothing is set)."""
    current = numba.get_num_threads()
    if current == n_threads:
        return None
    numba.set_num_threads(n_threads)
    return current


class parallel_section:
    """Run Numba's parallel regions on ``n_threads`` threads, restoring the count after
    (a context manager).

    With ``blas_in_threads`` every thread calls BLAS itself, so BLAS is held to one thread
    of its own meanwhile (the first section to start sets the limit, the last to end
    lifts it: ``_limit_blas``).

    It runs around every engine call, so the usual section (no BLAS limit, a thread-safe
    layer, the count already right) does no more than read the count: written with
    ``contextlib`` (a generator and an ``ExitStack``) it took 13 µs, more than a small
    network's epoch, and now about 3 (``python -m timeit`` on an empty section, on a
    2-core AMD EPYC).
    """

    __slots__ = ("n_threads", "blas_in_threads", "previous", "stack")

    def __init__(self, n_threads, blas_in_threads=False):
        # n_threads None: no parallel region runs in the section (BLAS's limit only).
        self.n_threads, self.blas_in_threads = n_threads, blas_in_threads
        self.previous = self.stack = None

    def __enter__(self):
        if self.n_threads is None and not self.blas_in_threads:
            return self
        if self.blas_in_threads or not _layer_is_thread_safe():
            self.stack = self._enter_all()
        elif parallel_regions_allowed():  # (else one thread, and no region runs: see above)
            self.previous = _set_num_threads(self.n_threads)
        return self

    def _enter_all(self):
        stack = ExitStack()
        with ExitStack() as entering:  # closes what was entered if a step fails
            entering.enter_context(stack)
            if self.blas_in_threads:
                stack.callback(_unlimit_blas, _limit_blas())
            if self.n_threads is not None and parallel_regions_allowed():
                previous = _set_num_threads(self.n_threads)
                if previous is not None:
                    stack.callback(numba.set_num_threads, previous)
                if not _layer_is_thread_safe():
                    stack.enter_context(_PARALLEL_LOCK)
            entering.pop_all()
        return stack

    def __exit__(self, *exception):
        if self.stack is not None:
            stack, self.stack = self.stack, None
            stack.close()
        elif self.previous is not None:
            previous, self.previous = self.previous, None
            numba.set_num_threads(previous)


class ThreadChoice:
    """Whether a parallel plan runs on its threads or on one, chosen by how fast each ran.

    On a shared virtual machine the second core is sometimes much slower to reach than
    the first: a run of many small parallel regions (one per batch) then takes twice as
    long on two threads as on one. A plan's chunks and the order they are summed in do
    not depend on the threads that run them, so the results are the same either way:
    the choice is free to follow the machine.

    Each count is timed as it runs, keeping the last time, so that a change of state
    shows. A call of the plan's threads after a call on one is not timed: threads that
    sat idle wake slowly, and that call would look slow. The plan's threads run unless
    one thread took under ``MARGIN`` of their time. The count not chosen is timed again
    now and then: while one thread runs, the threads run twice every ``RETRY_EVERY``
    calls (woken, then timed), to see the second core come back; while the threads
    run, one thread runs once every ``RETRY_ONE_EVERY`` calls. That retry is rarer
    because the threads' own time, measured on every call, already shows a slow second
    core, and each retry costs a call at one thread's speed (about half the threads'
    when the machine is quiet: one call in eight, at ``RETRY_EVERY`` calls, made a
    notebook step 12 % slower on average).
    """

    RETRY_EVERY = 16
    RETRY_ONE_EVERY = 64
    MARGIN = 0.8

    def __init__(self, n_threads):
        self.counts = (n_threads, 1)
        self.seconds = {}
        self.calls = 0
        self.previous = self.current = None

    def _preferred(self):
        threads, one = self.counts
        if one in self.seconds and threads in self.seconds:
            if self.seconds[one] < self.MARGIN * self.seconds[threads]:
                return one
        return threads

    def next(self):
        """The thread count for the next call."""
        self.calls += 1
        threads, one = self.counts
        untimed = [count for count in self.counts if count not in self.seconds]
        if untimed:
            count = untimed[0]
        elif self._preferred() == one:
            count = threads if self.calls % self.RETRY_EVERY in (0, 1) else one
        else:
            count = one if self.calls % self.RETRY_ONE_EVERY == 0 else threads
        self.previous, self.current = self.current, count
        return count

    def record(self, n_threads, seconds_per_row):
        if n_threads == self.current and (n_threads == self.previous
                                          or n_threads == self.counts[1]):
            self.seconds[n_threads] = seconds_per_row
