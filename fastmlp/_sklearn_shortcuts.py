"""Shortcuts through scikit-learn's checks for the estimators' common inputs.

Each function here does what the scikit-learn function its docstring names does, for
the inputs the estimators see most (plain float or integer arrays, labels in one
column): scikit-learn's checks of them cost a tenth of a millisecond or more per call,
as much as a whole epoch on small data. Anything else goes through scikit-learn's own
function, and gets its errors.
"""

import functools

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import _check_n_features, check_is_fitted, validate_data


def _check_is_fitted(estimator):
    """``check_is_fitted``, which passes as soon as a fitted attribute such as ``coefs_``
    is set: asked of the instance's dict first, the check costs 0.1 µs instead of 7."""
    if "coefs_" not in estimator.__dict__:
        check_is_fitted(estimator)


def _validate_X_y(estimator, X, y, reset, y_numeric=False):
    """``validate_data`` of X and y as scikit-learn's MLPs call it.

    Float arrays that it would return unchanged, all finite, skip its per-array checks
    (a tenth of a millisecond, mostly spent asking whether X is a dataframe); everything
    else goes through them, and gets their errors. An estimator fitted on a dataframe
    still has its feature names checked.
    """
    if (
        type(X) is np.ndarray
        and type(y) is np.ndarray
        and X.dtype in (np.float64, np.float32)
        and y.dtype.kind in "biuf"
        and X.ndim == 2
        and y.ndim in (1, 2)
        and 0 not in X.shape
        and 0 not in y.shape
        and y.shape[0] == X.shape[0]
        and np.isfinite(X.sum())  # a NaN or inf anywhere makes the sum one
        and (y.dtype.kind != "f" or np.isfinite(y.sum()))
    ):
        if hasattr(estimator, "feature_names_in_"):  # to drop, or to warn about
            return validate_data(estimator, X, y, reset=reset, skip_check_array=True)
        _check_n_features(estimator, X, reset=reset)  # an array has no feature names
        return X, y
    return validate_data(
        estimator, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=y_numeric,
        dtype=(np.float64, np.float32), reset=reset,
    )


@functools.cache
def _param_names(cls):
    return tuple(BaseEstimator._get_param_names.__func__(cls))


def _comparable(params):
    """The parameters as a tuple that compares equal only to the same values of the same
    types (lists as tuples); None where a value cannot be compared so (an array)."""
    items = []
    for name, value in sorted(params.items()):
        if type(value) is list:
            value = (list, *value)
        try:
            hash(value)
        except TypeError:
            return None
        items.append((name, type(value), value))
    return tuple(items)


def _unique_labels(y):
    """``unique_labels(y)``. Integer labels in one column need none of its type checks
    (a tenth of a millisecond per fit) and take the direct route."""
    if y.ndim == 1 and y.dtype.kind in "iu":
        if y.size and 0 <= y.min() and y.max() <= 4 * y.size:  # counted: a fifth the time
            return np.flatnonzero(np.bincount(y)).astype(y.dtype)
        return np.unique(y)
    return unique_labels(y)


def _fitted_binarizer(y):
    """``LabelBinarizer().fit(y)``. Integer labels in one column, in the machine's byte
    order, get its three fitted attributes directly: its type check of them (two passes
    of ``check_array``) cost 0.7 ms of each fit of a grid search on the digits (``python
    -m benchmarks.bench_end_to_end``: about 17 ms a fit), for a result it reads off the
    count of classes. (Its ``classes_`` of labels in the other byte order are in this
    machine's.)"""
    binarizer = LabelBinarizer()
    if (type(y) is np.ndarray and y.ndim == 1 and y.dtype.kind in "iu" and y.size
            and y.dtype.isnative):
        binarizer.classes_ = _unique_labels(y)
        binarizer.y_type_ = "multiclass" if len(binarizer.classes_) > 2 else "binary"
        binarizer.sparse_input_ = False
        return binarizer
    return binarizer.fit(y)


