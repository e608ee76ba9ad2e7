"""Saving and loading fitted estimators without pickle.

:func:`save` writes an estimator to a file that holds only numbers, strings and plain
structures; :func:`load` reads it back, executing nothing from the file. The same plain
state (:func:`plain_state`, :func:`set_plain_state`) is what the estimators' pickling
gives, so that ``skops.io`` can load them while trusting fastmlp's two estimator classes
only.

What is kept
------------
Everything that decides what the estimator predicts and how it trains on: every
constructor parameter (a ``numpy.random.RandomState`` by its generator state), every
fitted attribute, the label binarizer's state, the weights kept for early stopping,
the no-improvement count, and the optimizer's state (velocities or Adam's moments and
step count, the learning rate the schedules reached, the float64 state of a fit that
mixed dtypes). ``partial_fit`` and warm-started ``fit`` on a loaded estimator go on to
the bit as on the estimator that was saved. Left out are caches rebuilt on demand
(the validated parameters, the solver's buffers and timings, the random state kept for
an int seed, which each fit resets to ``RandomState(seed)`` anyway). With
``random_state=None`` a fit draws from NumPy's global generator, which is not saved.

Pickle and skops
----------------
The estimators pickle (and copy) through :func:`plain_state` and :func:`set_plain_state`,
so their pickled state holds no object of fastmlp's or scikit-learn's but the estimator
itself. ``skops.io`` needs to trust only that class::

    skops.io.load(path, trusted=["fastmlp.estimators.MLPClassifier",
                                 "fastmlp.estimators.MLPRegressor"])

File format (version 1)
-----------------------
A ZIP archive, every member stored uncompressed (no other compression is read, so a
file takes no more memory to load than its size):

``manifest.json``
    UTF-8 JSON, with no NaN or Infinity literal::

        {"format": "fastmlp.estimator", "format_version": 1,
         "versions": {"fastmlp": ..., "scikit-learn": ..., "numpy": ...},
         "estimator": "MLPClassifier" | "MLPRegressor",
         "params": {name: value},            # get_params(deep=False)
         "attributes": {name: value},        # coefs_, classes_, loss_curve_, ...
         "label_binarizer": null | {"params": {...}, "attributes": {...}},
         "optimizer": null | {"backend", "solver", "units", "dtype", "settings",
                              "activation", "output", "alpha", "batch_size",
                              "n_threads", "schedule", "promoted", "trainer"}}

``arrays/<i>.npy``
    One array each, in NumPy's ``.npy`` format, of a boolean, integer, float, bytes or
    unicode dtype (never object); read with ``allow_pickle=False``.

A *value* is JSON's null, true/false, an integer, a string, a finite number or a list
of values, or an object with one of these tags:

* ``{"float": "inf" | "-inf" | "nan"}``: a float JSON cannot write;
* ``{"tuple": [values]}`` and ``{"dict": {string: value}}``;
* ``{"scalar": dtype, "value": value}``: a NumPy scalar, ``dtype`` as ``dtype.str``;
* ``{"array": member, "dtype": dtype, "shape": [ints]}``: an array member (its header
  must say the same dtype and shape);
* ``{"objects": [values], "shape": [ints]}``: an object array, its items in C order
  (string labels from a dataframe, ``feature_names_in_``);
* ``{"random_state": {"key": value, "pos": int, "has_gauss": int,
  "cached_gaussian": value}}``: a legacy MT19937 ``RandomState``.

Floats are written as Python writes them, which reads back to the same bits. Every
member the manifest names must be there, and nothing else. A file of a newer format
version, or anything that does not match this layout, the estimator's parameters or its
network's shapes and dtypes, is refused with a ``ValueError``.
"""

import contextlib
import inspect
import io
import json
import math
import numbers
import os
import uuid
import warnings
import zipfile

import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.preprocessing import LabelBinarizer

from fastmlp import _solvers
from fastmlp.activations import HIDDEN_ACTIVATIONS, OUTPUTS

FORMAT = "fastmlp.estimator"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ESTIMATORS = ("MLPClassifier", "MLPRegressor")
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows' flag for untranslated bytes

#: Array dtypes the format holds (``dtype.kind``): booleans, integers, floats, bytes and
#: unicode strings. Objects would need pickle; the others have no use here.
_ARRAY_KINDS = "biufSU"
#: NumPy scalar dtypes: those of the array kinds whose ``item()`` is a JSON value.
_SCALAR_KINDS = "biufU"

# The estimator's attributes besides its parameters, by how they are kept.
_FITTED_ATTRIBUTES = (
    "coefs_", "intercepts_", "n_iter_", "t_", "loss_", "loss_curve_", "best_loss_",
    "validation_scores_", "best_validation_score_", "validation_loss_curve_",
    "n_features_in_", "feature_names_in_", "n_layers_", "n_outputs_", "out_activation_",
    "classes_", "_best_coefs", "_best_intercepts", "_no_improvement_count",
)
#: Every fitted estimator has these (the others depend on the solver and the data; a fit
#: stopped by Ctrl-C in its first epoch has no loss_).
_REQUIRED_WHEN_FITTED = (
    "coefs_", "intercepts_", "n_iter_", "t_", "n_features_in_", "n_layers_", "n_outputs_",
    "out_activation_", "_best_coefs", "_best_intercepts",
)
#: Caches, rebuilt when next needed: the parameters last validated, the optimizer's
#: configuration (a new optimizer trains as a restarted one), the random state kept
#: for an int seed (reset to ``RandomState(seed)`` at each fit) and the fit's random
#: state (set at the start of each fit).
_REBUILT = ("_validated_params", "_optimizer_config", "_kept_random_state", "_random_state")

