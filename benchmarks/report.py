"""The committed report: run the workloads and sweeps, write BENCHMARKS.md and plots.

    python -m benchmarks.report [--quick] [--out reports]

The workloads, their implementations and the timing come from the package
(``fastmlp.bench``: ``python -m fastmlp bench`` prints the same ratios); the targets,
sweeps, compile times and memory are the repository's (``benchmarks/targets.py``,
``benchmarks/sweeps.py``).
"""

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks import bench_end_to_end, bench_predict, floors, targets
from benchmarks.sweeps import run_sweeps
from fastmlp.bench.measure import (
    GEMM_SIZE,
    MACHINE_GEMM,
    MIN_TIMED_SECONDS,
    SETTLE_SECONDS,
    WARMUP_SECONDS,
    measure,
    speedup,
)
from fastmlp.bench.ratios import BASELINES
from fastmlp.bench.workloads import WORKLOADS, load

#: What W2's and W3-float32's steady state is on some processors (see
#: benchmarks/subnormals.py).
SUBNORMALS_NOTE = (
    "W2's and W3-float32's epochs are timed after thousands of epochs back to back: by then"
    " some weights and Adam moments of their dead ReLU units have decayed into subnormal "
    "numbers, which some processors compute far more slowly (on a 2-core Intel Xeon, W2 "
    "took 2 to 3 ms an epoch instead of about 0.2 ms, and W3-float32 10.5 ms instead of "
    "3.3; on the AMD EPYCs measured, the epoch time does not grow with them). Every "
    "implementation that trains scikit-learn's weights holds the same ones; JAX flushes "
    "subnormal results to zero (`python -m benchmarks.subnormals W2` or `W3-float32` shows "
    "the epoch time against their count). A whole fit of W2's data is E2 below."
)


def machine_description():
    """Lines saying what ran the benchmark: machine, libraries, threads, BLAS."""
    import numba
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        import torch

        torch_version = f"{torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch_version = "not installed (its rows are skipped)"
    try:
        import jax

        jax_version = jax.__version__
    except ImportError:
        jax_version = "not installed (its rows are skipped)"
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "not started"
    blas = "; ".join(
        f"{i['internal_api']} {i.get('version', '')} {i.get('architecture', '')} "
        f"({i['num_threads']} threads, {i['prefix']})"
        for i in threadpool_info() if i["user_api"] == "blas"
    )
    return [
        f"- Machine: {platform.platform()}; {cpu}; {os.cpu_count()} cores",
        f"- Python {platform.python_version()}; NumPy {np.__version__}; SciPy "
        f"{scipy.__version__}; Numba {numba.__version__}; scikit-learn {sklearn.__version__}; "
        f"PyTorch {torch_version}; JAX {jax_version}",
        f"- Threads: Numba {numba.config.NUMBA_NUM_THREADS} ({layer} layer); BLAS: {blas}",
    ]


