"""``loss_and_gradients``: the public entry to both engines, validated at the boundary."""

from fastmlp import reference
from fastmlp._validation import check_backend, check_problem


def loss_and_gradients(
    coefs,
    intercepts,
    X,
    Y,
    *,
    activation="relu",
    output="softmax",
    alpha=0.0,
    sample_weight=None,
    backend="numpy",
):
    """scikit-learn's MLP loss and its gradients with respect to every weight and bias.

    Parameters
    ----------
    coefs : sequence of ndarray
        ``coefs[i]`` of shape (fan_in, fan_out), one per layer (scikit-learn's ``coefs_``).
        One coef is a linear model; each further one adds a hidden layer.
    intercepts : sequence of ndarray
        ``intercepts[i]`` of shape (fan_out,) (scikit-learn's ``intercepts_``).
    X : array-like of shape (n_samples, n_features)
    Y : array-like of shape (n_samples, n_outputs)
        Targets as scikit-learn's MLP passes them to its ``_backprop``: one-hot rows for
        ``"softmax"``, 0/1 columns for ``"logistic"``, real values for ``"identity"``
        (squared error) and non-negative values for ``"exp"`` (Poisson). A 1-d ``Y`` is
        accepted when there is one output.
    activation : {"identity", "logistic", "tanh", "relu", "leaky_relu", "gelu", "silu"}
        Hidden-layer activation.
    output : {"softmax", "logistic", "identity", "exp"}
        Output function; each is paired with its loss (log-loss, binary log-loss, squared
        error, Poisson deviance).
    alpha : float, default 0.0
        L2 penalty, added to the loss as ``0.5 * alpha * sum(||W||^2) / n``.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights; ``n`` above becomes their sum.
    backend : {"numpy", "numba"}
        ``"numpy"`` runs the reference engine, ``"numba"`` the compiled kernels.

    Returns
    -------
    loss : float32 or float64 scalar
    coef_grads : list of ndarray, shapes of ``coefs``
    intercept_grads : list of ndarray, shapes of ``intercepts``
        All in the inputs' dtype: float32 when X and every weight are float32, else float64.

    Notes
    -----
    As in scikit-learn, the squared-error loss is averaged over outputs while its gradient
    is summed over them, so for ``output="identity"`` with several outputs the returned
    gradient is that of ``n_outputs`` times the data term. Probabilities are clipped inside
    the log-loss but not in the gradient.
    """
    check_backend(backend)
    coefs, intercepts, X, Y, alpha, sample_weight = check_problem(
        coefs, intercepts, X, Y, activation, output, alpha, sample_weight
    )
    if backend == "numba":
        from fastmlp import kernels

        return kernels.loss_and_gradients(
            coefs, intercepts, X, Y, activation, output, alpha, sample_weight
        )
    return reference.loss_and_gradients(
        coefs, intercepts, X, Y, activation, output, alpha, sample_weight
    )
