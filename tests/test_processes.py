"""fastmlp in other processes and under signals: a forked child after a threaded fit,
scikit-learn's grid search on each joblib backend, and Ctrl-C in the middle of an epoch.

Each case runs in a process of its own, so that what it does to the process (a fork,
a signal, a pool of workers) cannot reach the test runner. The subprocess timeouts only
stop a hang from stalling the suite; nothing here depends on how fast anything runs.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from numba import config

ROOT = Path(__file__).resolve().parent.parent
HANG = 900  # seconds: far beyond any of these runs, even on a loaded machine


def run_python(code, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=HANG, **kwargs)


FIT = """
import hashlib, json, os, warnings
import numpy as np
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
import fastmlp

X, y = make_classification(800, 16, n_classes=3, n_informative=8, random_state=0)

def fitted_digest(n_threads, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastmlp.MLPClassifier((64, 32), max_iter=8, random_state=0,
                                      n_threads=n_threads, **params).fit(X, y)
    weights = np.concatenate([c.ravel() for c in model.coefs_ + model.intercepts_])
    return hashlib.sha256(weights.tobytes()).hexdigest()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_fits_the_parents_model():
    """GNU OpenMP cannot run in a child forked after the parent ran its threads (Numba
    then kills the child); the child runs the engine on one thread instead, and the
    chunks and sums being the data's, it gets the parent's weights to the bit."""
    done = run_python(FIT + textwrap.dedent("""
    parent = fitted_digest(2)  # threads ran in this process
    parent_lbfgs = fitted_digest(2, solver="lbfgs")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        message = fitted_digest(2) + " " + fitted_digest(None, solver="lbfgs")
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1000).decode()
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status, "child": child, "parent": parent + " " + parent_lbfgs}))
    """))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] == 0, done.stderr
    assert result["child"] == result["parent"]


GRID_SEARCH = FIT + """
import sys
import joblib
from sklearn.model_selection import GridSearchCV

fitted_digest(2)  # the parent's threads have run before the workers start
grid = {"alpha": [1e-4, 1e-2], "hidden_layer_sizes": [(16,), (32, 8)]}

def scores(n_jobs):
    search = GridSearchCV(fastmlp.MLPClassifier(max_iter=5, random_state=0), grid, cv=2,
                          n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    return search.cv_results_["mean_test_score"].tolist()

with joblib.parallel_backend(sys.argv[1]):
    parallel = scores(2)
print(json.dumps({"parallel": parallel, "serial": scores(1)}))
"""


@pytest.mark.parametrize("backend", ["loky", "multiprocessing", "threading"])
def test_grid_search_runs_on_every_joblib_backend(backend):
    """Two jobs, after threaded fits in the parent: the multiprocessing backend forks
    it. Every backend gives the scores of one job."""
    done = subprocess.run(
        [sys.executable, "-c", GRID_SEARCH, backend], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=HANG,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["parallel"] == result["serial"]


INTERRUPTED = """
import json, signal, sys, warnings
import numpy as np
# Ctrl-C as in a terminal, however the suite was started: a process started in the
# background by a shell without job control (`cmd &` in a script) inherits SIGINT
# ignored, and Python then installs no handler for it.
signal.signal(signal.SIGINT, signal.default_int_handler)
import fastmlp
from fastmlp.kernels import _api

rng = np.random.default_rng(0)
X = rng.standard_normal((1_000_000, 40))
y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
# A small fit first, so that the fit below compiles nothing.
fastmlp.MLPClassifier((256,), max_iter=1, random_state=0).fit(X[:500], y[:500])

call = _api.Trainer._call
def announced(self, *args, **kwargs):
    if not announced.done:  # the engine is running: the parent may send Ctrl-C
        announced.done = True
        print("training", flush=True)
    return call(self, *args, **kwargs)
announced.done = False
_api.Trainer._call = announced

model = fastmlp.MLPClassifier((256,), max_iter=50, random_state=0)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.fit(X, y)
engine = model._optimizer.coefs
print(json.dumps({
    "warnings": [str(w.message) for w in caught],
    "n_iter": model.n_iter_,
    "curve": len(model.loss_curve_),
    "weights_are_the_engines": all(np.array_equal(a, b) for a, b in zip(model.coefs_, engine)),
    "finite": bool(all(np.isfinite(c).all() for c in model.coefs_)),
    "predicts": len(model.predict(X[:10])),
}), flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_in_a_long_epoch_stops_the_fit_there():
    """A real SIGINT once the engine runs, in the first of epochs of a million rows (5000
    batches): the engine returns within its current call (at most about 0.1 s of
    batches), and the estimator keeps what was done, as scikit-learn's does: no epoch
    completed, so ``n_iter_`` 0 and an empty loss curve, with the weights of the
    batches that ran, and scikit-learn's warning."""
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "training", child.stderr.read()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=HANG)
    finally:
        child.kill()
    assert child.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["warnings"] == ["Training interrupted by user."]
    assert result["n_iter"] == result["curve"] == 0
    assert result["weights_are_the_engines"] and result["finite"]
    assert result["predicts"] == 10


