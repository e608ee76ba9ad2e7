"""The prediction path (``fastmlp.kernels._predict``): what ``predict``, ``predict_proba``
and ``predict_log_proba`` run for a plain float array. Checked against the reference
engine's forward pass and scikit-learn's own ``predict_proba`` on the same weights, for
every activation and output, both dtypes, several depths and row counts on each side of
the path's thresholds (BLAS from 16 rows, threads from 8 tiles); and for what it must
hand back to scikit-learn's validation (NaN, infinities, other layouts and dtypes).

Tolerances: the kernels sum each product in another order than NumPy's BLAS (tiles of 4
inputs, vectorized), so float64 agrees to 1e-12 relative (a few hundred roundings of
1.1e-16 each on these widths) and float32 to 1e-5; equalities to the bit are asserted
only between two runs of the same kernels.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse
import sklearn
import sklearn.neural_network
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from conftest import (
    ALL_ACTIVATIONS,
    ALL_OUTPUTS,
    random_network,
    relative_error,
    traced_peak,
)
from fastmlp import _solvers, reference
from fastmlp.activations import HIDDEN_ACTIVATIONS, OUTPUTS
from fastmlp.kernels import _predict

TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}

#: Row counts: one row, under and at the BLAS threshold, one tile and more, and enough
#: tiles (of 256 loop rows or 512 BLAS rows) for the threads.
ROW_COUNTS = (1, 15, 16, 300, 4700)


def run(X, coefs, intercepts, activation, output, n_threads=2):
    return _predict.forward(X, tuple(coefs), tuple(intercepts),
                            HIDDEN_ACTIVATIONS[activation].code, OUTPUTS[output].code,
                            n_threads)


def reference_output(X, coefs, intercepts, activation, output):
    return reference.forward(coefs, intercepts, X, activation, output)[1][-1]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("units", [(2, 100, 2), (20, 64, 64, 64, 3), (5, 1), (40, 9, 30, 4),
                                   (300, 128, 10)])
@pytest.mark.parametrize("n_rows", ROW_COUNTS)
def test_the_prediction_path_equals_the_reference(rng, dtype, units, n_rows):
    """(300, 128, 10) has a layer of 38400 weights: from 16 rows it runs on BLAS."""
    coefs, intercepts = random_network(rng, units, dtype, scale=1 / np.sqrt(units[0]))
    X = rng.standard_normal((n_rows, units[0])).astype(dtype)
    for activation, output in (("relu", "softmax"), ("tanh", "logistic")):
        got = run(X, coefs, intercepts, activation, output)
        assert got.dtype == dtype and got.shape == (n_rows, units[-1])
        want = reference_output(X, coefs, intercepts, activation, output)
        assert relative_error(got, want) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
@pytest.mark.parametrize("output", ALL_OUTPUTS)
def test_every_activation_and_output(rng, dtype, activation, output):
    coefs, intercepts = random_network(rng, (6, 17, 11, 3), dtype)
    X = rng.standard_normal((37, 6)).astype(dtype)
    got = run(X, coefs, intercepts, activation, output)
    want = reference_output(X, coefs, intercepts, activation, output)
    assert relative_error(got, want) <= TOLERANCE[dtype]


@pytest.mark.parametrize("units", [(3, 50, 2), (300, 128, 10)])
def test_every_thread_count_gives_the_same_bits(rng, units):
    """The tiles are the rows', never the threads': each product sums in one order."""
    coefs, intercepts = random_network(rng, units, np.float64)
    X = rng.standard_normal((9000, units[0]))
    one = run(X, coefs, intercepts, "relu", "softmax", n_threads=1)
    two = run(X, coefs, intercepts, "relu", "softmax", n_threads=2)
    np.testing.assert_array_equal(one, two)


def test_layers_that_do_not_chain_are_refused_before_any_product(rng):
    coefs, intercepts = random_network(rng, (4, 8, 3))
    X = rng.standard_normal((5, 4))
    for bad_coefs, bad_intercepts in (
        ([coefs[0], coefs[1][:5]], intercepts),  # 8 outputs into 5 inputs
        (coefs, [intercepts[0][:6], intercepts[1]]),  # a short bias
        (coefs, intercepts[:1]),  # a layer without a bias
    ):
        with pytest.raises(ValueError, match="do not chain"):
            run(X, bad_coefs, bad_intercepts, "relu", "softmax")
    with pytest.raises(ValueError, match="do not chain"):
        run(X[:, :3].copy(), coefs, intercepts, "relu", "softmax")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_input_is_handed_back(rng, bad):
    coefs, intercepts = random_network(rng, (4, 8, 3))
    X = rng.standard_normal((700, 4))
    X[613, 2] = bad  # in the third tile, on the second thread
    assert run(X, coefs, intercepts, "relu", "softmax") is None


# --- through the estimators ----------------------------------------------------------------


def fitted(cls, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(max_iter=3, random_state=0, **params).fit(X, y)


def sklearn_twin(model):
    """scikit-learn's estimator with the fastmlp model's weights, to predict with."""
    name = type(model).__name__
    twin = getattr(sklearn.neural_network, name)(activation=model.activation)
    for attribute in ("coefs_", "intercepts_", "n_layers_", "n_outputs_", "out_activation_",
                      "n_features_in_"):
        setattr(twin, attribute, getattr(model, attribute))
    if name == "MLPClassifier":
        twin.classes_ = model.classes_
        twin._label_binarizer = model._label_binarizer
    return twin


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("n_rows", [1, 5000])
def test_classifier_predictions_are_scikit_learns(rng, dtype, n_classes, n_rows):
    X = rng.standard_normal((400, 7)).astype(dtype)
    y = rng.integers(0, n_classes, 400)
    model = fitted(fastmlp.MLPClassifier, X, y, hidden_layer_sizes=(30, 20))
    twin = sklearn_twin(model)
    X_new = rng.standard_normal((n_rows, 7)).astype(dtype)
    assert _solvers.forward_plain_rows("numba", model.coefs_, model.intercepts_, X_new,
                                       model.activation, model.out_activation_, None) is not None
    proba = model.predict_proba(X_new)
    assert proba.dtype == dtype and proba.shape == (n_rows, n_classes)
    assert relative_error(proba, twin.predict_proba(X_new)) <= TOLERANCE[dtype]
    assert relative_error(model.predict_log_proba(X_new),
                          twin.predict_log_proba(X_new)) <= 10 * TOLERANCE[dtype]
    np.testing.assert_array_equal(model.predict(X_new), twin.predict(X_new))


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_predictions_are_scikit_learns(rng, loss):
    X = rng.standard_normal((300, 5))
    y = np.abs(rng.standard_normal((300, 2)))
    model = fitted(fastmlp.MLPRegressor, X, y, hidden_layer_sizes=(16,), loss=loss)
    twin = sklearn_twin(model)
    for X_new in (X[:1], rng.standard_normal((3000, 5))):
        assert relative_error(model.predict(X_new), twin.predict(X_new)) <= 1e-12


def test_every_other_input_takes_the_validated_path_to_the_same_outputs(rng):
    """Lists, other layouts and dtypes, sparse matrices and data frames are validated by
    scikit-learn and predicted on the general path: the same probabilities."""
    X = rng.standard_normal((200, 4))
    model = fitted(fastmlp.MLPClassifier, X, rng.integers(0, 3, 200))
    plain = model.predict_proba(X)
    for other in (X.tolist(), np.asfortranarray(X), X[:, ::-1][:, ::-1], X.astype(np.float32),
                  (X * 8).astype(np.int64) / 8, scipy.sparse.csr_matrix(X)):
        if isinstance(other, np.ndarray) and other.dtype == np.float64 and other.flags.c_contiguous:
            continue
        assert _solvers.forward_plain_rows("numba", model.coefs_, model.intercepts_, other,
                                           "relu", "softmax", None) is None
        tolerance = 1e-6 if getattr(other, "dtype", None) == np.float32 else 1e-12
        assert relative_error(model.predict_proba(other), plain) <= tolerance


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_rows_get_scikit_learns_error(rng, bad):
    X = rng.standard_normal((300, 4))
    model = fitted(fastmlp.MLPClassifier, X, rng.integers(0, 2, 300))
    X_bad = X.copy()
    X_bad[-1, 0] = bad
    word = "NaN" if np.isnan(bad) else "infinity"
    for method in (model.predict, model.predict_proba, model.predict_log_proba):
        with pytest.raises(ValueError, match=f"Input X contains {word}"):
            method(X_bad)
    with sklearn.config_context(assume_finite=True):  # then no check, as in scikit-learn
        proba = model.predict_proba(X_bad)
        twin = sklearn_twin(model).predict_proba(X_bad)
    assert relative_error(proba[:-1], twin[:-1]) <= 1e-12


def test_overflowing_but_finite_rows_are_predicted(rng):
    """The path's sum of a tile's inputs overflows on huge finite values: it hands them to
    the validation, which finds them finite, and they are predicted."""
    X = rng.standard_normal((50, 3))
    model = fitted(fastmlp.MLPClassifier, X, rng.integers(0, 2, 50))
    X_big = np.full((4, 3), 1e308)
    assert np.isfinite(model.predict_proba(X_big)).all()


def test_feature_names_and_the_input_are_respected(rng):
    pandas = pytest.importorskip("pandas")
    X = rng.standard_normal((100, 3))
    frame = pandas.DataFrame(X, columns=["a", "b", "c"])
    model = fitted(fastmlp.MLPClassifier, frame, rng.integers(0, 2, 100))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        model.predict(X)
    with pytest.raises(ValueError, match="X has 2 features, but MLPClassifier is expecting 3"):
        model.predict_proba(X[:, :2].copy())
    before = X.copy()
    model.predict_proba(X)
    np.testing.assert_array_equal(X, before)


def test_coefs_changed_after_fit_are_used(rng):
    """No copy of the weights is kept between calls: edits to ``coefs_`` count."""
    X = rng.standard_normal((100, 3))
    model = fitted(fastmlp.MLPRegressor, X, rng.standard_normal(100))
    model.coefs_[-1][...] = 0
    model.intercepts_[-1][...] = 2.5
    np.testing.assert_array_equal(model.predict(X), np.full(100, 2.5))


def test_an_unfitted_model_raises_scikit_learns_error():
    from sklearn.exceptions import NotFittedError

    for method in ("predict", "predict_proba"):
        with pytest.raises(NotFittedError, match="is not fitted yet"):
            getattr(fastmlp.MLPClassifier(), method)(np.ones((1, 2)))


def test_predict_takes_no_more_memory_than_scikit_learn(rng):
    """Bytes, not time: the outputs and one tile's buffers per thread, where scikit-learn
    holds every hidden layer's values for all rows (20000 x 256 floats here)."""
    X = rng.standard_normal((600, 64))
    model = fitted(fastmlp.MLPClassifier, X, rng.integers(0, 10, 600),
                   hidden_layer_sizes=(256, 128))
    twin = sklearn_twin(model)
    X_new = rng.standard_normal((20000, 64))
    model.predict_proba(X_new[:100])  # compiled and loaded before tracing
    ours, _ = traced_peak(lambda: model.predict_proba(X_new))
    theirs, _ = traced_peak(lambda: twin.predict_proba(X_new))
    assert ours <= theirs, (ours, theirs)


