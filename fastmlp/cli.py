"""Command line: ``python -m fastmlp demo``."""

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def available_engines():
    """The engines this installation can run, reference first."""
    engines = ["numpy"]
    try:
        from fastmlp import kernels  # noqa: F401
    except ImportError:
        return engines
    return engines + ["numba"]


def moons_data():
    """The notebook's data: 5000 moons, noise 0.1, a 70/30 split (3500 training rows)."""
    from sklearn.datasets import make_moons
    from sklearn.model_selection import train_test_split

    X, y = make_moons(n_samples=5000, noise=0.1, random_state=42)
    return train_test_split(X, y, random_state=42, test_size=0.3)


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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastmlp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="train the notebook's network on moons")
    demo_parser.add_argument("--out", default="reports", help="folder for the picture")
    demo_parser.add_argument("--steps", type=int, default=200, help="gradient steps")
    demo_parser.add_argument("--seed", type=int, default=0, help="seed for init_weights")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.steps < 2:
            parser.error("--steps must be at least 2")
        demo(args.out, args.steps, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