@pytest.mark.parametrize("collector", ["on", "off"])
def test_import_and_first_fit_leave_the_garbage_collector_as_they_found_it(collector):
    """fastmlp holds the collector off while it imports and loads its kernels
    (``fastmlp._gc``), and gives it back as it was: on, or off where the user had it
    off."""
    code = textwrap.dedent(f"""
        import gc
        if "{collector}" == "off":
            gc.disable()
        import numpy as np
        import fastmlp
        after_import = gc.isenabled()
        X = np.random.default_rng(0).standard_normal((40, 3))
        fastmlp.MLPClassifier(max_iter=2).fit(X, X[:, 0] > 0)
        print(after_import, gc.isenabled())
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    expected = "True True" if collector == "on" else "False False"
    assert done.stdout.split() == expected.split()


COLD_FIT = """
import hashlib, json, os, signal, subprocess, sys, warnings
import numpy as np
import fastmlp
from fastmlp.cli import moons_data
from fastmlp.kernels import _beside, _epochs

_beside._usable_cpus = lambda: 2  # (the helper runs on a machine of one core, too)
HELPER_PID = os.path.join(os.environ["NUMBA_CACHE_DIR"], "helper.pid")
case = sys.argv[1]
if case == "fails":
    _beside._HELPER = "import sys; sys.exit(3)"
if case in ("hangs", "ctrl-c"):
    _beside.WAIT_SECONDS = 1 if case == "hangs" else 600
    _beside._HELPER = (f"import os, time; open({HELPER_PID!r}, 'w').write(str(os.getpid()))"
                       "; time.sleep(600)")
if case == "ctrl-c":  # SIGINT as this process starts waiting for the helper (once)
    waiting = subprocess.Popen.wait
    def interrupted_wait(self, timeout=None):
        subprocess.Popen.wait = waiting
        os.kill(os.getpid(), signal.SIGINT)
        return waiting(self, timeout)
    subprocess.Popen.wait = interrupted_wait

X, _, y, _ = moons_data()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = fastmlp.MLPClassifier(max_iter=2, random_state=0).fit(X, y)
weights = np.concatenate([c.ravel() for c in model.coefs_ + model.intercepts_])
helper_alive = None
if os.path.exists(HELPER_PID):
    try:
        os.kill(int(open(HELPER_PID).read()), 0)
        helper_alive = True
    except ProcessLookupError:
        helper_alive = False
stats = _epochs._member_epochs.stats
driver = _epochs.train_epochs_alone.stats
print(json.dumps({
    "digest": hashlib.sha256(weights.tobytes()).hexdigest(),
    "n_iter": model.n_iter_,
    "interrupted": any("interrupted" in str(w.message) for w in caught),
    "loaded": sum(stats.cache_hits.values()),
    "compiled": sum(stats.cache_misses.values()),
    "driver": [sum(driver.cache_hits.values()), sum(driver.cache_misses.values())],
    "helper_alive": helper_alive,
    "cached": sorted(os.listdir(stats.cache_path)),
}))
"""


def _cold_fit(case, cache, **environment):
    """A first fit of the notebook's network in a new process, on an empty Numba cache."""
    cache.mkdir()
    env = {key: value for key, value in os.environ.items()
           if key != "FASTMLP_COMPILE_PROCESSES"}
    env.update(PYTHONPATH=str(ROOT), NUMBA_CACHE_DIR=str(cache), **environment)
    done = subprocess.run([sys.executable, "-c", COLD_FIT, case], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(config.DISABLE_JIT, reason="compiles")
def test_a_first_fit_compiles_in_two_processes_to_the_same_model(tmp_path):
    """On an empty cache, a fit's epochs kernel and its driver compile in a helper
    process while the fit compiles its tile's kernel and step, then load from the cache:
    the same model to the bit as a fit that compiles all in one process
    (``FASTMLP_COMPILE_PROCESSES=1``). The helper saves only those two to the cache, not
    the functions they call (compiled in both processes: see
    ``fastmlp.kernels._beside``)."""
    two = _cold_fit("two", tmp_path / "two")
    one = _cold_fit("one", tmp_path / "one", FASTMLP_COMPILE_PROCESSES="1")
    assert (two["loaded"], two["compiled"]) == (1, 0)  # the helper compiled them
    assert two["driver"] == [1, 0]
    assert (one["loaded"], one["compiled"]) == (0, 1) and one["driver"] == [0, 1]
    assert two["digest"] == one["digest"] and two["n_iter"] == one["n_iter"] == 2

    def saved(listing, function):
        return any(name.startswith(f"_epochs.{function}-") for name in listing)

    assert saved(two["cached"], "_member_epochs") and saved(one["cached"], "_member_epochs")
    assert saved(one["cached"], "_sum_and_step") and not saved(two["cached"], "_sum_and_step")


@pytest.mark.skipif(config.DISABLE_JIT, reason="compiles")
@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_a_helper_that_fails_hangs_or_is_interrupted_leaves_the_fit_whole(tmp_path):
    """Where the helper fails, the fit compiles its kernels itself; where it is not done
    in ``WAIT_SECONDS``, it is killed and the fit compiles them; Ctrl-C while the fit
    waits for it kills it too, and stops the fit as Ctrl-C in training does. The model
    is the one of a fit that compiled all in one process."""
    one = _cold_fit("one", tmp_path / "one", FASTMLP_COMPILE_PROCESSES="1")
    fails = _cold_fit("fails", tmp_path / "fails")
    hangs = _cold_fit("hangs", tmp_path / "hangs")
    for result in (fails, hangs):
        assert (result["loaded"], result["compiled"]) == (0, 1) and result["driver"] == [0, 1]
        assert result["digest"] == one["digest"] and result["n_iter"] == 2
    assert fails["helper_alive"] is None and hangs["helper_alive"] is False
    interrupted = _cold_fit("ctrl-c", tmp_path / "ctrl-c")
    assert interrupted["helper_alive"] is False
    assert interrupted["interrupted"] and interrupted["n_iter"] == 0


def test_the_helper_runs_only_where_it_can_help(monkeypatch):
    """No helper where the JIT is off, with FASTMLP_COMPILE_PROCESSES=1, on one core (or
    a container's quota of one), or where ``sys.executable`` is no Python interpreter
    (a frozen application, an embedding host); and the quota read from cgroup's
    ``cpu.max``."""
    from fastmlp.kernels import _beside

    monkeypatch.delenv("FASTMLP_COMPILE_PROCESSES", raising=False)
    monkeypatch.setattr(_beside, "_usable_cpus", lambda: 2)
    monkeypatch.setattr(sys, "executable", "/opt/venv/bin/python3.11")
    monkeypatch.setattr(config, "DISABLE_JIT", False)
    assert _beside.wanted()
    with monkeypatch.context() as changed:
        changed.setenv("FASTMLP_COMPILE_PROCESSES", "1")
        assert not _beside.wanted()
    with monkeypatch.context() as changed:
        changed.setattr(_beside, "_usable_cpus", lambda: 1)
        assert not _beside.wanted()
    with monkeypatch.context() as changed:
        changed.setattr(config, "DISABLE_JIT", True)
        assert not _beside.wanted()
    for host in ("/usr/bin/uwsgi", "/opt/blender/blender", ""):
        with monkeypatch.context() as changed:
            changed.setattr(sys, "executable", host)
            assert not _beside.wanted()
    with monkeypatch.context() as changed:
        changed.setattr(sys, "frozen", True, raising=False)
        assert not _beside.wanted()
    assert _beside.cgroup_cpus("max 100000\n") is None
    assert _beside.cgroup_cpus("150000 100000\n") == 1
    assert _beside.cgroup_cpus("400000 100000") == 4
    assert _beside.cgroup_cpus("50000 100000") == 1
    assert _beside.cgroup_cpus("") is None and _beside.cgroup_cpus("x y") is None


def test_the_helper_gets_this_processes_numba_settings(monkeypatch):
    """The Numba settings that change the machine code but not the cache's key reach
    the helper as this process has them, set in code after the import included (an
    optimisation level of "max" as itself)."""
    from numba.core.config import _OptLevel

    from fastmlp.kernels import _beside

    monkeypatch.setattr(config, "OPT", _OptLevel("max"))
    monkeypatch.setattr(config, "BOUNDSCHECK", 1)
    monkeypatch.setattr(config, "SLP_VECTORIZE", 1)
    monkeypatch.setattr(config, "CACHE_DIR", "/some/cache")
    environment = _beside._helper_environment()
    assert environment["NUMBA_OPT"] == "max" and environment["NUMBA_BOUNDSCHECK"] == "1"
    assert environment["NUMBA_SLP_VECTORIZE"] == "1"
    assert environment["NUMBA_CACHE_DIR"] == "/some/cache"
    assert environment["FASTMLP_COMPILE_PROCESSES"] == "1"  # (no helper of its own)
    monkeypatch.setattr(config, "BOUNDSCHECK", None)
    monkeypatch.setenv("NUMBA_BOUNDSCHECK", "1")
    assert "NUMBA_BOUNDSCHECK" not in _beside._helper_environment()


def test_no_library_call_runs_a_kernel_through_its_python_entry():
    """Fits (each solver, dense and sparse, a regressor), predict, partial_fit and
    fastmlp.profile call the kernels as compiled for them: none goes through the
    compiled caller made for a function without the wrapper for Python (``_calls.jit``),
    which tests and benchmarks use."""
    done = run_python(textwrap.dedent("""
        import sys, warnings
        import numpy as np
        import scipy.sparse as sp
        import fastmlp
        from numba.core.registry import CPUDispatcher
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(0)
        X = rng.standard_normal((300, 6))
        y = (X[:, 0] > 0).astype(int)
        for solver in ("adam", "sgd", "lbfgs"):
            model = fastmlp.MLPClassifier((8, 4), solver=solver, max_iter=3).fit(X, y)
            model.predict_proba(X)
        fastmlp.MLPClassifier(max_iter=3).fit(X[:, :2], y).predict(X[:, :2])
        fastmlp.MLPClassifier(max_iter=3).fit(sp.csr_matrix(X), y).predict(sp.csr_matrix(X))
        fastmlp.MLPRegressor(hidden_layer_sizes=(8,), max_iter=3).fit(X, X[:, 1]).partial_fit(
            X, X[:, 1])
        fastmlp.profile(fastmlp.MLPClassifier((8,), max_iter=3), X, y, repeats=1)
        entered = sorted(
            f"{name}.{key}" for name, module in list(sys.modules.items())
            if name.startswith("fastmlp.kernels.")
            for key, value in vars(module).items()
            if isinstance(value, CPUDispatcher) and "_python_entry" in value.__dict__)
        print(entered)
    """))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[]"
