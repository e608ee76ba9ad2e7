"""The targets of benchmarks/WORKLOADS.md, measured side by side in one run.

    python -m benchmarks.targets [--repeats N] [--workloads W1 W2 ...] [--skip-subprocess]

Prints the medians (min-max) of every implementation, the ratios the targets name, W4's
share of the machine's GEMM rate, compile times (cold cache and warm, each in a fresh
process) and the memory of a W4 fit. ``python -m benchmarks.report`` writes the same
figures into reports/BENCHMARKS.md.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks import floors
from fastmlp.bench.measure import GEMM_SIZE, MACHINE_GEMM, measure, speedup
from fastmlp.bench.workloads import WORKLOADS, load, useful_flops

#: The implementation of ``fastmlp.bench.implementations`` that times fastmlp's estimator.
ESTIMATOR = "fastmlp MLPClassifier"

#: Targets of benchmarks/WORKLOADS.md: (workload, baseline implementation, minimum ratio).
TARGETS = [
    ("W1", "notebook loop", 380), ("W1", "jax", 7),
    ("W2", "jax", 7), ("W2", "scikit-learn", 35),
    ("W5", "jax", 2.5), ("W5", "scikit-learn", 8),
]

#: The most seconds a unit (W1: a step; else an epoch) of the Numba engine may take.
TIME_TARGETS = {"W1": 0.10e-3, "W2": 0.13e-3, "W5": 12e-3, "W5-float32": 8e-3}

#: The most an epoch of the Numba engine may take, as a multiple of its floor
#: (``benchmarks/floors.py``: its products at the machine's GEMM rate, or memory).
FLOOR_TARGETS = {"W3": 1.3, "W3-float32": 1.3, "W4-float64": 1.3, "W4-float32": 1.3}

#: The least share of the machine's GEMM rate an epoch reaches (useful FLOPs / time).
GEMM_SHARE = 0.65

#: Compile targets, in seconds: the cold first fit, the import beyond scikit-learn's, a
#: first small fit with a warm cache.
COLD_FIT_S, IMPORT_EXTRA_S, WARM_FIT_S = 4.0, 0.3, 0.2

_FIRST_FIT = """
import sys, time
import numpy as np
start = time.perf_counter()
import sklearn.neural_network
sklearn_imported = time.perf_counter()
import fastmlp
imported = time.perf_counter()
from fastmlp.cli import moons_data
X, _, y, _ = moons_data()
X = X.astype(sys.argv[1])
loaded = time.perf_counter()
fastmlp.MLPClassifier(max_iter=2, random_state=0).fit(X, y)
print(sklearn_imported - start, imported - sklearn_imported, time.perf_counter() - loaded)
"""


def compile_times(dtypes=("float64", "float32"), rounds=3, warm_runs=2):
    """Per dtype, medians over ``rounds`` rounds, each in a new empty Numba cache: a first
    small fit (the notebook's network on its moons, 2 epochs) in a new process, which
    compiles, then ``warm_runs`` more processes that load what it left; each time, also
    ``import sklearn.neural_network`` and what ``import fastmlp`` adds to it, in
    seconds. One process alone is at the mercy of the machine's state: in one report's
    run (commit e2d278d, a 2-core AMD EPYC), one process each, the same warm import took
    0.43 s for float64 and 0.33 s for float32."""
    results = {}
    for dtype in dtypes:
        cold, sklearn_import, warm_import, warm = [], [], [], []
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as cache:
                env = dict(os.environ, NUMBA_CACHE_DIR=cache)
                command = [sys.executable, "-W", "ignore", "-c", _FIRST_FIT, dtype]
                runs = [
                    [float(value) for value in subprocess.run(
                        command, env=env, capture_output=True, text=True, check=True
                    ).stdout.split()[-3:]]
                    for _ in range(1 + warm_runs)
                ]
            cold.append(runs[0][2])
            for sklearn_s, import_s, fit_s in runs[1:]:
                sklearn_import.append(sklearn_s)
                warm_import.append(import_s)
                warm.append(fit_s)
        results[dtype] = {"cold_s": statistics.median(cold),
                          "sklearn_import_s": statistics.median(sklearn_import),
                          "import_s": statistics.median(warm_import),
                          "warm_s": statistics.median(warm),
                          "cold_processes": len(cold), "warm_processes": len(warm)}
    return results


_PEER_FIRST_CALL = """
import sys, warnings
warnings.simplefilter("ignore")
from fastmlp.bench.implementations import IMPLEMENTATIONS, Unavailable
from fastmlp.bench.workloads import WORKLOADS, load
workload = WORKLOADS[sys.argv[2]]
try:
    print(IMPLEMENTATIONS[sys.argv[1]](workload, load(workload)).first_call_s)
except Unavailable as reason:
    print("skipped:", reason)
"""

#: The compiling peers whose first call (compile time) the report gives, on this workload.
PEERS, PEER_WORKLOAD = ("jax", "torch.compile"), "W2"


def peer_compile_times(peers=PEERS, workload_id=PEER_WORKLOAD):
    """Seconds of each compiling peer's first call on the workload (its compilation: JAX's
    trace, lowering and XLA compile of the epoch; torch.compile's first epoch), each in
    a fresh process; or the reason it did not run."""
    results = {}
    for name in peers:
        run = subprocess.run([sys.executable, "-c", _PEER_FIRST_CALL, name, workload_id],
                             capture_output=True, text=True)
        last = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        if run.returncode != 0:
            results[name] = f"failed: {run.stderr.strip().splitlines()[-1:]}"
        elif last.startswith("skipped:"):
            results[name] = last
        else:
            results[name] = float(last)
    return results


_W4_FIT = """
import sys, threading, time, warnings
import numpy as np
warnings.simplefilter("ignore")

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

from fastmlp.bench.workloads import WORKLOADS, load
X, y = load(WORKLOADS["W4-float64"])
if sys.argv[1] == "fastmlp":
    from fastmlp import MLPClassifier
    MLPClassifier(max_iter=1).fit(X[:300], y[:300])  # compile or load kernels first
else:
    from sklearn.neural_network import MLPClassifier
before = rss_mib()
peak = [before]
done = threading.Event()

def sample():
    while not done.wait(0.002):
        peak[0] = max(peak[0], rss_mib())

sampler = threading.Thread(target=sample)
sampler.start()
MLPClassifier(hidden_layer_sizes=(256,), max_iter=2, random_state=0).fit(X, y)
done.set()
sampler.join()
print(before, max(peak[0], rss_mib()))
"""


def fit_memory():
    """Memory of a W4 fit (2 epochs), each library in a fresh process: resident memory
    before the fit (libraries and data loaded) and its peak during the fit, in MiB."""
    results = {}
    for name in ("fastmlp", "scikit-learn"):
        out = subprocess.run([sys.executable, "-c", _W4_FIT, name], capture_output=True,
                             text=True, check=True).stdout.split()
        before, peak = float(out[-2]), float(out[-1])
        results[name] = {"before_mib": before, "peak_mib": peak, "fit_mib": peak - before}
    return results


def target_rows(timings, useful=None, work_of=None):
    """(target, measured, met) for every target measured in ``timings``: the Numba
    engine's ratios, then the same ratios for fastmlp's ``MLPClassifier`` (fit time per
    epoch, timed as scikit-learn's is) on the workloads it runs (W2-W5), the engine's
    times, its multiples of the floor (given ``work_of``, each workload's
    ``floors.work``), and the share of the machine's GEMM rate an epoch reaches (given
    the ``useful`` FLOPs of each workload's epoch and the machine's GEMM timed in the
    same rounds: ``measure``'s ``gemm_cases``)."""
    rows = []
    engine_targets = [(wid, "numba", baseline, minimum) for wid, baseline, minimum in TARGETS]
    estimator_targets = [(wid, ESTIMATOR, baseline, minimum)
                         for wid, baseline, minimum in TARGETS if baseline == "scikit-learn"]
    for wid, ours, baseline, minimum in engine_targets + estimator_targets:
        label = f"{wid} >= {minimum}x {baseline}"
        if ours == ESTIMATOR:
            label = f"{wid} {ESTIMATOR} >= {minimum}x {baseline}"
        times = timings.get(wid, {})
        if baseline not in times or ours not in times:
            rows.append((label, "not measured", None))
            continue
        ratio = speedup(times[baseline], times[ours])
        rows.append((label, f"{ratio:.1f}x", ratio >= minimum))
    for wid, most in TIME_TARGETS.items():
        label = f"{wid} {WORKLOADS[wid].unit} <= {most * 1e3:g} ms"
        if "numba" not in timings.get(wid, {}):
            rows.append((label, "not measured", None))
            continue
        median = timings[wid]["numba"].median
        rows.append((label, f"{median * 1e3:.3f} ms", median <= most))
    for wid, most in FLOOR_TARGETS.items():
        label = f"{wid} <= {most}x its floor"
        found = floors.floors(timings.get(wid, {}), (work_of or {}).get(wid, {"flops": 0}))
        if not found or "numba" not in timings[wid] or wid not in (work_of or {}):
            rows.append((label, "not measured", None))
            continue
        times = floors.multiple(timings[wid]["numba"], found["floor"])
        rows.append((label, f"{times:.2f}x", times <= most))
    gemm_flops = 2 * GEMM_SIZE**3
    for wid, flops in (useful or {}).items():
        times = timings.get(wid, {})
        if "numba" in times and MACHINE_GEMM in times:
            # Per round: (flops / epoch) / (gemm_flops / gemm) = flops / gemm_flops * ratio.
            share = flops / gemm_flops * speedup(times[MACHINE_GEMM], times["numba"])
            achieved, rate = flops / times["numba"].median, gemm_flops / times[MACHINE_GEMM].median
            rows.append((f"{wid} >= {GEMM_SHARE:.0%} of the GEMM rate",
                         f"{share:.0%} (medians: {achieved / 1e9:.1f} of {rate / 1e9:.1f} GFLOP/s)",
                         share >= GEMM_SHARE))
    return rows


def subprocess_rows(compile_result, memory_result, peer_compile=None):
    rows = []
    for name, seconds in (peer_compile or {}).items():
        measured = f"{seconds:.1f} s" if isinstance(seconds, float) else seconds
        rows.append((f"{name}: first call on {PEER_WORKLOAD}, fresh process (compile; for "
                     "reference)", measured, None))
    for dtype, t in (compile_result or {}).items():
        cold_of = f"median of {t['cold_processes']} fresh processes"
        warm_of = f"median of {t['warm_processes']} fresh processes"
        rows.append((f"cold first fit (empty cache), {dtype}, <= {COLD_FIT_S:.0f} s",
                     f"{t['cold_s']:.1f} s ({cold_of})", t["cold_s"] <= COLD_FIT_S))
        rows.append((f"warm cache: import fastmlp after import sklearn.neural_network, "
                     f"{dtype}, <= {IMPORT_EXTRA_S} s",
                     f"{t['import_s']:.2f} s (scikit-learn's: {t['sklearn_import_s']:.2f} s; "
                     f"{warm_of})", t["import_s"] <= IMPORT_EXTRA_S))
        rows.append((f"warm cache: first small fit, {dtype}, <= {WARM_FIT_S} s",
                     f"{t['warm_s']:.2f} s ({warm_of})", t["warm_s"] <= WARM_FIT_S))
    if memory_result:
        ours, theirs = memory_result["fastmlp"], memory_result["scikit-learn"]
        rows.append(("W4 fit: memory added during the fit <= scikit-learn's",
                     f"{ours['fit_mib']:.0f} vs {theirs['fit_mib']:.0f} MiB",
                     ours["fit_mib"] <= theirs["fit_mib"]))
        rows.append(("W4 fit: peak resident memory of the process (for reference)",
                     f"{ours['peak_mib']:.0f} vs {theirs['peak_mib']:.0f} MiB", None))
    return rows


def gemm_cases(workload_ids):
    """The workloads with a GEMM-rate target (W4's): their machine GEMM is timed too."""
    return [wid for wid in workload_ids if wid.startswith("W4")]


def useful_flops_of(workload_ids):
    """The useful FLOPs of an epoch of each workload with a GEMM-rate target."""
    return {wid: useful_flops(WORKLOADS[wid], *load(WORKLOADS[wid]))
            for wid in gemm_cases(workload_ids)}


def format_rows(rows):
    lines = ["| target | measured | met |", "|---|---:|---|"]
    for target, measured, met in rows:
        verdict = "-" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {target} | {measured} | {verdict} |")
    return "\n".join(lines)


def format_timings(timings, skipped):
    lines = ["| workload | implementation | median ms | min-max ms | numba is |",
             "|---|---|---:|---:|---:|"]
    for wid, by_name in timings.items():
        numba = by_name.get("numba")
        for name, timing in by_name.items():
            ratio = f"{speedup(timing, numba):.1f}x faster" if numba else "-"
            if name == "numba" or name.startswith("machine "):
                ratio = "-"
            lines.append(f"| {wid} | {name} | {1e3 * timing.median:.3f} | "
                         f"{1e3 * timing.low:.3f}-{1e3 * timing.high:.3f} | {ratio} |")
        for name, reason in skipped.get(wid, {}).items():
            lines.append(f"| {wid} | {name} | skipped: {reason} | | |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--skip-subprocess", action="store_true",
                        help="skip the compile-time and memory measurements")
    args = parser.parse_args(argv)
    cases = {wid: WORKLOADS[wid] for wid in args.workloads}
    work_of = {wid: floors.work(workload, *load(workload)) for wid, workload in cases.items()}
    timings, skipped = measure(cases, args.repeats, gemm_cases=list(cases),
                               machine_runners={wid: floors.machine_runners(cases[wid], w)
                                                for wid, w in work_of.items()})
    rows = target_rows(timings, useful_flops_of(args.workloads), work_of)
    if not args.skip_subprocess:
        rows += subprocess_rows(compile_times(), fit_memory(), peer_compile_times())
    print(format_timings(timings, skipped))
    print()
    print(format_rows(rows))


if __name__ == "__main__":
    main()
