"""fastmlp.dask against the in-memory fit, on a real two-process LocalCluster.

Every fit on Dask is compared with ``estimator.fit`` on the same rows in memory. The two
add each batch's gradient in another order (per block, then across blocks), so they agree
to float64 rounding, not to the bit; 20 epochs or L-BFGS iterations amplify the first
differences (~1e-16) to at most ~1e-13 here: ``EXACT`` (the promise, 1e-9) leaves room and
would still fail on any wrong batch, row, weight or step. Fits on Dask are compared to
each other to the bit where only the cluster differs (a killed worker).
"""

import contextlib
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask", reason="fastmlp.dask needs dask: pip install 'fastmlp[dask]'")
distributed = pytest.importorskip(
    "distributed", reason="fastmlp.dask needs dask.distributed: pip install 'fastmlp[dask]'"
)

import dask.array as da  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import numba  # noqa: E402
import pandas as pd  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import dask as fdask  # noqa: E402

# Short fits (20 epochs) do not converge, in memory or on Dask alike; tests that check
# the warning catch it themselves.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

#: Relative agreement promised with the in-memory fit (see the module's docstring).
EXACT = 1e-9
N_ROWS = 240
#: Row chunkings: uneven, more chunks than workers (an empty one among them), one chunk.
CHUNKINGS = {
    "uneven": (70, 13, 101, 56),
    "many": (20,) * 5 + (0,) + (20,) * 7,
    "one": (N_ROWS,),
}


@contextlib.contextmanager
def two_workers():
    """A client of two worker processes of one thread each, loading the engine from this
    process's Numba cache (where it has one) instead of compiling it."""
    env = {"NUMBA_CACHE_DIR": numba.config.CACHE_DIR} if numba.config.CACHE_DIR else {}
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, env=env
    ) as cluster, Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def client():
    with two_workers() as dask_client:
        yield dask_client


@pytest.fixture
def cluster_to_break(client):
    """A cluster of its own, current for the test, for a test that kills a worker: the
    shared one stays whole, and nothing waits for a nanny to bring the killed worker
    back (in a long test run on a loaded machine, one was once not back after ten
    minutes). (After the shared one, so that it is the current client again after.)"""
    with two_workers() as dask_client, dask_client.as_current():
        yield dask_client


