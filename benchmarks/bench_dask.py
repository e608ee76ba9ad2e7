"""Training on Dask: time per epoch against workers, data size and dask-ml's Incremental.

Run as ``python -m benchmarks.bench_dask`` (about five minutes on two cores). Every
cluster is a ``LocalCluster`` of one-thread worker processes on this machine, started and
closed here. An epoch's time is the difference between fits of ``1 + EXTRA_EPOCHS`` and
one epoch, over ``EXTRA_EPOCHS`` (so the blocks' making and the holders' start-up, paid
once per fit, are left out), the best of ``REPEATS``.

A step's cost is split as the data-parallel algorithm splits it: its compute (the
engine's gradient over the batch's rows, measured here in-process on one thread), which
the workers share, and the rest (the round trip: the weights out and the per-block
sums back, and the client's reduction and optimizer step), which they do not. The
model ``t_step(W) = compute / W + overhead(1) + (W - 1) * per_worker`` is fitted to the
measured 1- and 2-worker steps and extrapolated: where it stops paying to add workers.
"""

import argparse
import os
import time
import warnings

import numpy as np

REPEATS = 3
EXTRA_EPOCHS = 2
N_FEATURES = 32
HIDDEN = (64,)
N_CLASSES = 4


def _data(n_rows, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, N_FEATURES))
    y = (X[:, :N_CLASSES] + 0.5 * rng.standard_normal((n_rows, N_CLASSES))).argmax(axis=1)
    return X, y


def _estimator(batch_size, max_iter, **params):
    import fastmlp

    return fastmlp.MLPClassifier(HIDDEN, solver="adam", batch_size=batch_size,
                                 max_iter=max_iter, random_state=0, tol=0.0,
                                 n_iter_no_change=10**6, **params)


