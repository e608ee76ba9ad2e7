"""Every array meets the network's shapes before compiled code reads it: warm starts and
partial_fit on a fitted network, set_params between calls, and a network altered by hand."""

import warnings

import numpy as np
import pytest
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from fastmlp._solvers import StochasticSolver, make_schedule


@pytest.fixture
def data(rng):
    X = rng.standard_normal((40, 3))
    return X, rng.standard_normal(40), rng.standard_normal((40, 2))


def fitted_state(model):
    """What a failed call must leave as it was."""
    return ([c.copy() for c in model.coefs_ + model.intercepts_], model.n_outputs_,
            model.n_iter_, list(getattr(model, "loss_curve_", [])))


def assert_unchanged(model, state):
    weights, n_outputs, n_iter, loss_curve = state
    for got, want in zip(model.coefs_ + model.intercepts_, weights):
        np.testing.assert_array_equal(got, want)
    assert (model.n_outputs_, model.n_iter_) == (n_outputs, n_iter)
    assert list(getattr(model, "loss_curve_", [])) == loss_curve


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("call", ["partial_fit", "warm fit adam", "warm fit sgd", "warm lbfgs"])
@pytest.mark.parametrize("fitted, given", [(2, 1), (1, 2)], ids=["2 outputs, 1-d y",
                                                                 "1 output, 2-column y"])
def test_y_of_another_output_count_is_refused(data, backend, call, fitted, given):
    """The engine read y with the network's row stride: a 1-d y for two outputs trained
    the second on y[i + 1], one element past the end at the last row; a 2-column y for
    one output was taken, with n_outputs_ = 2 on a network of one. scikit-learn
    broadcasts the first (and leaves n_outputs_ = 1 on its network of two) and fails
    part-way in the second; fastmlp refuses both before training."""
    X, y, Y = data
    solver = {"partial_fit": "adam", "warm fit adam": "adam", "warm fit sgd": "sgd",
              "warm lbfgs": "lbfgs"}[call]
    model = fastmlp.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, solver=solver,
                                 warm_start=call != "partial_fit", random_state=0,
                                 backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, Y if fitted == 2 else y)
    state = fitted_state(model)
    target = Y if given == 2 else y
    refit = model.partial_fit if call == "partial_fit" else model.fit
    with pytest.raises(ValueError, match=rf"y has {given} output\(s\), but this MLPRegressor "
                                         rf"was fitted with {fitted}"):
        refit(X, target)
    assert_unchanged(model, state)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_new_hidden_widths_train_the_fitted_network_as_sklearn(data, solver):
    """scikit-learn reads hidden_layer_sizes only to make a network: a warm start with new
    widths (as many layers) goes on with the fitted one."""
    X, y, _ = data
    params = dict(hidden_layer_sizes=(4,), max_iter=3, solver=solver, warm_start=True,
                  random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = fastmlp.MLPRegressor(**params).fit(X, y).set_params(hidden_layer_sizes=(6,))
        theirs = sk.MLPRegressor(**params).fit(X, y).set_params(hidden_layer_sizes=(6,))
        ours.fit(X, y)
        theirs.fit(X, y)
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_] == [(3, 4), (4, 1)]
    for got, want in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        # float64, 6 epochs of a 4-unit network: a few roundings of other sum orders
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    "solver, new_sizes",
    [("adam", (4, 4)), ("sgd", ()), ("lbfgs", (5,)), ("lbfgs", (4, 2))],
    ids=["adam deeper", "sgd shallower", "lbfgs wider", "lbfgs deeper"],
)
def test_hidden_layers_that_do_not_fit_the_network_are_refused(data, solver, new_sizes):
    """scikit-learn's loop fails part-way on these (a None activation, a list index, a
    reshape) or, for L-BFGS, reads the fitted vector in the new layout."""
    X, y, _ = data
    model = fastmlp.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, solver=solver,
                                 warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    state = fitted_state(model)
    model.set_params(hidden_layer_sizes=new_sizes)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes is .*, but the fitted network"):
        model.fit(X, y)
    assert_unchanged(model, state)


