"""MLPClassifier / MLPRegressor give scikit-learn's results, on both engines."""

import warnings

import numpy as np
import pytest
import scipy.sparse
from sklearn import neural_network as sk
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data

import fastmlp

BACKENDS = ["numba", "numpy"]
# Same operations, the numba engine summing in another order: float64 roundings that
# 20 epochs of training amplify to ~1e-12 at most.
PARITY_RTOL = 1e-6


def max_relative_difference(ours, theirs):
    return max(
        np.max(np.abs(a - b)) / np.max(np.abs(b))
        for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_)
    )


def fit_both(kind, X, y, sample_weight=None, backend="numba", **params):
    ours_cls = fastmlp.MLPClassifier if kind == "classifier" else fastmlp.MLPRegressor
    theirs_cls = sk.MLPClassifier if kind == "classifier" else sk.MLPRegressor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = ours_cls(backend=backend, **params).fit(X, y, sample_weight=sample_weight)
        theirs = theirs_cls(**params).fit(X, y, sample_weight=sample_weight)
    return ours, theirs


def assert_same_fit(ours, theirs, X):
    assert max_relative_difference(ours, theirs) <= PARITY_RTOL
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_ if hasattr(theirs, "t_") else True
    for name in ("n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert getattr(ours, name) == getattr(theirs, name)
    if hasattr(theirs, "loss_curve_"):
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=PARITY_RTOL)
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=PARITY_RTOL) if (
            theirs.best_loss_ is not None) else ours.best_loss_ is None
    if getattr(theirs, "validation_scores_", None) is not None:
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
        assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=PARITY_RTOL)
    if isinstance(ours, fastmlp.MLPClassifier):
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    else:
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=PARITY_RTOL)


@pytest.fixture(scope="module")
def three_classes():
    return make_classification(300, 8, n_informative=5, n_classes=3, random_state=0)