# The solver's and trainer's attributes, by how they are kept: saved; made by their
# constructors from what is saved (or from the weights, which each call loads again);
# set afresh by each call; measured speeds and buffers. An attribute in none of these
# stops save: it may be state that a loaded estimator would lack.
_SOLVER_SAVED = ("backend", "solver", "settings", "activation", "output", "alpha",
                 "batch_size", "n_threads", "_schedule", "_promoted", "trainer")
_SOLVER_REBUILT = ("units", "network", "coefs", "intercepts", "promoting",
                   "_weights_may_vanish", "seconds_per_row")
_TRAINER_SAVED = ("state_1", "state_2", "adam_step")
_TRAINER_REBUILT = ("network", "hidden", "output", "solver", "alpha", "batch_size",
                    "momentum", "nesterov", "beta_1", "beta_2", "epsilon", "n_threads",
                    "_plans", "_workspace", "seconds_per_row", "_running", "_calls",
                    "_careful")
_SETTINGS = ("learning_rate_init", "learning_rate", "momentum", "nesterovs_momentum",
             "power_t", "beta_1", "beta_2", "epsilon")
_BINARIZER_ATTRIBUTES = ("classes_", "y_type_", "sparse_input_")
_LABEL_TYPES = ("binary", "multiclass", "multilabel-indicator")


# --- the public functions ------------------------------------------------------------


def save(estimator, path):
    """Write a fastmlp estimator, fitted or not, to a file that :func:`load` reads.

    The file holds numbers, strings and plain structures only (see this module's
    docstring for its format), and loading it runs no code from it.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
    path : str, path-like or binary file object
        Written whole to a temporary file first, then renamed over ``path``.

    Raises
    ------
    ValueError
        Where the estimator holds something the format cannot: a parameter or label
        of an unknown type (an object that is not a number or a string), or state
        that this version of fastmlp does not know.
    """
    data = _archive(plain_state(estimator))
    if hasattr(path, "write"):
        path.write(data)
        return
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    # Made as open() makes files (mode 0o666 less the umask), unlike mkstemp's 0o600.
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def load(path):
    """Read an estimator written by :func:`save`.

    Parameters
    ----------
    path : str, path-like or binary file object

    Returns
    -------
    estimator : MLPClassifier or MLPRegressor
        As saved: same parameters, weights (to the bit), predictions, and training
        from here on.

    Raises
    ------
    ValueError
        Where the file is not one :func:`save` writes: not a ZIP archive, truncated,
        with members missing or extra, a manifest that does not parse or match the
        format, arrays of other dtypes or shapes than the network's, NaN weights, or a
        format version newer than this fastmlp reads.
    """
    if hasattr(path, "read"):
        data = path.read()
        name = getattr(path, "name", "the file")
    else:
        with open(path, "rb") as file:
            data = file.read()
        name = os.fspath(path)
    try:
        return _load_archive(data)
    except _Invalid as error:
        raise ValueError(f"{name} is not a fastmlp model file this version reads: {error}") \
            from None


def plain_state(estimator):
    """The estimator's state as plain values: what pickling and ``skops.io`` store.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor

    Returns
    -------
    state : dict
        Of dicts with string keys, lists, strings, ints, floats, bools, None and
        NumPy arrays of booleans, numbers or strings (never objects), laid out as the
        file's manifest (see this module's docstring) with each array in place of its
        member. The estimator's arrays are shared, not copied (training replaces them,
        never writes into them); the optimizer's are copies.

    Raises
    ------
    ValueError
        Where a parameter, label or attribute has no plain form (see :func:`save`).
    """
    kind = _estimator_kind(estimator)
    attributes = dict(vars(estimator))
    params = estimator.get_params(deep=False)
    for name in params:
        attributes.pop(name, None)
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        "estimator": kind,
        "params": {name: _encode(value, f"params.{name}") for name, value in params.items()},
        "attributes": {},
        "label_binarizer": None,
        "optimizer": None,
    }
    for name, value in attributes.items():
        if name in _REBUILT:
            continue
        if name == "_label_binarizer":
            state["label_binarizer"] = _binarizer_state(value)
        elif name == "_optimizer":
            state["optimizer"] = _optimizer_state(value)
        elif name in _FITTED_ATTRIBUTES:
            state["attributes"][name] = _encode(value, name)
        else:
            raise ValueError(
                f"{type(estimator).__name__} has an attribute {name!r} that fastmlp's "
                "persistence does not know: it cannot be saved or pickled faithfully."
            )
    return state


def set_plain_state(estimator, state):
    """Make ``estimator`` the one :func:`plain_state` described: what unpickling does.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        A new instance (as unpickling makes, without ``__init__``), of the class the
        state was taken from.
    state : dict
        As :func:`plain_state` returns it. Its arrays become the estimator's (they are
        not copied), save the optimizer's, which are copied into its own buffers.

    Raises
    ------
    ValueError
        Where the state is not one :func:`plain_state` gives (see :func:`load`).
    """
    try:
        _restore(estimator, state, _in_memory_array)
    except _Invalid as error:
        raise ValueError(f"Not a valid fastmlp estimator state: {error}") from None


