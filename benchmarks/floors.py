"""The floor of each workload: the least time its work can take on this machine, from
rates measured in the same run, and every implementation's time as a multiple of it.

* Arithmetic: the useful FLOPs of a unit of work (forward products, weight gradients,
  the errors of every hidden layer; on sparse X the first layer's products over the
  nonzeros) at the rate of a 2048 x 2048 ``np.matmul`` in the workload's dtype
  (``MACHINE_GEMM``), timed in every round.
* Memory, where it binds: W4's epoch reads its X once in the batch order (the gather);
  W6's Adam step of the 10000 x 100 first layer reads and writes the weights and both
  moments (six arrays a batch: the gradient, ``alpha * W / n_batch`` but on the rows
  of the batch's nonzeros, need not be stored). Their bytes at the rate of a 64 MiB
  ``np.copyto`` split over the cores (``MACHINE_COPY``, reads and writes), timed in
  every round.
* Elementwise, where it binds: W5's tanh of every hidden value of the epoch, timed as
  ``np.tanh`` over as many values split over the cores (``MACHINE_TANH``), in every
  round.

The floor of a round is the largest of these in that round; an implementation's multiple
is the median over the rounds of its time over the floor of the same round.
"""

import os

import numpy as np
import scipy.sparse

from fastmlp.bench.implementations import Runner
from fastmlp.bench.measure import GEMM_SIZE, MACHINE_GEMM, Timing, speedup
from fastmlp.bench.workloads import network_units

MACHINE_COPY = "machine copy"
MACHINE_TANH = "machine tanh"
COPY_BYTES = 64 * 2**20


def work(workload, X, y):
    """What one unit of the workload must do: ``{"flops": ..., "bytes": ..., "tanh": ...}``
    (bytes and tanh values only where they bind)."""
    units = network_units(workload, X, y)
    sizes = [a * b for a, b in zip(units[:-1], units[1:])]
    n, itemsize = X.shape[0], np.dtype(workload.dtype).itemsize
    if scipy.sparse.issparse(X):
        first = 2 * 2 * X.nnz * units[1]  # forward and weight gradient over the nonzeros
        flops = first + 2 * n * (2 * sum(sizes[1:]) + sum(sizes[1:]))
    else:
        flops = 2 * n * (2 * sum(sizes) + sum(sizes[1:]))
    result = {"flops": flops}
    if scipy.sparse.issparse(X):
        n_batches = -(-n // workload.batch_size)
        result["bytes"] = 6 * sizes[0] * itemsize * n_batches
    elif workload.id.startswith("W4"):
        result["bytes"] = n * units[0] * itemsize
    if workload.activation == "tanh":
        result["tanh"] = n * sum(units[1:-1])
    return result


def _threaded(function, arrays):
    """A callable applying ``function(source, target)`` to equal slices of the arrays on
    as many threads as the machine has cores (NumPy releases the GIL in such loops), as
    the engines use every core."""
    from concurrent.futures import ThreadPoolExecutor

    threads = os.cpu_count() or 1
    pool = ThreadPoolExecutor(threads)
    bounds = np.linspace(0, arrays[0].size, threads + 1).astype(int)
    parts = [[a[lo:hi] for a in arrays] for lo, hi in zip(bounds[:-1], bounds[1:])]

    def run():
        for future in [pool.submit(function, *part) for part in parts]:
            future.result()

    return run


def copy_runner(dtype):
    """One ``np.copyto`` of ``COPY_BYTES`` over every core (read, and written again:
    twice as many bytes moved)."""
    source = np.ones(COPY_BYTES // np.dtype(dtype).itemsize, dtype)
    target = np.empty_like(source)
    return Runner(_threaded(lambda s, t: np.copyto(t, s), [source, target]), None, [])


def tanh_runner(n_values, dtype):
    """One ``np.tanh`` over ``n_values`` values like a hidden layer's (standard normal),
    over every core."""
    values = np.random.default_rng(0).standard_normal(n_values).astype(dtype)
    out = np.empty_like(values)
    return Runner(_threaded(lambda v, o: np.tanh(v, out=o), [values, out]), None, [])


def machine_runners(workload, unit_work):
    """The machine measurements the workload's floors need, besides the GEMM."""
    runners = {}
    if "bytes" in unit_work:
        runners[MACHINE_COPY] = copy_runner(workload.dtype)
    if "tanh" in unit_work:
        runners[MACHINE_TANH] = tanh_runner(unit_work["tanh"], workload.dtype)
    return runners


def floors(timings, unit_work):
    """Per-round floors of one workload: ``{"arithmetic": Timing, "memory": Timing,
    "tanh": Timing, "floor": Timing}`` (the last the largest of the others, round by
    round), from its ``timings`` (with the machine's measurements) and ``unit_work``."""
    gemm = timings.get(MACHINE_GEMM)
    if gemm is None:
        return {}
    found = {"arithmetic": Timing([t * unit_work["flops"] / (2 * GEMM_SIZE**3)
                                   for t in gemm.seconds])}
    if MACHINE_COPY in timings and "bytes" in unit_work:
        found["memory"] = Timing([t * unit_work["bytes"] / (2 * COPY_BYTES)
                                  for t in timings[MACHINE_COPY].seconds])
    if MACHINE_TANH in timings:
        found["tanh"] = Timing(list(timings[MACHINE_TANH].seconds))
    n = min(len(t.seconds) for t in found.values())
    found["floor"] = Timing([max(t.seconds[i] for t in found.values()) for i in range(n)])
    return found


def multiple(timing, floor):
    """How many times its floor an implementation's time is (median over the rounds)."""
    return speedup(timing, floor)


MACHINE = (MACHINE_GEMM, MACHINE_COPY, MACHINE_TANH)


def floor_table(timings, work_of):
    """The report's table: per workload, its floors and each implementation's multiple."""
    names = []
    for by_name in timings.values():
        names += [n for n in by_name if n not in MACHINE and n not in names]
    lines = ["| workload | useful GFLOP | arithmetic floor | memory / tanh floor | "
             + " | ".join(names) + " |", "|---|---:|---:|---:|" + "---:|" * len(names)]
    for wid, by_name in timings.items():
        if wid not in work_of:
            continue
        found = floors(by_name, work_of[wid])
        if not found:
            continue
        other = "-"
        if "memory" in found:
            other = f"{1e3 * found['memory'].median:.3f} ms (memory)"
        if "tanh" in found:
            other = f"{1e3 * found['tanh'].median:.3f} ms (tanh)"
        cells = [f"{multiple(by_name[n], found['floor']):.1f}x" if n in by_name else "-"
                 for n in names]
        lines.append(f"| {wid} | {work_of[wid]['flops'] / 1e9:.3f} | "
                     f"{1e3 * found['arithmetic'].median:.3f} ms | {other} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)
