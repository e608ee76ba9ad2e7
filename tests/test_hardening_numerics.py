"""Where fastmlp's numbers or messages differed from scikit-learn's on the same input."""

import warnings

import numpy as np
import pytest
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning

import fastmlp

BACKENDS = ["numba", "numpy"]


def fit_both(cls_name, X, y, sample_weight=None, backend="numba", **params):
    ours = getattr(fastmlp, cls_name)(backend=backend, **params)
    theirs = getattr(sk, cls_name)(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y, sample_weight=sample_weight)
        theirs.fit(X, y, sample_weight=sample_weight)
    return ours, theirs


def assert_same_weights(ours, theirs, rtol):
    """Each array's dtype, and its largest difference relative to its largest entry."""
    for got, want in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert got.dtype == want.dtype
        assert np.max(np.abs(got - want)) <= rtol * np.max(np.abs(want))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("y_dtype", [np.float64, np.int64])
def test_float32_X_with_wider_y_takes_sklearns_promotions(rng, backend, solver, y_dtype):
    """float32 X, float64 (or int64) y: scikit-learn's output error a - y is float64, and
    so are its gradients and Adam's moments (or SGD's velocities), while the weights stay
    float32. In float32 throughout, Adam's second moment of gradients near 1e21
    overflowed and the fit went on with a loss of inf; scikit-learn's trains."""
    X = rng.standard_normal((60, 3)).astype(np.float32)
    scale = 1e21 if y_dtype == np.float64 else 1e18  # int64 ends at 9.2e18
    y = (rng.standard_normal(60) * scale).astype(y_dtype)
    params = dict(hidden_layer_sizes=(4,), solver=solver, max_iter=6, random_state=0,
                  learning_rate_init=1e-3 if solver == "adam" else 1e-24)
    ours, theirs = fit_both("MLPRegressor", X, y, backend=backend, **params)
    assert np.isfinite(theirs.loss_curve_).all()
    # The same NumPy operations on the same arrays, in the same order: the same bits.
    assert ours.loss_curve_ == theirs.loss_curve_
    assert_same_weights(ours, theirs, rtol=0)
    assert ours.predict(X).dtype == np.float32