def _best(function, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def _epoch_seconds(fit_epochs):
    """Seconds per epoch from fits of one and ``1 + EXTRA_EPOCHS`` epochs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = _best(lambda: fit_epochs(1))
        more = _best(lambda: fit_epochs(1 + EXTRA_EPOCHS))
    return max(more - one, 1e-9) / EXTRA_EPOCHS


def _step_compute_seconds(X, y, batch_size):
    """The engine's gradient over one batch's rows, in this process, on one thread."""
    from fastmlp import dask as fdask

    model = _estimator(batch_size, 1).fit(X[: 2 * batch_size], y[: 2 * batch_size])
    settings = fdask._EngineSettings(
        tuple([N_FEATURES, *HIDDEN, N_CLASSES]), np.dtype(np.float64).str, "relu", "softmax",
        1,
    )
    network = fdask._network(settings)
    network.load(model.coefs_, model.intercepts_)
    Y = np.eye(N_CLASSES)[y[:batch_size]]
    rows = np.ascontiguousarray(X[:batch_size])

    def steps():
        for _ in range(50):
            fdask._block_sums(network, rows, Y, None, settings, 1)

    steps()
    return _best(steps) / 50


def _cluster(n_workers):
    from distributed import Client, LocalCluster

    env = {"NUMBA_CACHE_DIR": os.environ["NUMBA_CACHE_DIR"]} if os.environ.get(
        "NUMBA_CACHE_DIR") else {}
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, env=env)
    return cluster, Client(cluster)


def _warm(client, dX, dy):
    """Every worker has loaded the engine before anything is timed."""
    from fastmlp import dask as fdask

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fdask.fit(_estimator(200, 1), dX, dy, client=client)
        client.run(lambda: __import__("fastmlp").warmup(("float64",)))


def _measure_size(results, client, n_workers, n_rows, batches, args):
    """Epochs of ``n_rows`` rows on this cluster (and in memory, once), and at the main
    size a pass of dask-ml's Incremental with either estimator."""
    import dask.array as da
    from dask_ml.wrappers import Incremental
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    import fastmlp
    from fastmlp import dask as fdask

    X, y = _data(n_rows)
    chunk = -(-n_rows // args.chunks)
    dX = da.from_array(X, chunks=(chunk, N_FEATURES)).persist()
    dy = da.from_array(y, chunks=chunk).persist()
    _warm(client, dX, dy)
    for batch_size in batches:
        if batch_size > n_rows // 4:
            continue

        def on_dask(epochs, batch_size=batch_size):
            fdask.fit(_estimator(batch_size, epochs), dX, dy, client=client)

        def in_memory(epochs, batch_size=batch_size):
            _estimator(batch_size, epochs).fit(X, y)

        results[n_workers, n_rows, batch_size] = _epoch_seconds(on_dask)
        if n_workers == 1:
            results["memory", n_rows, batch_size] = _epoch_seconds(in_memory)
    if n_rows != args.rows:
        return
    classes = np.arange(N_CLASSES)
    for name, make in (
        ("incremental-sklearn", lambda: SklearnMLP(HIDDEN, batch_size=200, random_state=0)),
        ("incremental-fastmlp", lambda: fastmlp.MLPClassifier(HIDDEN, batch_size=200,
                                                              random_state=0)),
    ):

        def one_pass(make=make):
            Incremental(make()).fit(dX, dy, classes=classes)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one_pass()  # warm
            results[name, n_workers] = _best(one_pass)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--chunks", type=int, default=8, help="row blocks of X")
    args = parser.parse_args(argv)

    import fastmlp

    fastmlp.warmup(("float64",))
    print(f"network {N_FEATURES}-{'-'.join(map(str, HIDDEN))}-{N_CLASSES}, adam, float64; "
          f"X in {args.chunks} row blocks; workers of one thread; {os.cpu_count()} cores")
    sizes = (args.rows // 4, args.rows, args.rows * 4)
    batches = (200, 4000)
    results = {}
    for n_workers in (1, 2):
        cluster, client = _cluster(n_workers)
        with cluster, client:
            for n_rows in sizes:
                _measure_size(results, client, n_workers, n_rows, batches, args)

    print("\nseconds per epoch (in memory: estimator.fit on one process, all its threads)")
    print(f"{'rows':>8} {'batch':>6} {'steps':>6} {'in memory':>10} {'1 worker':>9} "
          f"{'2 workers':>10} {'speed-up':>9} {'ms/step 1w':>11} {'ms/step 2w':>11}")
    for n_rows in sizes:
        for batch_size in batches:
            if (1, n_rows, batch_size) not in results:
                continue
            steps = -(-n_rows // batch_size)
            one, two = results[1, n_rows, batch_size], results[2, n_rows, batch_size]
            print(f"{n_rows:>8} {batch_size:>6} {steps:>6} "
                  f"{results['memory', n_rows, batch_size]:>10.3f} {one:>9.3f} {two:>10.3f} "
                  f"{one / two:>8.2f}x {1e3 * one / steps:>11.2f} {1e3 * two / steps:>11.2f}")

    print(f"\nseconds per pass over {args.rows} rows (one partial_fit per block, sequential)")
    for name in ("incremental-sklearn", "incremental-fastmlp"):
        print(f"  dask_ml Incremental, {name.split('-')[1]:8} partial_fit: "
              f"1 worker {results[name, 1]:.3f}, 2 workers {results[name, 2]:.3f}")
    steps = -(-args.rows // 200)
    print(f"  fastmlp.dask.fit, one exact epoch:            1 worker "
          f"{results[1, args.rows, 200]:.3f}, 2 workers {results[2, args.rows, 200]:.3f}")

    X, y = _data(args.rows)
    print("\nper step: compute (shared by the workers) and overhead (not), and beyond 2 workers")
    for batch_size in batches:
        steps = -(-args.rows // batch_size)
        compute = _step_compute_seconds(X, y, batch_size)
        step_1 = results[1, args.rows, batch_size] / steps
        step_2 = results[2, args.rows, batch_size] / steps
        overhead_1 = step_1 - compute
        per_worker = max(step_2 - compute / 2 - overhead_1, 0.0)
        print(f"  batch {batch_size}: compute {1e3 * compute:.3f} ms, overhead with 1 worker "
              f"{1e3 * overhead_1:.3f} ms, each further worker {1e3 * per_worker:.3f} ms")
        model = {w: compute / w + overhead_1 + (w - 1) * per_worker for w in (1, 2, 4, 8, 16)}
        print("    modelled ms/step (speed-up over 1 worker): " + ", ".join(
            f"{w} workers {1e3 * t:.2f} ({model[1] / t:.2f}x)" for w, t in model.items()))


if __name__ == "__main__":
    main()