# --- plain values ------------------------------------------------------------------


class _Invalid(Exception):
    """A state or file that does not match the format; reported as a ValueError."""


def _encode(value, where):
    """``value`` as a plain value (see the module's docstring; arrays stay arrays)."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            items = value.ravel(order="C").tolist() if value.ndim else [value.item()]
            return {
                "objects": [_encode(item, f"{where}[{i}]") for i, item in enumerate(items)],
                "shape": list(value.shape),
            }
        _check_array_dtype(value.dtype, where, ValueError)
        return np.asarray(value)
    if isinstance(value, np.generic):
        if value.dtype.kind not in _SCALAR_KINDS:
            raise ValueError(f"{where}: a NumPy scalar of dtype {value.dtype} cannot be saved.")
        return {"scalar": value.dtype.str, "value": _encode(value.item(), where)}
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if type(value) is tuple:
        return {"tuple": [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
    if type(value) is list:
        return [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if type(value) is dict:
        if not all(type(key) is str for key in value):
            raise ValueError(f"{where}: only dicts with string keys can be saved.")
        return {"dict": {key: _encode(item, f"{where}.{key}") for key, item in value.items()}}
    if type(value) is np.random.RandomState:
        return {"random_state": _random_state_value(value, where)}
    raise ValueError(
        f"{where}: a value of type {type(value).__module__}.{type(value).__qualname__} "
        "cannot be saved without pickle (numbers, strings, None, lists, tuples, dicts "
        "with string keys, arrays and RandomState can)."
    )


def _random_state_value(random_state, where):
    if type(random_state._bit_generator) is not np.random.MT19937:
        raise ValueError(f"{where}: only a RandomState on MT19937 (NumPy's own) can be saved.")
    _, key, pos, has_gauss, cached_gaussian = random_state.get_state(legacy=True)
    return {"key": key.copy(), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": _encode(float(cached_gaussian), where)}


def _decode(value, where, read_array):
    """The value that ``_encode`` gave ``value`` for; arrays through ``read_array``."""
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise _Invalid(f"{where}: a non-finite float must be written as a tagged value.")
        return value
    if isinstance(value, np.ndarray):
        return read_array(value, where)
    if type(value) is list:
        return [_decode(item, f"{where}[{i}]", read_array) for i, item in enumerate(value)]
    if type(value) is not dict:
        raise _Invalid(f"{where}: {type(value).__name__} is not a value of the format.")
    tags = frozenset(value)
    if tags == {"float"}:
        if value["float"] not in ("inf", "-inf", "nan"):
            raise _Invalid(f"{where}: a tagged float must be 'inf', '-inf' or 'nan'.")
        return float(value["float"])
    if tags == {"tuple"}:
        return tuple(_decode(_expect_list(value["tuple"], where), where, read_array))
    if tags == {"dict"}:
        items = _expect_dict(value["dict"], where)
        return {key: _decode(item, f"{where}.{key}", read_array) for key, item in items.items()}
    if tags == {"scalar", "value"}:
        return _decode_scalar(value, where, read_array)
    if tags == {"array", "dtype", "shape"}:
        return read_array(value, where)
    if tags == {"objects", "shape"}:
        shape = _expect_shape(value["shape"], where)
        items = _decode(_expect_list(value["objects"], where), where, read_array)
        if any(isinstance(item, (list, tuple, dict, np.ndarray)) for item in items):
            raise _Invalid(f"{where}: an object array holds scalars only.")
        if math.prod(shape) != len(items):
            raise _Invalid(f"{where}: {len(items)} items for an object array of shape {shape}.")
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    if tags == {"random_state"}:
        return _decode_random_state(value["random_state"], where, read_array)
    raise _Invalid(f"{where}: an object with keys {sorted(tags)} is not a value of the format.")


def _decode_scalar(value, where, read_array):
    dtype = _parse_dtype(value["scalar"], where, _SCALAR_KINDS)
    item = _decode(value["value"], where, read_array)
    python_type = {"b": bool, "i": int, "u": int, "f": (int, float), "U": str}[dtype.kind]
    if type(item) not in (python_type if isinstance(python_type, tuple) else (python_type,)):
        raise _Invalid(f"{where}: {item!r} is not a value of a {dtype} scalar.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a float out of float32's range, say
            scalar = dtype.type(item)
    except (OverflowError, ValueError, RuntimeWarning):
        raise _Invalid(f"{where}: {item!r} is out of range for {dtype}.") from None
    if dtype.kind == "U" and scalar.dtype.itemsize > dtype.itemsize:
        raise _Invalid(f"{where}: {item!r} is longer than {dtype} holds.")
    return scalar


def _decode_random_state(value, where, read_array):
    fields = _expect_dict(value, where)
    if set(fields) != {"key", "pos", "has_gauss", "cached_gaussian"}:
        raise _Invalid(f"{where}: a RandomState has key, pos, has_gauss, cached_gaussian.")
    key = _decode(fields["key"], f"{where}.key", read_array)
    pos = fields["pos"]
    has_gauss = fields["has_gauss"]
    gaussian = _decode(fields["cached_gaussian"], f"{where}.cached_gaussian", read_array)
    if not (isinstance(key, np.ndarray) and key.dtype == np.uint32 and key.shape == (624,)):
        raise _Invalid(f"{where}.key: a RandomState's key is 624 uint32 words.")
    if type(pos) is not int or not 0 <= pos <= 624:
        raise _Invalid(f"{where}.pos: a RandomState's position is an int in [0, 624].")
    if has_gauss not in (0, 1) or type(has_gauss) is not int or type(gaussian) is not float:
        raise _Invalid(f"{where}: has_gauss is 0 or 1 and cached_gaussian a float.")
    random_state = np.random.RandomState()
    random_state.set_state(("MT19937", key, pos, has_gauss, gaussian))
    return random_state


def _check_array_dtype(dtype, where, error=None):
    error = _Invalid if error is None else error
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise error(f"{where}: arrays of dtype {dtype} cannot be saved or loaded here "
                    "(booleans, integers, floats, bytes and unicode strings can).")


def _parse_dtype(text, where, kinds):
    if type(text) is not str or len(text) > 16:
        raise _Invalid(f"{where}: a dtype is written as a short string such as '<f8'.")
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError):
        raise _Invalid(f"{where}: {text!r} is not a NumPy dtype.") from None
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise _Invalid(f"{where}: dtype {dtype} is not one the format holds.")
    return dtype


def _expect_list(value, where):
    if type(value) is not list:
        raise _Invalid(f"{where}: expected a list, got {type(value).__name__}.")
    return value


def _expect_dict(value, where):
    if type(value) is not dict or not all(type(key) is str for key in value):
        raise _Invalid(f"{where}: expected an object with string keys.")
    return value


def _expect_shape(value, where):
    shape = _expect_list(value, where)
    if not all(type(n) is int and n >= 0 for n in shape) or len(shape) > 32:
        raise _Invalid(f"{where}: a shape is a list of at most 32 non-negative ints.")
    return tuple(shape)


def _in_memory_array(value, where):
    """An array of an in-memory state (a memory map's, too, as joblib loads them)."""
    if not isinstance(value, np.ndarray):
        raise _Invalid(f"{where}: an array of an in-memory state is a NumPy array.")
    _check_array_dtype(value.dtype, where)
    return np.asarray(value)


# --- the estimator's state ---------------------------------------------------------------


def _estimator_kind(estimator):
    from fastmlp.estimators import MLPClassifier, MLPRegressor

    if isinstance(estimator, MLPClassifier):
        return "MLPClassifier"
    if isinstance(estimator, MLPRegressor):
        return "MLPRegressor"
    raise TypeError(
        f"Expected a fastmlp MLPClassifier or MLPRegressor, got {type(estimator).__name__}."
    )


def _versions():
    import fastmlp

    return {"fastmlp": fastmlp.__version__, "scikit-learn": sklearn.__version__,
            "numpy": np.__version__}


def _binarizer_state(binarizer):
    if type(binarizer) is not LabelBinarizer:
        raise ValueError(f"_label_binarizer is a {type(binarizer).__name__}, not a "
                         "LabelBinarizer: it cannot be saved.")
    params = binarizer.get_params(deep=False)
    attributes = {name: value for name, value in vars(binarizer).items() if name not in params}
    return {
        "params": {name: _encode(value, f"label_binarizer.{name}")
                   for name, value in params.items()},
        "attributes": {name: _encode(value, f"label_binarizer.{name}")
                       for name, value in attributes.items()},
    }


def _check_known(obj, saved, rebuilt, what):
    unknown = sorted(set(vars(obj)) - set(saved) - set(rebuilt))
    if unknown:
        raise ValueError(
            f"The {what} has attribute(s) {unknown} that fastmlp's persistence does not "
            "know: it cannot be saved or pickled faithfully."
        )


def _schedule_state(schedule, where):
    """The schedule's attributes: settings, learning rate, step count and per-parameter
    arrays (copied: training updates them in place)."""
    return {name: _encode([a.copy() for a in value] if type(value) is list else value,
                          f"{where}.{name}")
            for name, value in vars(schedule).items()}


def _optimizer_state(solver):
    if type(solver) is not _solvers.StochasticSolver:
        raise ValueError(f"_optimizer is a {type(solver).__name__}: it cannot be saved.")
    _check_known(solver, _SOLVER_SAVED, _SOLVER_REBUILT, "solver")
    promoted = getattr(solver, "_promoted", None)
    state = {
        "backend": solver.backend,
        "solver": solver.solver,
        "units": [int(n) for n in _solvers.network_units(solver.coefs, solver.intercepts)],
        "dtype": solver.coefs[0].dtype.str,
        "settings": _encode(dict(solver.settings), "optimizer.settings"),
        "activation": solver.activation,
        "output": solver.output,
        "alpha": _encode(solver.alpha, "optimizer.alpha"),
        "batch_size": _encode(solver.batch_size, "optimizer.batch_size"),
        "n_threads": _encode(solver.n_threads, "optimizer.n_threads"),
        "schedule": _schedule_state(solver._schedule, "optimizer.schedule"),
        "promoted": None if promoted is None else _schedule_state(
            promoted, "optimizer.promoted"),
        "trainer": None,
    }
    if solver.backend == "numba":
        trainer = solver.trainer
        _check_known(trainer, _TRAINER_SAVED, _TRAINER_REBUILT, "trainer")
        state["trainer"] = {
            "state_1": trainer.state_1.copy(),
            "state_2": trainer.state_2.copy(),
            "adam_step": int(trainer.adam_step),
        }
    return state


def _restore(estimator, state, read_array):
    """Validate ``state`` and make ``estimator`` the estimator it describes."""
    state = _expect_dict(state, "state")
    expected = {"format", "format_version", "versions", "estimator", "params", "attributes",
                "label_binarizer", "optimizer"}
    if state.get("format") != FORMAT:
        raise _Invalid(f"the format is {state.get('format')!r}, expected {FORMAT!r}.")
    version = state.get("format_version")
    if type(version) is not int or version < 1:
        raise _Invalid(f"format_version {version!r} is not a format version.")
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"it has format version {version}, written by a newer fastmlp; this one reads "
            f"format version {FORMAT_VERSION}. Upgrade fastmlp to load it."
        )
    if set(state) != expected:
        raise _Invalid(f"the state has keys {sorted(state)}, expected {sorted(expected)}.")
    kind = _estimator_kind(estimator)
    if state["estimator"] != kind:
        raise _Invalid(f"it holds a {state['estimator']!r}, not a {kind}.")
    versions = _expect_dict(state["versions"], "versions")
    if not all(type(v) is str for v in versions.values()):
        raise _Invalid("versions: each version is a string.")

    params = _decode_section(state["params"], "params", read_array)
    attributes = _decode_section(state["attributes"], "attributes", read_array)
    binarizer_state = state["label_binarizer"]
    optimizer_state = state["optimizer"]

    names = estimator._get_param_names()
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise _Invalid(f"params: {unknown} are not parameters of {kind}.")
    unknown = sorted(set(attributes) - set(_FITTED_ATTRIBUTES))
    if unknown:
        raise _Invalid(f"attributes: {unknown} are not attributes fastmlp saves.")

    estimator.__dict__.clear()
    # A parameter added to fastmlp since the file was written takes its default.
    defaults = inspect.signature(type(estimator).__init__).parameters
    for name in names:
        setattr(estimator, name, params[name] if name in params else defaults[name].default)
    fitted = bool(attributes) or binarizer_state is not None or optimizer_state is not None
    if fitted:
        try:
            estimator._validate_params()
        except ValueError as error:  # scikit-learn's InvalidParameterError
            raise _Invalid(f"params: {error}") from None
        _check_fitted_attributes(estimator, kind, attributes)
    estimator.__dict__.update(attributes)
    if binarizer_state is not None:
        if kind != "MLPClassifier":
            raise _Invalid("label_binarizer: only a classifier has one.")
        estimator._label_binarizer = _restore_binarizer(binarizer_state, read_array)
    if kind == "MLPClassifier" and "coefs_" in attributes:
        _check_classes(estimator)
    if optimizer_state is not None:
        if "loss_curve_" not in attributes:
            raise _Invalid("optimizer: only an estimator fitted by sgd or adam has one.")
        estimator._optimizer = _restore_optimizer(estimator, optimizer_state, read_array)
    _warn_on_other_versions(kind, versions)


