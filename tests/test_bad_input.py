"""Bad input gets a clear ValueError, and nothing the caller passed in is modified."""

import re
import warnings

import numpy as np
import pytest

import fastmlp
from conftest import random_problem
from fastmlp import notebook

BACKENDS = ["numpy", "numba"]


def call(problem, backend="numpy", **overrides):
    coefs, intercepts, X, Y = problem
    kwargs = dict(coefs=coefs, intercepts=intercepts, X=X, Y=Y, backend=backend)
    kwargs.update(overrides)
    return fastmlp.loss_and_gradients(
        kwargs.pop("coefs"), kwargs.pop("intercepts"), kwargs.pop("X"), kwargs.pop("Y"), **kwargs
    )


@pytest.fixture
def problem(rng):
    return random_problem(rng, 3, "softmax", n_samples=8)


def with_nan(array):
    array = np.array(array, dtype=float)
    array.flat[0] = np.nan
    return array


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_arguments_raise_value_error(problem, backend):
    coefs, intercepts, X, Y = problem
    cases = {
        "unknown activation": dict(activation="softplus"),
        "unknown output": dict(output="sigmoid"),
        "negative alpha": dict(alpha=-1.0),
        "nan alpha": dict(alpha=float("nan")),
        "nan in X": dict(X=with_nan(X)),
        "inf in Y": dict(Y=np.where(Y > 0, np.inf, 0)),
        "nan in a coef": dict(coefs=[with_nan(coefs[0])] + coefs[1:]),
        "nan in an intercept": dict(intercepts=intercepts[:-1] + [with_nan(intercepts[-1])]),
        "X too wide": dict(X=np.hstack([X, X])),
        "X one-dimensional": dict(X=X[0]),
        "Y wrong width": dict(Y=Y[:, :1]),
        "Y wrong length": dict(Y=Y[:-1]),
        "broken layer chain": dict(coefs=[coefs[0], coefs[2], coefs[1]]),
        "intercept length": dict(intercepts=[intercepts[0][:-1]] + intercepts[1:]),
        "fewer intercepts": dict(intercepts=intercepts[:-1]),
        "no layers": dict(coefs=[], intercepts=[]),
        "sample_weight length": dict(sample_weight=np.ones(len(X) + 1)),
        "negative sample_weight": dict(sample_weight=-np.ones(len(X))),
        "nan sample_weight": dict(sample_weight=with_nan(np.ones(len(X)))),
        "zero sample_weight": dict(sample_weight=np.zeros(len(X))),
        "empty X": dict(X=X[:0], Y=Y[:0]),
        "unknown backend": dict(backend="cuda"),
        "negative Poisson targets": dict(output="exp", Y=-Y),
    }
    for name, override in cases.items():
        with pytest.raises(ValueError) as info:
            call(problem, **{"backend": backend, **override})
        assert str(info.value), name


def test_nan_message_uses_sklearn_wording(problem):
    coefs, intercepts, X, Y = problem
    with pytest.raises(ValueError, match="Input X contains NaN"):
        call(problem, X=with_nan(X))
    with pytest.raises(ValueError, match="Unknown activation 'softplus'"):
        call(problem, activation="softplus")


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_are_not_modified(problem, rng, backend):
    coefs, intercepts, X, Y = problem
    sample_weight = rng.uniform(0.5, 2, len(X))
    originals = [a.copy() for a in coefs + intercepts + [X, Y, sample_weight]]
    call(problem, backend=backend, alpha=0.5, sample_weight=sample_weight)
    for before, after in zip(originals, coefs + intercepts + [X, Y, sample_weight]):
        np.testing.assert_array_equal(before, after)


def test_notebook_bad_input(rng):
    model = notebook.init_weights(5)
    X, y = rng.standard_normal((6, 2)), rng.integers(0, 2, 6)
    bad_calls = {
        "nan in X": lambda: notebook.get_gradient(model, with_nan(X), y),
        "X too wide": lambda: notebook.get_gradient(model, np.hstack([X, X]), y),
        "label out of range": lambda: notebook.get_gradient(model, X, y + 5),
        "negative label": lambda: notebook.get_gradient(model, X, -y - 1),
        "too few labels": lambda: notebook.get_gradient(model, X, y[:-1]),
        "nan in W2": lambda: notebook.gradient_step(dict(model, W2=with_nan(model["W2"])), X, y),
        "W2 rows": lambda: notebook.forward(X[0], dict(model, W2=model["W2"][:-1])),
        "missing key": lambda: notebook.forward(X[0], {"W1": model["W1"]}),
        "x too long": lambda: notebook.forward(np.ones(5), model),
        "nan softmax": lambda: notebook.softmax(with_nan(np.ones(3))),
        "backward shapes": lambda: notebook.backward(model, X, np.ones((6, 3)), np.ones((6, 2))),
        "unknown backend": lambda: notebook.get_gradient(model, X, y, backend="gpu"),
    }
    for name, bad_call in bad_calls.items():
        with pytest.raises(ValueError):
            bad_call()
        assert name


def test_notebook_leaves_inputs_alone(rng):
    model = notebook.init_weights(5)
    X, y = rng.standard_normal((6, 2)), rng.integers(0, 2, 6)
    originals = {k: v.copy() for k, v in model.items()}
    X_before, y_before = X.copy(), y.copy()
    notebook.gradient_ascent(model, X, y, no_iter=2, verbose=False)
    notebook.forward(X, model)
    for key in model:
        np.testing.assert_array_equal(model[key], originals[key])
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


# --- the estimators: scikit-learn's errors and messages -----------------------------------


def _message(call):
    try:
        call()
    except Exception as error:  # the type and text are what is compared
        return type(error), _sorted_sets(str(error))
    return None, None


