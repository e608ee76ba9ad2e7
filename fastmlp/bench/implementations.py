"""Every implementation that can run the standard workloads (:mod:`fastmlp.bench.workloads`).

One table drives ``python -m fastmlp bench``, the repository's benchmark suites, its
equivalence smoke test and its report: ``IMPLEMENTATIONS[name](workload, data)`` returns a
:class:`Runner` whose ``run()`` does one unit of work (one gradient step for W1, one epoch
otherwise), already warmed up so compile time stays out, or raises :class:`Unavailable`
with the reason it cannot run (PyTorch where it is not installed, for one).
"""

import importlib.util
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from fastmlp.bench.workloads import init_params, network_units, output_layer


class Unavailable(Exception):
    """This implementation cannot run this workload (the message says why)."""


#: The module each optional peer needs, and the reason given where it is not installed.
OPTIONAL = {"pytorch": ("torch", "PyTorch is not installed (pip install torch)")}


def check_installed(name):
    """Raise :class:`Unavailable` where the optional peer ``name`` is not installed
    (looked up without importing it)."""
    if name in OPTIONAL and importlib.util.find_spec(OPTIONAL[name][0]) is None:
        raise Unavailable(OPTIONAL[name][1])


@dataclass
class Runner:
    """One implementation set up on one workload."""

    run: Callable[[], None]  # units_per_run units of work
    predict: Callable[[np.ndarray], np.ndarray]  # class labels (indices) for rows of X
    layer_shapes: list  # (fan_in, fan_out) of each layer
    units_per_run: int = 1


def _shapes(units):
    return list(zip(units[:-1], units[1:]))


def _label_predictor(coefs, intercepts, activation, output):
    from fastmlp import reference

    def predict(X):
        _, activations = reference.forward(
            [np.asarray(c) for c in coefs], [np.asarray(b) for b in intercepts], X,
            activation, output,
        )
        out = activations[-1]
        return (out[:, 0] > 0.5).astype(int) if out.shape[1] == 1 else out.argmax(axis=1)

    return predict


# --- implementations -----------------------------------------------------------------


def _notebook_model(workload, X, y):
    from fastmlp import notebook

    np.random.seed(0)
    return notebook.init_weights(
        workload.hidden[0], n_feature=X.shape[1], n_class=len(np.unique(y))
    )


def _notebook_runner(workload, data, gradient_step):
    X, y = data
    state = {"model": _notebook_model(workload, X, y)}

    def step():
        state["model"] = gradient_step(state["model"], X, y, workload.learning_rate)

    def predict(X_new):
        from fastmlp import notebook

        return notebook.forward(X_new, state["model"])[1].argmax(axis=1)

    return Runner(step, predict, _shapes(network_units(workload, X, y)))


def notebook_loop(workload, data):
    """The notebook's per-example algorithm (W1 only)."""
    if workload.solver != "gd":
        raise Unavailable("the notebook's loop only does full-batch gradient ascent (W1)")
    from fastmlp.bench import notebook_loop as loop

    return _notebook_runner(workload, data, loop.gradient_step)


def _fastmlp_notebook(workload, data, backend):
    from fastmlp import notebook

    def step(model, X, y, learning_rate):
        return notebook.gradient_step(model, X, y, learning_rate, backend=backend)

    runner = _notebook_runner(workload, data, step)
    runner.run()
    return runner


def numpy_reference(workload, data):
    """fastmlp's NumPy reference engine: scikit-learn's training loop, batch by batch."""
    if workload.solver == "gd":
        return _fastmlp_notebook(workload, data, "numpy")
    from fastmlp import optim, reference

    X, y = data
    units = network_units(workload, X, y)
    _, output, Y = output_layer(y)
    Y = Y.astype(workload.dtype)
    coefs, intercepts = init_params(units, workload.dtype)
    params = coefs + intercepts
    if workload.solver == "adam":
        optimizer = optim.Adam(params, workload.learning_rate)
    else:
        optimizer = optim.SGD(params, workload.learning_rate, "constant", workload.momentum,
                              workload.nesterov)
    rng = np.random.RandomState(0)

    def epoch():
        order = rng.permutation(X.shape[0])
        reference.train_epoch(coefs, intercepts, X, Y, order, workload.batch_size, optimizer,
                              workload.activation, output, workload.alpha)

    predict = _label_predictor(coefs, intercepts, workload.activation, output)
    return Runner(epoch, predict, _shapes(units))


def numba_engine(workload, data):
    """fastmlp's Numba engine: whole-epoch kernels (W1: the notebook's gradient_step)."""
    if workload.solver == "gd":
        return _fastmlp_notebook(workload, data, "numba")
    from fastmlp.kernels import FlatNetwork, Trainer

    X, y = data
    units = network_units(workload, X, y)
    _, output, Y = output_layer(y)
    coefs, intercepts = init_params(units, workload.dtype)
    network = FlatNetwork.from_arrays(coefs, intercepts)
    trainer = Trainer(
        network, workload.activation, output, solver=workload.solver, alpha=workload.alpha,
        batch_size=workload.batch_size, momentum=workload.momentum, nesterov=workload.nesterov,
    )
    Xc, Yc, no_weights = trainer.prepare(X, Y)
    order = np.arange(X.shape[0], dtype=np.int64)
    random_state = np.random.RandomState(0)  # shuffled in compiled code before each epoch

    def epoch():
        trainer.run_epochs(Xc, Yc, no_weights, order, workload.learning_rate,
                           random_state=random_state)

    epoch()
    predict = _label_predictor(network.coefs, network.intercepts, workload.activation, output)
    return Runner(epoch, predict, _shapes(units))