def classification(n=N_ROWS, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    y = np.where(X[:, 0] + X[:, 1] > 0.3, "b", "a").astype(object)
    y[X[:, 2] > 0.8] = "c"
    return X, y


def regression(n=N_ROWS, n_features=5, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    y = X @ np.linspace(-1, 2, n_features) + 0.5 * np.sin(3 * X[:, 0])
    return X, y


def on_dask(chunks, *arrays):
    """Each array as a dask array with the given row chunks."""
    return [
        da.from_array(a, chunks=(chunks,) + tuple(-1 for _ in a.shape[1:])) for a in arrays
    ]


def estimator(kind, solver, **params):
    params = {"hidden_layer_sizes": (7,), "solver": solver, "random_state": 0,
              "max_iter": 20, "batch_size": 50, **params}
    if solver == "sgd":
        params.setdefault("learning_rate_init", 0.05)
    if solver == "adam":
        params.setdefault("learning_rate_init", 0.01)
    cls = fastmlp.MLPClassifier if kind == "classifier" else fastmlp.MLPRegressor
    return cls(**params)


def max_relative_difference(fitted, expected):
    """The largest difference of any weight, relative to its layer's largest weight."""
    return max(
        float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
        for a, b in zip(fitted.coefs_ + fitted.intercepts_,
                        expected.coefs_ + expected.intercepts_)
    )


def assert_same_model(fitted, expected, tolerance=EXACT):
    assert fitted.n_iter_ == expected.n_iter_
    assert [c.shape for c in fitted.coefs_] == [c.shape for c in expected.coefs_]
    assert max_relative_difference(fitted, expected) <= tolerance
    np.testing.assert_allclose(fitted.loss_, expected.loss_, rtol=tolerance)
    if hasattr(expected, "loss_curve_"):
        np.testing.assert_allclose(fitted.loss_curve_, expected.loss_curve_, rtol=tolerance)
        assert fitted.t_ == expected.t_
    if hasattr(expected, "classes_"):
        np.testing.assert_array_equal(fitted.classes_, expected.classes_)


def fit_both(make, X, y, chunks, sample_weight=None, **fit_params):
    in_memory = make().fit(X, y, sample_weight=sample_weight, **fit_params)
    arrays = on_dask(chunks, X, y) + ([] if sample_weight is None else
                                       on_dask(chunks, sample_weight))
    dX, dy = arrays[:2]
    on_cluster = fdask.fit(make(), dX, dy, sample_weight=arrays[2] if arrays[2:] else None)
    return on_cluster, in_memory


# --- exactness per solver, estimator and chunking -------------------------------------------


@pytest.mark.parametrize("chunking", sorted(CHUNKINGS))
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_fit_is_the_in_memory_model(client, solver, kind, chunking):
    X, y = classification() if kind == "classifier" else regression()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 20 epochs: not converged
        on_cluster, in_memory = fit_both(lambda: estimator(kind, solver), X, y,
                                         CHUNKINGS[chunking])
    assert_same_model(on_cluster, in_memory)


def test_fit_warns_as_in_memory_when_not_converged(client):
    X, y = classification()
    dX, dy = on_dask(60, X, y)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\) reached"):
        fdask.fit(estimator("classifier", "adam", max_iter=3), dX, dy)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 3"):
        fdask.fit(estimator("classifier", "lbfgs", max_iter=3), dX, dy)


def test_stops_on_no_improvement_as_in_memory(client):
    X, y = regression()
    make = lambda: estimator("regressor", "sgd", max_iter=200, tol=1e-2,  # noqa: E731
                             n_iter_no_change=3, learning_rate="adaptive")
    on_cluster, in_memory = fit_both(make, X, y, (100, 140))
    assert in_memory.n_iter_ < 200  # stopped by the rule, not by max_iter
    assert_same_model(on_cluster, in_memory)
    assert on_cluster._optimizer.schedule.learning_rate == pytest.approx(
        in_memory._optimizer.schedule.learning_rate, rel=0)


def test_local_scheduler_runs_the_same_fit(client):
    """Dask's local scheduler (no client in use) trains the same model in-process."""
    X, y = classification()
    dX, dy = on_dask((100, 140), X, y)
    with dask.config.set(scheduler="sync"):
        local = fdask.fit(estimator("classifier", "adam"), dX, dy)
    on_cluster = fdask.fit(estimator("classifier", "adam"), dX, dy)
    in_memory = estimator("classifier", "adam").fit(X, y)
    assert_same_model(local, in_memory)
    for a, b in zip(local.coefs_, on_cluster.coefs_):
        np.testing.assert_array_equal(a, b)  # the same per-block sums, the same order


# --- early stopping, sample weights, warm starts, partial_fit ---------------------------------


@pytest.mark.parametrize("kind,solver", [("classifier", "sgd"), ("regressor", "adam")])
def test_early_stopping_is_the_in_memory_split_and_stop(client, kind, solver):
    X, y = classification() if kind == "classifier" else regression()
    make = lambda: estimator(kind, solver, early_stopping=True, max_iter=60,  # noqa: E731
                             n_iter_no_change=4, validation_fraction=0.2)
    on_cluster, in_memory = fit_both(make, X, y, (70, 13, 101, 56))
    assert in_memory.n_iter_ < 60
    assert_same_model(on_cluster, in_memory)
    np.testing.assert_allclose(on_cluster.validation_scores_, in_memory.validation_scores_,
                               rtol=EXACT)
    np.testing.assert_allclose(on_cluster.validation_loss_curve_,
                               in_memory.validation_loss_curve_, rtol=EXACT)
    assert on_cluster.best_validation_score_ == pytest.approx(
        in_memory.best_validation_score_, rel=EXACT)


@pytest.mark.parametrize("kind,solver", [("classifier", "adam"), ("regressor", "lbfgs"),
                                         ("classifier", "sgd")])
def test_sample_weight(client, kind, solver):
    X, y = classification() if kind == "classifier" else regression()
    sample_weight = np.random.default_rng(5).uniform(0, 3, X.shape[0])
    sample_weight[::7] = 0  # rows that count for nothing, some whole block-batches
    make = lambda: estimator(kind, solver)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        on_cluster, in_memory = fit_both(make, X, y, (70, 13, 101, 56), sample_weight)
        unweighted = make().fit(X, y)
    assert max_relative_difference(in_memory, unweighted) > 1e-3  # the weights matter
    assert_same_model(on_cluster, in_memory)


def test_sample_weight_early_stopping(client):
    X, y = classification()
    sample_weight = np.random.default_rng(6).uniform(0.5, 2, X.shape[0])
    make = lambda: estimator("classifier", "adam", early_stopping=True,  # noqa: E731
                             n_iter_no_change=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        on_cluster, in_memory = fit_both(make, X, y, (70, 13, 101, 56), sample_weight)
    assert_same_model(on_cluster, in_memory)
    np.testing.assert_allclose(on_cluster.validation_scores_, in_memory.validation_scores_,
                               rtol=EXACT)


def test_zero_weight_batch_raises_as_in_memory(client):
    X, y = classification()
    sample_weight = np.ones(X.shape[0])
    sample_weight[:50] = 0
    dX, dy, dw = on_dask(60, X, y, sample_weight)
    with pytest.raises(ZeroDivisionError, match="Weights sum to zero"):
        estimator("classifier", "sgd", shuffle=False).fit(X, y, sample_weight=sample_weight)
    model = estimator("classifier", "sgd", shuffle=False)
    with pytest.raises(ZeroDivisionError, match="Weights sum to zero"):
        fdask.fit(model, dX, dy, sample_weight=dw)
    assert not hasattr(model, "coefs_")  # left as it was


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_warm_start(client, solver):
    X, y = classification()
    X2, y2 = classification(seed=3)
    in_memory = estimator("classifier", solver, warm_start=True, max_iter=8)
    on_cluster = estimator("classifier", solver, warm_start=True, max_iter=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        in_memory.fit(X, y).fit(X2, y2)
        fdask.fit(on_cluster, *on_dask((100, 140), X, y))
        fdask.fit(on_cluster, *on_dask((30,) * 8, X2, y2))
    assert_same_model(on_cluster, in_memory)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_partial_fit_calls_are_in_memory_epochs(client, kind):
    X, y = classification() if kind == "classifier" else regression()
    extra = {"classes": np.unique(y)} if kind == "classifier" else {}
    in_memory = estimator(kind, "adam")
    on_cluster = estimator(kind, "adam")
    for call, rows in enumerate((slice(0, 120), slice(120, 240), slice(0, 240))):
        in_memory.partial_fit(X[rows], y[rows], **(extra if call == 0 else {}))
        fdask.partial_fit(on_cluster, *on_dask(50, X[rows], y[rows]),
                          **(extra if call == 0 else {}))
        assert_same_model(on_cluster, in_memory)
    # The optimizer state is the estimator's: an in-memory call goes on from it.
    in_memory.partial_fit(X, y)
    on_cluster.partial_fit(X, y)
    assert_same_model(on_cluster, in_memory)


def test_partial_fit_refuses_what_the_estimators_refuse(client):
    X, y = classification()
    dX, dy = on_dask(60, X, y)
    with pytest.raises(ValueError, match="classes must be passed"):
        fdask.partial_fit(estimator("classifier", "adam"), dX, dy)
    with pytest.raises(ValueError, match="does not support early_stopping"):
        fdask.partial_fit(estimator("classifier", "adam", early_stopping=True), dX, dy,
                          classes=np.unique(y))
    with pytest.raises(AttributeError, match="only available for stochastic"):
        fdask.partial_fit(estimator("classifier", "lbfgs"), dX, dy, classes=np.unique(y))


# --- inputs: DataFrames, Series, NumPy targets, bad input ----------------------------------


def test_dataframe_and_series(client):
    X, y = regression()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    dframe = dd.from_pandas(frame, npartitions=3)
    dseries = dd.from_pandas(pd.Series(y, name="target"), npartitions=4)  # other chunks
    on_cluster = fdask.fit(estimator("regressor", "adam"), dframe, dseries)
    in_memory = estimator("regressor", "adam").fit(frame, y)
    assert_same_model(on_cluster, in_memory)
    np.testing.assert_array_equal(on_cluster.feature_names_in_, in_memory.feature_names_in_)
    predictions = fdask.predict(on_cluster, dframe)
    assert isinstance(predictions, da.Array)
    np.testing.assert_allclose(predictions.compute(), on_cluster.predict(frame), rtol=1e-12)
    assert fdask.score(on_cluster, dframe, dseries) == pytest.approx(
        on_cluster.score(frame, y), rel=1e-12)


def test_numpy_targets_and_columns_in_chunks(client):
    X, y = classification()
    dX = da.from_array(X, chunks=(70, 2))  # columns in chunks: rechunked into one
    on_cluster = fdask.fit(estimator("classifier", "sgd"), dX, y)
    in_memory = estimator("classifier", "sgd").fit(X, y)
    assert_same_model(on_cluster, in_memory)


def test_bad_input(client):
    X, y = classification()
    with pytest.raises(TypeError, match="dask array or a dask DataFrame"):
        fdask.fit(estimator("classifier", "adam"), X, y)
    dX, dy = on_dask(60, X, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        fdask.fit(estimator("classifier", "adam"), dX, dy[:-1])
    X_nan = X.copy()
    X_nan[100, 2] = np.nan
    model = estimator("classifier", "adam")
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fdask.fit(model, *on_dask(60, X_nan, y))
    assert not hasattr(model, "coefs_")


# --- prediction and scoring ---------------------------------------------------------------


def test_predict_proba_and_score_are_lazy_and_in_memory(client):
    X, y = classification()
    model = estimator("classifier", "adam").fit(X, y)
    dX, dy = on_dask((70, 13, 101, 56), X, y)
    for name in ("predict", "predict_proba", "predict_log_proba"):
        lazy = getattr(fdask, name)(model, dX)
        assert isinstance(lazy, da.Array)
        assert lazy.chunks[0] == dX.chunks[0]
        expected = getattr(model, name)(X)
        assert lazy.dtype == expected.dtype
        computed = lazy.compute()
        if name == "predict":
            np.testing.assert_array_equal(computed, expected)
        else:
            np.testing.assert_allclose(computed, expected, rtol=1e-12)
    assert fdask.score(model, dX, dy) == model.score(X, y)  # a count: to the bit
    weights = np.random.default_rng(2).uniform(0, 1, X.shape[0])
    (dw,) = on_dask((70, 13, 101, 56), weights)
    assert fdask.score(model, dX, dy, dw) == pytest.approx(model.score(X, y, weights),
                                                           rel=1e-12)
    X_r, y_r = regression()
    regressor = estimator("regressor", "lbfgs").fit(X_r, y_r)
    dX_r, dy_r = on_dask(50, X_r, y_r)
    np.testing.assert_allclose(fdask.predict(regressor, dX_r).compute(),
                               regressor.predict(X_r), rtol=1e-12)
    assert fdask.score(regressor, dX_r, dy_r) == pytest.approx(regressor.score(X_r, y_r),
                                                               rel=1e-12)


def test_estimator_methods_dispatch_dask_collections(client):
    """fit, partial_fit, predict, predict_proba, predict_log_proba and score of the
    estimators take dask collections to fastmlp.dask."""
    X, y = classification()
    dX, dy = on_dask((70, 13, 101, 56), X, y)
    model = estimator("classifier", "adam").fit(dX, dy)
    in_memory = estimator("classifier", "adam").fit(X, y)
    assert_same_model(model, in_memory)
    assert isinstance(model.predict(dX), da.Array)
    np.testing.assert_array_equal(model.predict(dX).compute(), in_memory.predict(X))
    np.testing.assert_allclose(model.predict_proba(dX).compute(), in_memory.predict_proba(X),
                               rtol=1e-12)
    assert model.score(dX, dy) == in_memory.score(X, y)
    np.testing.assert_array_equal(model.predict(X), in_memory.predict(X))  # NumPy: as ever


# --- dask-ml interoperability -----------------------------------------------------------


def test_dask_ml_incremental_as_with_scikit_learn(client):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    X, y = classification()
    dX, dy = on_dask(60, X, y)
    params = {"hidden_layer_sizes": (7,), "random_state": 0, "learning_rate_init": 0.01}
    # The same shuffle of the blocks for both (random_state), one partial_fit per block.
    ours = wrappers.Incremental(fastmlp.MLPClassifier(**params), random_state=0).fit(
        dX, dy, classes=np.unique(y))
    theirs = wrappers.Incremental(SklearnMLP(**params), random_state=0).fit(
        dX, dy, classes=np.unique(y))
    assert ours.estimator_.n_iter_ == theirs.estimator_.n_iter_ == 1
    assert ours.estimator_.t_ == theirs.estimator_.t_ == N_ROWS
    assert max_relative_difference(ours.estimator_, theirs.estimator_) < 1e-12
    np.testing.assert_array_equal(ours.predict(dX).compute(), theirs.predict(dX).compute())
    assert ours.score(dX, dy) == theirs.score(dX, dy)


def test_dask_ml_parallel_post_fit(client):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = classification()
    wrapped = wrappers.ParallelPostFit(estimator("classifier", "adam")).fit(X, y)
    in_memory = estimator("classifier", "adam").fit(X, y)
    dX, dy = on_dask((70, 13, 101, 56), X, y)
    assert isinstance(wrapped.predict(dX), da.Array)
    np.testing.assert_array_equal(wrapped.predict(dX).compute(), in_memory.predict(X))
    np.testing.assert_allclose(wrapped.predict_proba(dX).compute(),
                               in_memory.predict_proba(X), rtol=1e-12)
    assert wrapped.score(dX, dy) == pytest.approx(in_memory.score(X, y), rel=1e-12)


def test_dask_ml_grid_search(client):
    model_selection = pytest.importorskip("dask_ml.model_selection")
    from sklearn.model_selection import GridSearchCV

    X, y = classification()
    grid = {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(4,), (9,)]}
    make = lambda: estimator("classifier", "lbfgs", max_iter=30)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        on_dask_ml = model_selection.GridSearchCV(make(), grid, cv=3).fit(X, y)
        in_memory = GridSearchCV(make(), grid, cv=3).fit(X, y)
    np.testing.assert_allclose(on_dask_ml.cv_results_["mean_test_score"],
                               in_memory.cv_results_["mean_test_score"], rtol=1e-12)
    assert on_dask_ml.best_params_ == in_memory.best_params_
    np.testing.assert_array_equal(on_dask_ml.predict(X), in_memory.predict(X))


# --- faults: a worker process killed in the middle of a fit -----------------------------------


def _worker_pids(dask_client):
    return dask_client.run(os.getpid)


def _killing_after(monkeypatch, calls, dask_client, pick=None):
    """Make the ``calls``-th round trip to the holders meet a killed worker: SIGKILL the
    process of one that holds blocks (or of ``pick()``) just before it."""
    original = fdask._ClusterHolders.call
    seen = {"calls": 0, "killed": None, "holders": None}

    def kill(holders):
        pids = _worker_pids(dask_client)
        if pick is None:  # the first of the workers that hold training blocks
            who_has = dask_client.who_has(holders.futures)
            address = min(addresses[0] for addresses in who_has.values())
        else:
            address = pick()
        seen["killed"] = pids[address]
        os.kill(pids[address], signal.SIGKILL)

    def call(self, method, *args):
        seen["calls"] += 1
        seen["holders"] = self
        if seen["calls"] == calls:
            kill(self)
        return original(self, method, *args)

    monkeypatch.setattr(fdask._ClusterHolders, "call", call)
    return seen


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_killed_worker_mid_fit_gives_the_undisturbed_model(cluster_to_break, monkeypatch,
                                                             solver):
    X, y = classification()
    dX, dy = on_dask((70, 13, 101, 56), X, y)
    make = lambda: estimator("classifier", solver, max_iter=8)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        undisturbed = fdask.fit(make(), dX, dy)
        in_memory = make().fit(X, y)
        # In the fourth epoch of five steps:
        seen = _killing_after(monkeypatch, 17, cluster_to_break)
        disturbed = fdask.fit(make(), dX, dy)
    assert seen["killed"] is not None and seen["holders"].recoveries >= 1
    for a, b in zip(disturbed.coefs_ + disturbed.intercepts_,
                    undisturbed.coefs_ + undisturbed.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert disturbed.loss_curve_ == undisturbed.loss_curve_
    assert_same_model(disturbed, in_memory)


def test_killed_worker_during_lbfgs_evaluation(cluster_to_break, monkeypatch):
    X, y = regression()
    dX, dy = on_dask((70, 13, 101, 56), X, y)
    make = lambda: estimator("regressor", "lbfgs", max_iter=15)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        undisturbed = fdask.fit(make(), dX, dy)
        in_memory = make().fit(X, y)
        seen = _killing_after(monkeypatch, 6, cluster_to_break)  # the sixth evaluation
        disturbed = fdask.fit(make(), dX, dy)
    assert seen["killed"] is not None and seen["holders"].recoveries >= 1
    for a, b in zip(disturbed.coefs_, undisturbed.coefs_):
        np.testing.assert_array_equal(a, b)
    assert_same_model(disturbed, in_memory)


def test_lost_blocks_without_a_graph_raise_clearly(cluster_to_break, monkeypatch):
    """Scattered data cannot be recomputed: a clear error, the estimator untouched."""
    X, y = classification()
    X_future = cluster_to_break.scatter(X)
    y_future = cluster_to_break.scatter(y)
    dX = da.from_delayed(dask.delayed(X_future), shape=X.shape, dtype=X.dtype).rechunk(60)
    dy = da.from_delayed(dask.delayed(y_future), shape=y.shape, dtype=y.dtype).rechunk(60)

    def holder_of_scattered_x():
        return cluster_to_break.who_has([X_future])[X_future.key][0]

    model = estimator("classifier", "sgd")
    _killing_after(monkeypatch, 3, cluster_to_break, pick=holder_of_scattered_x)
    with pytest.raises(RuntimeError, match="cannot be recomputed"):
        fdask.fit(model, dX, dy)
    assert not hasattr(model, "coefs_")


# --- the client's memory ----------------------------------------------------------------------


def test_client_memory_stays_small_on_a_large_array(client):
    """A fit on a 1.5 GB dask array grows this process's resident memory by far less than
    the array: only weights, gradients, labels and the batch plan come here."""
    psutil = pytest.importorskip("psutil")
    n_rows, n_features = 750_000, 250  # 1.5 GB of float64
    process = psutil.Process()
    rng = da.random.default_rng(0)
    X = rng.standard_normal((n_rows, n_features), chunks=(50_000, n_features))
    y = rng.integers(0, 2, n_rows, chunks=50_000)  # not computed from X: X made once per fit
    baseline = process.memory_info().rss
    peak = {"rss": baseline}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["rss"] = max(peak["rss"], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = fdask.fit(fastmlp.MLPClassifier((8,), solver="lbfgs", max_iter=2,
                                                    random_state=0), X, y)
            fdask.fit(fastmlp.MLPClassifier((8,), solver="sgd", max_iter=1, batch_size=25_000,
                                            random_state=0), X, y)
    finally:
        done.set()
        sampler.join()
    growth_mb = (peak["rss"] - baseline) / 2**20
    print(f"client peak RSS growth: {growth_mb:.1f} MB for a {X.nbytes / 2**30:.2f} GiB X")
    assert model.n_iter_ >= 1
    assert growth_mb < 100
