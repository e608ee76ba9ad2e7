"""The lecture notebook's functions, drop-in: same names, signatures, model dict and results.

The notebook trains a one-hidden-layer ReLU network with a softmax output by gradient
*ascent* on the log-likelihood. Its model is a dict of two matrices whose last rows are
the biases::

    model["W1"]  (n_feature + 1, n_hidden)     model["W2"]  (n_hidden + 1, n_class)

Differences from the notebook, all deliberate:

* the batch functions (``get_gradient``, ``gradient_step``, ``gradient_ascent``) work on
  the whole batch at once instead of a Python loop over examples;
* ``softmax`` subtracts the maximum first, so large logits give the finite, correct answer
  where the notebook's overflows to NaN;
* ``forward`` also accepts a 2-d batch of examples (one row each);
* ``gradient_step`` returns a new model and leaves the one passed in untouched (the
  notebook's shallow ``model.copy()`` followed by ``+=`` also updated the caller's arrays);
* bad input (shape mismatches, NaN, labels out of range) raises ``ValueError``.

The log-likelihood gradient is minus scikit-learn's log-loss gradient, so the batch
functions run on fastmlp's engines: the Numba engine by default (``backend="numba"``),
the NumPy reference with ``backend="numpy"``. ``gradient_ascent`` runs all its steps in
one compiled call.
"""

import threading

import numpy as np

from fastmlp import reference
from fastmlp._validation import check_backend, check_finite_array

#: The notebook's data has two features ...
n_feature = 2
#: ... and two classes.
n_class = 2


def init_weights(n_hidden=100, *, n_feature=None, n_class=None):
    """Standard-normal weights, drawn from NumPy's global random state as the notebook does.

    After ``np.random.seed(s)`` this returns exactly the notebook's model: ``W1`` is drawn
    first, then ``W2``.

    Parameters
    ----------
    n_hidden : int, default=100
        Units in the hidden layer.
    n_feature : int, default=None
        Inputs of the network; None takes this module's ``n_feature`` (2, the notebook's).
    n_class : int, default=None
        Classes, the outputs of the network; None takes this module's ``n_class`` (2).

    Returns
    -------
    model : dict
        ``{"W1": ndarray of shape (n_feature + 1, n_hidden), "W2": ndarray of shape
        (n_hidden + 1, n_class)}``, float64, each matrix's last row the biases.

    Raises
    ------
    ValueError
        Where a size is negative (NumPy's error).
    """
    n_feature = globals()["n_feature"] if n_feature is None else n_feature
    n_class = globals()["n_class"] if n_class is None else n_class
    return dict(
        W1=np.random.randn(n_feature + 1, n_hidden),
        W2=np.random.randn(n_hidden + 1, n_class),
    )


def softmax(x):
    """``exp(x) / exp(x).sum()`` over all of ``x``, computed without overflow.

    The maximum is subtracted first, so large values give the right answer where the
    notebook's gives NaN. The sum runs over every element, as in the notebook: for a
    batch, take one row at a time (or use :func:`forward`, which normalizes each row).

    Parameters
    ----------
    x : array-like of float, any shape
        The scores (logits).

    Returns
    -------
    ndarray of float64, shape of ``x``
        Positive values that sum to 1.

    Raises
    ------
    ValueError
        Where ``x`` holds NaN or infinity, complex or non-numeric values, or is a sparse
        matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import notebook
    >>> notebook.softmax(np.array([1000.0, 1000.0]))
    array([0.5, 0.5])
    """
    x = check_finite_array(x, "x", np.float64, np.ndim(x))
    e = np.exp(x - x.max()) if x.size else x
    return e / e.sum()


def _check_model(model):
    try:
        W1, W2 = model["W1"], model["W2"]
    except (KeyError, TypeError):
        raise ValueError("model must be a dict with the notebook's keys 'W1' and 'W2'.") from None
    W1 = check_finite_array(W1, "model['W1']", np.float64, 2)
    W2 = check_finite_array(W2, "model['W2']", np.float64, 2)
    if 0 in W1.shape or W2.shape[1] == 0:
        raise ValueError(
            f"model['W1'] has shape {W1.shape} and model['W2'] {W2.shape}: the network "
            "needs at least one hidden unit and one class."
        )
    if W1.shape[1] + 1 != W2.shape[0]:
        raise ValueError(
            f"model['W1'] has shape {W1.shape} and model['W2'] {W2.shape}: W2 needs "
            f"{W1.shape[1] + 1} rows (one per hidden unit, plus the bias)."
        )
    return W1, W2


def _to_layers(W1, W2):
    """The notebook's bias-as-last-row matrices as scikit-learn's coefs and intercepts."""
    return [W1[:-1], W2[:-1]], [W1[-1], W2[-1]]


