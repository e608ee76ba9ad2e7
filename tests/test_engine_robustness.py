"""The engine where real use leaves the lab: results fixed by the data (never by the
threads, the calling thread or how calls are cut), shapes checked before any kernel
indexes an array, buffers bounded by the largest batch."""

import hashlib
import threading
import warnings

import numpy as np
import pytest
from numba import config
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from conftest import relative_error
from fastmlp import kernels, reference
from fastmlp.kernels import FlatNetwork, Trainer, _api, _buffers

two_threads = pytest.mark.skipif(
    config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 Numba threads"
)


def make_data(seed, units, n_samples, dtype=np.float64):
    rng = np.random.default_rng(seed)
    coefs = [rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(units[:-1], units[1:])]
    intercepts = [0.1 * rng.standard_normal(b) for b in units[1:]]
    network = FlatNetwork.from_arrays(coefs, intercepts, dtype)
    X = rng.standard_normal((n_samples, units[0])).astype(dtype)
    Y = np.eye(units[-1], dtype=dtype)[rng.integers(0, units[-1], n_samples)]
    return network, X, Y


def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def train(network, X, Y, *, solver="adam", n_threads=None, n_epochs=3, batch_size=64,
          seed=0):
    """``n_epochs`` shuffled epochs from a copy of ``network``: (weights, losses)."""
    copy = FlatNetwork(network.units, network.dtype)
    copy.theta[:] = network.theta
    trainer = Trainer(copy, "tanh", "softmax", solver=solver, alpha=1e-4,
                      batch_size=batch_size, n_threads=n_threads)
    Xc, Yc, no_weights = trainer.prepare(X, Y)
    order = np.arange(X.shape[0], dtype=np.int64)
    losses = trainer.run_epochs(Xc, Yc, no_weights, order, 1e-2, n_epochs,
                                random_state=np.random.RandomState(seed))
    return copy.theta.copy(), losses


# Shapes that take each kind of plan: loops (weights copied per thread, or stepped in
# slices), the fused kernel of one hidden ReLU layer is not taken with tanh, and BLAS.
PLANS = {"copies": [6, 20, 4], "slices": [10, 128, 64, 3], "blas": [120, 300, 5]}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shape", sorted(PLANS))
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_calls_cut_anywhere_give_the_same_training(shape, solver, dtype, monkeypatch):
    """Long epochs run over several engine calls (so Ctrl-C is honoured between them):
    one batch a call, or every epoch in one call, give the same weights and losses to
    the bit, with the order shuffled in compiled code as NumPy shuffles it."""
    network, X, Y = make_data(1, PLANS[shape], 500, dtype)
    runs = []
    for seconds in (0.0, np.inf):
        monkeypatch.setattr(_api, "SECONDS_PER_CALL", seconds)
        runs.append(train(network, X, Y, solver=solver))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


@two_threads
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("shape", sorted(PLANS))
def test_the_thread_count_never_changes_a_bit(shape, dtype):
    network, X, Y = make_data(2, PLANS[shape], 700, dtype)
    digests = {n_threads: digest(train(network, X, Y, n_threads=n_threads)[0])
               for n_threads in (1, 2, None, -1)}
    assert len(set(digests.values())) == 1, digests


class _CountedDriver:
    """A kernel of ``_epochs`` that counts its calls (for monkeypatch)."""

    def __init__(self, dispatcher):
        self.dispatcher, self.calls = dispatcher, 0

    def __call__(self, *args):
        self.calls += 1
        return self.dispatcher(*args)

    def __getattr__(self, name):
        return getattr(self.dispatcher, name)


def _new_machines_driver(team):
    """A ``_ParallelDriver`` that looked for the team's driver, as on a new machine,
    and did not find it, with ``team`` as many signatures compiled as now."""
    driver = _api._ParallelDriver()
    dtype = np.dtype(np.float64)
    driver.ready[dtype] = False
    driver.compiled_when_looked[dtype] = len(team.overloads)
    return driver


