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
