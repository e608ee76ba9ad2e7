"""fastmlp: fast multilayer perceptrons on the CPU, proven against a NumPy reference."""

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
    """
    from fastmlp.onnx import to_onnx

    return to_onnx(estimator, X_sample, **kwargs)
