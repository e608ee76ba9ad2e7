"""ONNX export of fastmlp's estimators, on skl2onnx's converter machinery.

Importing this module registers a shape calculator and a converter for
:class:`~fastmlp.MLPClassifier` and :class:`~fastmlp.MLPRegressor` with skl2onnx, so
that ``skl2onnx.to_onnx`` (alone, or on a pipeline that holds one) converts them;
:func:`to_onnx` is a shortcut. It needs the optional dependencies::

    pip install "fastmlp[onnx]"

The graph is the network's forward pass, one ``MatMul`` and ``Add`` per layer, in the
input's float type (float32 or float64; weights are cast to it). Every activation is
built from standard ONNX operators as fastmlp computes it (``fastmlp/activations.py``):

* identity, logistic (``Sigmoid``), tanh, relu;
* leaky_relu: ``Where(z > 0, z, slope * z)``, the slope a constant of the input's type
  (ONNX's ``LeakyRelu`` takes it as a float32 attribute, 2e-8 off in float64);
* gelu, in its tanh form: ``0.5 z (1 + tanh(u))`` written as ``z * sigmoid(2 u)``,
  ``u = sqrt(2 / pi) (z + 0.044715 z**3)``: the same function, without the cancellation
  of ``1 + tanh(u)`` where ``tanh(u)`` nears -1 (fastmlp's kernels avoid it too);
* silu: ``z / (1 + exp(-z))``, ``z * sigmoid(z)`` (which ONNX Runtime would fuse into
  a kernel it has in float32 only);

and every output: softmax, logistic, identity and exp (the Poisson regressor's).

Outputs are skl2onnx's for its own MLPs. A classifier gives ``label`` and
``probabilities``: labels as int64 for integer, boolean and (integral) float classes,
as strings for string classes; probabilities of shape (N, n_classes), as
``predict_proba``. A multilabel classifier gives int64 labels and probabilities of shape
(N, n_labels). skl2onnx's options ``zipmap``, ``nocl`` and ``output_class_labels`` apply
(``zipmap`` is on by default in ``skl2onnx.to_onnx``, off in :func:`to_onnx`; ONNX
Runtime's ZipMap takes float32 probabilities only, so a float64 graph needs it off). A
regressor gives ``variable`` of shape (N, n_outputs), one output or several.
"""

import numpy as np

try:
    from skl2onnx import to_onnx as _skl2onnx_to_onnx
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
        guess_proto_type,
    )
    from skl2onnx.common.utils import (
        check_input_and_output_numbers,
        check_input_and_output_types,
    )
    from skl2onnx.common.utils_classifier import get_label_classes
    from skl2onnx.proto import onnx_proto
except ImportError as error:  # an optional dependency
    raise ImportError(
        'fastmlp.onnx needs skl2onnx, onnx and onnxruntime: pip install "fastmlp[onnx]"'
    ) from error
from sklearn.utils.validation import check_is_fitted

from fastmlp.activations import _GELU_C, _GELU_K, HIDDEN_ACTIVATIONS, LEAKY_RELU_SLOPE, OUTPUTS
from fastmlp.estimators import MLPClassifier, MLPRegressor

__all__ = ["to_onnx"]

#: skl2onnx's aliases for fastmlp's estimators (its own MLPs are "SklearnMLP...").
CLASSIFIER_ALIAS = "FastmlpMLPClassifier"
REGRESSOR_ALIAS = "FastmlpMLPRegressor"
_INPUT_TYPES = [FloatTensorType, DoubleTensorType, Int64TensorType, BooleanTensorType]


def to_onnx(estimator, X_sample, *, target_opset=None, options=None, **kwargs):
    """Convert a fitted fastmlp estimator to an ONNX model.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        Fitted.
    X_sample : array-like of shape (n_samples, n_features), float32 or float64
        Rows like those the model will be given: their dtype is the graph's input and
        computing type, their count does not matter (the input takes any number).
    target_opset : int, optional
        The ONNX opset; by default skl2onnx's latest.
    options : dict, optional
        skl2onnx's conversion options. By default a classifier's probabilities come as
        a tensor (``{"zipmap": False}``), as ``predict_proba`` gives them.
    **kwargs
        Passed to ``skl2onnx.to_onnx``.

    Returns
    -------
    onnx.ModelProto
        Inputs: ``X`` of shape (N, n_features). Outputs: ``label`` and
        ``probabilities`` for a classifier, ``variable`` for a regressor (see the
        module's docstring).
    """
    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise TypeError(
            f"Expected a fastmlp MLPClassifier or MLPRegressor, got {type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    X_sample = np.asarray(X_sample)
    if X_sample.dtype not in (np.float32, np.float64) or X_sample.ndim != 2:
        raise ValueError(
            "X_sample must be a 2-d float32 or float64 array: its dtype is the model's input "
            f"type. Got a {X_sample.ndim}-d {X_sample.dtype} array."
        )
    if X_sample.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X_sample has {X_sample.shape[1]} features, but {type(estimator).__name__} "
            f"takes {estimator.n_features_in_}."
        )
    if options is None and isinstance(estimator, MLPClassifier):
        options = {id(estimator): {"zipmap": False}}
    return _skl2onnx_to_onnx(
        estimator, X_sample[:1], target_opset=target_opset, options=options, **kwargs
    )


