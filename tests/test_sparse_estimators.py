"""The estimators on sparse X: the dense fit's model, and no dense copy of X (memory
measured in bytes with tracemalloc, which NumPy and SciPy report their arrays to)."""

import warnings

import numpy as np
import pytest
import scipy.sparse
import sklearn.neural_network
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from conftest import relative_error, traced_peak

MB = 1e6


def quietly(fit, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit(*args)


def sparse_data(rows, features, density, seed=0, dtype=np.float64):
    X = scipy.sparse.random(rows, features, density=density, format="csr",
                            random_state=seed, dtype=dtype)
    y = np.random.default_rng(seed).integers(0, 3, rows)
    return X, y


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_a_sparse_fit_is_the_dense_fit(fmt, solver, dtype):
    """The first layer sums a row's nonzeros where the dense loops sum every feature
    (adding zeros, which changes nothing) in another order: rounding of the sums only,
    float64 1e-12 and float32 1e-5 after a few epochs."""
    X, y = sparse_data(300, 40, 0.1, dtype=dtype)
    params = dict(hidden_layer_sizes=(16, 8), solver=solver, max_iter=5, random_state=0)
    sparse = quietly(fastmlp.MLPClassifier(**params).fit, X.asformat(fmt), y)
    dense = quietly(fastmlp.MLPClassifier(**params).fit, X.toarray(), y)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in zip(sparse.coefs_ + sparse.intercepts_, dense.coefs_ + dense.intercepts_):
        assert a.dtype == b.dtype
        assert relative_error(a, b) <= tolerance
    assert relative_error(sparse.predict_proba(X.asformat(fmt)),
                          dense.predict_proba(X.toarray())) <= tolerance


def test_a_sparse_regressor_with_early_stopping_is_the_dense_one():
    X, _ = sparse_data(400, 30, 0.2, seed=1)
    y = np.asarray(X.sum(axis=1)).ravel()
    params = dict(hidden_layer_sizes=(12,), early_stopping=True, max_iter=8, random_state=0)
    sparse = quietly(fastmlp.MLPRegressor(**params).fit, X, y)
    dense = quietly(fastmlp.MLPRegressor(**params).fit, X.toarray(), y)
    np.testing.assert_allclose(sparse.validation_scores_, dense.validation_scores_,
                               rtol=1e-12)
    assert relative_error(sparse.predict(X), dense.predict(X.toarray())) <= 1e-12


def test_sparse_fit_and_predict_need_no_more_memory_than_sklearn():
    """20000 x 10000 at 0.1 % density (2.4 MB of values and indices), where a dense copy
    would take 1.6 GB: fit and predict peak no higher than scikit-learn's plus 10 MB."""
    X, y = sparse_data(20000, 10000, 0.001)
    quietly(fastmlp.MLPClassifier((100,), max_iter=1).fit, X[:300], y[:300])  # compiled
    peaks = {}
    for name, cls in (("fastmlp", fastmlp.MLPClassifier),
                      ("scikit-learn", sklearn.neural_network.MLPClassifier)):
        fit, model = traced_peak(lambda cls=cls: quietly(cls((100,), max_iter=1,
                                                            random_state=0).fit, X, y))
        predict, _ = traced_peak(lambda model=model: model.predict_proba(X))
        peaks[name] = (fit, predict)
    (fit, predict), (sk_fit, sk_predict) = peaks["fastmlp"], peaks["scikit-learn"]
    assert fit <= sk_fit + 10 * MB, (fit / MB, sk_fit / MB)
    assert predict <= sk_predict + 10 * MB, (predict / MB, sk_predict / MB)