def _fit_classes(estimator, y, incremental):
    """``MLPClassifier._validate_input``'s label handling, shared with fits on Dask: a
    new binarizer (:func:`_fitted_binarizer`) on a new fit, else the fitted classes,
    checked against ``y`` with scikit-learn's errors."""
    if not hasattr(estimator, "classes_") or (not estimator.warm_start and not incremental):
        estimator._label_binarizer = _fitted_binarizer(y)
        estimator.classes_ = estimator._label_binarizer.classes_
        return
    classes = _unique_labels(y)
    if estimator.warm_start:
        if set(classes) != set(estimator.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in "
                f"the previous call to fit. Previously got {estimator.classes_}, `y` has "
                f"{classes}"
            )
    elif len(np.setdiff1d(classes, estimator.classes_, assume_unique=True)):
        raise ValueError(
            "`y` has classes not in `self.classes_`. "
            f"`self.classes_` has {estimator.classes_}. 'y' has {classes}."
        )


def _binarize(binarizer, y):
    """``binarizer.transform(y).astype(bool)``, where ``y`` holds only known classes.

    Labels in one column are binarized directly (one column for two classes, one-hot for
    more, as ``LabelBinarizer`` does): its checks of the label type cost more than half a
    millisecond per fit, as long as a whole epoch on small data. Anything else, and any
    label not in ``classes_``, goes through ``LabelBinarizer`` and its errors.
    """
    classes = binarizer.classes_
    if (
        y.ndim == 1
        and len(classes) >= 2
        and binarizer.y_type_ in ("binary", "multiclass")
        and not binarizer.sparse_output
    ):
        index = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
        if np.array_equal(classes[index], y):
            if len(classes) == 2:
                return (index == 1).reshape(-1, 1)
            one_hot = np.zeros((y.shape[0], len(classes)), dtype=bool)
            one_hot[np.arange(y.shape[0]), index] = True
            return one_hot
    return binarizer.transform(y).astype(bool)


def _labels_of(binarizer, y_pred):
    """``binarizer.inverse_transform(y_pred)`` for the network's dense outputs.

    One output column (two classes) is thresholded at 0.5 and several take their
    argmax, as ``LabelBinarizer`` does, without its checks: predicting, and scoring
    the validation set after every epoch of early stopping, cost a fraction of what
    they did on small data. Multilabel outputs go through ``LabelBinarizer``.
    """
    classes = binarizer.classes_
    if not binarizer.sparse_input_ and binarizer.pos_label == 1 and binarizer.neg_label == 0:
        if binarizer.y_type_ == "multiclass" and y_pred.ndim == 2:
            return classes.take(y_pred.argmax(axis=1), mode="clip")
        if binarizer.y_type_ == "binary" and y_pred.ndim == 1 and len(classes) == 2:
            return classes[(y_pred > 0.5).astype(np.intp)]
    return binarizer.inverse_transform(y_pred)


def _accuracy(y_true, y_pred, sample_weight=None):
    """``accuracy_score``; labels in one column of one plain dtype, with positive, finite
    real weights of the same shape if any, skip its checks (the validation score of
    every early-stopping epoch, and ``score``: 1 ms of each fit and score of a grid
    search on the digits, ``python -m benchmarks.bench_end_to_end``). Other weights get
    its errors."""
    if (
        type(y_true) is np.ndarray
        and (sample_weight is None or (type(sample_weight) is np.ndarray
                                       and sample_weight.shape == y_true.shape
                                       and sample_weight.dtype.kind in "iuf"
                                       and np.all(sample_weight > 0)
                                       and np.isfinite(sample_weight).all()))
        and y_true.ndim == 1
        and y_pred.shape == y_true.shape
        and y_true.dtype == y_pred.dtype
        and y_true.dtype.kind in "biuU"
    ):
        return float(np.average(y_true == y_pred, weights=sample_weight))
    return accuracy_score(y_true, y_pred, sample_weight=sample_weight)


def _first_partial_fit_call(estimator, classes):
    """scikit-learn's first-call logic for ``partial_fit(classes=...)``."""
    if getattr(estimator, "classes_", None) is None and classes is None:
        raise ValueError("classes must be passed on the first call to partial_fit.")
    if classes is not None:
        if getattr(estimator, "classes_", None) is not None:
            if not np.array_equal(estimator.classes_, unique_labels(classes)):
                raise ValueError(
                    f"`classes={classes!r}` is not the same as on last call to "
                    f"partial_fit, was: {estimator.classes_!r}"
                )
        else:
            estimator.classes_ = unique_labels(classes)
            return True
    return False