def test_float32_weights_with_float64_X_stay_promoted_across_partial_fits(rng):
    """Once scikit-learn's moments are float64 they stay so, whatever later data."""
    X = rng.standard_normal((50, 3))
    y = rng.standard_normal(50)
    ours = fastmlp.MLPRegressor(hidden_layer_sizes=(4,), random_state=0)
    theirs = sk.MLPRegressor(hidden_layer_sizes=(4,), random_state=0)
    for X_call, y_call in [(X.astype(np.float32), y.astype(np.float32)), (X, y),
                           (X.astype(np.float32), y.astype(np.float32))]:
        ours.partial_fit(X_call, y_call)
        theirs.partial_fit(X_call, y_call)
    assert ours._optimizer.promoting
    assert_same_weights(ours, theirs, rtol=1e-5)  # the first call: float32 kernels


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls_name", ["MLPClassifier", "MLPRegressor"])
def test_lbfgs_on_float32_X_fits_float64_weights_as_sklearn(rng, backend, cls_name):
    """SciPy evaluates at float32 points (the packed float32 weights set its dtype), but
    its L-BFGS iterate, which scikit-learn's weights become, is float64; predictions
    from them are float64, and a warm start goes on in float64."""
    X = rng.standard_normal((80, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) if cls_name == "MLPClassifier" else X[:, 0] ** 2
    params = dict(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=15, random_state=0,
                  warm_start=True)
    ours, theirs = fit_both(cls_name, X, y, backend=backend, **params)
    # float32 evaluations summed in other orders (gradients a few 1e-8 apart), whose
    # differences 15 L-BFGS steps scale by the problem's conditioning
    assert_same_weights(ours, theirs, rtol=1e-4)
    assert ours.predict(X).dtype == theirs.predict(X).dtype
    if cls_name == "MLPClassifier":
        assert ours.predict_proba(X).dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
        theirs.fit(X, y)
    assert all(c.dtype == np.float64 for c in ours.coefs_)
    # 30 steps amplify more: where scikit-learn's own weights move far when X moves by
    # one float32 ulp, ten times that spread (measured on scikit-learn alone, as in
    # test_fuzz_sklearn) is the tolerance. On an AVX2 machine the regressor's weights
    # differed by 1.06e-4, relative, and scikit-learn's own spread was 1.1e-4.
    spread = _lbfgs_spread(cls_name, X, y, params)
    assert_same_weights(ours, theirs, rtol=max(1e-4, 10 * spread))


def _lbfgs_spread(cls_name, X, y, params):
    """The largest relative difference of scikit-learn's weights after two warm-started
    fits on X and on X moved by one float32 ulp."""
    moved = (X * (1 + np.finfo(np.float32).eps)).astype(np.float32)
    weights = []
    for X_fit in (X, moved):
        model = getattr(sk, cls_name)(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_fit, y)
            model.fit(X_fit, y)
        weights.append(model.coefs_ + model.intercepts_)
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(a))) for a, b in zip(*weights))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_a_batch_of_zero_weights_raises_numpys_zero_division_as_sklearn(rng, backend, shuffle):
    """scikit-learn's loss averages each batch with np.average, which raises for weights
    summing to zero; fastmlp's engine divided by the zero and reported non-finite
    weights after. With shuffling, the batch that has them is the shuffle's."""
    X = rng.standard_normal((40, 2))
    y = rng.standard_normal(40)
    weights = np.r_[np.ones(10), np.zeros(30)]  # the last batch, or a shuffled one
    errors = []
    for cls in (fastmlp.MLPRegressor(backend=backend), sk.MLPRegressor()):
        cls.set_params(hidden_layer_sizes=(3,), batch_size=10, shuffle=shuffle, max_iter=50,
                       random_state=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                cls.fit(X, y, sample_weight=weights)
                errors.append(None)
            except ZeroDivisionError as error:
                errors.append(str(error))
    assert errors[0] == errors[1] == "Weights sum to zero, can't be normalized"


@pytest.mark.parametrize("backend", BACKENDS)
def test_lbfgs_weights_summing_to_zero_raise_as_sklearn(rng, backend):
    X, y = rng.standard_normal((4, 2)), rng.standard_normal(4)
    weights = np.array([1.0, -1.0, 2.0, -2.0])
    for model in (fastmlp.MLPRegressor(solver="lbfgs", backend=backend),
                  sk.MLPRegressor(solver="lbfgs")):
        with pytest.raises(ZeroDivisionError, match="Weights sum to zero, can't be normalized"):
            model.fit(X, y, sample_weight=weights)


@pytest.mark.parametrize("backend", BACKENDS)
def test_poisson_with_negative_y_trains_as_sklearn(rng, backend):
    """scikit-learn's MLPRegressor has no check of y >= 0 for the Poisson loss: it trains,
    its loss NaN, its gradient exp(z) - y finite. fastmlp raised a message of its own."""
    X, y = rng.standard_normal((30, 2)), rng.standard_normal(30)
    ours, theirs = fit_both("MLPRegressor", X, y, backend=backend, loss="poisson",
                            hidden_layer_sizes=(3,), max_iter=4, random_state=0)
    assert np.isnan(theirs.loss_curve_).all() and np.isnan(ours.loss_curve_).all()
    assert_same_weights(ours, theirs, rtol=1e-10)  # float64, 4 epochs


@pytest.mark.parametrize("n_threads", [np.int64(2), np.int32(1), np.int8(-1), 2])
def test_n_threads_takes_any_integer_type(rng, n_threads):
    X, y = rng.standard_normal((40, 2)), rng.standard_normal(40)
    reference = fastmlp.MLPRegressor(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
    model = fastmlp.MLPRegressor(hidden_layer_sizes=(3,), max_iter=2, random_state=0,
                                 n_threads=n_threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X, y)
        model.fit(X, y)
        assert type(model._optimizer.n_threads) is int  # what the engine is given
        for got, want in zip(model.coefs_, reference.coefs_):
            np.testing.assert_array_equal(got, want)  # the weights whatever the threads
        model.set_params(solver="lbfgs").fit(X, y)
    assert model.n_threads is n_threads  # stored unchanged, as scikit-learn requires


@pytest.mark.parametrize("n_threads", [True, np.int64(0)])
def test_n_threads_refuses_a_bool_and_zero(rng, n_threads):
    X, y = rng.standard_normal((10, 2)), rng.standard_normal(10)
    with pytest.raises(ValueError, match="n_threads must be a non-zero integer or None"):
        fastmlp.MLPRegressor(n_threads=n_threads).fit(X, y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_fit_reads_activation_and_alpha_afresh_as_sklearn(rng, backend):
    """scikit-learn's optimizer persists across partial_fit calls; the activation and
    alpha are read at each call. fastmlp's cached solver kept the first call's."""
    X = rng.standard_normal((50, 3))
    y = (X[:, 0] > 0).astype(int)
    ours = fastmlp.MLPClassifier(hidden_layer_sizes=(4,), random_state=0, backend=backend)
    theirs = sk.MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    for change in [{}, {"activation": "tanh"}, {"alpha": 0.5}, {"learning_rate_init": 0.5}]:
        for model in (ours, theirs):
            model.set_params(**change).partial_fit(X, y, classes=[0, 1])
    # float64, four epochs: roundings of other sum orders
    assert_same_weights(ours, theirs, rtol=1e-10)
    assert ours.loss_curve_ == pytest.approx(theirs.loss_curve_, rel=1e-12)


@pytest.mark.parametrize("cls_name", ["MLPClassifier", "MLPRegressor"])
def test_functions_called_inside_fit_give_sklearns_errors(rng, cls_name):
    """scikit-learn's fit and partial_fit skip the parameter checks of the functions they
    call (train_test_split here), which then raise of their arguments; fastmlp's raised
    train_test_split's parameter error."""
    X = rng.standard_normal((20, 2))
    y = rng.integers(0, 2, 20)
    errors = []
    for module in (fastmlp, sk):
        model = getattr(module, cls_name)(early_stopping=True, validation_fraction=0.0)
        with pytest.raises(ValueError) as info:
            model.fit(X, y)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]
    assert errors[0][1].startswith("test_size=0.0 should be either positive")


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_fit_after_lbfgs_goes_on_with_the_earlier_optimizer_in_float64(rng, backend):
    """An L-BFGS refit leaves float64 weights and, untouched, the optimizer of an earlier
    stochastic fit on float32 data; scikit-learn's partial_fit goes on with that
    optimizer and the float64 weights (its moments float64 from then on). fastmlp's
    loaded the float64 weights into the float32 solver and trained on in float32."""
    X = rng.standard_normal((30, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    models = []
    for module in (fastmlp, sk):
        params = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
        if module is fastmlp:
            params["backend"] = backend
        model = module.MLPClassifier(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
            model.set_params(solver="lbfgs").fit(X, y)
            model.set_params(solver="adam").partial_fit(X, y)
            model.partial_fit(X, y)
        models.append(model)
    ours, theirs = models
    assert ours.loss_curve_ == pytest.approx(theirs.loss_curve_, rel=1e-6)
    # float32 roundings of the first fit, then float64
    assert_same_weights(ours, theirs, rtol=1e-6)


def test_partial_fit_of_a_fitted_estimator_checks_no_parameters_as_sklearn(rng):
    """scikit-learn checks the parameters at fit, and at a partial_fit only until the
    estimator is fitted (once per call would cost more than a small step)."""
    X, y = rng.standard_normal((30, 2)), rng.standard_normal(30)
    ours = fastmlp.MLPRegressor(hidden_layer_sizes=(3,), random_state=0).partial_fit(X, y)
    theirs = sk.MLPRegressor(hidden_layer_sizes=(3,), random_state=0).partial_fit(X, y)
    for model in (ours, theirs):
        model.set_params(alpha=-1.0, batch_size=0).partial_fit(X, y)
    assert_same_weights(ours, theirs, rtol=1e-12)  # float64, two epochs
    errors = []
    for model in (ours, theirs):
        with pytest.raises(ValueError) as info:
            model.fit(X, y)
        errors.append(str(info.value))
    assert errors[0] == errors[1] and "'alpha' parameter" in errors[0]