def _sorted_sets(text):
    """scikit-learn lists the allowed options of a parameter as a set, whose order varies
    from process to process: compare them sorted."""
    return re.sub(r"\{([^{}]*)\}",
                  lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", text)


def _estimator_pairs():
    from sklearn import neural_network as sk

    from fastmlp import MLPClassifier, MLPRegressor

    return [(MLPClassifier, sk.MLPClassifier), (MLPRegressor, sk.MLPRegressor)]


@pytest.mark.parametrize("pair", [0, 1], ids=["classifier", "regressor"])
def test_estimators_raise_sklearns_errors(pair, rng):
    ours_cls, theirs_cls = _estimator_pairs()[pair]
    X = rng.standard_normal((40, 3))
    y = rng.integers(0, 3, 40)
    X_nan, X_inf = X.copy(), X.copy()
    X_nan[3, 1] = np.nan
    X_inf[5, 0] = np.inf
    cases = {
        "nan in X": lambda cls: cls(max_iter=2).fit(X_nan, y),
        "inf in X": lambda cls: cls(max_iter=2).fit(X_inf, y),
        "nan in y": lambda cls: cls(max_iter=2).fit(X, np.where(y == 1, np.nan, y)),
        "negative alpha": lambda cls: cls(alpha=-1).fit(X, y),
        "bad solver": lambda cls: cls(solver="newton").fit(X, y),
        "zero hidden units": lambda cls: cls(hidden_layer_sizes=(4, 0)).fit(X, y),
        "momentum above 1": lambda cls: cls(momentum=1.5).fit(X, y),
        "batch_size 0": lambda cls: cls(batch_size=0).fit(X, y),
        "validation_fraction 1": lambda cls: cls(validation_fraction=1.0).fit(X, y),
        "wrong feature count at predict": lambda cls: cls(max_iter=2).fit(X, y).predict(X[:, :2]),
        "predict before fit": lambda cls: cls().predict(X),
        "sample_weight length": lambda cls: cls(max_iter=2).fit(X, y, sample_weight=np.ones(3)),
        "y length": lambda cls: cls(max_iter=2).fit(X, y[:-1]),
        "no rows": lambda cls: cls(max_iter=2).fit(X[:0], y[:0]),
        "3-d X": lambda cls: cls(max_iter=2).fit(X[:, :, None], y),
        "y with no columns": lambda cls: cls(max_iter=2).fit(X, y[:, None][:, :0]),
        "wrong feature count at a warm refit": lambda cls: cls(max_iter=2, warm_start=True).fit(
            X, y).fit(X[:, :2], y),
        "wrong feature count at partial_fit": lambda cls: (
            cls().partial_fit(X, y, classes=[0, 1, 2]).partial_fit(X[:, :2], y)
            if cls.__name__ == "MLPClassifier" else cls().partial_fit(X, y).partial_fit(X[:, :2], y)
        ),
        "tiny validation set": lambda cls: cls(early_stopping=True, validation_fraction=0.01,
                                               max_iter=2).fit(X, y),
        "partial_fit with early stopping": lambda cls: (
            cls(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
            if cls.__name__ == "MLPClassifier" else cls(early_stopping=True).partial_fit(X, y)
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, case in cases.items():
            ours_type, ours_text = _message(lambda case=case: case(ours_cls))
            theirs_type, theirs_text = _message(lambda case=case: case(theirs_cls))
            assert theirs_type is not None, name
            assert ours_type is theirs_type, (name, ours_text, theirs_text)
            assert ours_text == theirs_text, name
    # fastmlp accepts more activations, so only the option set differs from scikit-learn's.
    with pytest.raises(ValueError, match=(
        rf"The 'activation' parameter of {ours_cls.__name__} must be a str among .*'gelu'.*"
        r"Got 'softplus' instead.")):
        ours_cls(activation="softplus").fit(X, y)


def test_classifier_partial_fit_errors_are_sklearns(rng):
    ours_cls, theirs_cls = _estimator_pairs()[0]
    X, y = rng.standard_normal((30, 3)), rng.integers(0, 2, 30)
    cases = {
        "no classes on first call": lambda m: m.partial_fit(X, y),
        "unseen label": lambda m: m.partial_fit(X, y, classes=[0, 1]).partial_fit(X, y + 2),
        "other classes later": lambda m: m.partial_fit(X, y, classes=[0, 1]).partial_fit(
            X, y, classes=[0, 1, 2]),
        "lbfgs has no partial_fit": lambda m: m.set_params(solver="lbfgs").partial_fit(X, y),
        "warm start with new classes": lambda m: m.set_params(warm_start=True, max_iter=2)
        .fit(X, y).fit(X, y + 1),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, case in cases.items():
            ours = _message(lambda case=case: case(ours_cls()))
            theirs = _message(lambda case=case: case(theirs_cls()))
            assert theirs[0] is not None, name
            assert ours == theirs, name


def test_estimators_leave_inputs_alone(rng):
    from fastmlp import MLPClassifier

    X = rng.standard_normal((50, 4))
    y = rng.integers(0, 2, 50)
    weights = rng.uniform(0.5, 2, 50)
    originals = [X.copy(), y.copy(), weights.copy()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPClassifier(max_iter=3, early_stopping=True).fit(X, y, sample_weight=weights)
        model.predict_proba(X)
    for before, after in zip(originals, [X, y, weights]):
        np.testing.assert_array_equal(before, after)


def test_huge_inputs_give_sklearns_non_finite_error():
    from fastmlp import MLPRegressor

    X = np.full((20, 2), 1e300)
    y = np.full(20, 1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="non-finite parameter weights"):
            MLPRegressor(max_iter=2, solver="sgd").fit(X, y)
