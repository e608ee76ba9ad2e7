"""Differential fuzzing: fastmlp's estimators against scikit-learn's on the same calls.

Hypothesis draws the data (shapes down to one row or one feature; float32, float64,
integer, bool and object dtypes; C, Fortran, strided and read-only arrays, lists, and
sparse CSR, CSC, COO and LIL matrices; integer, string, bool, float, mixed and
multilabel targets; sample weights with zeros, negatives or the wrong length), the
hyperparameters (invalid ones included) and sequences of fit, partial_fit, set_params,
predict, predict_proba and score. Each call runs on both libraries, and the outcomes must
agree:

* scikit-learn raises one of its own errors (a ``raise`` in its code or NumPy's): fastmlp
  raises the same type with the same message;
* scikit-learn's own arithmetic fails part-way (a NumPy broadcasting error, a ``None``
  where an array was expected): that is no message of its; fastmlp must raise a
  ValueError, or an error of the same type, before training;
* both succeed: the same results, fitted attributes and dtypes (to ``FLOAT64_RTOL``, or
  ``FLOAT32_RTOL`` where float32 is computed with), and the same warning categories
  (ConvergenceWarning, DataConversionWarning and scikit-learn's UserWarning).

The one place fastmlp raises where scikit-learn trains on (``DELIBERATE``): a warm start
or partial_fit whose y, hidden layers or loss do not fit the fitted network, which
scikit-learn broadcasts or reads in another layout (see ``_check_continued_network``).

A sequence stops at its first error: afterwards scikit-learn's estimator keeps what the
failed call left in it, fastmlp's is as before the call.

The normal run draws a few dozen examples per test; ``FASTMLP_FUZZ_PROFILE=nightly``
draws many more.
"""

import os
import re
import traceback
import warnings

import hypothesis
import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck
from hypothesis import strategies as st
from sklearn import neural_network as sk
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning

import fastmlp