def _decode_section(section, where, read_array):
    section = _expect_dict(section, where)
    return {name: _decode(value, f"{where}.{name}", read_array)
            for name, value in section.items()}


def _warn_on_other_versions(kind, versions):
    import fastmlp

    saved_sklearn = versions.get("scikit-learn", "unknown")
    if saved_sklearn != sklearn.__version__:
        warnings.warn(
            InconsistentVersionWarning(
                estimator_name=kind, current_sklearn_version=sklearn.__version__,
                original_sklearn_version=saved_sklearn,
            ),
            stacklevel=3,
        )
    saved_fastmlp = versions.get("fastmlp", "unknown")
    if saved_fastmlp != fastmlp.__version__:
        warnings.warn(
            f"This {kind} was saved by fastmlp {saved_fastmlp} and loaded by fastmlp "
            f"{fastmlp.__version__}: its weights and predictions are as saved, but training "
            "it further may not give the same numbers as in the version that saved it.",
            UserWarning,
            stacklevel=3,
        )


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _float_arrays(values, where, dtype=None, finite=True):
    if type(values) is not list or not values:
        raise _Invalid(f"{where}: expected a non-empty list of arrays.")
    for i, value in enumerate(values):
        if not isinstance(value, np.ndarray) or value.dtype not in (np.float32, np.float64):
            raise _Invalid(f"{where}[{i}]: expected a float32 or float64 array.")
        if dtype is not None and value.dtype != dtype:
            raise _Invalid(f"{where}[{i}] is {value.dtype}, expected {dtype}.")
        if finite and not np.isfinite(value).all():
            raise _Invalid(f"{where}[{i}] has NaN or infinite values.")


