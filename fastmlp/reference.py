"""The NumPy reference engine: textbook forward and backward passes, one layer at a time.

This is the oracle every fast path is tested against, so it is written to be read, not to
be fast. The losses and gradients are scikit-learn's (``_backprop`` in
``sklearn/neural_network/_multilayer_perceptron.py``, losses in ``_base.py``):

* the loss is the mean over samples (weighted by ``sample_weight``) plus
  ``0.5 * alpha * sum(||W||^2) / n``, where ``n`` is the number of samples or the sum of
  the sample weights;
* the gradients are ``(A.T @ delta + alpha * W) / n`` and ``delta.sum(0) / n``, with the
  error at the output ``delta = a_out - y`` (times the sample weight), the canonical link
  of each output and its loss.

Inputs are assumed validated (see :func:`fastmlp.loss_and_gradients`); nothing here
modifies its arguments.
"""

import numpy as np
from scipy.special import xlogy

from fastmlp.activations import HIDDEN_ACTIVATIONS, OUTPUTS


def forward(coefs, intercepts, X, activation="relu", output="softmax"):
    """Run the network forward, keeping what the backward pass needs.

    Returns
    -------
    pre_activations : list of ndarray
        ``z[i] = a[i] @ coefs[i] + intercepts[i]`` for each layer, shape (n_samples, fan_out).
    activations : list of ndarray
        ``a[0] = X``, then ``a[i + 1] = f(z[i])``; the last is the network's output.
    """
    hidden = HIDDEN_ACTIVATIONS[activation]
    out = OUTPUTS[output]
    pre_activations, activations = [], [X]
    for i, (coef, intercept) in enumerate(zip(coefs, intercepts)):
        z = activations[-1] @ coef + intercept
        is_output_layer = i == len(coefs) - 1
        a = out.forward(z) if is_output_layer else hidden.forward(z)
        pre_activations.append(z)
        activations.append(a)
    return pre_activations, activations


def loss(y_out, Y, output, sample_weight=None):
    """The data term of scikit-learn's loss for an output function, as scikit-learn computes it.

    ``y_out`` is the network's output (probabilities, or predictions); ``Y`` the targets in
    scikit-learn's internal layout. Probabilities are clipped to ``[eps, 1 - eps]`` of their
    dtype inside the log, as scikit-learn does (the gradient is not clipped).
    """
    weights = sample_weight
    if output == "identity":
        return 0.5 * np.average((Y - y_out) ** 2, weights=weights, axis=0).mean()
    if output == "exp":
        return np.average(xlogy(Y, Y / y_out) - Y + y_out, weights=weights, axis=0).sum()

    eps = np.finfo(y_out.dtype).eps
    prob = np.clip(y_out, eps, 1 - eps)
    if output == "logistic":
        per_sample = xlogy(Y, prob) + xlogy(1 - Y, 1 - prob)
    else:  # softmax, with scikit-learn's one-column convention
        if prob.shape[1] == 1:
            prob = np.append(1 - prob, prob, axis=1)
        if Y.shape[1] == 1:
            Y = np.append(1 - Y, Y, axis=1)
        per_sample = xlogy(Y, prob)
    return -np.average(per_sample, weights=weights, axis=0).sum()


def backward(coefs, pre_activations, activations, Y, activation="relu", sample_weight=None):
    """Backpropagate the output error, returning the per-layer errors ``delta[i] = dL/dz[i]``.

    The errors are not yet divided by the sample count (scikit-learn's order of operations).
    """
    hidden = HIDDEN_ACTIVATIONS[activation]
    delta = activations[-1] - Y
    if sample_weight is not None:
        delta = delta * sample_weight[:, np.newaxis]
    deltas = [delta]
    for i in range(len(coefs) - 1, 0, -1):
        # The error of layer i flows back through coefs[i] and the derivative of layer i-1.
        delta = (delta @ coefs[i].T) * hidden.derivative(pre_activations[i - 1], activations[i])
        deltas.append(delta)
    return deltas[::-1]


def loss_and_gradients(
    coefs, intercepts, X, Y, activation="relu", output="softmax", alpha=0.0, sample_weight=None
):
    """scikit-learn's MLP loss and its gradients on the NumPy engine (validated inputs)."""
    dtype = X.dtype
    n = X.shape[0] if sample_weight is None else sample_weight.sum()
    alpha = dtype.type(alpha)

    pre_activations, activations = forward(coefs, intercepts, X, activation, output)
    data_loss = loss(activations[-1], Y, output, sample_weight)
    squared_norm = sum(np.dot(c.ravel(), c.ravel()) for c in coefs)
    total_loss = data_loss + (0.5 * alpha) * squared_norm / n

    deltas = backward(coefs, pre_activations, activations, Y, activation, sample_weight)
    coef_grads = [
        (activations[i].T @ deltas[i] + alpha * coefs[i]) / n for i in range(len(coefs))
    ]
    intercept_grads = [deltas[i].sum(axis=0) / n for i in range(len(coefs))]
    return dtype.type(total_loss), coef_grads, intercept_grads


def train_epoch(
    coefs, intercepts, X, Y, order, batch_size, optimizer, activation="relu",
    output="softmax", alpha=0.0, sample_weight=None,
):
    """One epoch of minibatch training over the rows ``order``, scikit-learn's loop.

    ``coefs`` and ``intercepts`` are updated in place by ``optimizer`` (``fastmlp.optim``).
    Returns the epoch's loss: the batch losses weighted by batch length, over the rows.
    """
    params = coefs + intercepts
    accumulated = 0.0
    n = len(order)
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        weights = None if sample_weight is None else sample_weight[rows]
        batch_loss, coef_grads, intercept_grads = loss_and_gradients(
            coefs, intercepts, X[rows], Y[rows], activation, output, alpha, weights
        )
        accumulated += batch_loss * len(rows)
        optimizer.update(params, coef_grads + intercept_grads)
    return accumulated / n
