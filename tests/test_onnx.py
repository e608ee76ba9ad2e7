"""ONNX export: ONNX Runtime gives fastmlp's predictions, for every activation and output.

Tolerances, as a fraction of the largest output (so absolute for probabilities): 1e-6
in float32, 1e-12 in float64. The same operations run in both, in other orders and
with other implementations (ONNX Runtime's GEMM, tanh, logistic and exp against
fastmlp's kernels), so each value differs by a few units in the last place: float32's
is 6e-8 at 1, float64's 1.1e-16. The data keep the exp output's pre-activations small
(|z| < 3): exp turns an absolute error in z into that relative error in its value.
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastmlp
from fastmlp.activations import HIDDEN_ACTIVATIONS

skl2onnx = pytest.importorskip("skl2onnx")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
fastmlp_onnx = pytest.importorskip("fastmlp.onnx")

ACTIVATIONS = sorted(HIDDEN_ACTIVATIONS)
DTYPES = [np.float32, np.float64]
TOLERANCE = {np.float32: 1e-6, np.float64: 1e-12}
# Networks here have two hidden layers: the engine's kernels for them compile once per
# dtype, where one ReLU layer on few inputs gets a fused kernel compiled per shape.


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    classes = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.3)
    targets = X @ rng.standard_normal((5, 3))
    counts = rng.poisson(np.exp(0.4 * X[:, 0]))
    return X, classes, targets, counts


def fitted(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def run(model, X):
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})


def assert_close(got, want, dtype):
    assert got.dtype == dtype and got.shape == want.shape
    scale = max(1.0, float(np.max(np.abs(want))))
    assert np.max(np.abs(got.astype(np.float64) - want)) <= TOLERANCE[dtype] * scale


def assert_same_labels(got, want, probabilities, dtype):
    """Equal wherever the probabilities do not tie within rounding (there, the two
    argmaxes may pick either): where the two largest, or each multilabel probability
    and 0.5, are more than 100 times the tolerance apart."""
    if want.ndim == 2:  # multilabel: each label is its probability > 0.5
        margin = np.abs(probabilities - 0.5).min(axis=1)
    else:
        top = np.sort(probabilities, axis=1)
        margin = top[:, -1] - top[:, -2]
    clear = margin > 100 * TOLERANCE[dtype]
    assert clear.mean() > 0.9  # the comparison covers nearly every row
    np.testing.assert_array_equal(got[clear], want[clear])


CLASSIFIER_TARGETS = {
    "binary": lambda classes: np.array(["no", "yes"])[(classes > 0).astype(int)],
    "multiclass": lambda classes: classes + 3,
    "multilabel": lambda classes: np.c_[classes > 0, classes > 1, classes == 0].astype(int),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("target", CLASSIFIER_TARGETS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_runtime_gives_the_classifiers_probabilities_and_labels(
        activation, target, dtype, data):
    X, classes, _, _ = data
    X = X.astype(dtype)
    y = CLASSIFIER_TARGETS[target](classes)
    model = fitted(fastmlp.MLPClassifier(hidden_layer_sizes=(7, 5), activation=activation,
                                         max_iter=20, random_state=0), X, y)
    assert model.coefs_[0].dtype == dtype  # trained, and predicting, in this dtype
    labels, probabilities = run(fastmlp.to_onnx(model, X), X)
    want = model.predict_proba(X)
    assert_close(probabilities, want, dtype)
    expected = model.predict(X)
    if expected.dtype.kind in "U":
        expected = expected.astype(object)
    assert_same_labels(labels, expected, want, dtype)


REGRESSOR_TARGETS = {
    "one output": lambda targets, counts: targets[:, 0],
    "three outputs": lambda targets, counts: targets,
    "poisson": lambda targets, counts: counts,
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("target", REGRESSOR_TARGETS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_runtime_gives_the_regressors_predictions(activation, target, dtype, data):
    X, _, targets, counts = data
    X = X.astype(dtype)
    y = REGRESSOR_TARGETS[target](targets, counts).astype(dtype)
    loss = "poisson" if target == "poisson" else "squared_error"
    model = fitted(fastmlp.MLPRegressor(loss=loss, hidden_layer_sizes=(7, 5),
                                        activation=activation, max_iter=20, random_state=0),
                   X, y)
    assert model.out_activation_ == ("exp" if loss == "poisson" else "identity")
    (predictions,) = run(fastmlp.to_onnx(model, X), X)
    assert predictions.shape == (len(X), model.n_outputs_)  # (N, 1) for one output
    assert_close(predictions, model.predict(X).reshape(len(X), -1), dtype)


def test_a_float32_model_runs_in_float64_as_fastmlp_does(data):
    """float32 weights with float64 input: fastmlp predicts in float64, and so does a
    graph made for float64 rows (the weights are exact in float64)."""
    X, classes, _, _ = data
    model = fitted(fastmlp.MLPClassifier(hidden_layer_sizes=(6, 3), activation="gelu",
                                         max_iter=20, random_state=0),
                   X.astype(np.float32), classes)
    _, probabilities = run(fastmlp.to_onnx(model, X), X)
    assert_close(probabilities, model.predict_proba(X), np.float64)


LABELS = {
    "int32": lambda k: (k + 10).astype(np.int32),
    "uint8": lambda k: k.astype(np.uint8),
    "unicode": lambda k: np.array(["a", "bb", "ccc"])[k],
    "object strings": lambda k: np.array(["a", "bb", "ccc"], dtype=object)[k],
    "bool": lambda k: k > 0,
    "integral floats": lambda k: k * 2.0,
}


@pytest.mark.parametrize("labels", LABELS)
def test_labels_come_as_skl2onnx_gives_them(labels, data):
    """Strings as strings, every other label type as int64; skl2onnx's default ZipMap
    gives one dict of probabilities per row, keyed by those labels."""
    X, classes, _, _ = data
    X = X.astype(np.float32)  # ONNX Runtime's ZipMap takes float32 probabilities only
    y = LABELS[labels](classes)
    model = fitted(fastmlp.MLPClassifier(hidden_layer_sizes=(6, 3), max_iter=20,
                                         random_state=0), X, y)
    want = model.predict_proba(X)
    expected = model.predict(X)
    if expected.dtype.kind in "OU":
        expected, keys = expected.astype(object), list(model.classes_)
    else:
        expected, keys = expected.astype(np.int64), [int(c) for c in model.classes_]
    labels_out, probabilities = run(skl2onnx.to_onnx(model, X[:1]), X)
    assert labels_out.dtype == expected.dtype
    table = np.array([[row[key] for key in keys] for row in probabilities], dtype=np.float32)
    assert_close(table, want, np.float32)
    assert_same_labels(labels_out, expected, want, np.float32)


def test_skl2onnx_converts_a_pipeline_holding_fastmlp(data):
    X, _, targets, _ = data
    pipeline = fitted(make_pipeline(StandardScaler(), fastmlp.MLPRegressor(
        hidden_layer_sizes=(6, 3), activation="silu", max_iter=20, random_state=0)), X, targets)
    (predictions,) = run(skl2onnx.to_onnx(pipeline, X[:1]), X)
    assert_close(predictions, pipeline.predict(X), np.float64)


def test_skl2onnx_options_nocl_and_output_class_labels(data):
    X, classes, _, _ = data
    y = np.array(["a", "bb", "ccc"])[classes]
    model = fitted(fastmlp.MLPClassifier(hidden_layer_sizes=(6, 3), max_iter=20,
                                         random_state=0), X, y)
    labels, _ = run(fastmlp.to_onnx(model, X, options={"nocl": True, "zipmap": False}), X)
    want = model.predict_proba(X).argmax(axis=1)
    assert labels.dtype == np.int64
    assert_same_labels(labels, want, model.predict_proba(X), np.float64)
    options = {"zipmap": False, "output_class_labels": True}
    _, _, class_labels = run(fastmlp.to_onnx(model, X, options=options), X)
    assert class_labels.tolist() == ["a", "bb", "ccc"]


def test_to_onnx_checks_what_it_is_given(data):
    X, classes, _, _ = data
    with pytest.raises(NotFittedError):
        fastmlp.to_onnx(fastmlp.MLPClassifier(), X)
    model = fitted(fastmlp.MLPClassifier(hidden_layer_sizes=(3, 3), max_iter=2), X, classes)
    with pytest.raises(ValueError, match="2 features"):
        fastmlp.to_onnx(model, X[:, :2])
    with pytest.raises(ValueError, match="float32 or float64"):
        fastmlp.to_onnx(model, X.astype(np.int64))
    with pytest.raises(TypeError, match="fastmlp"):
        fastmlp.to_onnx(LogisticRegression().fit(X, classes), X)


def test_importing_fastmlp_imports_no_onnx_package():
    code = ("import sys, fastmlp; "
            "assert not {'skl2onnx', 'onnx', 'onnxruntime'} & set(sys.modules), sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