def _check_fitted_attributes(estimator, kind, attributes):
    missing = [name for name in _REQUIRED_WHEN_FITTED if name not in attributes]
    if missing:
        raise _Invalid(f"attributes: a fitted estimator has {missing} too.")
    coefs, intercepts = attributes["coefs_"], attributes["intercepts_"]
    _float_arrays(coefs[:1], "coefs_", finite=False)  # coefs_[0]'s dtype is the network's
    dtype = coefs[0].dtype
    _float_arrays(coefs, "coefs_", dtype)
    _float_arrays(intercepts, "intercepts_", dtype)
    try:
        units = _solvers.network_units(coefs, intercepts)
    except ValueError as error:
        raise _Invalid(str(error)) from None
    for name, like in (("_best_coefs", coefs), ("_best_intercepts", intercepts)):
        _float_arrays(attributes[name], name, dtype)
        if [a.shape for a in attributes[name]] != [a.shape for a in like]:
            raise _Invalid(f"{name}: its shapes are not the network's.")
    for name, value in (("n_layers_", len(units)), ("n_features_in_", units[0]),
                        ("n_outputs_", units[-1])):
        if type(attributes[name]) is not int or attributes[name] != value:
            raise _Invalid(f"{name} is {attributes[name]!r}, but the network has {value}.")
    for name in ("n_iter_", "t_", "_no_improvement_count"):
        value = attributes.get(name, 0)
        if not _is_integer(value) or value < 0:
            raise _Invalid(f"{name} is {value!r}, expected a non-negative int.")
    # Losses and scores may be NaN: a Poisson fit on negative targets trains on with a
    # NaN loss, as scikit-learn's does.
    for name in ("loss_", "best_loss_", "best_validation_score_"):
        value = attributes.get(name)
        if value is not None and not _is_real(value):
            raise _Invalid(f"{name} is {value!r}, expected a number.")
    for name in ("loss_curve_", "validation_scores_", "validation_loss_curve_"):
        values = attributes.get(name)
        if values is not None and (type(values) is not list
                                   or not all(_is_real(v) for v in values)):
            raise _Invalid(f"{name}: expected a list of numbers.")
    output = attributes["out_activation_"]
    allowed = ("softmax", "logistic") if kind == "MLPClassifier" else ("identity", "exp")
    if output not in allowed:
        raise _Invalid(f"out_activation_ is {output!r}, expected one of {allowed}.")
    names = attributes.get("feature_names_in_")
    if names is not None and not (
        isinstance(names, np.ndarray) and names.shape == (units[0],)
        and all(isinstance(n, str) for n in names.tolist())
    ):
        raise _Invalid(f"feature_names_in_: expected {units[0]} feature names (strings).")