@two_threads
@pytest.mark.skipif(config.DISABLE_JIT, reason="compiled kernels only")
def test_a_team_waits_for_its_driver_until_the_time_alone_would_pay_for_it(monkeypatch):
    """Where the team's driver is neither compiled nor in Numba's cache, training that a
    team would run runs on one thread until PARALLEL_COMPILE_AFTER_SECONDS of it have
    passed, then on the team: the same weights, to the bit, all the way. The threshold is
    an hour here, so however slow the machine, only the count of seconds decides."""
    from fastmlp.kernels import _epochs

    network, X, Y = make_data(4, PLANS["copies"], 700)
    expected = digest(train(network, X, Y, n_threads=2)[0])  # (the team, compiled)
    alone = _CountedDriver(_epochs.train_epochs_alone)
    team = _CountedDriver(_epochs.train_epochs_parallel)
    monkeypatch.setattr(_epochs, "train_epochs_alone", alone)
    monkeypatch.setattr(_epochs, "train_epochs_parallel", team)
    driver = _new_machines_driver(team)
    monkeypatch.setattr(_api, "_parallel_driver", driver)
    monkeypatch.setattr(_api, "PARALLEL_COMPILE_AFTER_SECONDS", 3600.0)

    for _ in range(2):  # (the first call may compile the lone driver: not counted)
        assert digest(train(network, X, Y)[0]) == expected
    assert team.calls == 0 and alone.calls > 0
    assert 0 < driver.seconds_alone < _api.PARALLEL_COMPILE_AFTER_SECONDS

    driver.seconds_alone = _api.PARALLEL_COMPILE_AFTER_SECONDS
    alone.calls = 0
    assert digest(train(network, X, Y)[0]) == expected
    assert team.calls > 0
    # An explicit thread count is run as asked, compiled or not.
    driver.seconds_alone, team.calls = 0.0, 0
    assert digest(train(network, X, Y, n_threads=2)[0]) == expected
    assert team.calls > 0


@two_threads
@pytest.mark.skipif(config.DISABLE_JIT, reason="compiled kernels only")
def test_a_team_driver_compiled_after_the_first_look_is_used_at_once(monkeypatch):
    """Where the team's driver was not found, and has compiled a signature since (by
    ``warmup()``, or a trainer given a thread count), the team runs at once, before the
    time alone is out."""
    from fastmlp.kernels import _epochs

    network, X, Y = make_data(4, PLANS["copies"], 700)
    expected = digest(train(network, X, Y, n_threads=2)[0])  # (the team, compiled)
    team = _CountedDriver(_epochs.train_epochs_parallel)
    monkeypatch.setattr(_epochs, "train_epochs_parallel", team)
    driver = _new_machines_driver(team)
    driver.compiled_when_looked[np.dtype(np.float64)] -= 1  # looked before the compile
    monkeypatch.setattr(_api, "_parallel_driver", driver)
    monkeypatch.setattr(_api, "PARALLEL_COMPILE_AFTER_SECONDS", 3600.0)

    assert digest(train(network, X, Y)[0]) == expected
    assert team.calls > 0 and driver.ready[np.dtype(np.float64)]
    assert driver.seconds_alone == 0


_LOADS_THE_TEAM_DRIVER = """
import numpy as np
from fastmlp.kernels import FlatNetwork, Trainer, _api, _epochs
rng = np.random.default_rng(0)
network = FlatNetwork([6, 20, 4], np.float64)
network.theta[:] = 0.1 * rng.standard_normal(network.n_params)
X = rng.standard_normal((700, 6))
Y = np.eye(4)[rng.integers(0, 4, 700)]
trainer = Trainer(network, "tanh", "softmax", batch_size=64)
Xc, Yc, no_weights = trainer.prepare(X, Y)
trainer.run_epochs(Xc, Yc, no_weights, np.arange(700, dtype=np.int64), 1e-2)
print(_api._parallel_driver.ready, sum(_epochs.train_epochs_parallel._cache_hits.values()))
"""


