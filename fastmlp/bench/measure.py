"""Timing with interleaved repeats: ``python -m fastmlp bench`` and the repository's report.

Every implementation set up on a workload is timed once per round, over at least
``MIN_TIMED_SECONDS`` of its units of work; rounds are interleaved so that drift on a
shared machine hits all alike, and ratios pair the times of one round (:func:`speedup`).
Each timing follows untimed units of the same implementation (for at least
``WARMUP_SECONDS``, in its worker process too), so it is
measured in the steady state of a fit (threads awake, caches warm) whatever ran before
it; a pause after each lets that library's worker threads stop spinning before the next
library runs. (On these virtual machines a thread pool left idle for a tenth of a second
wakes slowly for a while: a first epoch after a pause can take ten times as long as the
next.) Implementations in ``ISOLATED`` run in a worker process of their own (driven round
by round through a pipe), so their thread pools never share a process with ours.

Importing this module sets glibc's allocator to keep freed memory (:func:`steady_allocator`)
for the whole process: it is for processes that time things.
"""

import ctypes
import ctypes.util
import multiprocessing
import time
from dataclasses import dataclass, field

import numpy as np

from fastmlp.bench.implementations import (
    IMPLEMENTATIONS,
    ISOLATED,
    Runner,
    Unavailable,
    check_installed,
)
from fastmlp.bench.workloads import load

SETTLE_SECONDS = 0.15
#: Each timed measurement runs units of work for at least this long and reports their
#: mean, for every implementation alike. The slow states of these machines come and go
#: within a second: a 0.2 s epoch often fits between two, a 2 s fit of scikit-learn's
#: seldom does, and a ratio of the two would credit the shorter unit with the machine's
#: good moments (W4: 2.3x in one run whose rounds' fast moments gave 1.8x).
MIN_TIMED_SECONDS = 1.0
#: The untimed work before each timed unit lasts at least this long: one short unit (a
#: 0.1 ms epoch) is not enough to wake a thread pool fully on these machines, nor were
#: 50 ms after the pause above (in one run, W5's engine epochs: 27 ms, while its 5-epoch
#: fits, warmed by a 0.1 s fit, ran at 22 ms an epoch; with 0.2 s, 21.5 and 20.0 ms).
WARMUP_SECONDS = 0.2


def steady_allocator():
    """Keep freed memory for reuse (glibc): NumPy's temporaries of a few MiB would
    otherwise be mapped afresh, page faults and all, at every call, or not, depending on
    what the process allocated before (glibc adapts its threshold). Fixing it makes the
    NumPy-based baselines as fast as they get, and the same from run to run."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 * 2**20)
    libc.mallopt(m_trim_threshold, 512 * 2**20)
    return True


STEADY_ALLOCATOR = steady_allocator()


@dataclass
class Timing:
    seconds: list = field(default_factory=list)

    @property
    def median(self):
        return float(np.median(self.seconds))

    @property
    def low(self):
        return float(min(self.seconds))

    @property
    def high(self):
        return float(max(self.seconds))


def speedup(baseline, ours):
    """How many times faster ``ours`` ran than ``baseline`` (two :class:`Timing` of one
    run): the median over rounds of the two's ratio in the same round.

    Each round times every implementation within seconds of the others, but these
    machines fall, for seconds to minutes at a time, into a state where work that streams
    memory or shares the cache runs up to 1.6 times slower (a matrix product does not
    slow). A ratio of the two medians can pair rounds in different states: a baseline
    whose median round fell in the slow state makes fastmlp look up to 1.6 times faster
    than it is. Ratios taken round by round compare like with like.
    A baseline with fewer rounds (the notebook loop) is paired with the first rounds.
    """
    n = min(len(baseline.seconds), len(ours.seconds))
    ratios = np.asarray(baseline.seconds[:n]) / np.asarray(ours.seconds[:n])
    return float(np.median(ratios))


def warm_up(run):
    """Run ``run`` untimed, at least once and for at least ``WARMUP_SECONDS``."""
    deadline = time.perf_counter() + WARMUP_SECONDS
    run()
    while time.perf_counter() < deadline:
        run()


def _timed_units(runner, min_seconds):
    """Seconds per unit of work, the mean of as many runs as last ``min_seconds`` (one
    at least)."""
    runs = 0
    start = time.perf_counter()
    while True:
        runner.run()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / (runs * runner.units_per_run)


def _timed_after_warmup(runner, min_seconds, slow=False):
    """Seconds per unit of work (see :func:`_timed_units`), timed after a warm-up
    (unless ``slow``: a baseline taking a second a unit needs no warming)."""
    if not slow:
        warm_up(runner.run)
    return _timed_units(runner, min_seconds)


def _worker(connection):
    """Serve ('setup', key, workload, impl, n_rows) and ('run', key, min_seconds)
    requests."""
    runners = {}
    while True:
        request = connection.recv()
        if request[0] == "stop":
            return
        try:
            if request[0] == "setup":
                _, key, workload, name, n_rows = request
                runners[key] = IMPLEMENTATIONS[name](workload, load(workload, n_rows))
                connection.send(("ok", None))
            else:
                _, key, min_seconds = request
                connection.send(("ok", _timed_after_warmup(runners[key], min_seconds)))
        except Unavailable as reason:
            connection.send(("unavailable", str(reason)))
        except Exception as error:  # reported as a skip with the reason, never a hang
            connection.send(("unavailable", f"failed: {type(error).__name__}: {error}"))


class IsolatedRunners:
    """Runners living in one worker process."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child,), daemon=True)
        self.process.start()

    def setup(self, key, workload, name, n_rows):
        self.connection.send(("setup", key, workload, name, n_rows))
        try:
            status, detail = self.connection.recv()
        except (EOFError, OSError) as error:
            raise Unavailable(f"its worker process stopped ({type(error).__name__})") from None
        if status != "ok":
            raise Unavailable(detail)
        return lambda min_seconds: self._run(key, min_seconds)

    def _run(self, key, min_seconds):
        self.connection.send(("run", key, min_seconds))
        status, seconds = self.connection.recv()
        if status != "ok":
            raise RuntimeError(seconds)
        return seconds

    def close(self):
        self.connection.send(("stop",))
        self.process.join(timeout=30)


