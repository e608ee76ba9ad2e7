"""``fastmlp.profile`` on a user's estimator and data: what it returns and shows. How the
phases add up against each total is a measurement of time, shown in the committed
profiles of ``reports/`` (``python -m fastmlp profile``), never asserted here."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification

import fastmlp
from fastmlp import profiling


@pytest.fixture(autouse=True)
def no_warmup(monkeypatch):
    monkeypatch.setattr(profiling, "WARMUP_SECONDS", 0.0)


@pytest.fixture
def data():
    return make_classification(300, 6, n_informative=4, n_classes=3, random_state=0)


def check_profile(result, engines):
    assert list(result.phases) == engines
    for engine in engines:
        assert set(result.phases[engine]) == set(profiling.PHASES)
        assert all(seconds >= 0 for seconds in result.phases[engine].values())
        assert result.totals[engine] > 0
    raw = result.to_dict()
    assert set(raw) == set(engines)
    assert all(raw[engine]["total"] == result.totals[engine] for engine in engines)
    text = result.table()
    assert all(phase in text for phase in profiling.PHASES)
    assert "How each is measured" in text and str(result) == text


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_stochastic_fit_is_profiled_on_each_engine(data, solver, tmp_path):
    X, y = data
    estimator = fastmlp.MLPClassifier((16, 8), solver=solver, batch_size=64, random_state=0)
    before = clone(estimator).get_params()
    result = fastmlp.profile(estimator, X, y, repeats=1)
    check_profile(result, ["numba", "numpy", "scikit-learn"])
    assert result.unit == "epoch" and "6-16-8-3" in result.description
    assert estimator.get_params() == before and not hasattr(estimator, "coefs_")
    frame = result.to_frame()
    assert list(frame.index) == [*profiling.PHASES, "total"]
    assert list(frame.columns) == ["numba", "numpy", "scikit-learn"]
    figure = result.plot(tmp_path / "profile.png")
    assert (tmp_path / "profile.png").stat().st_size > 0 and len(figure.axes) == 3


def test_scikit_learn_is_left_out_where_it_lacks_the_settings(data):
    X, y = data
    result = fastmlp.profile(
        fastmlp.MLPRegressor(hidden_layer_sizes=(8,), activation="gelu"), X, y.astype(float),
        repeats=1,
    )
    check_profile(result, ["numba", "numpy"])
    assert "gelu" in result.skipped["scikit-learn"]
    assert "scikit-learn: not profiled" in result.table()


def test_an_lbfgs_fit_is_profiled_per_evaluation(data):
    X, y = data
    result = fastmlp.profile(fastmlp.MLPClassifier((8,), solver="lbfgs"), X, y, repeats=1,
                             engines=("numba", "numpy"))
    check_profile(result, ["numba", "numpy"])
    assert result.unit == "evaluation"


def test_sparse_and_float32_data(data):
    import scipy.sparse

    X, y = data
    X = np.where(np.abs(X) > 1, X, 0).astype(np.float32)
    result = fastmlp.profile(fastmlp.MLPClassifier((8,)), scipy.sparse.csr_matrix(X), y,
                             repeats=1, engines=("numba",))
    check_profile(result, ["numba"])
    assert "float32" in result.description


def test_what_the_phases_leave_of_the_total_is_reported_as_unaccounted():
    """Made-up times: the plain total is what was timed, never the phases' sum, and the
    difference is shown in the table, the dict and the DataFrame."""
    result = profiling.Profile("epoch", "made up")
    result.phases["numba"] = dict(zip(profiling.PHASES, [1e-3, 2e-3, 3e-3, 1e-3, 1e-3]))
    result.phases["numpy"] = dict(zip(profiling.PHASES, [2e-3, 4e-3, 6e-3, 2e-3, 1e-3]))
    result.totals = {"numba": 10e-3, "numpy": 14e-3}
    assert result.unaccounted == pytest.approx({"numba": 2e-3, "numpy": -1e-3}, abs=1e-15)
    raw = result.to_dict()
    assert raw["numba"]["total"] == 10e-3
    assert raw["numba"]["unaccounted"] == pytest.approx(2e-3, abs=1e-15)
    assert result.to_frame().attrs["unaccounted"] == result.unaccounted
    lines = result.table().splitlines()
    unaccounted_row = next(line for line in lines if line.startswith("unaccounted"))
    assert unaccounted_row.split()[1:] == ["2.000", "-1.000"]
    assert "numba: the phases add up to 8.000 ms, a plain epoch took 10.000 ms: +20.0 % " \
        "unaccounted" in lines
    assert "numpy: the phases add up to 15.000 ms, a plain epoch took 14.000 ms: -7.1 % " \
        "unaccounted" in lines


def test_the_numba_phases_are_differences_of_the_phase_runs_alone():
    """The plain epoch's time takes no part in the phases: a slower one changes none."""
    runs = {"gather": 3.0, "forward": 5.0, "backward": 9.0, "full": 10.0, "shuffle": 0.5,
            "call": 1.0}
    expected = {"batching": 2.5, "forward": 2.0, "backward": 4.0, "update": 1.0, "rest": 1.0}
    for plain in (10.5, 20.0):
        assert profiling._numba_phases({**runs, "plain": plain}, shuffled=True) == expected
    assert profiling._numba_phases({**runs, "plain": 1.0}, shuffled=False)["batching"] == 2.0


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_time_the_phases_miss_shows_as_unaccounted_not_as_rest(data, solver, monkeypatch):
    """On a clock that moves only when told (a microsecond a reading), the engine's
    loss-and-gradients call is made to take one more second. The phases of the reference
    engine time the forward and backward passes themselves, so that second is in the
    plain total alone (the epoch's one batch; an L-BFGS evaluation) and must show as
    unaccounted, not be absorbed into the rest."""
    from types import SimpleNamespace

    from fastmlp import reference

    now = [0.0]

    def clock():
        now[0] += 1e-6
        return now[0]

    original = reference.loss_and_gradients

    def one_second_slower(*args, **kwargs):
        now[0] += 1.0
        return original(*args, **kwargs)

    monkeypatch.setattr(profiling, "time", SimpleNamespace(perf_counter=clock))
    monkeypatch.setattr(reference, "loss_and_gradients", one_second_slower)
    X, y = data
    estimator = fastmlp.MLPClassifier((8,), solver=solver, batch_size=len(X), random_state=0)
    result = fastmlp.profile(estimator, X, y, repeats=1, engines=("numpy",))
    assert result.totals["numpy"] > 1.0
    assert result.phases["numpy"]["rest"] < 1e-3
    assert result.unaccounted["numpy"] == pytest.approx(1.0, abs=1e-3)
