"""The lecture notebook's algorithm as it was written: one Python step per example.

A faithful re-implementation (not a copy) kept as the slow baseline of workload W1 and
as the independent computation the notebook drop-in is tested against. It keeps the
notebook's arithmetic order and its unguarded softmax, which overflows for large logits.
"""

import numpy as np


def softmax(x):
    exps = np.exp(x)
    return exps / exps.sum()


def forward(x, model):
    x_with_bias = np.append(x, 1)
    hidden = x_with_bias @ model["W1"]
    hidden[hidden < 0] = 0
    hidden = np.append(hidden, 1)
    return hidden, softmax(hidden @ model["W2"])


def backward(model, xs, hs, errs):
    n = xs.shape[0]
    dW2 = (hs.T @ errs) / n
    dh = errs @ model["W2"].T
    dh[hs <= 0] = 0
    dh = dh[:, :-1]
    xs_with_bias = np.hstack([xs, np.ones((n, 1))])
    dW1 = (xs_with_bias.T @ dh) / n
    return dict(W1=dW1, W2=dW2)


def get_gradient(model, X, y):
    n_classes = model["W2"].shape[1]
    xs, hs, errs = [], [], []
    for x, label in zip(X, y):
        hidden, prob = forward(x, model)
        target = np.zeros(n_classes)
        target[int(label)] = 1.0
        xs.append(x)
        hs.append(hidden)
        errs.append(target - prob)
    return backward(model, np.array(xs), np.array(hs), np.array(errs))


def gradient_step(model, X, y, learning_rate=1e-1):
    grad = get_gradient(model, X, y)
    # Unlike the notebook, copy the arrays too, so the caller's model is left untouched.
    new_model = {name: weights.copy() for name, weights in model.items()}
    for name in grad:
        new_model[name] += learning_rate * grad[name]
    return new_model


def predict(X, model):
    return np.array([np.argmax(forward(x, model)[1]) for x in X])