hypothesis.settings.register_profile(
    "nightly", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
if os.environ.get("FASTMLP_FUZZ_PROFILE") == "nightly":
    FUZZ = hypothesis.settings(hypothesis.settings.get_profile("nightly"))
else:
    FUZZ = hypothesis.settings(
        max_examples=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )

# float64 throughout: the engines' sums run in other orders, roundings that a few epochs
# of a network this small carry to ~1e-13 at most.
FLOAT64_RTOL = 1e-9
# Any float32 arithmetic: each rounding is 6e-8, and Adam divides a gradient by its own
# root-mean-square, so one that nearly cancels (a few roundings of the terms it sums)
# moves its weight by a fraction of the learning rate. 8000 examples of the nightly run
# came to 3e-5 at most.
FLOAT32_RTOL = 2e-4

COMPARED_WARNINGS = (ConvergenceWarning, DataConversionWarning, UserWarning)
ESTIMATORS = {
    "classifier": (fastmlp.MLPClassifier, sk.MLPClassifier),
    "regressor": (fastmlp.MLPRegressor, sk.MLPRegressor),
}


# --- running one call on both libraries ---------------------------------------------------


class Outcome:
    def __init__(self, call):
        self.value = self.error = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with np.errstate(all="ignore"):
                try:
                    self.value = call()
                except Exception as error:  # compared with the other library's
                    self.error = error
        self.warnings = sorted(
            {w.category.__name__ for w in caught if w.category in COMPARED_WARNINGS}
        )

    @property
    def own_error(self):
        """Whether the error is a message of its library (a raise statement), not NumPy
        or Python failing inside its arithmetic."""
        last = traceback.extract_tb(self.error.__traceback__)[-1]
        return (last.line or "").lstrip().startswith("raise")


def _sorted_sets(text):
    """scikit-learn lists a parameter's options as a set, in an order that varies from
    process to process: compare them sorted."""
    return re.sub(r"\{([^{}]*)\}",
                  lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", text)


def _deliberate(ours, theirs_before):
    """fastmlp's ValueError where scikit-learn goes on training a fitted network that the
    call's y, hidden_layer_sizes or loss does not fit (see the module's docstring):
    whatever scikit-learn's outcome, an error of its further on or none. Judged on the
    network scikit-learn had before the call (``theirs_before``: its layer sizes, and
    the output the loss needs)."""
    if type(ours.error) is not ValueError or theirs_before is None:
        return False
    units, solver, needed_output, output = theirs_before
    message = str(ours.error)
    counts = re.match(r"y has (\d+) output\(s\), but this \w+ was fitted with (\d+)", message)
    if counts:
        return int(counts[2]) == units[-1] != int(counts[1])
    if message.startswith("hidden_layer_sizes is"):
        return solver == "lbfgs"
    if message.startswith("loss="):
        return needed_output != output
    return False


def _network_before(estimator):
    if not getattr(estimator, "coefs_", None):
        return None
    units = [estimator.coefs_[0].shape[0]] + [c.shape[1] for c in estimator.coefs_]
    needed = None
    if hasattr(estimator, "loss") and not hasattr(estimator, "classes_"):
        needed = "exp" if estimator.loss == "poisson" else "identity"
    return units, estimator.solver, needed, getattr(estimator, "out_activation_", None)


def assert_same_outcome(ours, theirs, theirs_before, rtol, context):
    if _deliberate(ours, theirs_before):
        return
    if theirs.error is not None:
        assert ours.error is not None, (context, "scikit-learn raised", theirs.error)
        if theirs.own_error:
            assert type(ours.error) is type(theirs.error), (context, ours.error, theirs.error)
            assert _sorted_sets(str(ours.error)) == _sorted_sets(str(theirs.error)), context
        else:
            assert type(ours.error) in (ValueError, type(theirs.error)), (
                context, ours.error, theirs.error)
        return
    if ours.error is not None:
        raise AssertionError((context, "only fastmlp raised", ours.error))
        return
    assert ours.warnings == theirs.warnings, context
    assert_same_value(ours.value, theirs.value, rtol, context)


def _close(ours, theirs, rtol, context):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, context
    assert np.array_equal(np.isnan(ours), np.isnan(theirs)), context
    finite = np.isfinite(theirs)
    assert np.array_equal(ours[~finite], theirs[~finite], equal_nan=True), context
    if finite.any():
        scale = max(np.max(np.abs(theirs[finite])), 1.0)
        assert np.max(np.abs(ours[finite] - theirs[finite])) <= rtol * scale, context


def assert_same_value(ours, theirs, rtol, context):
    if isinstance(theirs, BaseEstimator):
        assert_same_fit(ours, theirs, rtol, context)
    elif isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), context
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, (
            context, ours.dtype, theirs.dtype)
        if theirs.dtype.kind in "fc":
            _close(ours, theirs, rtol, context)
        else:
            np.testing.assert_array_equal(ours, theirs, err_msg=str(context))
    else:
        _close(ours, theirs, rtol, context)


def _kernel_loss_left_finite(ours, theirs):
    """The one known mismatch, in the Numba kernels' losses (``kernels/_activations.py``): where
    the forward pass gave NaN or infinite outputs, or a Poisson output underflowed to 0,
    scikit-learn's loss is NaN or inf (NumPy's clip keeps a NaN probability, and
    ``xlogy(0, nan)`` is NaN), while the kernels' stays finite (a NaN probability clipped
    by min/max, ``0 * log`` taken as 0). The weights are the same; the loss curve, and
    the stopping rule reading it, differ from that epoch on."""
    if getattr(ours, "backend", None) != "numba" or not hasattr(theirs, "loss_curve_"):
        return False
    for got, want in zip(ours.loss_curve_, theirs.loss_curve_):
        if not np.isfinite(want):
            return bool(np.isfinite(got))
        if got != pytest.approx(want, rel=FLOAT32_RTOL):
            return False
    return False


def assert_same_fit(ours, theirs, rtol, context):
    if not hasattr(theirs, "coefs_"):  # not fitted (set_params returns the estimator)
        assert not hasattr(ours, "coefs_"), context
        return
    hypothesis.assume(not _kernel_loss_left_finite(ours, theirs))
    for name in ("n_features_in_", "n_outputs_", "n_layers_", "out_activation_", "n_iter_",
                 "t_"):
        assert getattr(ours, name, None) == getattr(theirs, name, None), (context, name)
    assert hasattr(ours, "feature_names_in_") == hasattr(theirs, "feature_names_in_"), context
    if hasattr(theirs, "feature_names_in_"):
        np.testing.assert_array_equal(ours.feature_names_in_, theirs.feature_names_in_)
    if hasattr(theirs, "classes_"):
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
        assert ours.classes_.dtype == theirs.classes_.dtype, context
    assert len(ours.coefs_) == len(theirs.coefs_), context
    for got, want in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert got.dtype == want.dtype and got.shape == want.shape, (context, got.dtype,
                                                                    want.dtype)
        _close(got, want, rtol, context)
    _close(ours.loss_, theirs.loss_, rtol, context)
    for name in ("loss_curve_", "validation_scores_", "best_loss_", "best_validation_score_"):
        want = getattr(theirs, name, None)
        got = getattr(ours, name, None)
        if want is None:
            assert got is None, (context, name)
        else:
            _close(got, want, rtol, context)


# --- what is drawn -----------------------------------------------------------------------

N_FEATURES = [1, 3]  # few: each count of inputs is a Numba kernel compiled apart
LAYOUTS = ["C", "F", "strided", "read-only", "list", "dataframe", "csr", "csc", "coo", "lil",
           "csr_array"]


def make_X(rng, n_samples, n_features, dtype, layout, special):
    values = rng.standard_normal((n_samples, n_features))
    if layout in ("csr", "csc", "coo", "lil", "csr_array"):
        values[np.abs(values) < 0.6] = 0.0
    if dtype == "int64":
        X = np.round(2 * values).astype(np.int64)
    elif dtype == "bool":
        X = values > 0
    elif dtype == "object":
        X = values.astype(object)
    else:
        X = values.astype(dtype)
    if special == "nan" and X.dtype.kind == "f":
        X.flat[0] = np.nan
    elif special == "huge" and X.dtype.kind == "f":
        X = X * np.asarray(1e150 if X.dtype == np.float64 else 1e30, dtype=X.dtype)
    if layout == "F":
        return np.asfortranarray(X)
    if layout == "strided":
        wide = np.repeat(X, 2, axis=1)
        return wide[:, ::2]
    if layout == "read-only":
        X = X.copy()
        X.setflags(write=False)
        return X
    if layout == "list":
        return X.tolist()
    if layout == "dataframe":  # feature names, checked at every later call
        import pandas as pd

        return pd.DataFrame(X, columns=[f"x{i}" for i in range(n_features)])
    if X.dtype == object:
        return X
    if layout == "csr_array":
        return scipy.sparse.csr_array(X)
    return scipy.sparse.csr_matrix(X).asformat(layout) if layout != "C" else X


CLASS_LABELS = {
    "int": np.array([3, 7, 9, 11]),
    "str": np.array(["ant", "bee", "cat", "dog"]),
    "bool": np.array([False, True]),
    "float": np.array([0.5, 1.5, 2.5, 3.5]),
}


def make_classes(rng, n_samples, kind, n_classes):
    if kind == "multilabel":
        return rng.integers(0, 2, (n_samples, n_classes + 1))
    if kind == "mixed":
        return np.array([1, "a"] * n_samples, dtype=object)[:n_samples]
    labels = CLASS_LABELS[kind][:n_classes]
    return labels[rng.integers(0, len(labels), n_samples)]


def make_targets(rng, n_samples, kind, n_outputs, poisson):
    if kind == "float":
        y = rng.standard_normal((n_samples, n_outputs))
        if poisson:
            y = np.abs(y)
    elif kind == "negative":  # only meaningful for Poisson
        y = rng.standard_normal((n_samples, n_outputs))
    elif kind == "int":
        y = rng.integers(0, 4, (n_samples, n_outputs))
    elif kind == "bool":
        y = rng.integers(0, 2, (n_samples, n_outputs)).astype(bool)
    else:  # "huge"
        y = np.full((n_samples, n_outputs), 1e300)
    return y[:, 0] if n_outputs == 1 and rng.integers(0, 2) else y


def make_weights(rng, n_samples, kind):
    if kind == "none":
        return None
    if kind == "positive":
        return rng.uniform(0.2, 3.0, n_samples)
    if kind == "integers":
        return rng.integers(0, 3, n_samples).astype(np.float64)
    if kind == "negative":
        return rng.uniform(-1.0, 2.0, n_samples)
    if kind == "zeros":
        return np.zeros(n_samples)
    if kind == "wrong length":
        return np.ones(n_samples + 1)
    return 2.0  # a scalar, which scikit-learn accepts


@st.composite
def datasets(draw, kind, n_features=None, poisson=False):
    """(X, y, sample_weight, float32, huge, float32 with negative weights) for one
    estimator kind: whether float32 is computed with, whether values are near overflow,
    and whether float32 meets negative sample weights."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_samples = draw(st.sampled_from([1, 2, 5, 12, 30]))
    if n_features is None:
        n_features = draw(st.sampled_from(N_FEATURES))
    dtype = draw(st.sampled_from(["float64", "float64", "float32", "int64", "bool", "object"]))
    layout = draw(st.sampled_from(LAYOUTS))
    special = draw(st.sampled_from(["none"] * 12 + ["nan", "huge"]))
    X = make_X(rng, n_samples, n_features, dtype, layout, special)
    if dtype not in ("float64", "float32") and special == "huge":  # left as drawn
        special = "none"
    if kind == "classifier":
        label_kind = draw(st.sampled_from(["int", "int", "str", "bool", "float", "multilabel",
                                           "mixed"]))
        n_classes = draw(st.integers(1, 2 if label_kind == "bool" else 4))
        y = make_classes(rng, n_samples, label_kind, n_classes)
    else:
        target_kind = draw(st.sampled_from(
            ["float"] * 4 + ["int", "bool", "huge"] + (["negative"] if poisson else [])))
        y = make_targets(rng, n_samples, target_kind, draw(st.integers(1, 2)), poisson)
        if target_kind == "huge":
            special = "huge"
    container = draw(st.sampled_from(["array"] * 8 + ["list", "series"]))
    if container == "list":
        y = y.tolist()
    elif container == "series" and np.ndim(y) == 1:
        import pandas as pd

        y = pd.Series(y, name="target")
    weights = draw(st.sampled_from(["none"] * 4 + ["positive", "integers", "negative", "zeros",
                                                   "wrong length", "scalar"]))
    sample_weight = make_weights(rng, n_samples, weights)
    float32 = dtype == "float32"
    return (X, y, sample_weight, float32, special == "huge",
            float32 and weights == "negative")


INVALID_PARAMETERS = [
    ("alpha", -1.0), ("max_iter", 0), ("batch_size", 0), ("momentum", 1.5),
    ("hidden_layer_sizes", (3, 0)), ("learning_rate_init", 0.0), ("beta_1", 1.0),
    ("validation_fraction", 1.0), ("n_iter_no_change", 0), ("solver", "newton"),
    ("tol", -1.0), ("epsilon", 0.0), ("max_iter", 2.5), ("hidden_layer_sizes", (2.5,)),
    ("shuffle", "yes"), ("learning_rate", "fast"), ("max_fun", 0), ("power_t", -1.0),
]


@st.composite
def parameters(draw, kind, valid=True):
    params = dict(
        hidden_layer_sizes=draw(st.sampled_from([(3,), (3,), (2, 3), [4], 2, (), np.array([3])])),
        activation=draw(st.sampled_from(["identity", "logistic", "tanh", "relu"])),
        solver=draw(st.sampled_from(["adam", "sgd", "lbfgs"])),
        alpha=draw(st.sampled_from([0.0, 1e-4, 0.5, np.float64(0.01)])),
        batch_size=draw(st.sampled_from(["auto", "auto", 1, 4, 50])),
        learning_rate=draw(st.sampled_from(["constant", "invscaling", "adaptive"])),
        learning_rate_init=draw(st.sampled_from([1e-3, 0.05, 0.5])),
        max_iter=draw(st.integers(1, 4)),
        shuffle=draw(st.booleans()),
        random_state=draw(st.sampled_from([0, 1, 2, 3, np.random.RandomState(5)])),
        tol=draw(st.sampled_from([1e-4, 0.0, 0.3])),
        momentum=draw(st.sampled_from([0.0, 0.9, 1.0])),
        nesterovs_momentum=draw(st.booleans()),
        early_stopping=draw(st.sampled_from([False, False, False, True])),
        validation_fraction=draw(st.sampled_from([0.1, 0.3, 0.5, 0.0])),
        beta_2=draw(st.sampled_from([0.999, 0.999, 0.5])),
        n_iter_no_change=draw(st.sampled_from([1, 2, 10, np.inf])),
        max_fun=draw(st.sampled_from([3, 15000])),
    )
    if kind == "regressor":
        params["loss"] = draw(st.sampled_from(["squared_error", "squared_error", "poisson"]))
    if not valid and draw(st.integers(0, 3)) == 0:
        name, value = draw(st.sampled_from(INVALID_PARAMETERS))
        params[name] = value
    return params


def both(kind, params):
    """The two estimators, each with its own copy of the parameters (a RandomState is
    drawn from by the estimator given it)."""
    import copy

    ours_cls, theirs_cls = ESTIMATORS[kind]
    return ours_cls(**copy.deepcopy(params)), theirs_cls(**copy.deepcopy(params))


def copies(data):
    """Each library its own arrays (and a check that neither writes into them)."""
    import copy

    return copy.deepcopy(data), copy.deepcopy(data)


def rtol_for(float32):
    return FLOAT32_RTOL if float32 else FLOAT64_RTOL


def rounding_sensitivity(kind, params, X, y, sample_weight):
    """How far scikit-learn's own predictions move, relative to their scale, when its
    fit's X moves by 4 units in the last place: how much the fit amplifies a rounding.

    Most fits here carry a rounding to ~1e-13 (``FLOAT64_RTOL``), but some are chaotic:
    SGD with one row a batch, a learning rate of 0.5 and targets near 100 on a tanh
    network took fastmlp's and scikit-learn's predictions (their tanh within 2 ulp of
    each other, their sums in other orders) 5e-9 apart, relative. Measured on
    scikit-learn alone, so that fastmlp's own error cannot widen its tolerance; 0 where
    the fit fails or X is not a finite float64 array."""
    if not (isinstance(X, np.ndarray) and X.dtype == np.float64 and np.isfinite(X).all()):
        return 0.0
    outputs = []
    for factor in (1.0, 1.0 + 4 * np.finfo(np.float64).eps):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = both(kind, params)[1].fit(X * factor, y, sample_weight=sample_weight)
                outputs.append(fitted.predict_proba(X) if kind == "classifier"
                               else fitted.predict(X))
        except Exception:
            return 0.0
    first, second = (np.asarray(output, dtype=np.float64) for output in outputs)
    finite = np.isfinite(first) & np.isfinite(second)
    if not finite.any():
        return 0.0
    scale = max(np.max(np.abs(first[finite])), 1.0)
    return float(np.max(np.abs(first[finite] - second[finite])) / scale)


# --- the tests ---------------------------------------------------------------------------


def _knife_edge(estimator, float32_negative_weights):
    """Whether the fit's results hang on single roundings: weights so large that a
    forward pass overflows (whether an output is inf, -inf or NaN depends on the order
    of its sums, which each engine chooses); an L-BFGS run on a NaN loss (Poisson with
    negative y), whose line search then decides on gradients' last bits; or one in
    float32 with negative sample weights, whose loss has no minimum: its line search
    compares float32 values of a loss falling without bound."""
    if estimator.solver == "lbfgs" and float32_negative_weights:
        return True
    coefs = getattr(estimator, "coefs_", None)
    if not coefs:
        return False
    if estimator.solver == "lbfgs" and not np.isfinite(getattr(estimator, "loss_", 0.0)):
        return True
    return max(float(np.max(np.abs(c))) for c in coefs) > 1e100


NON_FINITE = "Solver produced non-finite parameter weights."


def run_calls(kind, ours, theirs, calls, float32, huge, float32_negative_weights=False,
              rtol=None):
    """Run (name, call) pairs on both estimators, comparing each outcome; stop at the
    first error.

    Near overflow (``huge`` values) or on a knife's edge (``_knife_edge``), the results
    hang on single roundings: there only errors are compared, and fastmlp may fail
    where scikit-learn does not (or the other way) only with the error for
    non-finite weights.
    """
    for step, (name, call) in enumerate(calls):
        theirs_before = _network_before(theirs)
        ours_out = Outcome(lambda call=call: call(ours))
        theirs_out = Outcome(lambda call=call: call(theirs))
        context = (kind, step, name, ours_out.error, theirs_out.error)
        if huge or _knife_edge(theirs, float32_negative_weights):
            if _deliberate(ours_out, theirs_before):
                return
            ours_overflowed = str(ours_out.error).startswith(NON_FINITE)
            if ours_out.error is not None and theirs_out.error is not None:
                if not ours_overflowed:
                    assert_same_outcome(ours_out, theirs_out, theirs_before, 0.0, context)
                return
            for out in (ours_out, theirs_out):  # one failed: with non-finite weights
                assert out.error is None or str(out.error).startswith(NON_FINITE), context
            if ours_out.error is not None or theirs_out.error is not None:
                return
            continue
        assert_same_outcome(ours_out, theirs_out, theirs_before,
                            rtol_for(float32) if rtol is None else rtol, context)
        if ours_out.error is not None or theirs_out.error is not None:
            return


def _fit_then_use(X, y, sample_weight, kind):
    calls = [("fit", lambda est: est.fit(X, y, sample_weight=sample_weight)),
             ("predict", lambda est: est.predict(X)),
             ("score", lambda est: est.score(X, y, sample_weight=sample_weight))]
    if kind == "classifier":
        calls.insert(2, ("predict_proba", lambda est: est.predict_proba(X)))
        calls.insert(3, ("predict_log_proba", lambda est: est.predict_log_proba(X)))
    return calls


@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
@FUZZ
@hypothesis.given(data=st.data())
def test_fit_predict_score_match_sklearn(kind, data):
    params = data.draw(parameters(kind, valid=False))
    problem = data.draw(datasets(kind, poisson=params.get("loss") == "poisson"))
    ours_data, theirs_data = copies(problem[:3])
    pristine = copies(problem[:3])[0]
    ours, theirs = both(kind, params)
    ours_calls = dict(_fit_then_use(*ours_data, kind))
    theirs_calls = dict(_fit_then_use(*theirs_data, kind))
    calls = [(name, lambda est, name=name: (ours_calls if est is ours else theirs_calls)[name](est))
             for name in ours_calls]
    # Ten times scikit-learn's own spread under a rounding of X, where that is larger.
    rtol = max(rtol_for(problem[3]),
               10 * rounding_sensitivity(kind, params, *copies(problem[:3])[0]))
    run_calls(kind, ours, theirs, calls, *problem[3:], rtol=rtol)
    for before, after in zip(pristine, ours_data):
        if isinstance(before, np.ndarray):
            np.testing.assert_array_equal(before, after)


SETTINGS_CHANGES = [
    {"warm_start": True}, {"warm_start": False}, {"hidden_layer_sizes": (4,)},
    {"hidden_layer_sizes": (2, 2)}, {"activation": "tanh"}, {"alpha": 0.3},
    {"solver": "sgd"}, {"solver": "adam"}, {"solver": "lbfgs"}, {"early_stopping": True},
    {"early_stopping": False}, {"batch_size": 3}, {"max_iter": 2},
    {"learning_rate_init": 0.2}, {"shuffle": False},
    # Invalid: refused by fit, not checked by a partial_fit of a fitted estimator.
    {"alpha": -1.0}, {"batch_size": 0}, {"max_iter": 0}, {"tol": -1.0},
    {"learning_rate_init": -0.1}, {"n_iter_no_change": 0},
]


@st.composite
def call_sequences(draw, kind):
    """Up to three datasets (features, classes, outputs and dtypes may differ) and the
    calls made with them."""
    n_features = draw(st.sampled_from(N_FEATURES))
    problems = []
    for _ in range(draw(st.integers(1, 3))):
        features = n_features if draw(st.integers(0, 4)) else n_features + 1
        problems.append(draw(datasets(kind, n_features=features)))
    calls = []
    for _ in range(draw(st.integers(2, 6))):
        what = draw(st.sampled_from(["fit", "partial_fit", "partial_fit", "set_params",
                                     "predict", "predict_proba", "score"]))
        which = draw(st.integers(0, len(problems) - 1))
        if what == "set_params":
            change = dict(draw(st.sampled_from(SETTINGS_CHANGES)))
            if kind == "regressor" and draw(st.integers(0, 5)) == 0:
                change = {"loss": draw(st.sampled_from(["squared_error", "poisson"]))}
            calls.append((what, change))
        elif what == "partial_fit" and kind == "classifier":
            classes = draw(st.sampled_from(["all", "none", "first"]))
            calls.append((what, which, classes))
        else:
            calls.append((what, which))
    return problems, calls


def _sequence_call(kind, problems, call):
    what = call[0]
    if what == "set_params":
        return lambda est: est.set_params(**call[1])
    X, y, sample_weight = problems[call[1]][:3]
    if what == "fit":
        return lambda est: est.fit(X, y, sample_weight=sample_weight)
    if what == "partial_fit":
        if kind == "regressor":
            return lambda est: est.partial_fit(X, y, sample_weight=sample_weight)
        labels = [p[1] for p in problems] if call[2] == "all" else [y]
        classes = None
        if call[2] != "none":  # each label once, in the order met
            flat = np.concatenate([np.asarray(each, dtype=object).ravel() for each in labels])
            classes = list(dict.fromkeys(flat.tolist()))
        return lambda est: est.partial_fit(X, y, sample_weight=sample_weight,
                                           classes=classes)
    if what == "score":
        return lambda est: est.score(X, y, sample_weight=sample_weight)
    return lambda est: getattr(est, what)(X)


@pytest.mark.parametrize("kind", sorted(ESTIMATORS))
@FUZZ
@hypothesis.given(data=st.data())
def test_call_sequences_match_sklearn(kind, data):
    params = data.draw(parameters(kind))
    problems, sequence = data.draw(call_sequences(kind))
    ours_problems, theirs_problems = copies(problems)
    ours, theirs = both(kind, params)
    float32 = any(p[3] for p in problems)
    huge = any(p[4] for p in problems)
    float32_negative_weights = any(p[3] for p in problems) and any(p[5] for p in problems)
    calls = []
    for call in sequence:
        ours_call = _sequence_call(kind, ours_problems, call)
        theirs_call = _sequence_call(kind, theirs_problems, call)
        calls.append((call, lambda est, a=ours_call, b=theirs_call: (a if est is ours else b)(est)))
    run_calls(kind, ours, theirs, calls, float32, huge, float32_negative_weights)
