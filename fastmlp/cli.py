"""Command line: ``python -m fastmlp demo | warmup | bench | profile``."""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fastmlp.bench.workloads import moons_data

__all__ = ["main", "moons_data"]


def available_engines():
    """The engines this installation can run, reference first."""
    engines = ["numpy"]
    try:
        from fastmlp import kernels  # noqa: F401
    except ImportError:
        return engines
    return engines + ["numba"]


def _train_notebook_model(X_train, y_train, n_steps, seed, backend):
    from tqdm.auto import tqdm

    from fastmlp import notebook

    np.random.seed(seed)
    model = notebook.init_weights()
    # The first step compiles (numba) or warms caches; time the remaining steps only.
    model = notebook.gradient_step(model, X_train, y_train, backend=backend)
    steps_per_call = 10  # few enough calls that the progress bar costs nothing
    elapsed = 0.0
    with tqdm(total=n_steps - 1, desc=f"{backend:>6} engine", unit="step") as bar:
        for done in range(0, n_steps - 1, steps_per_call):
            chunk = min(steps_per_call, n_steps - 1 - done)
            start = time.perf_counter()
            model = notebook.gradient_ascent(
                model, X_train, y_train, no_iter=chunk, verbose=False, backend=backend
            )
            elapsed += time.perf_counter() - start
            bar.update(chunk)
    return model, elapsed