def _check_inputs(X, W1, name="X"):
    X = check_finite_array(X, name, np.float64, 2)
    if X.shape[1] + 1 != W1.shape[0]:
        raise ValueError(
            f"{name} has {X.shape[1]} features, but model['W1'] expects {W1.shape[0] - 1} "
            "(its last row is the bias)."
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples; at least 1 is required.")
    return X


def _check_labels(y, n_samples, n_classes):
    if isinstance(y, np.ndarray) and y.dtype.kind in "iu" and y.ndim == 1:
        labels = y.astype(np.int64, copy=False)  # integers: finite, nothing to convert
    else:
        labels = check_finite_array(y, "y", np.float64, 1).astype(np.int64)  # int(cls_idx)
    if labels.shape[0] != n_samples:
        raise ValueError(f"y has {labels.shape[0]} labels for {n_samples} samples.")
    # One pass for both bounds: a negative label, read as unsigned, is above any.
    if labels.size and labels.view(np.uint64).max() >= n_classes:
        raise ValueError(f"Class labels must lie in [0, {n_classes}); got {np.unique(labels)}.")
    return labels


def forward(x, model):
    """The forward pass of one example ``x`` (or of each row of a 2-d batch).

    Parameters
    ----------
    x : array-like of shape (n_feature,) or (n_samples, n_feature)
        One example, or a batch of examples, one a row.
    model : dict
        The notebook's model: ``"W1"`` of shape (n_feature + 1, n_hidden) and ``"W2"``
        of shape (n_hidden + 1, n_class), each with the biases as its last row (as
        :func:`init_weights` makes it). Other keys are ignored.

    Returns
    -------
    h : ndarray of shape (n_hidden + 1,) or (n_samples, n_hidden + 1)
        The ReLU hidden values with the constant 1 appended (the bias unit).
    hat_y : ndarray of shape (n_class,) or (n_samples, n_class)
        The softmax class probabilities.

    Raises
    ------
    ValueError
        Where ``model`` lacks ``"W1"`` or ``"W2"``, their shapes do not chain, ``x`` has
        another number of features than ``W1`` takes or no rows, or any of them holds
        NaN or infinity.
    """
    W1, W2 = _check_model(model)
    single = np.ndim(x) == 1
    X = _check_inputs(np.atleast_2d(x), W1, "x")
    coefs, intercepts = _to_layers(W1, W2)
    _, activations = reference.forward(coefs, intercepts, X, "relu", "softmax")
    h = np.hstack([activations[1], np.ones((X.shape[0], 1))])
    hat_y = activations[2]
    return (h[0], hat_y[0]) if single else (h, hat_y)


def backward(model, xs, hs, errs):
    """Gradients of the mean log-likelihood from stored inputs, hidden values and errors.

    The notebook's backward pass, on the batch at once (plain NumPy): the ReLU's
    derivative is read from ``hs > 0``.

    Parameters
    ----------
    model : dict
        The notebook's model, ``"W1"`` and ``"W2"`` (see :func:`forward`).
    xs : array-like of shape (N, n_feature)
        The inputs, one example a row.
    hs : array-like of shape (N, n_hidden + 1)
        Their hidden values as :func:`forward` gives them, the bias column last.
    errs : array-like of shape (N, n_class)
        Their errors ``y_true - hat_y``: one-hot targets minus the probabilities.

    Returns
    -------
    grad : dict
        ``{"W1": ndarray of shape (n_feature + 1, n_hidden), "W2": ndarray of shape
        (n_hidden + 1, n_class)}``: the gradient of the log-likelihood averaged over the
        N examples, laid out as the model (biases last), to be added for ascent.

    Raises
    ------
    ValueError
        Where the model is malformed, the shapes do not match it or each other, or an
        input holds NaN or infinity.
    """
    W1, W2 = _check_model(model)
    xs = _check_inputs(xs, W1, "xs")
    hs = check_finite_array(hs, "hs", np.float64, 2)
    errs = check_finite_array(errs, "errs", np.float64, 2)
    n = xs.shape[0]
    if hs.shape != (n, W2.shape[0]) or errs.shape != (n, W2.shape[1]):
        raise ValueError(
            f"hs must have shape {(n, W2.shape[0])} and errs {(n, W2.shape[1])}; "
            f"got {hs.shape} and {errs.shape}."
        )
    dW2 = hs.T @ errs / n
    # Back through W2 and the ReLU; the bias unit has no inputs, so its column is dropped.
    dh = (errs @ W2.T) * (hs > 0)
    dh = dh[:, :-1]
    xs_with_bias = np.hstack([xs, np.ones((n, 1))])
    dW1 = xs_with_bias.T @ dh / n
    return dict(W1=dW1, W2=dW2)


def _one_hot(labels, n_classes):
    """The targets of ``labels`` (validated class indices), one row each."""
    targets = np.zeros((labels.shape[0], n_classes))
    targets[np.arange(labels.shape[0]), labels] = 1.0
    return targets


def _log_likelihood_gradient(W1, W2, X, labels, backend):
    """The notebook's gradient, as minus scikit-learn's log-loss gradient (alpha = 0).

    The arguments are checked by the caller, once: a step that overflows leaves NaN
    weights to the next, as in the notebook (and as the Numba engine's steps, all in
    one call, do).
    """
    coefs, intercepts = _to_layers(W1, W2)
    Y = _one_hot(labels, W2.shape[1])
    if backend == "numba":
        from fastmlp import kernels

        _, coef_grads, intercept_grads = kernels.loss_and_gradients(
            coefs, intercepts, X, Y, "relu", "softmax", 0.0, None
        )
    else:
        _, coef_grads, intercept_grads = reference.loss_and_gradients(
            coefs, intercepts, X, Y, "relu", "softmax", 0.0, None
        )
    dW1 = -np.vstack([coef_grads[0], intercept_grads[0]])
    dW2 = -np.vstack([coef_grads[1], intercept_grads[1]])
    return dW1, dW2


def get_gradient(model, X_train, y_train, *, backend="numba"):
    """The gradient of the mean log-likelihood over the whole batch, as ``dict(W1=, W2=)``.

    The notebook's ``get_gradient``, computed for all examples at once on one of
    fastmlp's engines instead of a Python loop over them.

    Parameters
    ----------
    model : dict
        The notebook's model, ``"W1"`` and ``"W2"`` (see :func:`forward`).
    X_train : array-like of shape (n_samples, n_feature)
        The examples, one a row.
    y_train : array-like of shape (n_samples,)
        Their class indices, in ``[0, n_class)``; floats are truncated to integers, as
        the notebook's ``int(cls_idx)`` does.
    backend : {"numba", "numpy"}, default="numba"
        The engine: fastmlp's compiled kernels, or its NumPy reference engine.

    Returns
    -------
    grad : dict
        ``{"W1": ndarray of shape (n_feature + 1, n_hidden), "W2": ndarray of shape
        (n_hidden + 1, n_class)}``, float64: the direction of steepest ascent.

    Raises
    ------
    ValueError
        Where the backend is unknown, the model is malformed, the shapes do not match,
        a label is out of range, or an input holds NaN or infinity.
    """
    check_backend(backend)
    W1, W2 = _check_model(model)
    X = _check_inputs(X_train, W1)
    labels = _check_labels(y_train, X.shape[0], W2.shape[1])
    dW1, dW2 = _log_likelihood_gradient(W1, W2, X, labels, backend)
    return dict(W1=dW1, W2=dW2)


_trainers = threading.local()


def _trainer(W1_shape, W2_shape, labels):
    """The Numba engine's trainer for this network and batch, the one-hot targets of
    ``labels`` and the rows' order, kept per Python thread.

    A step of the notebook's network on W1's 3500 rows takes 0.17 ms in the engine
    (``python -m fastmlp profile W1``; the report's W1 step is all of ``gradient_step``,
    its checks included); a new trainer, its plan and buffers (made and first touched)
    cost as much again, and the targets a tenth. Each thread
    keeps its own, for the last shapes and labels it trained on, so calls from several
    threads never share buffers. The trainer comes with its optimizer state reset: a
    notebook step has none (SGD without momentum still keeps a velocity, ``0 * v -
    lr * g``, and one left NaN by an overflowing call would make every later step NaN).
    """
    from fastmlp.kernels import FlatNetwork, Trainer

    key = (W1_shape, W2_shape, labels.shape[0])
    if getattr(_trainers, "key", None) != key:
        units = [W1_shape[0] - 1, W1_shape[1], W2_shape[1]]
        _trainers.trainer = Trainer(
            FlatNetwork(units, np.float64), "relu", "softmax", solver="sgd", momentum=0.0,
            nesterov=False, batch_size=labels.shape[0],
        )
        _trainers.key, _trainers.labels = key, None
        _trainers.order = np.arange(labels.shape[0], dtype=np.int64)
    if _trainers.labels is None or not np.array_equal(_trainers.labels, labels):
        _trainers.targets = _one_hot(labels, W2_shape[1])
        _trainers.labels = labels.copy()
    _trainers.trainer.reset()
    return _trainers.trainer, _trainers.targets, _trainers.order


def _with_bias_row(coef, intercept):
    """``np.vstack([coef, intercept])``, the notebook's layout, in a new array."""
    stacked = np.empty((coef.shape[0] + 1, coef.shape[1]))
    stacked[:-1] = coef
    stacked[-1] = intercept
    return stacked


def _ascend(model, X_train, y_train, learning_rate, n_steps, backend):
    """``n_steps`` full-batch gradient-ascent steps; returns a new model dict."""
    check_backend(backend)
    W1, W2 = _check_model(model)
    X = _check_inputs(X_train, W1)
    labels = _check_labels(y_train, X.shape[0], W2.shape[1])
    if n_steps == 0:  # the notebook's loop runs no step: the model, in new arrays
        W1, W2 = W1.copy(), W2.copy()
    elif backend == "numpy":
        for _ in range(n_steps):
            dW1, dW2 = _log_likelihood_gradient(W1, W2, X, labels, backend)
            W1, W2 = W1 + learning_rate * dW1, W2 + learning_rate * dW2
    else:
        # Ascent on the log-likelihood is plain gradient descent on the log-loss: SGD
        # without momentum over one batch of all rows, every step in one kernel call.
        trainer, Y, order = _trainer(W1.shape, W2.shape, labels)
        network = trainer.network
        network.load(*_to_layers(W1, W2))
        Xc, Y, no_weights = trainer.prepare(X, Y)
        trainer.run_epochs(Xc, Y, no_weights, order, learning_rate, n_epochs=n_steps)
        W1 = _with_bias_row(network.coefs[0], network.intercepts[0])
        W2 = _with_bias_row(network.coefs[1], network.intercepts[1])
    new_model = dict(model)
    new_model.update(W1=W1, W2=W2)
    return new_model


def gradient_step(model, X_train, y_train, learning_rate=1e-1, *, backend="numba"):
    """One gradient-ascent step; returns the new model (the one passed in is untouched).

    Parameters
    ----------
    model : dict
        The notebook's model, ``"W1"`` and ``"W2"`` (see :func:`forward`).
    X_train : array-like of shape (n_samples, n_feature)
        The examples, one a row.
    y_train : array-like of shape (n_samples,)
        Their class indices, in ``[0, n_class)``.
    learning_rate : float, default=0.1
        The step size: the step adds ``learning_rate`` times :func:`get_gradient`.
    backend : {"numba", "numpy"}, default="numba"
        The engine: fastmlp's compiled kernels, or its NumPy reference engine.

    Returns
    -------
    model : dict
        A new dict, with new ``"W1"`` and ``"W2"`` arrays and the other keys of
        ``model`` as they were.

    Raises
    ------
    ValueError
        As :func:`get_gradient`.
    """
    return _ascend(model, X_train, y_train, learning_rate, 1, backend)


def gradient_ascent(
    model, X_train, y_train, no_iter=10, *, verbose=True, learning_rate=1e-1, backend="numba"
):
    """``no_iter`` gradient-ascent steps with the notebook's learning rate (0.1).

    Prints ``Iteration i`` before each step, as the notebook does, unless ``verbose=False``;
    silent, all the steps run in one compiled call.

    Parameters
    ----------
    model : dict
        The notebook's model, ``"W1"`` and ``"W2"`` (see :func:`forward`); not modified.
    X_train : array-like of shape (n_samples, n_feature)
        The examples, one a row.
    y_train : array-like of shape (n_samples,)
        Their class indices, in ``[0, n_class)``.
    no_iter : int, default=10
        The number of steps, counted as the notebook's ``range(no_iter)`` counts: none
        for 0 or less, and then the model comes back unchanged, in new arrays.
    verbose : bool, default=True
        Print ``Iteration i`` before each step.
    learning_rate : float, default=0.1
        The step size (see :func:`gradient_step`).
    backend : {"numba", "numpy"}, default="numba"
        The engine: fastmlp's compiled kernels, or its NumPy reference engine.

    Returns
    -------
    model : dict
        The model after the last step, in new arrays.

    Raises
    ------
    TypeError
        Where ``no_iter`` is not an integer.
    ValueError
        As :func:`get_gradient`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmlp import notebook
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 2))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> np.random.seed(0)
    >>> model = notebook.init_weights(n_hidden=16)
    >>> model = notebook.gradient_ascent(model, X, y, no_iter=100, verbose=False)
    >>> _, prob = notebook.forward(X, model)
    >>> bool((prob.argmax(axis=1) == y).mean() > 0.9)
    True
    """
    steps = range(no_iter)  # the notebook's TypeError for a non-integer
    if not verbose or len(steps) == 0:
        return _ascend(model, X_train, y_train, learning_rate, len(steps), backend)
    for iteration in steps:
        print(f"Iteration {iteration}")
        model = _ascend(model, X_train, y_train, learning_rate, 1, backend)
    return model