# --- shapes ---------------------------------------------------------------------------


def _float_type(operator):
    """The tensor type the graph computes in: the input's, float32 for integer inputs
    (as skl2onnx's MLP converter does)."""
    if guess_proto_type(operator.inputs[0].type) == onnx_proto.TensorProto.DOUBLE:
        return DoubleTensorType
    return FloatTensorType


def _labels(scope, model):
    """The labels the graph outputs, as an array of int64 or of UTF-8 bytes."""
    classes = np.asarray(get_label_classes(scope, model))
    if classes.ndim != 1 or len(classes) < 2:
        raise ValueError("A classifier needs at least two classes to be converted.")
    if classes.dtype.kind in "biu":
        labels = classes.astype(np.int64)
        if not np.array_equal(labels, classes):
            raise ValueError("Integer class labels must fit in int64 to be converted.")
        return labels
    if classes.dtype.kind == "f":  # skl2onnx gives integral float labels as int64
        labels = classes.astype(np.int64)
        if not np.array_equal(labels, classes):
            raise ValueError(
                "Float class labels are converted to int64 labels, as skl2onnx does: they "
                f"must be integers, got {classes}. Class labels should be integers or strings."
            )
        return labels
    if classes.dtype.kind == "U" or all(isinstance(c, str) for c in classes):
        return np.array([str(c).encode("utf-8") for c in classes], dtype=object)
    raise ValueError("Class labels must be all integers or all strings to be converted.")


def _is_multilabel(model):
    return model._label_binarizer.y_type_ == "multilabel-indicator"


def calculate_classifier_output_shapes(operator):
    """label: (N,) of int64 or strings, (N, n_labels) of int64 for multilabel;
    probabilities: (N, n_classes) or (N, n_labels), in the computing type."""
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=2)
    check_input_and_output_types(operator, good_input_types=_INPUT_TYPES)
    model = operator.raw_operator
    n_rows = operator.inputs[0].get_first_dimension()
    if _is_multilabel(model):
        operator.outputs[0].type = Int64TensorType([n_rows, model.n_outputs_])
        operator.outputs[1].type = _float_type(operator)([n_rows, model.n_outputs_])
        return
    labels = _labels(operator.scope_inst, model)
    label_type = StringTensorType if labels.dtype == object else Int64TensorType
    operator.outputs[0].type = label_type([n_rows])
    operator.outputs[1].type = _float_type(operator)([n_rows, len(labels)])


def calculate_regressor_output_shapes(operator):
    """variable: (N, n_outputs), in the computing type."""
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    check_input_and_output_types(operator, good_input_types=_INPUT_TYPES)
    model = operator.raw_operator
    n_rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = _float_type(operator)([n_rows, model.n_outputs_])


# --- the graph --------------------------------------------------------------------------


