"""The predict workload (WORKLOADS.md, P): ``predict_proba`` of W2's and W4's networks on
one row, 10^5 rows and 10^6 rows, fastmlp against scikit-learn and ONNX Runtime (when
installed), side by side in one process, with the peak memory of each library's call.

    python -m benchmarks.bench_predict [--rounds 5] [--seconds 0.5] [--max-rows 1000000]

Each round times every implementation once, in a rotating order, each for ``--seconds``
of back-to-back calls (one call at least) after one untimed call; a ratio is the median
over rounds of the other's time over fastmlp's in the same round (``ratio`` below), so
that a slow spell of the machine weighs on both sides of a ratio alike. Memory is the
peak of NumPy's allocations during one call (tracemalloc), fastmlp's against
scikit-learn's; ONNX Runtime allocates outside NumPy and is not traced.
"""

import argparse
import gc
import statistics
import time
import tracemalloc
import warnings

import numpy as np

NETWORKS = {
    # name: (data, hidden layers, epochs to fit): the workloads' data and networks.
    "W2": ("moons", (100,), 5),
    "W4": ("wide", (256,), 1),
}
ROW_COUNTS = (1, 100_000, 1_000_000)


def _data(name):
    from sklearn.datasets import make_classification

    from fastmlp.cli import moons_data

    if name == "moons":
        X, _, y, _ = moons_data()
        return X, y
    return make_classification(n_samples=20000, n_features=784, n_informative=50,
                               n_classes=10, random_state=0)


def fitted_models(network):
    """fastmlp's model fitted on the workload's data, scikit-learn's with the same weights,
    and an ONNX Runtime session of it (None without onnxruntime and skl2onnx)."""
    import sklearn.neural_network

    import fastmlp

    data, hidden, epochs = NETWORKS[network]
    X, y = _data(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fastmlp.MLPClassifier(hidden, max_iter=epochs, random_state=0).fit(X, y)
    theirs = sklearn.neural_network.MLPClassifier(hidden)
    for attribute in ("coefs_", "intercepts_", "n_layers_", "n_outputs_", "out_activation_",
                      "n_features_in_", "classes_", "_label_binarizer"):
        setattr(theirs, attribute, getattr(ours, attribute))
    session = None
    try:
        import onnxruntime

        onx = fastmlp.to_onnx(ours, X[:1])
        session = onnxruntime.InferenceSession(onx.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
    except ImportError:
        pass
    return X, ours, theirs, session


def _calls(X_rows, ours, theirs, session):
    calls = {"fastmlp": lambda: ours.predict_proba(X_rows),
             "scikit-learn": lambda: theirs.predict_proba(X_rows)}
    if session is not None:
        name = session.get_inputs()[0].name
        calls["onnxruntime"] = lambda: session.run(None, {name: X_rows})
    return calls


def seconds_per_call(call, seconds):
    call()
    calls, start = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def peak_bytes(call):
    gc.collect()
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(network, rounds=5, seconds=0.5, max_rows=ROW_COUNTS[-1]):
    """Rows of results for one network: per row count, each implementation's median time
    and its ratio to fastmlp, and the peak memory of fastmlp's and scikit-learn's call."""
    X, ours, theirs, session = fitted_models(network)
    results = []
    for n_rows in (n for n in ROW_COUNTS if n <= max_rows):
        X_rows = np.resize(X, (n_rows, X.shape[1]))  # the data's rows, repeated
        calls = _calls(X_rows, ours, theirs, session)
        names = list(calls)
        times = {name: [] for name in names}
        for round_ in range(rounds):
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                times[name].append(seconds_per_call(calls[name], seconds))
        row = {"network": network, "rows": n_rows}
        for name in names:
            row[name] = statistics.median(times[name])
            row[f"{name} ratio"] = statistics.median(
                theirs_ / ours_ for theirs_, ours_ in zip(times[name], times["fastmlp"]))
        row["fastmlp peak MB"] = peak_bytes(calls["fastmlp"]) / 1e6
        row["scikit-learn peak MB"] = peak_bytes(calls["scikit-learn"]) / 1e6
        results.append(row)
        del X_rows, calls
        gc.collect()
    return results


def _duration(seconds):
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def table(results):
    """The results as a Markdown table: times, ratios to fastmlp, peak memory."""
    peers = [name for name in ("scikit-learn", "onnxruntime") if name in results[0]]
    header = ["network", "rows", "fastmlp"] + [f"{p} (ratio)" for p in peers] + [
        "peak MB fastmlp / scikit-learn"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    for row in results:
        cells = [row["network"], f"{row['rows']:,}", _duration(row["fastmlp"])]
        cells += [f"{_duration(row[p])} ({row[p + ' ratio']:.1f}x)" for p in peers]
        cells.append(f"{row['fastmlp peak MB']:.1f} / {row['scikit-learn peak MB']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--max-rows", type=int, default=ROW_COUNTS[-1])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    args = parser.parse_args(argv)
    results = []
    for network in args.networks.split(","):
        results += measure(network, args.rounds, args.seconds, args.max_rows)
    print(table(results))
    return results


if __name__ == "__main__":
    main()