def numba_loss_and_gradients(workload, data):
    """W1 through ``loss_and_gradients(backend="numba")``, the update in NumPy."""
    if workload.solver != "gd":
        raise Unavailable("measured for W1 only")
    import fastmlp

    X, y = data
    units = network_units(workload, X, y)
    coefs, intercepts = init_params(units, workload.dtype)
    Y = np.eye(units[-1])[y]

    def step():
        _, coef_grads, intercept_grads = fastmlp.loss_and_gradients(
            coefs, intercepts, X, Y, backend="numba"
        )
        for param, grad in zip(coefs + intercepts, coef_grads + intercept_grads):
            param -= workload.learning_rate * grad

    step()
    predict = _label_predictor(coefs, intercepts, "relu", "softmax")
    return Runner(step, predict, _shapes(units))


#: Epochs per timed ``fit`` of the estimators: their per-call input validation is paid
#: once per fit, as in a real fit, not once per epoch.
ESTIMATOR_EPOCHS = 5


def sklearn_mlp(workload, data, estimator=None):
    """scikit-learn's MLPClassifier: ``fit`` runs of a few epochs each (``warm_start``),
    never stopping early; the time is reported per epoch."""
    if workload.solver == "gd":
        raise Unavailable("scikit-learn has no full-batch gradient ascent of this network")
    if estimator is None:
        from sklearn.neural_network import MLPClassifier as estimator

    X, y = data
    model = estimator(
        hidden_layer_sizes=workload.hidden, activation=workload.activation,
        solver=workload.solver, alpha=workload.alpha, batch_size=workload.batch_size,
        learning_rate_init=workload.learning_rate, momentum=workload.momentum,
        nesterovs_momentum=workload.nesterov, random_state=0, shuffle=True,
        max_iter=ESTIMATOR_EPOCHS, warm_start=True, n_iter_no_change=np.inf,
    )
    classes = np.unique(y)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)

    fit()
    units = network_units(workload, X, y)
    return Runner(fit, lambda X_new: np.searchsorted(classes, model.predict(X_new)),
                  _shapes(units), units_per_run=ESTIMATOR_EPOCHS)


def fastmlp_estimator(workload, data):
    """fastmlp's MLPClassifier (Numba engine), timed exactly as scikit-learn's is."""
    if workload.solver == "gd":
        raise Unavailable("the estimators do not do full-batch gradient ascent (W1)")
    from fastmlp import MLPClassifier

    return sklearn_mlp(workload, data, estimator=MLPClassifier)


def pytorch(workload, data):
    """PyTorch on the CPU: the same network, optimizer settings and batch size."""
    check_installed("pytorch")
    import torch

    X, y = data
    if scipy.sparse.issparse(X):
        raise Unavailable("not on a sparse X: this runner feeds PyTorch dense tensors")
    torch.set_num_threads(os.cpu_count() or 1)
    units = network_units(workload, X, y)
    dtype = torch.float32 if workload.dtype == "float32" else torch.float64
    activations = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(units[:-1], units[1:])):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < len(units) - 2:
            layers.append(activations[workload.activation]())
    model = torch.nn.Sequential(*layers).to(dtype)
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    classes = np.unique(y)
    if units[-1] == 1:
        loss_fn = torch.nn.BCEWithLogitsLoss()
        yt = torch.from_numpy((y == classes[1]).astype(X.dtype)).reshape(-1, 1)
    else:
        loss_fn = torch.nn.CrossEntropyLoss()
        yt = torch.from_numpy(np.searchsorted(classes, y))
    batch = workload.batch_size or X.shape[0]
    # scikit-learn's alpha * W / n_batch on the weights, as torch weight decay.
    decay = workload.alpha / batch
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    groups = [{"params": weights, "weight_decay": decay}, {"params": biases, "weight_decay": 0}]
    if workload.solver == "adam":
        optimizer = torch.optim.Adam(groups, lr=workload.learning_rate)
    elif workload.solver == "sgd":
        optimizer = torch.optim.SGD(groups, lr=workload.learning_rate,
                                    momentum=workload.momentum, nesterov=workload.nesterov)
    else:
        optimizer = torch.optim.SGD(groups, lr=workload.learning_rate)
    generator = torch.Generator().manual_seed(0)
    n = Xt.shape[0]

    def epoch():
        order = torch.randperm(n, generator=generator) if workload.batch_size else None
        for start in range(0, n, batch):
            rows = order[start : start + batch] if order is not None else slice(None)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xt[rows]), yt[rows])
            loss.backward()
            optimizer.step()

    def predict(X_new):
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(X_new, dtype=X.dtype))).numpy()
        return (out[:, 0] > 0).astype(int) if out.shape[1] == 1 else out.argmax(axis=1)

    epoch()
    return Runner(epoch, predict, _shapes(units))


IMPLEMENTATIONS = {
    "notebook loop": notebook_loop,
    "numpy reference": numpy_reference,
    "numba": numba_engine,
    "numba loss_and_gradients": numba_loss_and_gradients,
    "fastmlp MLPClassifier": fastmlp_estimator,
    "scikit-learn": sklearn_mlp,
    "pytorch": pytorch,
}

#: Implementations whose rounds run in a worker process of their own: their thread pools
#: keep spinning after each call and would slow whatever runs next in the same process.
ISOLATED = ("pytorch",)
