"""End-to-end workloads E1 and E2: whole tasks timed as a user runs them.

    python -m benchmarks.bench_end_to_end [--rounds N] [--workloads E1 E2]

* E1 ``grid-search-digits``: ``GridSearchCV(estimator, {alpha: 3 values,
  hidden_layer_sizes: 4 values}, cv=3)`` fit on ``load_digits()``, X / 16 (36 fits and
  the refit, each ``max_iter=E1_MAX_ITER``).
* E2 ``fit-to-convergence-moons``: a default ``MLPClassifier(random_state=0).fit`` on
  W2's data (``max_iter=200``, scikit-learn's stopping rule).

Every ``fit`` is a cold call on a new estimator, as in real use; the kernels are
compiled (or loaded from the cache) by one untimed call first. fastmlp's and
scikit-learn's estimators run side by side in rounds whose order rotates; the ratio is
the median over the rounds of the two times of the same round. The peers that are not
scikit-learn estimators (PyTorch, JAX) cannot run these tasks and are not timed.
"""

import argparse
import time
import warnings

from fastmlp.bench.measure import Timing, speedup
from fastmlp.bench.workloads import DATASETS, moons_data

#: Epochs per fit of E1: keeps one of scikit-learn's searches near 30 s on two cores.
E1_MAX_ITER = 25
E1_GRID = {"alpha": [1e-4, 1e-3, 1e-2],
           "hidden_layer_sizes": [(32,), (64,), (128,), (64, 32)]}

END_TO_END = {
    "E1": "grid-search-digits",
    "E2": "fit-to-convergence-moons",
}
#: benchmarks/WORKLOADS.md's targets: how many times faster than scikit-learn.
TARGETS = {"E1": 4, "E2": 15}


def estimators():
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    from fastmlp import MLPClassifier

    return {"fastmlp": MLPClassifier, "scikit-learn": SklearnMLP}


def grid_search(estimator):
    """E1 with ``estimator`` (a class): the fitted search."""
    from sklearn.model_selection import GridSearchCV

    X, y = DATASETS["digits"]()  # load_digits(), X / 16
    search = GridSearchCV(estimator(max_iter=E1_MAX_ITER, random_state=0), E1_GRID, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: E1 stops at max_iter
        return search.fit(X, y)


def fit_to_convergence(estimator):
    """E2 with ``estimator`` (a class): the fitted model."""
    X_train, _, y_train, _ = moons_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator(random_state=0).fit(X_train, y_train)


TASKS = {"E1": grid_search, "E2": fit_to_convergence}


def measure(workload_ids=("E1", "E2"), rounds=3, log=print):
    """``{workload: {implementation: Timing}}`` in rotating rounds, and E2's iterations
    per implementation (``{"E2 n_iter_": {...}}``)."""
    classes = estimators()
    names = list(classes)
    for name in names:  # compile or load the kernels, untimed
        fit_to_convergence(classes[name])
    timings = {wid: {name: Timing() for name in names} for wid in workload_ids}
    n_iter = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for wid in workload_ids:
            for name in order:
                start = time.perf_counter()
                fitted = TASKS[wid](classes[name])
                timings[wid][name].seconds.append(time.perf_counter() - start)
                if wid == "E2":
                    n_iter[name] = fitted.n_iter_
                time.sleep(0.15)
        log(f"  round {r + 1}/{rounds}")
    return timings, n_iter


def table(timings, n_iter):
    """Markdown: per workload, both medians (min-max) and the ratio."""
    lines = ["| workload | fastmlp | scikit-learn | fastmlp is | target | met |",
             "|---|---:|---:|---:|---:|---|"]
    for wid, by_name in timings.items():
        cells = [f"{t.median:.2f} s ({t.low:.2f}-{t.high:.2f})"
                 for t in (by_name["fastmlp"], by_name["scikit-learn"])]
        ratio = speedup(by_name["scikit-learn"], by_name["fastmlp"])
        label = f"{wid} {END_TO_END[wid]}"
        if wid == "E2" and n_iter:
            label += f" ({', '.join(f'{k}: {v} iterations' for k, v in n_iter.items())})"
        met = "yes" if ratio >= TARGETS[wid] else "**no**"
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {ratio:.1f}x faster | "
                     f">= {TARGETS[wid]}x | {met} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", nargs="*", default=list(END_TO_END))
    args = parser.parse_args(argv)
    timings, n_iter = measure(args.workloads, args.rounds)
    print(table(timings, n_iter))


if __name__ == "__main__":
    main()