def _restore_binarizer(state, read_array):
    state = _expect_dict(state, "label_binarizer")
    if set(state) != {"params", "attributes"}:
        raise _Invalid("label_binarizer: expected params and attributes.")
    params = _decode_section(state["params"], "label_binarizer.params", read_array)
    attributes = _decode_section(state["attributes"], "label_binarizer.attributes", read_array)
    binarizer = LabelBinarizer()
    if set(params) != set(binarizer.get_params(deep=False)):
        raise _Invalid(f"label_binarizer.params: {sorted(params)} are not LabelBinarizer's.")
    if set(attributes) != set(_BINARIZER_ATTRIBUTES):
        raise _Invalid(f"label_binarizer.attributes: expected {list(_BINARIZER_ATTRIBUTES)}.")
    if not all(_is_integer(params[n]) for n in ("neg_label", "pos_label")) or \
            type(params["sparse_output"]) is not bool:
        raise _Invalid("label_binarizer.params: integer labels and a bool sparse_output.")
    if attributes["y_type_"] not in _LABEL_TYPES:
        raise _Invalid(f"label_binarizer.y_type_: expected one of {_LABEL_TYPES}.")
    if type(attributes["sparse_input_"]) is not bool:
        raise _Invalid("label_binarizer.sparse_input_: expected a bool.")
    classes = attributes["classes_"]
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 or classes.size == 0:
        raise _Invalid("label_binarizer.classes_: expected a non-empty 1-d array.")
    binarizer.set_params(**params)
    for name, value in attributes.items():
        setattr(binarizer, name, value)
    return binarizer


def _check_classes(estimator):
    """The labels and the network agree: as many outputs as the labels need."""
    binarizer = getattr(estimator, "_label_binarizer", None)
    classes = getattr(estimator, "classes_", None)
    if binarizer is None or classes is None:
        raise _Invalid("a fitted classifier has classes_ and a label binarizer.")
    if not isinstance(classes, np.ndarray) or classes.ndim != 1 or classes.size == 0:
        raise _Invalid("classes_: expected a non-empty 1-d array.")
    if binarizer.y_type_ != "multilabel-indicator" and not np.array_equal(
            classes, binarizer.classes_):
        raise _Invalid("classes_ differ from the label binarizer's.")
    n_outputs = 1 if binarizer.y_type_ == "binary" else len(binarizer.classes_)
    if estimator.n_outputs_ != n_outputs:
        raise _Invalid(f"{len(binarizer.classes_)} {binarizer.y_type_} labels need "
                       f"{n_outputs} output(s), but the network has {estimator.n_outputs_}.")
    output = "softmax" if binarizer.y_type_ == "multiclass" else "logistic"
    if estimator.out_activation_ != output:
        raise _Invalid(f"{binarizer.y_type_} labels go with a {output} output, not "
                       f"{estimator.out_activation_}.")