@two_threads
@pytest.mark.skipif(config.DISABLE_JIT, reason="compiled kernels only")
def test_the_team_driver_is_found_in_numbas_cache():
    """A new process finds the team's driver that this one compiled (or loaded) in
    Numba's on-disk cache, and loads it from there, as ``Dispatcher.compile`` would."""
    import subprocess
    import sys

    network, X, Y = make_data(5, PLANS["copies"], 300)
    train(network, X, Y, n_threads=2)  # compiled, and cached, where it was not
    run = subprocess.run([sys.executable, "-c", _LOADS_THE_TEAM_DRIVER],
                         capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["{dtype('float64'):", "True}", "1"], run.stdout


@pytest.mark.parametrize("shape", sorted(PLANS))
def test_a_fit_from_another_python_thread_gives_the_same_weights(shape):
    """BLAS plans run their chunks on one thread away from the main thread (OpenBLAS
    takes its thread limit only from there): the same chunks, the same bits."""
    network, X, Y = make_data(3, PLANS[shape], 400)
    here = train(network, X, Y)[0]
    there = []
    worker = threading.Thread(target=lambda: there.append(train(network, X, Y)[0]))
    worker.start()
    worker.join()
    np.testing.assert_array_equal(here, there[0])


@pytest.mark.parametrize("solver", ["lbfgs", "adam", "sgd"])
def test_estimators_give_one_model_for_every_n_threads(solver):
    from sklearn.datasets import make_classification

    X, y = make_classification(600, 12, n_classes=3, n_informative=6, random_state=0)
    digests = set()
    for n_threads in (1, 2, None, np.int64(1)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = fastmlp.MLPClassifier((40, 20), solver=solver, max_iter=15,
                                          random_state=0, n_threads=n_threads).fit(X, y)
        digests.add(digest(np.concatenate([c.ravel() for c in model.coefs_])))
    assert len(digests) == 1


def test_gradients_over_many_segments_equal_the_reference(monkeypatch):
    """Rows are worked SEGMENT_ROWS at a time; the segments' sums are added in order."""
    monkeypatch.setattr(_api, "SEGMENT_ROWS", 37)
    network, X, Y = make_data(4, [5, 16, 3], 300)
    weights = np.linspace(0.1, 2.0, 300)
    ours = kernels.loss_and_gradients(network.coefs, network.intercepts, X, Y, "relu",
                                      "softmax", 1e-3, weights)
    expected = reference.loss_and_gradients(network.coefs, network.intercepts, X, Y, "relu",
                                            "softmax", 1e-3, weights)
    # float64 sums over 300 rows in another order: rounding of a few ulp of the largest.
    assert relative_error(ours[0], expected[0]) <= 1e-13
    for got, want in zip(ours[1] + ours[2], expected[1] + expected[2]):
        assert relative_error(got, want) <= 1e-13
    out = kernels.predict(network, X, "relu", "softmax")
    _, activations = reference.forward(network.coefs, network.intercepts, X, "relu",
                                       "softmax")
    assert relative_error(out, activations[-1]) <= 1e-14


def test_buffers_stay_bounded_over_many_batch_sizes():
    """One workspace, grown to the largest batch's needs and shared by batches of one
    chunk and of two: 60 batch sizes keep no more buffers than the largest batch alone
    needs (and no BLAS scratch, which only a chunk of several tiles uses)."""
    network, X, Y = make_data(5, [30, 256, 128, 4], 600)
    trainer = Trainer(network, "relu", "softmax", batch_size=200)
    Xc, Yc, no_weights = trainer.prepare(X, Y)

    def buffer_bytes(work):
        return sum(array.nbytes for array in (work.works, work.grads, work.scratch,
                                              work.theta_copies, *work.state_copies))

    for size in [*range(1, 600, 10), 600]:
        trainer.batch_size = size
        trainer.run_epochs(Xc, Yc, no_weights, np.arange(600), 1e-3)
    largest = kernels.plan(network.units, 600, None, None)
    alone = _buffers.Workspace(network, largest, 2, batch_rows=600)
    assert buffer_bytes(trainer._workspace) <= buffer_bytes(alone)
    assert trainer._workspace.scratch.shape[1] < 64  # a cache line's worth: no products


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda X, Y, w, o: (X[:, :-1].copy(), Y, w, o), "features"),
        (lambda X, Y, w, o: (X, Y[:, :-1].copy(), w, o), "Y must have shape"),
        (lambda X, Y, w, o: (X, Y[:-1].copy(), w, o), "Y must have shape"),
        (lambda X, Y, w, o: (X, Y, np.ones(X.shape[0] - 1), o), "sample_weight has"),
        (lambda X, Y, w, o: (X, Y, w, o + X.shape[0]), "row indices"),
        (lambda X, Y, w, o: (X, Y, w, o - X.shape[0]), "row indices"),
        (lambda X, Y, w, o: (np.asfortranarray(X), Y, w, o), "C-contiguous"),
        (lambda X, Y, w, o: (X.astype(np.float32), Y, w, o), "float64 array"),
    ],
)
def test_the_engine_checks_every_shape_before_a_kernel_runs(change, message):
    network, X, Y = make_data(6, [4, 8, 3], 50)
    trainer = Trainer(network, "relu", "softmax", batch_size=16)
    Xc, Yc, no_weights = trainer.prepare(X, Y)
    before = network.theta.copy()
    args = change(Xc, Yc, no_weights, np.arange(50, dtype=np.int64))
    with pytest.raises(ValueError, match=message):
        trainer.run_epochs(*args[:3], args[3], 1e-2)
    np.testing.assert_array_equal(network.theta, before)
    with pytest.raises(ValueError, match="features"):
        kernels.predict(network, X[:, :3].copy(), "relu", "softmax")


def test_a_long_compile_is_announced_once(monkeypatch, capsys):
    from fastmlp.kernels import _calls

    monkeypatch.setattr(_calls, "ANNOUNCE_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(_calls, "_announced", threading.Event())
    with _calls.announced_compile():
        assert _calls._announced.wait(60)  # a compile that outlasts the delay
    with _calls.announced_compile():
        pass
    assert capsys.readouterr().err.count("fastmlp: compiling the engine's kernels") == 1
