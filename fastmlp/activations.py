"""The one table of hidden activations and output functions, shared by both engines.

Each entry names a function, gives the integer code the Numba kernels dispatch on, and
gives the NumPy form that the reference engine uses. The kernels implement the same
functions on scalars, keyed by the same codes (``fastmlp/kernels/_activations.py``); the
equivalence tests pin the two together.

Derivatives take both the pre-activation ``z`` and the activation ``a = f(z)``:
scikit-learn's activations (relu, logistic, tanh) are differentiated from ``a`` exactly
as scikit-learn does, the smooth extras (gelu, silu) need ``z``.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

LEAKY_RELU_SLOPE = 0.01
_GELU_C = np.sqrt(2.0 / np.pi)
_GELU_K = 0.044715


@dataclass(frozen=True)
class Activation:
    """A hidden-layer activation: ``forward(z) -> a`` and ``derivative(z, a) -> da/dz``."""

    name: str
    code: int
    forward: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray, np.ndarray], np.ndarray]


def _gelu(z):
    inner = _GELU_C * (z + _GELU_K * z**3)
    return 0.5 * z * (1.0 + np.tanh(inner))


def _gelu_derivative(z, a):
    t = np.tanh(_GELU_C * (z + _GELU_K * z**3))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * _GELU_K * z * z)


def _silu_derivative(z, a):
    s = expit(z)
    return s * (1.0 + z * (1.0 - s))


def _as(dtype_like, values):
    """Keep float32 float32: NumPy promotes float32 arrays with float64 scalars."""
    return np.asarray(values, dtype=dtype_like.dtype)


HIDDEN_ACTIVATIONS = {
    activation.name: activation
    for activation in [
        Activation("identity", 0, lambda z: z.copy(), lambda z, a: np.ones_like(z)),
        Activation("logistic", 1, lambda z: expit(z), lambda z, a: a * (1 - a)),
        Activation("tanh", 2, lambda z: np.tanh(z), lambda z, a: 1 - a**2),
        # scikit-learn zeroes the backpropagated error where the output is exactly 0.
        Activation(
            "relu", 3, lambda z: np.maximum(z, 0), lambda z, a: (a != 0).astype(z.dtype)
        ),
        Activation(
            "leaky_relu",
            4,
            lambda z: _as(z, np.where(z > 0, z, LEAKY_RELU_SLOPE * z)),
            lambda z, a: _as(z, np.where(z > 0, 1.0, LEAKY_RELU_SLOPE)),
        ),
        Activation(
            "gelu", 5, lambda z: _as(z, _gelu(z)), lambda z, a: _as(z, _gelu_derivative(z, a))
        ),
        Activation("silu", 6, lambda z: z * expit(z), lambda z, a: _silu_derivative(z, a)),
    ]
}

#: The hidden activations scikit-learn's MLPs accept.
SKLEARN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")


@dataclass(frozen=True)
class Output:
    """An output function with the loss it is paired with (its canonical link).

    For each pairing the error signal at the output's pre-activation is ``a - y``.
    """

    name: str
    code: int
    loss: str
    forward: Callable[[np.ndarray], np.ndarray]


def _softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


OUTPUTS = {
    output.name: output
    for output in [
        Output("identity", 0, "squared_error", lambda z: z.copy()),
        Output("logistic", 1, "binary_log_loss", lambda z: expit(z)),
        Output("softmax", 2, "log_loss", _softmax),
        Output("exp", 3, "poisson", lambda z: np.exp(z)),
    ]
}


def hidden_activation(name):
    """Look up a hidden activation by name, with a clear error for unknown names."""
    try:
        return HIDDEN_ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown activation {name!r}; expected one of {sorted(HIDDEN_ACTIVATIONS)}."
        ) from None


def output_function(name):
    """Look up an output function by name, with a clear error for unknown names."""
    try:
        return OUTPUTS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown output {name!r}; expected one of {sorted(OUTPUTS)}.") from None
