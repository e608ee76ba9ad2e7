"""scikit-learn's own ``_backprop``, called on given weights: the outside oracle."""

import numpy as np
from sklearn.neural_network import MLPClassifier, MLPRegressor

_LOSS_OF_OUTPUT = {
    "softmax": "log_loss",
    "logistic": "log_loss",
    "identity": "squared_error",
    "exp": "poisson",
}


def sklearn_backprop(coefs, intercepts, X, Y, activation, output, alpha, sample_weight=None):
    """Run scikit-learn's ``_backprop`` on copies of the given weights and data."""
    loss = _LOSS_OF_OUTPUT[output]
    if output in ("softmax", "logistic"):
        mlp = MLPClassifier(activation=activation, alpha=alpha)
    else:
        mlp = MLPRegressor(activation=activation, alpha=alpha, loss=loss)
    mlp.loss = loss
    mlp.coefs_ = [c.copy() for c in coefs]
    mlp.intercepts_ = [b.copy() for b in intercepts]
    mlp.n_layers_ = len(coefs) + 1
    mlp.out_activation_ = output
    n_layers = len(coefs) + 1
    activations = [X.copy()] + [None] * (n_layers - 1)
    deltas = [None] * (n_layers - 1)
    coef_grads = [np.empty_like(c) for c in coefs]
    intercept_grads = [np.empty_like(b) for b in intercepts]
    sw = None if sample_weight is None else sample_weight.copy()
    return mlp._backprop(X.copy(), Y.copy(), sw, activations, deltas, coef_grads, intercept_grads)