def _restore_optimizer(estimator, state, read_array):
    state = _expect_dict(state, "optimizer")
    keys = {"backend", "solver", "units", "dtype", "settings", "activation", "output", "alpha",
            "batch_size", "n_threads", "schedule", "promoted", "trainer"}
    if set(state) != keys:
        raise _Invalid(f"optimizer: expected the keys {sorted(keys)}.")
    backend, solver_name = state["backend"], state["solver"]
    activation, output = state["activation"], state["output"]
    if backend not in ("numba", "numpy") or solver_name not in ("sgd", "adam"):
        raise _Invalid("optimizer: the backend is numba or numpy, the solver sgd or adam.")
    if activation not in HIDDEN_ACTIVATIONS or output not in OUTPUTS:
        raise _Invalid("optimizer: unknown activation or output.")
    units = state["units"]
    if type(units) is not list or len(units) < 2 or not all(
            type(n) is int and 0 < n <= 2**31 for n in units):
        raise _Invalid("optimizer.units: expected a list of at least two positive ints.")
    dtype = _parse_dtype(state["dtype"], "optimizer.dtype", "f")
    if dtype not in (np.float32, np.float64):
        raise _Invalid("optimizer.dtype: the solver trains in float32 or float64.")
    settings = _decode(state["settings"], "optimizer.settings", read_array)
    if type(settings) is not dict or set(settings) != set(_SETTINGS):
        raise _Invalid(f"optimizer.settings: expected {list(_SETTINGS)}.")
    for name in ("learning_rate_init", "momentum", "power_t", "beta_1", "beta_2", "epsilon"):
        if not _is_real(settings[name]) or not math.isfinite(settings[name]):
            raise _Invalid(f"optimizer.settings.{name}: expected a finite number.")
    if settings["learning_rate"] not in ("constant", "invscaling", "adaptive") or \
            not isinstance(settings["nesterovs_momentum"], (bool, np.bool_)):
        raise _Invalid("optimizer.settings: bad learning_rate or nesterovs_momentum.")
    alpha = _decode(state["alpha"], "optimizer.alpha", read_array)
    batch_size = _decode(state["batch_size"], "optimizer.batch_size", read_array)
    n_threads = _decode(state["n_threads"], "optimizer.n_threads", read_array)
    if not _is_real(alpha) or not alpha >= 0 or not math.isfinite(alpha):
        raise _Invalid("optimizer.alpha: expected a finite number >= 0.")
    if not _is_integer(batch_size) or batch_size < 1:
        raise _Invalid("optimizer.batch_size: expected an int >= 1.")
    if n_threads is not None and (not _is_integer(n_threads) or n_threads == 0):
        raise _Invalid("optimizer.n_threads: expected None or a non-zero int.")

    # The solver's network is the estimator's, but for one left from a fit by another
    # solver, which the next stochastic fit replaces. Its weights are loaded from the
    # estimator's at each call: any of the right shapes will do until then.
    coefs, intercepts = estimator.coefs_, estimator.intercepts_
    if _solvers.network_units(coefs, intercepts) != units or coefs[0].dtype != dtype:
        coefs = [np.zeros((a, b), dtype) for a, b in zip(units[:-1], units[1:])]
        intercepts = [np.zeros(b, dtype) for b in units[1:]]
    solver = _solvers.StochasticSolver(
        backend, coefs, intercepts, activation, output, solver_name, settings, alpha,
        batch_size, n_threads,
    )
    _restore_schedule(solver._schedule, state["schedule"], "optimizer.schedule", read_array)
    if state["promoted"] is not None:
        templates = [np.zeros(p.shape) for p in solver.coefs + solver.intercepts]
        promoted = _solvers.make_schedule(templates, solver_name, settings)
        _restore_schedule(promoted, state["promoted"], "optimizer.promoted", read_array)
        solver._promoted = promoted
    trainer_state = state["trainer"]
    if (trainer_state is None) != (backend == "numpy"):
        raise _Invalid("optimizer.trainer: the numba backend's solver has one, numpy's none.")
    if trainer_state is not None:
        _restore_trainer(solver.trainer, trainer_state, read_array)
    return solver


def _restore_schedule(schedule, state, where, read_array):
    """Set a new schedule's state from ``state``: its settings must be those it was made
    with, its arrays of its shapes and dtypes; its learning rate and step count are
    taken as saved."""
    values = _decode_section(state, where, read_array)
    fresh = vars(schedule)
    if set(values) != set(fresh):
        raise _Invalid(f"{where}: expected the attributes {sorted(fresh)}.")
    for name, value in values.items():
        current = fresh[name]
        if type(current) is list:
            _schedule_arrays(value, current, f"{where}.{name}", second=name == "vs")
        elif name == "learning_rate":
            if not _is_real(value) or not (math.isfinite(value) and value >= 0):
                raise _Invalid(f"{where}.learning_rate: expected a finite number >= 0.")
            setattr(schedule, name, value)
        elif name == "t":
            if not _is_integer(value) or value < 0:
                raise _Invalid(f"{where}.t: expected an int >= 0.")
            setattr(schedule, name, value)
        elif type(value) is not type(current) or not (
                value == current or (value != value and current != current)):
            raise _Invalid(f"{where}.{name} is {value!r}, but the settings give {current!r}.")


def _schedule_arrays(values, current, where, second):
    if type(values) is not list or len(values) != len(current):
        raise _Invalid(f"{where}: expected {len(current)} arrays.")
    for i, (value, target) in enumerate(zip(values, current)):
        if not isinstance(value, np.ndarray) or value.dtype != target.dtype or \
                value.shape != target.shape:
            raise _Invalid(f"{where}[{i}]: expected a {target.dtype} array of shape "
                           f"{target.shape}.")
        _check_state_values(value, f"{where}[{i}]", second)
        target[...] = value


def _check_state_values(values, where, second):
    """Velocities and first moments are finite in any state a fit leaves (else the
    weights would not be); second moments are squares, at worst overflowed to inf."""
    if second:
        if np.isnan(values).any() or (values < 0).any():
            raise _Invalid(f"{where}: second moments are >= 0, never NaN.")
    elif not np.isfinite(values).all():
        raise _Invalid(f"{where} has NaN or infinite values.")