def _plot_decision_boundary(model, X_test, y_test, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastmlp import notebook

    lo, hi = X_test.min(axis=0) - 0.5, X_test.max(axis=0) + 0.5
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    _, prob = notebook.forward(grid, model)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.contourf(xx, yy, prob[:, 1].reshape(xx.shape), levels=20, cmap="RdBu_r", alpha=0.6)
    ax.contour(xx, yy, prob[:, 1].reshape(xx.shape), levels=[0.5], colors="k", linewidths=1)
    ax.scatter(X_test[:, 0], X_test[:, 1], c=y_test, cmap="RdBu_r", s=6, edgecolors="none")
    ax.set_title("fastmlp demo: 2-100-2 ReLU network on the moons test set")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def demo(out_dir="reports", n_steps=200, seed=0):
    """Train the notebook's network on the moons data with each engine; plot the boundary."""
    from fastmlp import notebook

    X_train, X_test, y_train, y_test = moons_data()
    print(
        f"moons: {len(X_train)} training and {len(X_test)} test rows; 2-100-2 ReLU network, "
        f"{n_steps} full-batch gradient steps, learning rate 0.1\n"
    )
    results = {}
    for engine in available_engines():
        model, seconds = _train_notebook_model(X_train, y_train, n_steps, seed, engine)
        _, prob = notebook.forward(X_test, model)
        accuracy = float(np.mean(prob.argmax(axis=1) == y_test))
        results[engine] = (model, accuracy, seconds)

    print(f"\n{'engine':<8} {'test accuracy':>14} {'train time':>12} {'per step':>10}")
    for engine, (_, accuracy, seconds) in results.items():
        per_step_ms = 1e3 * seconds / max(n_steps - 1, 1)
        print(f"{engine:<8} {accuracy:>14.4f} {seconds:>11.3f}s {per_step_ms:>8.3f}ms")
    if len(results) > 1:
        speedup = results["numpy"][2] / results["numba"][2]
        print(f"\nnumba engine: {speedup:.1f}x the NumPy reference (compile time excluded)")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo_decision_boundary.png"
    fastest = min(results, key=lambda engine: results[engine][2])
    _plot_decision_boundary(results[fastest][0], X_test, y_test, path)
    print(f"decision boundary with the test points: {path}")
    return results


def bench(quick=False, seconds=None, workload_ids=None):
    """Time the Numba engine and every installed peer on the workloads, side by side;
    print how many times faster the engine ran each."""
    from fastmlp.bench import ratios
    from fastmlp.bench.workloads import WORKLOADS

    rounds = ratios.QUICK_ROUNDS if quick else ratios.FULL_ROUNDS
    ids = workload_ids or None
    limit = f", within about {seconds:g} s" if seconds is not None else ""
    print(f"workloads: {', '.join(ids or WORKLOADS)} (up to {rounds} interleaved "
          f"rounds{limit}; the first fits compile the kernels)")
    timings, skipped, not_reached = ratios.run(ids, rounds, seconds)
    print()
    print("How many times faster the Numba engine ran each workload than each peer "
          "(the median of the rounds' ratios):\n")
    print(ratios.ratio_table(timings, skipped, not_reached))
    return timings


def profile(workload_id, out_dir="reports", repeats=15, pyinstrument=False):
    """``fastmlp.profile`` of a workload's settings on its data; prints the table and
    writes it with a plot to ``out_dir``."""
    import fastmlp
    from fastmlp.bench.measure import steady_allocator
    from fastmlp.bench.workloads import WORKLOADS, estimator_for, load

    if workload_id not in WORKLOADS:
        sys.exit(f"unknown workload {workload_id!r}; choose one of {', '.join(WORKLOADS)}")
    steady_allocator()  # as the benchmarks run: NumPy's temporaries reuse freed memory
    workload = WORKLOADS[workload_id]
    X, y = load(workload)
    estimator = estimator_for(workload, X.shape[0])
    result = fastmlp.profile(estimator, X, y, repeats=repeats)
    header = (f"{workload_id} {workload.name}: fastmlp.profile({estimator!r}, X, y, "
              f"repeats={repeats})")
    out = _write_profile(result, out_dir, f"profile-{workload_id}", header)
    if pyinstrument:
        _pyinstrument_profile(workload_id, out)
    return result


def _write_profile(result, out_dir, stem, header=None):
    """Print the profile's table and write it, with its plot, to ``out_dir``."""
    table = result.table() if header is None else f"{header}\n{result.table()}"
    print(table)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.txt").write_text(table + "\n")
    result.plot(out / f"{stem}.png")
    print(f"\nthe table: {out / f'{stem}.txt'}; stacked bars: {out / f'{stem}.png'}")
    return out


def load_data_file(path, target=None, delimiter=","):
    """X and y from a user's file: a CSV with a header row (``target``: the target
    column's name or index, default the last), a 2-d ``.npy`` array (``target``: a
    column index, default the last) or an ``.npz`` with arrays ``X`` and ``y``."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            if not {"X", "y"} <= set(arrays.files):
                sys.exit(f"{path}: an .npz file needs arrays named X and y")
            return arrays["X"], arrays["y"]
    if path.suffix == ".npy":
        table = np.load(path, allow_pickle=False)
        names = [str(i) for i in range(table.shape[1] if table.ndim == 2 else 0)]
    else:
        with open(path) as f:
            names = [name.strip() for name in f.readline().split(delimiter)]
        table = np.loadtxt(path, delimiter=delimiter, skiprows=1, ndmin=2)
    if table.ndim != 2 or table.shape[1] < 2:
        sys.exit(f"{path}: expected a table of at least two columns, got shape {table.shape}")
    if target is None:
        column = table.shape[1] - 1
    elif target in names:
        column = names.index(target)
    elif target.lstrip("-").isdigit() and -table.shape[1] <= int(target) < table.shape[1]:
        column = int(target) % table.shape[1]
    else:
        sys.exit(f"{path}: no column {target!r} (columns: {', '.join(names)})")
    return np.delete(table, column, axis=1), table[:, column]


def parse_params(pairs):
    """``["hidden_layer_sizes=(64, 32)", "solver=sgd"]`` -> estimator parameters (values
    read as Python literals where they are ones, else as strings)."""
    import ast

    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"--param takes NAME=VALUE, got {pair!r}")
        try:
            params[name.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name.strip()] = value
    return params


def profile_data(path, target=None, kind="classifier", params=(), out_dir="reports",
                 repeats=7):
    """``fastmlp.profile`` of an estimator on a user's data file; prints the table and
    writes it with a plot to ``out_dir``."""
    import fastmlp

    X, y = load_data_file(path, target)
    cls = fastmlp.MLPClassifier if kind == "classifier" else fastmlp.MLPRegressor
    try:
        estimator = cls(**parse_params(params))
    except TypeError as error:
        sys.exit(f"--param: {error}")
    if kind == "classifier" and np.issubdtype(y.dtype, np.floating) and (y == y.round()).all():
        y = y.astype(np.int64)  # class labels read from a numeric table
    result = fastmlp.profile(estimator, X, y, repeats=repeats)
    _write_profile(result, out_dir, f"profile-{Path(path).stem}")
    return result


def _pyinstrument_profile(workload_id, out):
    """A call-stack profile of the Python side of a fit (estimators) or of W1's steps."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("--pyinstrument: pyinstrument is not installed (pip install pyinstrument)")
        return
    from fastmlp.bench.implementations import IMPLEMENTATIONS
    from fastmlp.bench.workloads import WORKLOADS, load

    workload = WORKLOADS[workload_id]
    name = "numba" if workload.solver == "gd" else "fastmlp MLPClassifier"
    runner = IMPLEMENTATIONS[name](workload, load(workload))
    profiler = Profiler()
    profiler.start()
    for _ in range(5):
        runner.run()
    profiler.stop()
    path = out / f"profile-{workload_id}-pyinstrument.html"
    path.write_text(profiler.output_html())
    print(profiler.output_text(unicode=True, color=False))
    print(f"call-stack profile: {path}")


def warmup(dtypes=("float64", "float32")):
    """Compile (or load from Numba's cache) the engine's kernels; print what and how long."""
    import fastmlp

    report = fastmlp.warmup(dtypes)
    for dtype, done in report.items():
        what = f"{len(done['kernels'])} kernels" if done["kernels"] else "all were ready"
        print(f"{dtype}: {done['seconds']:.2f} s ({what})")
        for name in done["kernels"]:
            print(f"  {name}")
    return report


def main(argv=None):
    from fastmlp import __version__

    parser = argparse.ArgumentParser(prog="fastmlp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    warmup_parser = commands.add_parser("warmup", help="compile the engine's kernels for this "
                                        "machine now (a first fit would)")
    warmup_parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"],
                               choices=["float64", "float32"])
    demo_parser = commands.add_parser("demo", help="train the notebook's network on moons")
    demo_parser.add_argument("--out", default="reports", help="folder for the picture")
    demo_parser.add_argument("--steps", type=int, default=200, help="gradient steps")
    demo_parser.add_argument("--seed", type=int, default=0, help="seed for init_weights")
    bench_parser = commands.add_parser("bench", help="time the Numba engine and every "
                                       "installed peer on the workloads; print the ratios")
    bench_parser.add_argument("--quick", action="store_true",
                              help="3 interleaved rounds instead of 10")
    bench_parser.add_argument("--seconds", type=float, default=None, metavar="S",
                              help="stop starting work after about S seconds: the workloads "
                              "one after another, one unit of work a measurement, those "
                              "not reached left out")
    bench_parser.add_argument("--workloads", nargs="+", default=None, metavar="ID",
                              help="the workloads to time (default: all)")
    profile_parser = commands.add_parser(
        "profile", help="where a fit's time goes: a named workload, or an estimator on "
        "your data file (--data)")
    profile_parser.add_argument("workload", nargs="?",
                                help="W1, W2, W3, W3-float32, W4-float64, W4-float32, W5, "
                                "W5-float32 or W6")
    profile_parser.add_argument("--data", help="a CSV file with a header row, a 2-d .npy "
                                "array, or an .npz with arrays X and y")
    profile_parser.add_argument("--target", help="the target column's name or index "
                                "(default: the last column)")
    profile_parser.add_argument("--regressor", action="store_true",
                                help="an MLPRegressor (default: an MLPClassifier)")
    profile_parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                                help="an estimator parameter, e.g. hidden_layer_sizes=(64,32)")
    profile_parser.add_argument("--out", default="reports", help="folder for the plot")
    profile_parser.add_argument("--repeats", type=int, default=None,
                                help="interleaved rounds (default 15 for a workload, 7 for "
                                "--data)")
    profile_parser.add_argument("--pyinstrument", action="store_true",
                                help="also a call-stack profile of the Python side")
    args = parser.parse_args(argv)
    if args.command == "warmup":
        warmup(args.dtypes)
    elif args.command == "demo":
        if args.steps < 2:
            parser.error("--steps must be at least 2")
        demo(args.out, args.steps, args.seed)
    elif args.command == "bench":
        from fastmlp.bench.workloads import WORKLOADS

        if args.seconds is not None and args.seconds <= 0:
            parser.error("--seconds must be positive")
        unknown = [wid for wid in args.workloads or () if wid not in WORKLOADS]
        if unknown:
            parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
        bench(args.quick, args.seconds, args.workloads)
    elif args.data is not None:
        if args.workload is not None:
            parser.error("profile takes a workload or --data, not both")
        profile_data(args.data, args.target, "regressor" if args.regressor else "classifier",
                     args.param, args.out, args.repeats or 7)
    elif args.workload is None:
        parser.error("profile needs a workload (W1 ... W6) or --data FILE")
    else:
        profile(args.workload, args.out, args.repeats or 15, args.pyinstrument)
    return 0


if __name__ == "__main__":
    sys.exit(main())
