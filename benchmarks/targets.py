"""Measure the Numba engine against the targets of WORKLOADS.md, side by side in one run.

    python -m benchmarks.targets [--repeats N] [--workloads W1 W2 ...] [--skip-subprocess]

For each workload every available implementation runs one unit of work per round, the
rounds interleaved so that drift on a shared machine hits all alike; the table gives
medians with min-max, the ratios the targets name, W4's share of the machine's GEMM rate,
compile times (cold cache and warm, each in a fresh process) and W4's peak memory.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.workloads import (
    IMPLEMENTATIONS,
    TARGETS,
    WORKLOADS,
    Unavailable,
    load,
    useful_flops,
)


def time_round_robin(runners, repeats):
    """Interleaved repeats: every runner once per round. Returns seconds per runner."""
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def gemm_rate(dtype, size=2048, repeats=5):
    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_workload(workload, repeats, names=None):
    data = load(workload)
    runners, skipped = {}, {}
    for name, make in IMPLEMENTATIONS.items():
        if names and name not in names:
            continue
        try:
            runners[name] = make(workload, data)
        except Unavailable as reason:
            skipped[name] = str(reason)
    # Slow baselines get fewer rounds; the notebook loop takes about a second a step.
    slow = {n: r for n, r in runners.items() if n in ("notebook loop",)}
    fast = {n: r for n, r in runners.items() if n not in slow}
    times = time_round_robin(fast, repeats)
    times.update(time_round_robin(slow, max(3, repeats // 5)))
    result = {"times": times, "skipped": skipped, "flops": useful_flops(workload, *data)}
    if workload.id.startswith("W4"):
        result["gemm_flops_per_s"] = gemm_rate(np.dtype(workload.dtype))
    return result


_COMPILE_SNIPPET = """
import time, sys
start = time.perf_counter()
import numpy as np
from fastmlp.kernels import FlatNetwork, Trainer
from fastmlp.cli import moons_data
X, _, y, _ = moons_data()
dtype = np.dtype(sys.argv[1])
network = FlatNetwork([2, 100, 2], dtype)
network.theta[:] = np.random.default_rng(0).uniform(-0.2, 0.2, network.n_params)
trainer = Trainer(network, "relu", "softmax", solver="adam", batch_size=200)
Xc, Yc, w = trainer.prepare(X, np.eye(2)[y])
trainer.run_epochs(Xc, Yc, w, np.arange(len(X), dtype=np.int64), 1e-3)
print(time.perf_counter() - start)
"""


def compile_times(dtypes=("float64", "float32")):
    """Seconds for import + first small fit: with an empty cache, then with a warm one."""
    results = {}
    for dtype in dtypes:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            run = [sys.executable, "-c", _COMPILE_SNIPPET, dtype]
            cold = float(subprocess.run(run, env=env, capture_output=True, text=True,
                                        check=True).stdout.split()[-1])
            warm = float(subprocess.run(run, env=env, capture_output=True, text=True,
                                        check=True).stdout.split()[-1])
        results[dtype] = {"cold_s": cold, "warm_s": warm}
    return results


_MEMORY_SNIPPET = """
import resource, sys, warnings
import numpy as np
from benchmarks.workloads import WORKLOADS, load, IMPLEMENTATIONS
workload = WORKLOADS["W4-float64"]
data = load(workload)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run = IMPLEMENTATIONS[sys.argv[1]](workload, data)
run()
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_memory():
    """Peak resident memory (MiB) of a W4 fit, each implementation in its own process."""
    results = {}
    for name in ("numba", "scikit-learn"):
        out = subprocess.run([sys.executable, "-c", _MEMORY_SNIPPET, name], capture_output=True,
                             text=True, check=True).stdout.split()
        results[name] = {"data_mib": int(out[-2]) / 1024, "peak_mib": int(out[-1]) / 1024}
    return results


def report(results, compile_result, memory_result):
    lines = ["| workload | implementation | median ms | min-max ms | numba speedup |",
             "|---|---|---:|---:|---:|"]
    for wid, result in results.items():
        numba = np.median(result["times"].get("numba", [np.nan]))
        for name, seconds in result["times"].items():
            median = np.median(seconds)
            lines.append(f"| {wid} | {name} | {1e3 * median:.3f} | {1e3 * min(seconds):.3f}-"
                         f"{1e3 * max(seconds):.3f} | {median / numba:.1f}x |")
        for name, reason in result["skipped"].items():
            lines.append(f"| {wid} | {name} | skipped: {reason} | | |")
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    for wid, baseline, minimum in TARGETS:
        times = results.get(wid, {}).get("times", {})
        if baseline not in times or "numba" not in times:
            lines.append(f"| {wid} >= {minimum}x {baseline} | not measured | - |")
            continue
        ratio = np.median(times[baseline]) / np.median(times["numba"])
        lines.append(f"| {wid} >= {minimum}x {baseline} | {ratio:.1f}x | "
                     f"{'yes' if ratio >= minimum else 'NO'} |")
    for wid, result in results.items():
        if "gemm_flops_per_s" in result:
            rate = result["flops"] / np.median(result["times"]["numba"])
            share = rate / result["gemm_flops_per_s"]
            lines.append(f"| {wid} >= 60 % of GEMM rate | {rate / 1e9:.1f} of "
                         f"{result['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s = {100 * share:.0f} % "
                         f"| {'yes' if share >= 0.6 else 'NO'} |")
    for dtype, t in (compile_result or {}).items():
        lines.append(f"| cold first fit {dtype} <= 10 s | {t['cold_s']:.1f} s | "
                     f"{'yes' if t['cold_s'] <= 10 else 'NO'} |")
        lines.append(f"| warm import + first fit {dtype} <= 1.5 s | {t['warm_s']:.2f} s | "
                     f"{'yes' if t['warm_s'] <= 1.5 else 'NO'} |")
    if memory_result:
        ours, theirs = memory_result["numba"], memory_result["scikit-learn"]
        lines.append(f"| W4 peak memory <= scikit-learn's | {ours['peak_mib']:.0f} vs "
                     f"{theirs['peak_mib']:.0f} MiB | "
                     f"{'yes' if ours['peak_mib'] <= theirs['peak_mib'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--skip-subprocess", action="store_true",
                        help="skip the compile-time and memory measurements")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    results = {wid: measure_workload(WORKLOADS[wid], args.repeats) for wid in args.workloads}
    compile_result = memory_result = None
    if not args.skip_subprocess:
        compile_result, memory_result = compile_times(), peak_memory()
    print(report(results, compile_result, memory_result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "compile": compile_result, "memory": memory_result},
                      f, indent=1, default=float)


if __name__ == "__main__":
    main()