#: Under this name, ``measure`` times the machine's matrix product in the rounds of the
#: cases it is asked to (see :func:`gemm_runner`).
MACHINE_GEMM = "machine GEMM"
GEMM_SIZE = 2048


def gemm_runner(dtype, size=GEMM_SIZE):
    """A :class:`~fastmlp.bench.implementations.Runner` of one ``size`` x ``size`` ``np.matmul``
    in ``dtype`` (on NumPy's BLAS threads): the machine's GEMM rate, timed in each round
    beside the implementations, so that the share of it an epoch reaches compares two
    times of the same round."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    out = np.empty_like(a)
    return Runner(lambda: np.matmul(a, a, out=out), None, [])


def measure(cases, repeats, implementations=None, n_rows=None, progress=None,
            gemm_cases=(), min_seconds=MIN_TIMED_SECONDS, deadline=None,
            machine_runners=None):
    """Time every implementation on every case, interleaved.

    ``cases`` maps a label to a :class:`~fastmlp.bench.workloads.Workload`. Each round
    times each implementation once, over ``min_seconds`` of its units. Returns
    ``(timings, skipped)``: ``timings[label][implementation]`` is a :class:`Timing`,
    ``skipped[label][implementation]`` the reason it could not run. For the labels in
    ``gemm_cases`` the machine's GEMM in the workload's dtype is timed too, in every
    round, as ``timings[label][MACHINE_GEMM]`` (seconds per ``GEMM_SIZE`` product).
    Given a ``deadline`` (a ``time.perf_counter()`` value), no round starts after it
    (the first always runs): fewer than ``repeats`` rounds may be timed.
    ``machine_runners`` maps a label to ``{name: Runner}`` of further measurements of the
    machine (a memory copy, an elementwise function) timed in every round the same way,
    as ``timings[label][name]``.
    """
    names = implementations or list(IMPLEMENTATIONS)
    isolated = None
    timed_calls, skipped = {}, {}
    for label, workload in cases.items():
        data = None
        skipped[label] = {}
        if label in gemm_cases:
            gemm = gemm_runner(np.dtype(workload.dtype))
            timed_calls[(label, MACHINE_GEMM)] = (
                lambda seconds, gemm=gemm: _timed_after_warmup(gemm, seconds))
        for name, runner in (machine_runners or {}).get(label, {}).items():
            timed_calls[(label, name)] = (
                lambda seconds, runner=runner: _timed_after_warmup(runner, seconds))
        for name in names:
            try:
                check_installed(name)  # before starting a worker process for it
                if name in ISOLATED:
                    isolated = isolated or IsolatedRunners()
                    timed_calls[(label, name)] = isolated.setup(
                        (label, name), workload, name, n_rows
                    )
                else:
                    data = data if data is not None else load(workload, n_rows)
                    runner = IMPLEMENTATIONS[name](workload, data)
                    timed_calls[(label, name)] = lambda seconds, runner=runner, slow=(
                        name == "notebook loop"): _timed_after_warmup(runner, seconds, slow)
            except Unavailable as reason:
                skipped[label][name] = str(reason)
    timings = {label: {} for label in cases}
    try:
        for round_index in range(repeats):
            if round_index > 0 and deadline is not None and time.perf_counter() >= deadline:
                break
            for (label, name), timed_call in timed_calls.items():
                # The notebook loop takes about a second a step: a few rounds suffice.
                if name == "notebook loop" and round_index >= max(3, repeats // 5):
                    continue
                seconds = timed_call(min_seconds)
                timings[label].setdefault(name, Timing()).seconds.append(seconds)
                time.sleep(SETTLE_SECONDS)
            if progress:
                progress(round_index + 1, repeats)
    finally:
        if isolated is not None:
            isolated.close()
    return timings, skipped