def _slug(text):
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def plot_ratios(timings, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baselines = list(BASELINES)
    workloads = [w for w in timings if "numba" in timings[w]]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(baselines)
    for k, baseline in enumerate(baselines):
        xs, heights = [], []
        for i, wid in enumerate(workloads):
            if baseline in timings[wid]:
                xs.append(i + (k - (len(baselines) - 1) / 2) * width)
                heights.append(speedup(timings[wid][baseline], timings[wid]["numba"]))
        ax.bar(xs, heights, width=width, label=f"vs {baseline}")
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)), workloads)
    ax.set_ylabel("Numba engine speedup (median of round ratios, log)")
    ax.set_title("fastmlp: how many times faster the Numba engine runs each workload")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(name, sweep, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    names = sorted({n for by_name in sweep["timings"].values() for n in by_name})
    for impl in names:
        xs = [x for x in sweep["x"] if impl in sweep["timings"][x]]
        ys = [1e3 * sweep["timings"][x][impl].median for x in xs]
        ax.plot(xs, ys, marker="o", label=impl)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sweep["x"], [str(x) for x in sweep["x"]])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel(sweep["label"])
    ax.set_ylabel("ms per epoch")
    ax.set_title(f"Scaling with {name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def headline_table(timings):
    """One row per workload: the Numba engine's median and its ratio to each baseline."""
    baselines = list(BASELINES)
    lines = ["| workload | unit | Numba engine | " + " | ".join(f"vs {b}" for b in baselines)
             + " |", "|---|---|---:|" + "---:|" * len(baselines)]
    for wid, by_name in timings.items():
        if "numba" not in by_name:
            continue
        numba = by_name["numba"].median
        cells = [f"{speedup(by_name[b], by_name['numba']):.1f}x" if b in by_name else "-"
                 for b in baselines]
        lines.append(f"| {wid} {WORKLOADS[wid].name} | {WORKLOADS[wid].unit} | "
                     f"{1e3 * numba:.3f} ms | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(sweep):
    names = sorted({n for by_name in sweep["timings"].values() for n in by_name})
    lines = [f"| {sweep['label']} | " + " | ".join(names) + " |",
             "|---:|" + "---:|" * len(names)]
    for x in sweep["x"]:
        cells = [f"{1e3 * sweep['timings'][x][n].median:.3f}" if n in sweep["timings"][x]
                 else "-" for n in names]
        lines.append(f"| {x} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(out_dir="reports", quick=False, log=print):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    repeats = 3 if quick else 10
    cases = {wid: WORKLOADS[wid] for wid in WORKLOADS}
    log(f"workloads: {', '.join(cases)} ({repeats} interleaved rounds)")
    work_of = {wid: floors.work(workload, *load(workload)) for wid, workload in cases.items()}
    timings, skipped = measure(cases, repeats,
                               progress=lambda done, total: log(f"  round {done}/{total}"),
                               gemm_cases=list(cases),
                               machine_runners={wid: floors.machine_runners(cases[wid], w)
                                                for wid, w in work_of.items()})
    rows = targets.target_rows(timings, targets.useful_flops_of(list(cases)), work_of)
    log("sweeps")
    sweeps = run_sweeps(quick, repeats=2 if quick else 5, progress=lambda n: log(f"  {n}"))
    log("predict (workload P)")
    predicted = []
    for network in bench_predict.NETWORKS:
        predicted += bench_predict.measure(network, rounds=3 if quick else 5,
                                           seconds=0.3 if quick else 0.5)
    log("end to end (workloads E1, E2)")
    # Seven rounds: of three, two can fall in one of the machine's slow minutes (in a run
    # of this report with three, fastmlp's search took 0.84 s in two rounds and 0.63 s
    # in the third; 0.59 to 0.62 s a few minutes later, python -m
    # benchmarks.bench_end_to_end --workloads E1).
    end_to_end = bench_end_to_end.measure(rounds=2 if quick else 7, log=log)
    log("compile times and memory (fresh processes)")
    rows += targets.subprocess_rows(targets.compile_times(), targets.fit_memory(),
                                    targets.peer_compile_times())

    plot_ratios(timings, out / "ratios.png")
    for name, sweep in sweeps.items():
        plot_sweep(name, sweep, out / f"scaling-{_slug(name)}.png")

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mode = f"{'quick' if quick else 'full'} ({repeats} rounds)"
    lines = [
        "# fastmlp benchmarks",
        "",
        f"Generated by `python -m benchmarks.report{' --quick' if quick else ''}` on {when}, "
        f"{mode}, in {(time.time() - started) / 60:.1f} minutes.",
        "",
        *machine_description(),
        "",
        "Every time is a median over interleaved rounds in this one run, and every ratio "
        "the median over the rounds of the two times of the same round (these machines "
        "fall, for seconds to minutes at a time, into a state where work that streams "
        "memory or shares the cache runs up to 1.6 times slower: a ratio of two medians "
        "can compare rounds in different states). Each time is the mean of as many units "
        f"of work as run in {MIN_TIMED_SECONDS:.0f} s (one at least), for every "
        "implementation alike: a short unit would often fit between two slow moments, a "
        "long one seldom does. They "
        f"follow at least {WARMUP_SECONDS * 1e3:.0f} ms of untimed units of the same "
        "implementation (the steady state of a fit: on these virtual machines a thread pool "
        "left idle for a tenth of a second wakes slowly for a while), a pause of "
        f"{SETTLE_SECONDS * 1e3:.0f} ms after it lets its library's threads stop spinning "
        "before the next library runs, compile time is excluded (measured on its own "
        "below), PyTorch runs in a worker process of its own, and glibc keeps freed memory "
        "for reuse (NumPy's temporaries are not page-faulted afresh at every call: the "
        "NumPy-based baselines at their fastest). Workloads and targets: "
        "`benchmarks/WORKLOADS.md`; implementations: `fastmlp/bench/implementations.py`.",
        "",
        "## Headline: how many times faster the Numba engine is",
        "",
        headline_table(timings),
        "",
        SUBNORMALS_NOTE,
        "",
        "![ratios](ratios.png)",
        "",
        "## The floor: each time as a multiple of the least its work can take",
        "",
        "Per workload, the time its useful arithmetic takes at the machine's GEMM rate "
        f"(a {GEMM_SIZE} x {GEMM_SIZE} `np.matmul` in its dtype, timed in every round "
        "beside it), and where memory or an elementwise function binds, that floor too: "
        "W4's gather of X and W6's Adam step of its first layer at the rate of a 64 MiB "
        "`np.copyto`, W5's tanh of every hidden value as `np.tanh` (both split over the cores, "
        "timed in every round). Each implementation's time is given as a multiple of the "
        "largest floor of the same round (median over the rounds): the number to drive "
        "down. Elsewhere only the arithmetic floor is given. Useful FLOPs: forward "
        "products, weight gradients and the errors of every hidden layer (W6: the first "
        "layer's over the nonzeros); `benchmarks/floors.py`.",
        "",
        floors.floor_table(timings, work_of),
        "",
        "## Targets",
        "",
        targets.format_rows(rows),
        "",
        "## Every implementation, every workload",
        "",
        "Medians with the min-max over the rounds, in milliseconds per unit (a gradient "
        "step for W1, an epoch otherwise). `fastmlp MLPClassifier` and `scikit-learn` are "
        "timed per epoch over `fit` calls of 5 epochs each, input validation included. "
        f"`{MACHINE_GEMM}` is one {GEMM_SIZE} x {GEMM_SIZE} `np.matmul` in the workload's "
        "dtype, timed in every round: the rate the GEMM target compares W4's epoch with.",
        "",
        targets.format_timings(timings, skipped),
        "",
        "## End to end (workloads E1, E2)",
        "",
        "Whole tasks as a user runs them, each `fit` a cold call on a new estimator "
        "(kernels already compiled): E1 a `GridSearchCV` (3 folds, 12 settings of `alpha` "
        f"and `hidden_layer_sizes`, {bench_end_to_end.E1_MAX_ITER} epochs a fit) on the "
        "digits, E2 a default `MLPClassifier(random_state=0).fit` on W2's data "
        "(`max_iter=200`, scikit-learn's stopping rule), from `python -m "
        "benchmarks.bench_end_to_end` (rotating rounds; the ratio is the median over "
        "rounds). PyTorch and JAX are not scikit-learn estimators: they do not run these.",
        "",
        bench_end_to_end.table(*end_to_end),
        "",
        "## Predict (workload P)",
        "",
        "`predict_proba` of W2's and W4's networks, fastmlp against scikit-learn's "
        "estimator with the same weights and an ONNX Runtime session of "
        "`fastmlp.to_onnx` (when installed), float64, from `python -m "
        "benchmarks.bench_predict` (rotating rounds; the ratio is the median over rounds "
        "of the other's time over fastmlp's; peak memory is NumPy's allocations during one "
        "call, which ONNX Runtime's are not).",
        "",
        bench_predict.table(predicted),
        "",
        "## Scaling",
        "",
    ]
    for name, sweep in sweeps.items():
        lines += [f"### {name}", "", sweep_table(sweep), "",
                  f"![{name}](scaling-{_slug(name)}.png)", ""]
    (out / "BENCHMARKS.md").write_text("\n".join(lines))
    log(f"wrote {out / 'BENCHMARKS.md'}")
    return out / "BENCHMARKS.md"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and sizes")
    parser.add_argument("--out", default="reports", help="folder for the report")
    args = parser.parse_args(argv)
    run(args.out, args.quick)


if __name__ == "__main__":
    main()