class _Graph:
    """Adds nodes and constants to skl2onnx's container, in one float type."""

    def __init__(self, scope, container, proto_dtype):
        self.scope, self.container = scope, container
        self.proto_dtype = proto_dtype
        self.dtype = np.float64 if proto_dtype == onnx_proto.TensorProto.DOUBLE else np.float32

    def node(self, op_type, inputs, output=None, op_domain="", **attributes):
        output = output or self.scope.get_unique_variable_name(op_type.lower())
        self.container.add_node(
            op_type, inputs, output, op_domain=op_domain,
            name=self.scope.get_unique_operator_name(op_type), **attributes,
        )
        return output

    def constant(self, values, proto_dtype=None, shape=None):
        """An initializer: ``values`` in the graph's float type unless told otherwise."""
        name = self.scope.get_unique_variable_name("constant")
        proto_dtype = self.proto_dtype if proto_dtype is None else proto_dtype
        if proto_dtype == self.proto_dtype:
            values = np.asarray(values, dtype=self.dtype)
        values = np.asarray(values)
        shape = list(values.shape) if shape is None else shape
        self.container.add_initializer(name, proto_dtype, shape, values.ravel().tolist())
        return name

    def hidden(self, z, activation):
        """fastmlp's hidden activation of ``z`` (``fastmlp.activations``)."""
        if activation == "identity":
            return z
        if activation == "logistic":
            return self.node("Sigmoid", [z])
        if activation == "tanh":
            return self.node("Tanh", [z])
        if activation == "relu":
            return self.node("Relu", [z])
        if activation == "leaky_relu":
            positive = self.node("Greater", [z, self.constant(0.0)])
            scaled = self.node("Mul", [z, self.constant(LEAKY_RELU_SLOPE)])
            return self.node("Where", [positive, z, scaled])
        if activation == "gelu":
            cube = self.node("Mul", [self.node("Mul", [z, z]), z])
            inner = self.node("Add", [z, self.node("Mul", [self.constant(_GELU_K), cube])])
            twice_u = self.node("Mul", [self.constant(2.0 * _GELU_C), inner])
            return self.node("Mul", [z, self.node("Sigmoid", [twice_u])])
        if activation == "silu":
            # z / (1 + exp(-z)), not z * Sigmoid(z): ONNX Runtime (1.21 and 1.22 at
            # least) fuses that pair into a kernel it has for float32 only, and then
            # cannot run a float64 graph.
            negative_exp = self.node("Exp", [self.node("Neg", [z])])
            return self.node("Div", [z, self.node("Add", [self.constant(1.0), negative_exp])])
        raise ValueError(f"No ONNX form for the hidden activation {activation!r}.")

    def output(self, z, output, name=None):
        """fastmlp's output function of ``z``."""
        op_type = {"identity": "Identity", "logistic": "Sigmoid", "exp": "Exp",
                   "softmax": "Softmax"}[output]
        attributes = {"axis": 1} if output == "softmax" else {}
        return self.node(op_type, [z], name, **attributes)

    def network(self, model, input_name, output_name=None):
        """The network's output for the rows of ``input_name``."""
        if model.activation not in HIDDEN_ACTIVATIONS or model.out_activation_ not in OUTPUTS:
            raise ValueError(f"No ONNX form for {model.activation!r} / "
                             f"{model.out_activation_!r}.")
        a = self.node("Cast", [input_name], to=self.proto_dtype)
        last = len(model.coefs_) - 1
        for i, (coef, intercept) in enumerate(zip(model.coefs_, model.intercepts_)):
            product = self.node("MatMul", [a, self.constant(coef)])
            z = self.node("Add", [product, self.constant(intercept)])
            if i < last:
                a = self.hidden(z, model.activation)
            else:
                a = self.output(z, model.out_activation_, output_name)
        return a


def _graph(scope, operator, container):
    proto_dtype = guess_proto_type(operator.inputs[0].type)
    if proto_dtype != onnx_proto.TensorProto.DOUBLE:
        proto_dtype = onnx_proto.TensorProto.FLOAT
    return _Graph(scope, container, proto_dtype)


def convert_classifier(scope, operator, container):
    """label and probabilities, as ``predict`` and ``predict_proba`` give them.

    Two classes: the network's one output ``p`` is the second class's probability, and
    the probabilities are ``[1 - p, p]``; the label is the class of the larger, the
    first on a tie (``p > 0.5`` picks the second, as ``predict`` does: ``1 - p`` is exact
    for ``p >= 0.5``). More classes: softmax's probabilities and their argmax (the first
    of equal ones, as NumPy's). Multilabel: each label 1 where its probability is above
    0.5.
    """
    model = operator.raw_operator
    graph = _graph(scope, operator, container)
    label_name, probabilities_name = operator.outputs[0].full_name, operator.outputs[1].full_name
    if _is_multilabel(model):
        p = graph.network(model, operator.inputs[0].full_name, probabilities_name)
        above = graph.node("Greater", [p, graph.constant(0.5)])
        graph.node("Cast", [above], label_name, to=onnx_proto.TensorProto.INT64)
        return
    labels = _labels(scope, model)
    if model.n_outputs_ == 1:
        p = graph.network(model, operator.inputs[0].full_name)
        complement = graph.node("Sub", [graph.constant(1.0), p])
        graph.node("Concat", [complement, p], probabilities_name, axis=1)
    else:
        graph.network(model, operator.inputs[0].full_name, probabilities_name)
    index = graph.node("ArgMax", [probabilities_name], axis=1, keepdims=0)
    if labels.dtype == object:
        table = graph.constant(labels, onnx_proto.TensorProto.STRING, [len(labels)])
    else:
        table = graph.constant(labels, onnx_proto.TensorProto.INT64, [len(labels)])
    graph.node("Gather", [table, index], label_name, axis=0)


def convert_regressor(scope, operator, container):
    """The network's outputs, (N, n_outputs) whatever their count."""
    model = operator.raw_operator
    graph = _graph(scope, operator, container)
    graph.network(model, operator.inputs[0].full_name, operator.outputs[0].full_name)


update_registered_converter(
    MLPClassifier, CLASSIFIER_ALIAS, calculate_classifier_output_shapes, convert_classifier,
    options={"zipmap": [True, False, "columns"], "nocl": [True, False],
             "output_class_labels": [False, True]},
)
update_registered_converter(
    MLPRegressor, REGRESSOR_ALIAS, calculate_regressor_output_shapes, convert_regressor,
)