def test_a_changed_loss_is_refused_where_the_output_would_not_match(data):
    X, y, _ = data
    model = fastmlp.MLPRegressor(hidden_layer_sizes=(4,), random_state=0).partial_fit(X, y)
    state = fitted_state(model)
    model.set_params(loss="poisson")
    with pytest.raises(ValueError, match="loss='poisson' does not match the fitted network"):
        model.partial_fit(X, np.abs(y))
    assert_unchanged(model, state)


@pytest.mark.parametrize("call", ["partial_fit", "warm fit"])
def test_stochastic_training_after_lbfgs_raises_sklearns_error_before_training(data, call):
    """An L-BFGS fit keeps no loss curve: scikit-learn's loop fails on it after training
    an epoch in place; fastmlp raises the same error before."""
    X, y, _ = data
    errors = []
    for cls in (fastmlp.MLPRegressor, sk.MLPRegressor):
        model = cls(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=5, random_state=0,
                    warm_start=call == "warm fit")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        model.set_params(solver="adam")
        before = [c.copy() for c in model.coefs_]
        with pytest.raises(AttributeError) as info:
            model.partial_fit(X, y) if call == "partial_fit" else model.fit(X, y)
        errors.append(str(info.value))
        if cls is fastmlp.MLPRegressor:
            for got, want in zip(model.coefs_, before):
                np.testing.assert_array_equal(got, want)
    assert errors[0] == errors[1] == "'MLPRegressor' object has no attribute 'loss_curve_'"


def test_predicting_with_weights_altered_by_hand_checks_them_first(data):
    """The network is read from coefs_ and intercepts_, the features checked against
    n_features_in_: weights replaced by hand with another input count made the kernel
    read that many values from each row of X."""
    X, y, _ = data
    model = fastmlp.MLPRegressor(hidden_layer_sizes=(4,), random_state=0).partial_fit(X, y)
    model.coefs_[0] = np.ones((5, 4))
    with pytest.raises(ValueError, match=r"coefs_\[0\] has shape \(5, 4\)|takes 5 features"):
        model.predict(X)
    model.coefs_[0] = np.ones((3, 4))
    model.intercepts_[0] = np.ones(3)
    with pytest.raises(ValueError, match=r"intercepts_\[0\] has shape \(3,\)"):
        model.predict(X)


def test_the_solver_checks_data_and_weights_against_its_network():
    """The boundary the compiled kernels sit behind: each array's shape, whatever the
    caller checked before."""
    coefs = [np.zeros((3, 4)), np.zeros((4, 2))]
    intercepts = [np.zeros(4), np.zeros(2)]
    settings = dict(learning_rate_init=1e-3, learning_rate="constant", momentum=0.9,
                    nesterovs_momentum=True, power_t=0.5, beta_1=0.9, beta_2=0.999,
                    epsilon=1e-8)
    assert make_schedule([], "adam", settings).learning_rate == 1e-3
    solver = StochasticSolver("numba", coefs, intercepts, "relu", "identity", "adam",
                              settings, 0.0, 10, None)
    X = np.zeros((10, 3))
    for Y, weights, match in [(np.zeros((10, 1)), None, r"y has shape \(10, 1\)"),
                              (np.zeros((9, 2)), None, r"y has shape \(9, 2\)"),
                              (np.zeros((10, 2)), np.ones(11), "sample_weight has shape")]:
        with pytest.raises(ValueError, match=match):
            solver.prepare(X, Y, weights)
    with pytest.raises(ValueError, match="X has shape"):
        solver.prepare(np.zeros((10, 2)), np.zeros((10, 2)), None)
    with pytest.raises(ValueError, match="this solver trains one of"):
        solver.set_weights([np.zeros((3, 5)), np.zeros((5, 2))], [np.zeros(5), np.zeros(2)])


def test_loss_and_gradients_refuses_complex_input(rng):
    coefs, intercepts = [rng.standard_normal((2, 3))], [rng.standard_normal(3)]
    X = rng.standard_normal((4, 2)) + 1j
    with pytest.raises(ValueError, match="Complex data not supported"):
        fastmlp.loss_and_gradients(coefs, intercepts, X, np.eye(3)[[0, 1, 2, 0]])
