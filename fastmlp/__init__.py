"""fastmlp: fast multilayer perceptrons on the CPU, proven against a NumPy reference."""

from fastmlp._gc import collection_paused

with collection_paused():  # (a full collection of the process's objects: see _gc)
    from fastmlp.engine import loss_and_gradients
    from fastmlp.estimators import MLPClassifier, MLPRegressor
    from fastmlp.kernels import warmup
    from fastmlp.persistence import load, save
    from fastmlp.profiling import profile

__version__ = "0.2.0"

__all__ = [
    "MLPClassifier",
    "MLPRegressor",
    "load",
    "loss_and_gradients",
    "profile",
    "save",
    "to_onnx",
    "warmup",
    "__version__",
]


def to_onnx(estimator, X_sample, **kwargs):
    """Convert a fitted estimator to an ONNX model: :func:`fastmlp.onnx.to_onnx`.

    Imports ``fastmlp.onnx`` (and so skl2onnx) when first called, not with fastmlp; it
    needs ``pip install "fastmlp[onnx]"``.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        A fitted fastmlp estimator, of any activation and output.
    X_sample : array-like of shape (n_samples, n_features), float32 or float64
        Rows like those the model will be given: their dtype is the graph's input and
        computing type; their count does not matter.
    **kwargs
        ``target_opset`` and ``options``, and anything else :func:`fastmlp.onnx.to_onnx`
        passes on to ``skl2onnx.to_onnx``.

    Returns
    -------
    onnx.ModelProto
        Input ``X`` of shape (N, n_features); outputs ``label`` and ``probabilities``
        for a classifier, ``variable`` for a regressor.
    """
    from fastmlp.onnx import to_onnx

    return to_onnx(estimator, X_sample, **kwargs)
