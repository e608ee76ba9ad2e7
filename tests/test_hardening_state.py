"""No call that fails or diverges poisons what comes after it: a failed fit or partial_fit
leaves the estimator exactly as it was (weights, attributes, optimizer state), and the
notebook's cached trainer starts every step afresh."""

import copy
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from conftest import relative_error
from fastmlp import notebook
from fastmlp.bench import notebook_loop

BACKENDS = ["numba", "numpy"]


def optimizer_state(model):
    solver = model._optimizer
    schedule = copy.deepcopy(solver.schedule.__dict__)
    if solver.backend == "numba":
        return (solver.trainer.state_1.copy(), solver.trainer.state_2.copy(),
                solver.trainer.adam_step, schedule)
    return (schedule,)


def snapshot(model):
    """Every attribute, arrays and lists copied, and the optimizer's state."""
    attributes = {name: copy.deepcopy(value) for name, value in vars(model).items()
                  if not name.startswith("_")}
    return attributes, optimizer_state(model)


def assert_same_snapshot(got, want):
    (got_attributes, got_optimizer), (want_attributes, want_optimizer) = got, want
    assert sorted(got_attributes) == sorted(want_attributes)
    for name, value in want_attributes.items():
        np.testing.assert_equal(got_attributes[name], value, err_msg=name)
    np.testing.assert_equal(got_optimizer, want_optimizer)


@pytest.fixture
def classification(rng):
    X = rng.standard_normal((60, 3))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def started(backend, X, y):
    """Two partial_fits with SGD and momentum: a velocity to keep, or to poison."""
    model = fastmlp.MLPClassifier(hidden_layer_sizes=(5,), solver="sgd", random_state=0,
                                  backend=backend)
    for _ in range(2):
        model.partial_fit(X, y, classes=[0, 1])
    return model


def bad_calls(X, y):
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    halves = np.r_[np.zeros(30), np.ones(30)]
    return {
        "NaN in X": lambda m: m.partial_fit(X_nan, y),
        "wrong feature count": lambda m: m.partial_fit(X[:, :2], y),
        "unknown class": lambda m: m.partial_fit(X, y + 5),
        "wrong sample_weight length": lambda m: m.partial_fit(X, y, sample_weight=np.ones(3)),
        # a batch of zero weights, met only in the second of the epoch's batches
        "zero-weight batch": lambda m: m.set_params(batch_size=30, shuffle=False).partial_fit(
            X, y, sample_weight=halves[::-1]),
        "diverging": lambda m: m.set_params(batch_size=5).partial_fit(X * 1e154, y),
        "early stopping": lambda m: m.set_params(early_stopping=True).partial_fit(X, y),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(bad_calls(np.zeros((60, 3)), np.zeros(60))))
def test_a_failed_partial_fit_changes_nothing(classification, backend, case):
    X, y = classification
    model = started(backend, X, y)
    before = snapshot(model)
    params = model.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, ZeroDivisionError)):
            bad_calls(X, y)[case](model)
    model.set_params(**params)
    assert_same_snapshot(snapshot(model), before)
    # And training goes on exactly as on a model that never saw the failed call.
    untouched = started(backend, X, y)
    model.partial_fit(X, y)
    untouched.partial_fit(X, y)
    for got, want in zip(model.coefs_ + model.intercepts_,
                         untouched.coefs_ + untouched.intercepts_):
        np.testing.assert_array_equal(got, want)
    assert model.loss_curve_ == untouched.loss_curve_


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference engine's overflow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_diverged_fit_leaves_the_fitted_model_and_poisons_no_later_fit(
        classification, backend):
    """scikit-learn leaves the NaN weights it reached; fastmlp the model it had, and a
    cached optimizer (reused by the next fit of the same network) no NaN."""
    X, y = classification
    params = dict(hidden_layer_sizes=(5,), solver="sgd", random_state=0, max_iter=5,
                  backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fastmlp.MLPClassifier(**params).fit(X, y)
        before = {name: copy.deepcopy(value) for name, value in vars(model).items()
                  if not name.startswith("_")}
        with pytest.raises(ValueError, match="non-finite parameter weights"):
            model.fit(X * 1e154, y)
        for name, value in before.items():
            np.testing.assert_equal(getattr(model, name), value, err_msg=name)
        model.fit(X, y)
        fresh = fastmlp.MLPClassifier(**params).fit(X, y)
    for got, want in zip(model.coefs_ + model.intercepts_, fresh.coefs_ + fresh.intercepts_):
        np.testing.assert_array_equal(got, want)


def test_a_failed_first_fit_leaves_an_unfitted_estimator(classification):
    X, y = classification
    params = dict(hidden_layer_sizes=(5,), early_stopping=True, validation_fraction=0.01)
    model = fastmlp.MLPClassifier(**params)
    # Raised once the network is made and its fitted attributes set.
    with pytest.raises(ValueError, match="test_size = 1 should be greater or equal"):
        model.fit(X, y)
    assert sorted(vars(model)) == sorted(vars(fastmlp.MLPClassifier(**params)))
    model = fastmlp.MLPClassifier()
    with pytest.raises(ValueError, match="Input X contains NaN"):
        model.partial_fit(np.where(X > 1, np.nan, X), y, classes=[0, 1])
    assert not hasattr(model, "classes_")  # set from the call's classes, then put back


# --- the notebook ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_notebook_steps_after_an_overflow_are_not_poisoned(rng, backend):
    """The Numba steps share a cached trainer; its SGD velocity (0 * v - lr * g) was
    left NaN by an overflowing step and made every later step NaN."""
    model = notebook.init_weights(6)
    X, y = rng.standard_normal((20, 2)), rng.integers(0, 2, 20)
    overflowed = notebook.gradient_ascent(model, X, y, no_iter=3, verbose=False,
                                          learning_rate=1e200, backend=backend)
    assert not all(np.isfinite(w).all() for w in overflowed.values())
    stepped = notebook.gradient_step(model, X, y, backend=backend)
    expected = notebook_loop.gradient_step(model, X, y)
    for layer in ("W1", "W2"):
        assert relative_error(stepped[layer], expected[layer]) <= 1e-13


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize("no_iter", [0, -2])
def test_gradient_ascent_without_steps_returns_the_model_in_new_arrays(
        rng, backend, verbose, no_iter, capsys):
    """The notebook's loop, ``for i in range(no_iter)``, runs no step: the model comes
    back unchanged (the Numba engine divided by the zero epochs to time them)."""
    model = notebook.init_weights(4)
    X, y = rng.standard_normal((10, 2)), rng.integers(0, 2, 10)
    result = notebook.gradient_ascent(model, X, y, no_iter=no_iter, verbose=verbose,
                                      backend=backend)
    assert capsys.readouterr().out == ""
    assert list(result) == list(model)
    for layer in model:
        assert result[layer] is not model[layer]
        np.testing.assert_array_equal(result[layer], model[layer])


def test_gradient_ascent_counts_steps_as_range_does(rng):
    model = notebook.init_weights(4)
    X, y = rng.standard_normal((10, 2)), rng.integers(0, 2, 10)
    with pytest.raises(TypeError):
        notebook.gradient_ascent(model, X, y, no_iter=2.0)
    with pytest.raises(ValueError, match="at least one hidden unit"):
        notebook.gradient_step(notebook.init_weights(0), X, y)