def _restore_trainer(trainer, state, read_array):
    values = _decode_section(state, "optimizer.trainer", read_array)
    if set(values) != set(_TRAINER_SAVED):
        raise _Invalid(f"optimizer.trainer: expected {list(_TRAINER_SAVED)}.")
    for name in ("state_1", "state_2"):
        value, target = values[name], getattr(trainer, name)
        if not isinstance(value, np.ndarray) or value.dtype != target.dtype or \
                value.shape != target.shape:
            raise _Invalid(f"optimizer.trainer.{name}: expected a {target.dtype} array of "
                           f"shape {target.shape}.")
        _check_state_values(value, f"optimizer.trainer.{name}", second=name == "state_2")
        target[...] = value
    if not _is_integer(values["adam_step"]) or values["adam_step"] < 0:
        raise _Invalid("optimizer.trainer.adam_step: expected an int >= 0.")
    trainer.adam_step = int(values["adam_step"])


def _build(state, read_array):
    """A new estimator of the state's kind, made the one it describes."""
    from fastmlp.estimators import MLPClassifier, MLPRegressor

    kind = state.get("estimator") if type(state) is dict else None
    if kind not in ESTIMATORS:
        raise _Invalid(f"estimator {kind!r} is not one of {list(ESTIMATORS)}.")
    estimator_class = MLPClassifier if kind == "MLPClassifier" else MLPRegressor
    estimator = estimator_class.__new__(estimator_class)
    _restore(estimator, state, read_array)
    return estimator


# --- the file ----------------------------------------------------------------------------


def _archive(state):
    """The ZIP archive's bytes: the manifest, then each array as a member of its own."""
    arrays = []

    def external(value):
        if isinstance(value, np.ndarray):
            member = f"arrays/{len(arrays)}.npy"
            arrays.append((member, value))
            return {"array": member, "dtype": value.dtype.str, "shape": list(value.shape)}
        if type(value) is dict:
            return {key: external(item) for key, item in value.items()}
        if type(value) is list:
            return [external(item) for item in value]
        return value

    manifest = json.dumps(external(state), allow_nan=False, indent=1).encode("utf-8")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST, manifest)
        for member, value in arrays:
            data = io.BytesIO()
            np.save(data, value, allow_pickle=False)
            archive.writestr(member, data.getvalue())
    return buffer.getvalue()


def _load_archive(data):
    """The estimator a file's bytes describe: its manifest, its arrays read from their
    members as the manifest's references are decoded, each checked against its
    reference; every member must be named once, and no other be there."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise _Invalid("it is not a ZIP archive (or it is truncated).") from None
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise _Invalid("it has members of the same name.")
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                raise _Invalid(f"member {info.filename!r} is compressed or encrypted; the "
                               "format stores members as they are.")
        if MANIFEST not in names:
            raise _Invalid(f"it has no {MANIFEST}.")
        manifest = _parse_manifest(_read_member(archive, MANIFEST))
        referenced = set()

        def read_array(value, where):
            if not isinstance(value, dict):
                raise _Invalid(f"{where}: arrays are stored as members of the file.")
            member = value["array"]
            if type(member) is not str or member == MANIFEST:
                raise _Invalid(f"{where}: an array member is named by a string.")
            if member in referenced:
                raise _Invalid(f"{where}: member {member!r} is named twice.")
            if member not in names:
                raise _Invalid(f"{where}: member {member!r} is missing.")
            referenced.add(member)
            dtype = _parse_dtype(value["dtype"], where, _ARRAY_KINDS)
            shape = _expect_shape(value["shape"], where)
            return _read_npy(_read_member(archive, member), dtype, shape, f"{where} ({member})")

        estimator = _build(manifest, read_array)
        extra = sorted(set(names) - referenced - {MANIFEST})
        if extra:
            raise _Invalid(f"it has members the manifest does not name: {extra}.")
        return estimator


def _read_member(archive, name):
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as error:
        raise _Invalid(f"member {name!r} cannot be read ({error}).") from None


def _parse_manifest(data):
    def no_constants(text):
        raise _Invalid(f"the manifest has a {text} literal (the format tags such floats).")

    def no_duplicates(pairs):
        result = dict(pairs)
        if len(result) != len(pairs):
            raise _Invalid("the manifest has an object with a key twice.")
        return result

    try:
        manifest = json.loads(data.decode("utf-8"), parse_constant=no_constants,
                              object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as error:
        raise _Invalid(f"its manifest is not valid JSON ({error}).") from None
    if type(manifest) is not dict:
        raise _Invalid("its manifest is not a JSON object.")
    return manifest


def _read_npy(data, dtype, shape, where):
    """The array of a ``.npy`` member, which must hold ``dtype`` and ``shape``."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"version {version}")
    except (ValueError, EOFError, OSError) as error:
        raise _Invalid(f"{where} is not a .npy array ({error}).") from None
    header_shape, fortran_order, header_dtype = header
    _check_array_dtype(header_dtype, where)
    if header_dtype != dtype or tuple(header_shape) != shape:
        raise _Invalid(f"{where} holds {header_dtype} of shape {tuple(header_shape)}, but "
                       f"the manifest says {dtype} of shape {shape}.")
    expected = stream.tell() + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise _Invalid(f"{where} has {len(data)} bytes, expected {expected} (truncated?).")
    stream.seek(0)
    try:
        return np.load(stream, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise _Invalid(f"{where} cannot be read ({error}).") from None
