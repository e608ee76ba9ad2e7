"""fastmlp: fast multilayer perceptrons on the CPU, proven against a NumPy reference."""

from fastmlp.engine import loss_and_gradients
from fastmlp.estimators import MLPClassifier, MLPRegressor
from fastmlp.kernels import warmup
from fastmlp.profiling import profile

__version__ = "0.1.0"

__all__ = [
    "MLPClassifier", "MLPRegressor", "loss_and_gradients", "profile", "warmup", "__version__",
]