CLASSIFIER_SETTINGS = {
    "adam": dict(solver="adam"),
    "sgd nesterov": dict(solver="sgd", learning_rate_init=0.05),
    "sgd invscaling": dict(solver="sgd", nesterovs_momentum=False, learning_rate="invscaling"),
    "sgd adaptive": dict(solver="sgd", learning_rate="adaptive", tol=1e-2, n_iter_no_change=2),
    "early stopping": dict(solver="adam", early_stopping=True, validation_fraction=0.2),
    "no shuffle, batch 37": dict(solver="adam", shuffle=False, batch_size=37),
    "tanh, alpha": dict(solver="adam", activation="tanh", alpha=0.1),
    "logistic": dict(solver="sgd", activation="logistic", momentum=0.5),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("setting", sorted(CLASSIFIER_SETTINGS))
def test_classifier_matches_sklearn(three_classes, backend, setting):
    X, y = three_classes
    ours, theirs = fit_both("classifier", X, y, backend=backend, hidden_layer_sizes=(16, 8),
                            max_iter=20, random_state=1, **CLASSIFIER_SETTINGS[setting])
    assert_same_fit(ours, theirs, X)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6,
                               atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_string_labels_with_sample_weights(backend):
    X, y = make_classification(250, 5, random_state=3)
    labels = np.array(["no", "yes"])[y]
    weights = np.random.default_rng(0).uniform(0.2, 3, len(y))
    ours, theirs = fit_both("classifier", X, labels, weights, backend=backend,
                            hidden_layer_sizes=(12,), max_iter=15, random_state=0)
    assert_same_fit(ours, theirs, X)
    assert ours.out_activation_ == "logistic" and list(ours.classes_) == ["no", "yes"]
    np.testing.assert_allclose(ours.predict_log_proba(X), theirs.predict_log_proba(X),
                               rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_multilabel(backend):
    X, _ = make_classification(200, 6, random_state=4)
    Y = (np.random.default_rng(1).random((200, 3)) < 0.4).astype(int)
    ours, theirs = fit_both("classifier", X, Y, backend=backend, hidden_layer_sizes=(10,),
                            max_iter=15, random_state=2, early_stopping=True)
    assert_same_fit(ours, theirs, X)


@pytest.mark.parametrize("backend", BACKENDS)
def test_early_stopping_with_sample_weights_digits(backend):
    X, y = load_digits(return_X_y=True)
    X = X[:600] / 16
    weights = np.random.default_rng(2).uniform(0.5, 2, 600)
    ours, theirs = fit_both("classifier", X, y[:600], weights, backend=backend,
                            hidden_layer_sizes=(32,), max_iter=12, random_state=5,
                            early_stopping=True, n_iter_no_change=3)
    assert_same_fit(ours, theirs, X)
    assert len(ours.validation_loss_curve_) == ours.n_iter_


REGRESSOR_SETTINGS = {
    "squared adam": dict(solver="adam"),
    "squared sgd": dict(solver="sgd", learning_rate_init=1e-3),
    "poisson adam": dict(solver="adam", loss="poisson"),
    "early stopping": dict(solver="adam", early_stopping=True),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("setting", sorted(REGRESSOR_SETTINGS))
def test_regressor_matches_sklearn(backend, setting):
    X, y = make_regression(200, 6, n_targets=2, noise=1.0, random_state=0)
    y = y / y.std()
    params = REGRESSOR_SETTINGS[setting]
    if params.get("loss") == "poisson":
        y = np.abs(y)
    ours, theirs = fit_both("regressor", X, y, backend=backend, hidden_layer_sizes=(12, 6),
                            max_iter=20, random_state=3, **params)
    assert_same_fit(ours, theirs, X)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_lbfgs_reaches_sklearn_loss(backend, kind, three_classes):
    X, y = three_classes
    ours, theirs = fit_both(kind, X, y, backend=backend, solver="lbfgs",
                            hidden_layer_sizes=(10,), max_iter=50, random_state=0)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_fit_matches_sklearn(backend, three_classes):
    X, y = three_classes
    ours = fastmlp.MLPClassifier(hidden_layer_sizes=(8,), random_state=0, backend=backend)
    theirs = sk.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    for start in range(0, 300, 100):
        ours.partial_fit(X[start:start + 100], y[start:start + 100], classes=[0, 1, 2])
        theirs.partial_fit(X[start:start + 100], y[start:start + 100], classes=[0, 1, 2])
    assert max_relative_difference(ours, theirs) <= PARITY_RTOL
    assert ours.loss_curve_ == pytest.approx(theirs.loss_curve_, rel=PARITY_RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_warm_start_continues_like_sklearn(backend, three_classes):
    X, y = three_classes
    params = dict(hidden_layer_sizes=(8,), random_state=0, max_iter=5, warm_start=True)
    ours = fastmlp.MLPClassifier(backend=backend, **params)
    theirs = sk.MLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(2):
            ours.fit(X, y)
            theirs.fit(X, y)
    assert max_relative_difference(ours, theirs) <= PARITY_RTOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pickled_estimator_trains_on_as_the_original(backend, three_classes):
    """An unpickled estimator goes on with partial_fit and warm-started fits exactly as
    the original does: its solver's weights are still the ones it trains."""
    import pickle

    X, y = three_classes
    original = fastmlp.MLPClassifier(hidden_layer_sizes=(8,), random_state=0, max_iter=3,
                                     warm_start=True, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        original.fit(X, y)
        copy = pickle.loads(pickle.dumps(original))
        for each in (original, copy):
            each.partial_fit(X, y)
            each.partial_fit(X, y)
            each.fit(X, y)
    for got, want in zip(copy.coefs_ + copy.intercepts_,
                         original.coefs_ + original.intercepts_):
        np.testing.assert_array_equal(got, want)
    assert copy.loss_curve_ == original.loss_curve_


def test_float32_trains_in_float32(three_classes):
    X, y = three_classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastmlp.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
        model.fit(X.astype(np.float32), y)
        reference = sk.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
        reference.fit(X.astype(np.float32), y)
    assert all(c.dtype == np.float32 for c in model.coefs_ + model.intercepts_)
    assert model.predict_proba(X.astype(np.float32)).dtype == np.float32
    # float32 roundings over 5 epochs of Adam
    assert max_relative_difference(model, reference) <= 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_input_gives_the_dense_result(backend, three_classes):
    X, y = three_classes
    X = np.where(np.abs(X) < 0.5, 0, X)
    params = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = fastmlp.MLPClassifier(**params).fit(X, y)
        for fmt in ("csr", "csc"):
            X_sparse = scipy.sparse.csr_matrix(X).asformat(fmt)
            sparse = fastmlp.MLPClassifier(**params).fit(X_sparse, y)
            # The Numba engine sums a sparse row's nonzeros, the dense loops every
            # feature, in orders that vectorize differently (bounds-checked code
            # vectorizes otherwise again): equal to float64 rounding.
            assert max_relative_difference(sparse, dense) <= 1e-12
            np.testing.assert_allclose(sparse.predict_proba(scipy.sparse.csr_matrix(X)),
                                       dense.predict_proba(X), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("activation", ["leaky_relu", "gelu", "silu"])
def test_extra_activations_agree_across_engines(activation, three_classes):
    X, y = three_classes
    params = dict(hidden_layer_sizes=(16, 8), activation=activation, max_iter=30,
                  learning_rate_init=0.02, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fast = fastmlp.MLPClassifier(backend="numba", **params).fit(X, y)
        ref = fastmlp.MLPClassifier(backend="numpy", **params).fit(X, y)
    assert max_relative_difference(fast, ref) <= 1e-9
    assert fast.score(X, y) > 0.75  # they learn


def test_verbose_output_is_sklearns(three_classes, capsys):
    X, y = three_classes
    params = dict(hidden_layer_sizes=(8,), max_iter=3, random_state=0, verbose=True,
                  early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastmlp.MLPClassifier(**params).fit(X, y)
        ours = capsys.readouterr().out
        sk.MLPClassifier(**params).fit(X, y)
        theirs = capsys.readouterr().out
    assert ours == theirs and "Iteration 3, loss = " in ours


def test_progress_bar_shows_epochs_and_loss(three_classes, capsys):
    X, y = three_classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fastmlp.MLPClassifier(hidden_layer_sizes=(8,), max_iter=4, progress=True).fit(X, y)
    err = capsys.readouterr().err
    assert "4/4" in err and "loss=" in err


def test_convergence_warning_and_stopping_rule(three_classes):
    X, y = three_classes
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached") as record:
        fastmlp.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3).fit(X, y)
    assert record[0].filename == __file__  # attributed to the caller of fit
    params = dict(hidden_layer_sizes=(8,), max_iter=500, tol=0.5, n_iter_no_change=2,
                  random_state=0)
    model = fastmlp.MLPClassifier(**params).fit(X, y)
    # The first epoch sets the best loss; no later one improves it by 0.5, and the
    # count must exceed n_iter_no_change: 1 + 3 epochs, as scikit-learn.
    assert model.n_iter_ == 4 == sk.MLPClassifier(**params).fit(X, y).n_iter_


@pytest.mark.parametrize(
    "params",
    [
        # The rate is cut by five at each stall, until it is below 1e-6: then it stops.
        dict(solver="sgd", learning_rate="adaptive", tol=1e-2, n_iter_no_change=3),
        dict(solver="adam", tol=1e-2, n_iter_no_change=4),
        dict(solver="adam", tol=0.0, n_iter_no_change=np.inf),
    ],
    ids=["sgd adaptive", "adam tol", "adam never stops"],
)
def test_long_fits_stop_where_sklearn_stops(three_classes, params):
    """Epochs run several to an engine call; scikit-learn's checks still act after the
    right epoch."""
    X, y = three_classes
    ours, theirs = fit_both("classifier", X, y, hidden_layer_sizes=(8,), max_iter=150,
                            random_state=3, **params)
    assert_same_fit(ours, theirs, X)
    assert (ours.n_iter_ < 150) == (params["n_iter_no_change"] != np.inf)


def test_epochs_run_many_to_an_engine_call(three_classes, monkeypatch):
    from fastmlp._solvers import StochasticSolver

    calls = []
    run_epochs = StochasticSolver.run_epochs

    def counted(self, X, Y, sample_weight, order, n_epochs, random_state):
        calls.append(n_epochs)
        return run_epochs(self, X, Y, sample_weight, order, n_epochs, random_state)

    monkeypatch.setattr(StochasticSolver, "run_epochs", counted)
    X, y = three_classes
    params = dict(hidden_layer_sizes=(8,), max_iter=40, n_iter_no_change=np.inf,
                  random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # How epochs are cut into calls follows measured time: pinned here by setting
        # the time a call may take, never by how fast this machine runs.
        monkeypatch.setattr(fastmlp.estimators, "_SECONDS_PER_CALL", np.inf)
        together = fastmlp.MLPClassifier(**params).fit(X, y)
        assert calls == [40]
        calls.clear()
        monkeypatch.setattr(fastmlp.estimators, "_SECONDS_PER_CALL", 0.0)
        one_by_one = fastmlp.MLPClassifier(**params).fit(X, y)
    assert calls == [1] * 40
    assert together.loss_curve_ == one_by_one.loss_curve_
    for a, b in zip(together.coefs_, one_by_one.coefs_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_sample_weight_equivalence_with_sklearns_settings(kind):
    # scikit-learn runs this check on its MLPs with these settings (see its
    # PER_ESTIMATOR_CHECK_PARAMS); the parametrize_with_checks run uses the defaults.
    if kind == "classifier":
        estimator = fastmlp.MLPClassifier(solver="lbfgs", max_iter=100)
    else:
        estimator = fastmlp.MLPRegressor(solver="sgd", tol=1e-2, random_state=42, max_iter=100)
    check_sample_weight_equivalence_on_dense_data(type(estimator).__name__, estimator)


@pytest.mark.parametrize(
    "fit_labels, labels",
    [
        ([0, 1], [1, 0, 0, 1]),  # binary: one column
        ([3, 7, 9], [9, 3, 7, 7]),  # multiclass: one-hot
        ([3, 7, 9], [9, 9, 3]),  # fitted on three classes, two present: still one-hot
        (["ham", "spam"], ["spam", "ham", "spam"]),
        (np.array([5, 2, 8], dtype=np.int32), np.array([8, 2], dtype=np.int32)),
        ([1.0, 2.0, 4.0], [4.0, 1.0]),
        ([0, 1], [1, 2]),  # an unknown label: LabelBinarizer's own answer
    ],
)
def test_direct_label_binarization_is_labelbinarizers(fit_labels, labels):
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils.multiclass import unique_labels

    from fastmlp._sklearn_shortcuts import _binarize, _unique_labels

    binarizer = LabelBinarizer().fit(fit_labels)
    labels = np.asarray(labels)
    expected = binarizer.transform(labels).astype(bool)
    result = _binarize(binarizer, labels)
    assert result.dtype == bool
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(_unique_labels(labels), unique_labels(labels))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("classes", [[0, 1], ["no", "yes"], [3, 7, 9], ["a", "b", "c", "d"]])
def test_direct_labels_and_accuracy_are_scikit_learns(classes, dtype, rng):
    from sklearn.metrics import accuracy_score
    from sklearn.preprocessing import LabelBinarizer

    from fastmlp._sklearn_shortcuts import _accuracy, _labels_of

    binarizer = LabelBinarizer().fit(classes)
    n_columns = 1 if len(classes) == 2 else len(classes)
    outputs = rng.uniform(0, 1, (50, n_columns)).astype(dtype)
    outputs[:5] = 0.5  # ties: the threshold itself, and equal scores across classes
    if n_columns == 1:
        outputs = outputs.ravel()
    labels = _labels_of(binarizer, outputs)
    np.testing.assert_array_equal(labels, binarizer.inverse_transform(outputs))
    assert labels.dtype == binarizer.classes_.dtype

    truth = np.asarray(classes)[rng.integers(0, len(classes), 50)]
    weights = rng.uniform(0.1, 2.0, 50)
    for sample_weight in (None, weights):
        assert _accuracy(truth, labels, sample_weight) == accuracy_score(
            truth, labels, sample_weight=sample_weight
        )


@pytest.mark.parametrize(
    "y",
    [[0, 1, 1, 0], [3, 9, 3, 7], [-2, 5, 5], [0, 10**9], [7], [250, 3]],
    ids=["binary", "gaps", "negative", "huge", "one", "wide"],
)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_unique_labels_are_sklearns(y, dtype):
    from sklearn.utils.multiclass import unique_labels

    from fastmlp._sklearn_shortcuts import _unique_labels

    if np.array(y).astype(dtype).tolist() != y:
        pytest.skip("not representable")
    labels = np.array(y, dtype=dtype)
    expected, got = unique_labels(labels), _unique_labels(labels)
    assert got.dtype == expected.dtype and got.tolist() == expected.tolist()


@pytest.mark.parametrize(
    "y",
    [[0, 1, 1, 0], [3, 9, 3, 7], [-2, 5, 5], [0, 10**9], [7], [250, 3]],
    ids=["binary", "gaps", "negative", "huge", "one", "wide"],
)
@pytest.mark.parametrize("kind", [np.int64, np.int32, np.uint8, ">i8", "list", np.float64, "str"])
def test_fitted_binarizer_is_labelbinarizers(y, kind):
    """Every fitted attribute, its type and dtype, as ``LabelBinarizer().fit`` sets them,
    whether the labels take the direct route (integer arrays) or scikit-learn's."""
    from sklearn.preprocessing import LabelBinarizer

    from fastmlp._sklearn_shortcuts import _fitted_binarizer

    if kind == "list":
        labels = list(y)
    elif kind == "str":
        labels = np.array([str(v) for v in y])
    else:
        labels = np.array(y).astype(kind)
        if labels.tolist() != y:  # (uint8 of a negative or large label: another set)
            labels = np.array(y, dtype=np.int64) % 256
    expected, got = LabelBinarizer().fit(labels), _fitted_binarizer(labels)
    assert type(got) is LabelBinarizer
    assert got.__dict__.keys() == expected.__dict__.keys()
    for name, value in expected.__dict__.items():
        if isinstance(value, np.ndarray):
            assert got.__dict__[name].dtype == value.dtype, name
            np.testing.assert_array_equal(got.__dict__[name], value)
        else:
            assert type(got.__dict__[name]) is type(value) and got.__dict__[name] == value


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_score_is_accuracy_scores(three_classes):
    """``score``: ``accuracy_score`` of ``predict``, its value, and its errors, for labels
    and weights as arrays or lists, weights with zeros, and weights of another length,
    infinite or complex."""
    from sklearn.metrics import accuracy_score

    X, y = three_classes
    model = fastmlp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    predicted = model.predict(X)
    weights = np.linspace(0.5, 2.0, len(y))
    zero_weights = weights.copy()
    zero_weights[::3] = 0
    for labels in (y, list(y), y.astype(np.int32)):
        for sample_weight in (None, weights, list(weights), zero_weights):
            expected = accuracy_score(labels, predicted, sample_weight=sample_weight)
            got = model.score(X, labels, sample_weight=sample_weight)
            assert type(got) is float and got == expected
    infinite = weights.copy()
    infinite[0] = np.inf
    for bad, error in ((weights[1:], "inconsistent numbers of samples"),
                       (infinite, "infinity"), (weights.astype(complex), "Complex data")):
        with pytest.raises(ValueError, match=error):
            accuracy_score(y, predicted, sample_weight=bad)
        with pytest.raises(ValueError, match=error):
            model.score(X, y, sample_weight=bad)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_best_weights_stay_the_initial_ones_as_sklearns(three_classes, solver):
    """Without early stopping, ``_best_coefs`` and ``_best_intercepts`` are the initial
    weights after a fit, as scikit-learn's copies of them are: fastmlp keeps the initial
    arrays themselves, which no fit may write into."""
    X, y = three_classes
    settings = dict(hidden_layer_sizes=(7, 5), solver=solver, max_iter=4, random_state=0)
    theirs = sk.MLPClassifier(**settings)
    for backend in ("numba", "numpy"):
        ours = fastmlp.MLPClassifier(backend=backend, **settings)
        # A fit, a refit that reuses the first one's solver, then fits that go on from
        # the weights (warm_start; partial_fit for the stochastic solvers).
        for warm_start in (False, False, True):
            ours.set_params(warm_start=warm_start).fit(X, y)
            theirs.set_params(warm_start=warm_start).fit(X, y)
        if solver != "lbfgs":
            ours.partial_fit(X, y)
            theirs.partial_fit(X, y)
        for got, expected in zip(ours._best_coefs + ours._best_intercepts,
                                 theirs._best_coefs + theirs._best_intercepts):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_refits_start_afresh_as_sklearns(three_classes, solver):
    """A second fit reuses the first's buffers and random state, but starts a new
    optimizer from the same seed: warm_start refits match scikit-learn's, and a cold
    refit gives the first fit again."""
    X, y = three_classes
    params = dict(hidden_layer_sizes=(8,), max_iter=6, random_state=4, solver=solver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = fastmlp.MLPClassifier(warm_start=True, **params).fit(X, y).fit(X, y)
        theirs = sk.MLPClassifier(warm_start=True, **params).fit(X, y).fit(X, y)
        assert_same_fit(ours, theirs, X)
        cold = fastmlp.MLPClassifier(**params)
        first = [c.copy() for c in cold.fit(X, y).coefs_]
        cold.set_params(learning_rate_init=0.01).fit(X, y)  # other settings between
        again = cold.set_params(learning_rate_init=0.001).fit(X, y).coefs_
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