def test_threads_predicting_at_once_each_get_their_rows_outputs(rng):
    """The compiled code runs without the GIL: four Python threads predicting with one
    model at once (as a threaded server does), each on rows of its own, get what one
    thread alone gets, to the bit."""
    from concurrent.futures import ThreadPoolExecutor

    X = rng.standard_normal((300, 6))
    model = fitted(fastmlp.MLPClassifier, X, rng.integers(0, 3, 300), hidden_layer_sizes=(40,))
    batches = [rng.standard_normal((rows, 6)) for rows in (1, 7, 3000, 1, 5000, 64) * 4]
    alone = [model.predict_proba(batch) for batch in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(model.predict_proba, batches))
    for got, want in zip(together, alone):
        np.testing.assert_array_equal(got, want)


def test_weights_the_compiled_path_cannot_take_go_the_general_way(rng):
    """A network whose arrays are not one Numba type each (a 1-d coef, a 2-d intercept,
    read-only or unaligned arrays, no layers) is handed to the general path, which
    predicts or names what is wrong; nothing reaches the compiled code to fail there."""
    X = rng.standard_normal((20, 4))
    model = fitted(fastmlp.MLPRegressor, X, rng.standard_normal(20), hidden_layer_sizes=(5,))
    want = model.predict(X)
    read_only = [c.copy() for c in model.coefs_]
    read_only[0].flags.writeable = False
    raw = np.zeros(model.coefs_[1].size * 8 + 1, dtype=np.uint8)
    unaligned = raw[1:].view(np.float64).reshape(model.coefs_[1].shape)
    unaligned[...] = model.coefs_[1]
    for coefs in (read_only, [model.coefs_[0], unaligned]):
        assert _solvers.forward_plain_rows("numba", coefs, model.intercepts_, X, "relu",
                                           "identity", None) is None
        model.coefs_ = coefs
        assert relative_error(model.predict(X), want) <= 1e-12
    for coefs, intercepts in (([], []), ([np.ones(4)], [np.ones(1)]),
                              ([np.ones((4, 1))], [np.ones((1, 1))])):
        assert _solvers.forward_plain_rows("numba", coefs, intercepts, X, "relu", "identity",
                                           None) is None
        model.coefs_, model.intercepts_ = coefs, intercepts
        with pytest.raises(ValueError):
            model.predict(X)
