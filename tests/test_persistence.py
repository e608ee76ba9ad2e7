"""fastmlp.save and fastmlp.load: round trips to the bit, and files that are refused.

A loaded estimator must be the saved one: the same parameters and fitted attributes
(arrays to the bit, in their dtypes), the same predictions, and training that goes on
exactly as the saved estimator's does (``partial_fit``, warm-started ``fit``). A file
that is not one ``save`` writes must give a ``ValueError`` and never unpickle anything.
"""

import copy
import io
import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import fastmlp
from fastmlp import persistence
from fastmlp.estimators import MLPClassifier, MLPRegressor

BACKENDS = ["numba", "numpy"]
# Networks here have two hidden layers: the engine's kernels for them compile once per
# dtype, where one ReLU layer on few inputs gets a fused kernel compiled per shape.


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 4))
    classes = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.3)
    return X, classes, X @ rng.standard_normal((4, 2))


def quietly(method, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return method(*args, **kwargs)


def round_trip(estimator, tmp_path):
    path = tmp_path / "model.fastmlp"
    fastmlp.save(estimator, path)
    return fastmlp.load(path)


def assert_same_values(got, want, where="state"):
    """Equal to the bit: the same types, arrays of the same dtype, shape and bytes,
    floats of the same bits (NaN included)."""
    assert type(got) is type(want), f"{where}: {type(got)} != {type(want)}"
    if isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            assert_same_values(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_values(g, w, f"{where}[{i}]")
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape, where
        if want.dtype == object:
            assert_same_values(got.tolist(), want.tolist(), where)
        else:
            assert got.tobytes() == want.tobytes(), where
    elif isinstance(want, np.random.RandomState):
        assert got is not want, where
        assert_same_values(got.get_state(), want.get_state(), where)
    elif isinstance(want, float):
        assert np.array(got).tobytes() == np.array(want).tobytes(), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def assert_same_estimator(got, want, X):
    """Every saved value of the state, then the public attributes and predictions."""
    assert type(got) is type(want)
    assert_same_values(persistence.plain_state(got), persistence.plain_state(want))
    assert_same_values(got.get_params(), want.get_params(), "params")
    for name in ("coefs_", "intercepts_", "classes_", "loss_curve_", "validation_scores_",
                 "validation_loss_curve_", "n_iter_", "t_", "loss_", "best_loss_",
                 "best_validation_score_", "n_features_in_", "n_layers_", "n_outputs_",
                 "out_activation_"):
        if hasattr(want, name):
            assert_same_values(getattr(got, name), getattr(want, name), name)
        else:
            assert not hasattr(got, name), name
    assert_same_values(got.predict(X), want.predict(X), "predict")
    if hasattr(want, "predict_proba"):
        assert_same_values(got.predict_proba(X), want.predict_proba(X), "predict_proba")


def train_on(estimator, X, y):
    """Two partial_fit calls (stochastic solvers without early stopping, which
    partial_fit refuses), then a warm-started fit."""
    if estimator.solver != "lbfgs" and not estimator.early_stopping:
        for _ in range(2):
            estimator.partial_fit(X, y)
    estimator.set_params(warm_start=True, max_iter=3)
    quietly(estimator.fit, X, y)
    return estimator


def assert_trains_on_as_the_original(loaded, original, X, y):
    assert_same_estimator(loaded, original, X)
    train_on(original, X, y)
    train_on(loaded, X, y)
    assert_same_estimator(loaded, original, X)


# --- round trips --------------------------------------------------------------------------

CLASSIFIER_SETTINGS = [
    {"solver": "sgd"},
    {"solver": "adam"},
    {"solver": "lbfgs"},
    # The schedules' state: a rate divided by 5 whenever the loss stalls (tol makes it
    # stall every epoch), and a rate recomputed from t_ each epoch.
    {"solver": "sgd", "learning_rate": "adaptive", "tol": 1e6, "n_iter_no_change": 1},
    {"solver": "sgd", "learning_rate": "invscaling", "nesterovs_momentum": False},
    {"solver": "adam", "early_stopping": True},
    {"solver": "sgd", "early_stopping": True, "n_iter_no_change": 2},
]
REGRESSOR_SETTINGS = [
    {"solver": "sgd", "learning_rate_init": 1e-3},
    {"solver": "adam"},
    {"solver": "lbfgs"},
    {"solver": "adam", "loss": "poisson"},
    {"solver": "adam", "early_stopping": True},
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("settings", CLASSIFIER_SETTINGS, ids=str)
def test_a_loaded_classifier_is_the_saved_one_and_trains_on_to_the_bit(
        settings, backend, data, tmp_path):
    X, classes, _ = data
    y = np.array(["low", "mid", "high"])[classes]
    original = MLPClassifier(hidden_layer_sizes=(6, 5), max_iter=6, random_state=1,
                             backend=backend, **settings)
    quietly(original.fit, X, y)
    assert_trains_on_as_the_original(round_trip(original, tmp_path), original, X, y)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("settings", REGRESSOR_SETTINGS, ids=str)
def test_a_loaded_regressor_is_the_saved_one_and_trains_on_to_the_bit(
        settings, backend, data, tmp_path):
    X, _, y = data
    if settings.get("loss") == "poisson":
        y = np.floor(np.abs(y))
    original = MLPRegressor(hidden_layer_sizes=(5, 3), max_iter=6, random_state=2,
                            backend=backend, **settings)
    quietly(original.fit, X, y)
    assert_trains_on_as_the_original(round_trip(original, tmp_path), original, X, y)


def test_the_adaptive_schedule_state_is_the_one_reached(data, tmp_path):
    """The test above covers the rate only if training changed it."""
    X, classes, _ = data
    original = MLPClassifier(hidden_layer_sizes=(4, 3), solver="sgd", learning_rate="adaptive",
                             tol=1e6, n_iter_no_change=1, max_iter=6, random_state=0)
    quietly(original.fit, X, classes)
    loaded = round_trip(original, tmp_path)
    assert original._optimizer.schedule.learning_rate < original.learning_rate_init
    assert loaded._optimizer.schedule.learning_rate == original._optimizer.schedule.learning_rate


LABELS = {
    "int64": lambda k: k,
    "int32 from 10": lambda k: (k + 10).astype(np.int32),
    "uint8": lambda k: k.astype(np.uint8),
    "unicode": lambda k: np.array(["a", "bb", "ccc"])[k],
    "object strings": lambda k: np.array(["a", "bb", "ccc"], dtype=object)[k],
    "bool": lambda k: k > 0,
    "integral floats": lambda k: k * 2.0,
    "two strings": lambda k: np.array(["no", "yes"])[(k > 0).astype(int)],
    "multilabel": lambda k: np.c_[k > 0, k > 1, k == 0].astype(int),
}


@pytest.mark.parametrize("labels", LABELS)
def test_every_label_type_comes_back_as_it_was(labels, data, tmp_path):
    X, classes, _ = data
    y = LABELS[labels](classes)
    original = MLPClassifier(hidden_layer_sizes=(5, 3), max_iter=4, random_state=0)
    quietly(original.fit, X, y)
    loaded = round_trip(original, tmp_path)
    assert loaded.classes_.dtype == original.classes_.dtype
    assert loaded.predict(X).dtype == original.predict(X).dtype
    assert_trains_on_as_the_original(loaded, original, X, y)


def test_a_model_trained_by_partial_fit_alone_goes_on(data, tmp_path):
    X, classes, _ = data
    y = np.array(["a", "b", "c", "d"])[classes]  # "d" never seen: declared in classes
    original = MLPClassifier(hidden_layer_sizes=(5, 3), random_state=0)
    original.partial_fit(X, y, classes=np.array(["a", "b", "c", "d"]))
    original.partial_fit(X, y)
    loaded = round_trip(original, tmp_path)
    assert list(loaded.classes_) == ["a", "b", "c", "d"]
    for each in (original, loaded):
        each.partial_fit(X, y)
    assert_same_estimator(loaded, original, X)


def test_a_random_state_object_is_saved_in_the_state_it_reached(data, tmp_path):
    """A RandomState parameter is drawn from by every fit (the shuffles): the loaded one
    starts where the saved one was, as a separate generator."""
    X, classes, _ = data
    original = MLPClassifier(hidden_layer_sizes=(5, 3), max_iter=3,
                             random_state=np.random.RandomState(7))
    quietly(original.fit, X, classes)
    loaded = round_trip(original, tmp_path)
    assert loaded.random_state is not original.random_state
    assert_same_values(loaded.random_state.get_state(), original.random_state.get_state())
    assert_trains_on_as_the_original(loaded, original, X, classes)
    assert_same_values(loaded.random_state.get_state(), original.random_state.get_state())


def test_the_float64_state_of_a_fit_that_mixed_dtypes_is_kept(data, tmp_path):
    """float32 weights trained on float64 data keep float64 optimizer state (as
    scikit-learn's do): it is saved too, and later calls go on with it."""
    X, _, y = data
    original = MLPRegressor(hidden_layer_sizes=(5, 3), max_iter=3, random_state=0)
    quietly(original.fit, X.astype(np.float32), y[:, 0].astype(np.float32))
    original.partial_fit(X, y[:, 0])
    assert original._optimizer._promoted is not None  # the case this test is about
    loaded = round_trip(original, tmp_path)
    assert loaded.coefs_[0].dtype == np.float32
    for each in (original, loaded):
        each.partial_fit(X, y[:, 0])
    assert_same_estimator(loaded, original, X)


def test_an_optimizer_left_from_a_fit_by_another_solver_is_kept(data, tmp_path):
    """A refit by L-BFGS, of another network and output, leaves the stochastic solver of
    the fit before (as scikit-learn leaves its own): it is saved as it is, and a later
    stochastic fit replaces it, in both."""
    X, _, y = data
    original = MLPRegressor(hidden_layer_sizes=(5, 3), max_iter=3, random_state=0)
    quietly(original.fit, X, y)
    original.set_params(solver="lbfgs", loss="poisson", hidden_layer_sizes=(4, 2))
    quietly(original.fit, X, np.floor(np.abs(y)))
    assert original._optimizer.output == "identity" != original.out_activation_
    loaded = round_trip(original, tmp_path)
    assert_same_estimator(loaded, original, X)
    for each in (original, loaded):
        each.set_params(solver="sgd")
        quietly(each.fit, X, np.floor(np.abs(y)))
    assert_same_estimator(loaded, original, X)


def test_a_fit_stopped_before_its_first_epoch_ended_is_saved(data, tmp_path):
    """Ctrl-C in the first epoch leaves weights, n_iter_ 0 and no loss_."""
    X, classes, _ = data
    original = quietly(MLPClassifier(hidden_layer_sizes=(4, 3), max_iter=2,
                                     random_state=0).fit, X, classes)
    del original.loss_  # as such a fit leaves it
    original.loss_curve_.clear()
    original.n_iter_ = 0
    assert_same_estimator(round_trip(original, tmp_path), original, X)


def test_an_unfitted_estimator_keeps_its_parameters_and_their_types(data, tmp_path):
    X, _, y = data
    original = MLPRegressor(hidden_layer_sizes=[7, 3], alpha=np.float64(0.01), batch_size=16,
                            n_iter_no_change=np.inf, random_state=np.int64(5), max_iter=3,
                            activation="gelu")
    loaded = round_trip(original, tmp_path)
    assert_same_values(loaded.get_params(), original.get_params(), "params")
    assert not hasattr(loaded, "coefs_")
    for each in (original, loaded):
        quietly(each.fit, X, y)
    assert_same_estimator(loaded, original, X)


def test_feature_names_are_kept_and_checked(data, tmp_path):
    pandas = pytest.importorskip("pandas")
    X, classes, _ = data
    frame = pandas.DataFrame(X, columns=["w", "x", "y", "z"])
    original = quietly(MLPClassifier(hidden_layer_sizes=(4, 3), max_iter=3, random_state=0).fit,
                       frame, classes)
    loaded = round_trip(original, tmp_path)
    assert_same_values(loaded.feature_names_in_, original.feature_names_in_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no feature-name warning on the same columns
        np.testing.assert_array_equal(loaded.predict(frame), original.predict(frame))
    with pytest.warns(UserWarning, match="feature names"):
        loaded.predict(X)


def test_save_and_load_take_file_objects(data):
    X, classes, _ = data
    original = quietly(MLPClassifier(hidden_layer_sizes=(4, 3), max_iter=3, random_state=0).fit,
                       X, classes)
    buffer = io.BytesIO()
    fastmlp.save(original, buffer)
    buffer.seek(0)
    assert_same_estimator(fastmlp.load(buffer), original, X)


def test_the_file_is_a_zip_of_json_and_npy_that_numpy_reads_without_pickle(data, tmp_path):
    """The format is readable without fastmlp: the manifest names each array member."""
    X, classes, _ = data
    original = quietly(MLPClassifier(hidden_layer_sizes=(4, 3), max_iter=3, random_state=0).fit,
                       X, classes)
    path = tmp_path / "model.fastmlp"
    fastmlp.save(original, path)
    (tmp_path / "plain").write_bytes(b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fastmlp", "plain"]
    assert path.stat().st_mode == (tmp_path / "plain").stat().st_mode  # as open() makes it
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        coefs = [np.load(io.BytesIO(archive.read(ref["array"])), allow_pickle=False)
                 for ref in manifest["attributes"]["coefs_"]]
    assert manifest["format"] == "fastmlp.estimator" and manifest["format_version"] == 1
    assert manifest["versions"]["fastmlp"] == fastmlp.__version__
    assert manifest["params"]["hidden_layer_sizes"] == {"tuple": [4, 3]}
    for got, want in zip(coefs, original.coefs_):
        assert_same_values(got, want)


def test_save_refuses_what_it_cannot_write_faithfully(data, tmp_path):
    X, classes, _ = data
    fitted = quietly(MLPClassifier(hidden_layer_sizes=(4, 3), max_iter=2, random_state=0).fit,
                     X, classes)
    fitted.note_ = "an attribute fastmlp does not set"
    with pytest.raises(ValueError, match="note_"):
        fastmlp.save(fitted, tmp_path / "a.fastmlp")
    with pytest.raises(ValueError, match="without pickle"):
        fastmlp.save(MLPClassifier(hidden_layer_sizes=object()), tmp_path / "b.fastmlp")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_the_solvers_attributes_are_all_known(data):
    """Every attribute of the solver and its trainer is saved or rebuilt on load: an
    attribute added there must be added to persistence too (save refuses it until
    then, rather than lose state)."""
    X, classes, _ = data
    for backend in BACKENDS:
        fitted = quietly(MLPClassifier(hidden_layer_sizes=(4, 3), max_iter=2, backend=backend,
                                       random_state=0).fit, X, classes)
        solver = fitted._optimizer
        known = set(persistence._SOLVER_SAVED) | set(persistence._SOLVER_REBUILT)
        assert set(vars(solver)) <= known
        if backend == "numba":
            trainer = solver.trainer
            known = set(persistence._TRAINER_SAVED) | set(persistence._TRAINER_REBUILT)
            assert set(vars(trainer)) <= known


# --- the plain state: pickling, copies ------------------------------------------------------


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_pickle_and_deepcopy_through_the_plain_state(solver, data):
    X, classes, _ = data
    original = MLPClassifier(hidden_layer_sizes=(5, 3), solver=solver, max_iter=3,
                             random_state=0)
    quietly(original.fit, X, classes)
    state = original.__getstate__()
    assert state["format"] == "fastmlp.estimator"
    copied = copy.deepcopy(original)
    unpickled = pickle.loads(pickle.dumps(original))
    original_copy = copy.deepcopy(original)
    assert_trains_on_as_the_original(unpickled, original, X, classes)
    assert_trains_on_as_the_original(copied, original_copy, X, classes)


def test_set_plain_state_refuses_a_bad_state(data):
    X, classes, _ = data
    fitted = quietly(MLPClassifier(hidden_layer_sizes=(4, 3), max_iter=2, random_state=0).fit,
                     X, classes)
    state = persistence.plain_state(fitted)
    state["attributes"]["coefs_"][0] = np.full_like(fitted.coefs_[0], np.nan)
    with pytest.raises(ValueError, match=r"coefs_\[0\] has NaN"):
        persistence.set_plain_state(MLPClassifier.__new__(MLPClassifier), state)
    state = persistence.plain_state(fitted)
    state["params"]["hidden_layer_sizes"] = (4,)  # a raw tuple: not a plain value
    with pytest.raises(ValueError, match="not a value of the format"):
        persistence.set_plain_state(MLPClassifier.__new__(MLPClassifier), state)
    with pytest.raises(ValueError, match="not a MLPRegressor|not a 'MLPRegressor'|MLPRegressor"):
        persistence.set_plain_state(MLPRegressor.__new__(MLPRegressor),
                                    persistence.plain_state(fitted))


def test_a_state_from_other_versions_warns(data):
    from sklearn.exceptions import InconsistentVersionWarning

    X, classes, _ = data
    fitted = quietly(MLPClassifier(hidden_layer_sizes=(4, 3), max_iter=2, random_state=0).fit,
                     X, classes)
    state = persistence.plain_state(fitted)
    state["versions"]["scikit-learn"] = "0.0.1"
    with pytest.warns(InconsistentVersionWarning):
        persistence.set_plain_state(MLPClassifier.__new__(MLPClassifier), state)
    state = persistence.plain_state(fitted)
    state["versions"]["fastmlp"] = "0.0.1"
    with pytest.warns(UserWarning, match="saved by fastmlp 0.0.1"):
        persistence.set_plain_state(MLPClassifier.__new__(MLPClassifier), state)


# --- files that are refused ---------------------------------------------------------------

_SPRUNG = []


def _spring():
    _SPRUNG.append(True)
    return "unpickled"


class Trap:
    """Unpickling this runs ``_spring``: a file that holds it must never set it off."""

    def __reduce__(self):
        return _spring, ()


@pytest.fixture
def no_unpickling(monkeypatch):
    """Loading must never unpickle: pickle's loaders fail the test if called."""
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    _SPRUNG.clear()
    yield
    assert not _SPRUNG, "loading ran code from the file"


@pytest.fixture(scope="module")
def saved(data):
    """A saved adam classifier (string labels, optimizer state) as the file's members."""
    X, classes, _ = data
    fitted = MLPClassifier(hidden_layer_sizes=(4, 3), max_iter=3, random_state=0)
    quietly(fitted.fit, X, np.array(["a", "b", "c"])[classes])
    buffer = io.BytesIO()
    fastmlp.save(fitted, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    return buffer.getvalue(), members


def pack(members, compression=zipfile.ZIP_STORED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def edited(saved, edit):
    """The saved file with its manifest (a dict) changed by ``edit``; ``edit`` may
    return a members dict to change members too."""
    _, members = saved
    members = dict(members)
    manifest = json.loads(members["manifest.json"])
    changed = edit(manifest, members)
    members = changed if changed is not None else members
    members["manifest.json"] = json.dumps(manifest).encode()
    return pack(members)


def npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def assert_refused(content, match):
    with pytest.raises(ValueError, match=match):
        fastmlp.load(io.BytesIO(content))


def coef_reference(manifest, i=0):
    return manifest["attributes"]["coefs_"][i]


def test_the_saved_file_loads(saved, no_unpickling):
    """The files below are this one, each changed in one way."""
    assert isinstance(fastmlp.load(io.BytesIO(saved[0])), MLPClassifier)


@pytest.mark.parametrize("keep", [0, 1, 30, 0.5, -1, -22])
def test_a_truncated_file_is_refused(keep, saved, no_unpickling):
    content = saved[0]
    keep = int(keep * len(content)) if isinstance(keep, float) else keep
    assert_refused(content[:keep], "not a fastmlp model file")


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, b'{"format": "fastmlp.estimator"}',
                                     b"PK\x03\x04 but then nothing"], ids=repr)
def test_what_is_not_a_zip_is_refused(content, no_unpickling):
    assert_refused(content, "not a ZIP archive")


def test_a_pickle_with_the_right_extension_is_refused_unread(data, tmp_path, no_unpickling):
    path = tmp_path / "model.fastmlp"
    path.write_bytes(pickle.dumps(Trap()))
    with pytest.raises(ValueError, match="not a ZIP archive"):
        fastmlp.load(path)


def test_a_pickle_as_an_array_member_is_refused_unread(saved, no_unpickling):
    def edit(manifest, members):
        members[coef_reference(manifest)["array"]] = pickle.dumps(Trap())

    assert_refused(edited(saved, edit), "not a .npy array")


def test_an_object_array_member_is_refused_unread(saved, no_unpickling):
    def edit(manifest, members):
        members[coef_reference(manifest)["array"]] = npy(np.array([Trap()]), allow_pickle=True)

    assert_refused(edited(saved, edit), "dtype object")


def test_a_manifest_naming_an_object_dtype_is_refused(saved, no_unpickling):
    def edit(manifest, members):
        reference = coef_reference(manifest)
        reference["dtype"], reference["shape"] = "|O", [1]
        members[reference["array"]] = npy(np.array([Trap()]), allow_pickle=True)

    assert_refused(edited(saved, edit), "dtype object")


MANIFEST_EDITS = {
    "another format": (lambda m: m.update(format="something.else"), "format"),
    "a future version": (lambda m: m.update(format_version=2), "newer fastmlp"),
    "a version as a string": (lambda m: m.update(format_version="1"), "format_version"),
    "version zero": (lambda m: m.update(format_version=0), "format_version"),
    "another estimator": (lambda m: m.update(estimator="Pipeline"), "estimator"),
    "an extra key": (lambda m: m.update(code="import os"), "keys"),
    "a missing key": (lambda m: m.pop("optimizer"), "keys"),
    "an unknown parameter": (lambda m: m["params"].update(evil=1), "not parameters"),
    "an unknown activation": (lambda m: m["params"].update(activation="evil"), "activation"),
    "an unknown attribute": (lambda m: m["attributes"].update(__class__="x"), "not attributes"),
    "an unknown tag": (lambda m: m["params"].update(alpha={"pickle": "gASV"}), "not a value"),
    "a wrong layer count": (lambda m: m["attributes"].update(n_layers_=5), "n_layers_"),
    "a wrong output": (lambda m: m["attributes"].update(out_activation_="exp"), "out_activation_"),
    "a string as a weight": (lambda m: m["attributes"]["coefs_"].__setitem__(0, "w"),
                             "float32 or float64 array"),
    "a missing attribute": (lambda m: m["attributes"].pop("intercepts_"), "fitted estimator"),
    "a negative step": (lambda m: m["optimizer"]["trainer"].update(adam_step=-1), "adam_step"),
    "another solver": (lambda m: m["optimizer"].update(solver="lbfgs"), "solver"),
    "other settings": (lambda m: m["optimizer"]["schedule"].update(beta_1=0.5),
                       "settings give"),
    "a bad float tag": (lambda m: m["params"].update(alpha={"float": "1e999"}), "tagged float"),
    "a bad scalar": (lambda m: m["params"].update(alpha={"scalar": "<f4", "value": 1e300}),
                     "out of range"),
    "an object dtype scalar": (lambda m: m["params"].update(alpha={"scalar": "|O", "value": 1}),
                               "dtype object"),
    "a bad random state": (lambda m: m["params"].update(random_state={"random_state": {}}),
                           "RandomState"),
    "a huge shape": (lambda m: coef_reference(m).update(shape=[10**6, 10**6]), "holds"),
}


@pytest.mark.parametrize("edit", MANIFEST_EDITS)
def test_an_edited_manifest_is_refused(edit, saved, no_unpickling):
    change, match = MANIFEST_EDITS[edit]

    def edit_manifest(manifest, members):
        change(manifest)

    assert_refused(edited(saved, edit_manifest), match)


@pytest.mark.parametrize(
    "text, match",
    [(b"{not json", "not valid JSON"),
     (b'{"format": NaN}', "NaN literal"),
     (b'{"format": 1, "format": 2}', "key twice"),
     (b"[1, 2]", "not a JSON object"),
     (b"\xff\xfe", "not valid JSON"),
     (b"[" * 100000 + b"]" * 100000, "not valid JSON")],
    ids=["broken", "nan", "duplicate key", "a list", "not utf-8", "nested too deep"],
)
def test_a_manifest_that_is_not_the_format_json_is_refused(text, match, saved, no_unpickling):
    members = dict(saved[1], **{"manifest.json": text})
    assert_refused(pack(members), match)


def test_a_weight_array_of_the_wrong_shape_is_refused(saved, no_unpickling):
    def edit(manifest, members):
        reference = coef_reference(manifest, 1)
        reference["shape"] = [5, 3]  # the manifest agrees with the member: the network does not
        members[reference["array"]] = npy(np.zeros((5, 3)))

    assert_refused(edited(saved, edit), r"coefs_\[1\] has shape \(5, 3\), but layer 1 has 4")


def test_an_array_unlike_its_manifest_entry_is_refused(saved, no_unpickling):
    def edit(manifest, members):
        members[coef_reference(manifest)["array"]] = npy(np.zeros((3, 4)))

    assert_refused(edited(saved, edit), "but the manifest says")


@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.complex128, "<U3"])
def test_a_weight_array_of_the_wrong_dtype_is_refused(dtype, saved, no_unpickling):
    def edit(manifest, members):
        reference = coef_reference(manifest)
        values = np.zeros(reference["shape"], dtype=dtype)
        reference["dtype"] = values.dtype.str
        members[reference["array"]] = npy(values)

    assert_refused(edited(saved, edit),
                   "float32 or float64 array|is float64, expected float32|dtype complex")


def test_optimizer_state_of_another_dtype_is_refused(saved, no_unpickling):
    def edit(manifest, members):
        reference = manifest["optimizer"]["trainer"]["state_1"]
        values = np.load(io.BytesIO(members[reference["array"]])).astype(np.float32)
        reference["dtype"] = values.dtype.str
        members[reference["array"]] = npy(values)

    assert_refused(edited(saved, edit), "state_1: expected a float64 array")


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("where", ["coefs_", "_best_intercepts", "state_1"])
def test_non_finite_weights_and_state_are_refused(where, value, saved, no_unpickling):
    def edit(manifest, members):
        if where == "state_1":
            reference = manifest["optimizer"]["trainer"]["state_1"]
        else:
            reference = manifest["attributes"][where][0]
        values = np.load(io.BytesIO(members[reference["array"]]))
        values.flat[0] = value
        members[reference["array"]] = npy(values)

    assert_refused(edited(saved, edit), "NaN or infinite")


def test_a_nan_second_moment_is_refused(saved, no_unpickling):
    def edit(manifest, members):
        reference = manifest["optimizer"]["trainer"]["state_2"]
        values = np.load(io.BytesIO(members[reference["array"]]))
        values.flat[0] = np.nan
        members[reference["array"]] = npy(values)

    assert_refused(edited(saved, edit), "second moments")


def test_an_extra_member_is_refused(saved, no_unpickling):
    members = dict(saved[1], **{"arrays/extra.npy": npy(np.zeros(3)), "run.py": b"import os"})
    assert_refused(pack(members), "does not name")


def test_a_missing_member_is_refused(saved, no_unpickling):
    members = dict(saved[1])
    del members["arrays/1.npy"]
    assert_refused(pack(members), "missing")


def test_a_missing_manifest_is_refused(saved, no_unpickling):
    members = dict(saved[1])
    del members["manifest.json"]
    assert_refused(pack(members), "no manifest.json")


def test_a_member_named_twice_is_refused(saved, no_unpickling):
    def edit_twice(manifest, members):
        manifest["attributes"]["_best_coefs"] = manifest["attributes"]["coefs_"]
        for reference in json.loads(saved[1]["manifest.json"])["attributes"]["_best_coefs"]:
            del members[reference["array"]]

    assert_refused(edited(saved, edit_twice), "named twice")


def test_duplicate_member_names_are_refused(saved, no_unpickling):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in saved[1].items():
                archive.writestr(name, content)
            archive.writestr("arrays/1.npy", npy(np.zeros(3)))
    assert_refused(buffer.getvalue(), "same name")


def test_a_compressed_member_is_refused(saved, no_unpickling):
    assert_refused(pack(saved[1], compression=zipfile.ZIP_DEFLATED), "compressed")


def test_a_corrupted_member_is_refused(saved, no_unpickling):
    content = bytearray(saved[0])
    start = content.index(b"\x93NUMPY")  # the first array's data follows its header
    content[start + 200] ^= 0xFF
    assert_refused(bytes(content), "cannot be read|CRC")


def test_refusals_say_which_file(saved, tmp_path, no_unpickling):
    path = tmp_path / "broken.fastmlp"
    path.write_bytes(saved[0][: len(saved[0]) // 2])
    with pytest.raises(ValueError, match="broken.fastmlp"):
        fastmlp.load(path)


# --- skops ----------------------------------------------------------------------------------

SKOPS_TRUSTED = ["fastmlp.estimators.MLPClassifier", "fastmlp.estimators.MLPRegressor"]


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_skops_round_trips_trusting_the_two_estimator_classes_only(kind, data):
    skops_io = pytest.importorskip("skops.io")
    X, classes, y = data
    if kind == "classifier":
        original = MLPClassifier(hidden_layer_sizes=(5, 3), max_iter=3, random_state=0)
        y = np.array(["a", "b", "c"], dtype=object)[classes]
    else:
        original = MLPRegressor(hidden_layer_sizes=(5, 3), solver="sgd", max_iter=3,
                                random_state=np.random.RandomState(0))
    quietly(original.fit, X, y)
    dumped = skops_io.dumps(original)
    untrusted = skops_io.get_untrusted_types(data=dumped)
    assert untrusted == [f"fastmlp.estimators.{type(original).__name__}"]
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        skops_io.loads(dumped)
    loaded = skops_io.loads(dumped, trusted=SKOPS_TRUSTED)
    assert_trains_on_as_the_original(loaded, original, X, y)
