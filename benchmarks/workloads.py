"""The standard workloads W1-W6 and every implementation that can run them.

One table drives the benchmark suites (``benchmarks/test_bench_*.py``), the equivalence
smoke test, the target script and ``python -m fastmlp bench``:
``IMPLEMENTATIONS[name](workload, data)`` returns a :class:`Runner` whose ``run()`` does one
unit of work (one gradient step for W1, one epoch otherwise), already warmed up so compile
time stays out, or raises :class:`Unavailable` with the reason it cannot run.
"""

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse


class Unavailable(Exception):
    """This implementation cannot run this workload (the message says why)."""


@dataclass(frozen=True)
class Workload:
    id: str
    name: str
    data: str
    hidden: tuple
    activation: str
    solver: str  # "gd" (full batch, W1), "adam" or "sgd"
    batch_size: int  # 0: the whole training set
    learning_rate: float
    alpha: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = True
    dtype: str = "float64"
    unit: str = "epoch"
    rows: int | None = None  # keep only the first rows of the data (sweeps, smoke tests)

    def replace(self, **changes):
        from dataclasses import replace

        return replace(self, **changes)


@dataclass
class Runner:
    """One implementation set up on one workload."""

    run: Callable[[], None]  # units_per_run units of work
    predict: Callable[[np.ndarray], np.ndarray]  # class labels (indices) for rows of X
    layer_shapes: list  # (fan_in, fan_out) of each layer
    units_per_run: int = 1


def _moons():
    from fastmlp.cli import moons_data

    X_train, _, y_train, _ = moons_data()
    return X_train, y_train


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def _wide():
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=20000, n_features=784, n_informative=50, n_classes=10, random_state=0
    )


def _deep_narrow():
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=10000, n_features=20, n_informative=10, n_classes=3, random_state=0
    )


def _sparse_text():
    """Bags of words: 10000 features, about 10 words a row (0.1 % of X nonzero, as a CSR
    matrix), each row labelled with the first of its topics (10)."""
    from sklearn.datasets import make_multilabel_classification

    X, topics = make_multilabel_classification(
        n_samples=20000, n_features=10000, n_classes=10, n_labels=1, length=10,
        allow_unlabeled=False, sparse=True, return_indicator="dense", random_state=0,
    )
    return X, topics.argmax(axis=1)


DATASETS = {"moons": _moons, "digits": _digits, "wide": _wide, "deep-narrow": _deep_narrow,
            "sparse-text": _sparse_text}

WORKLOADS = {
    w.id: w
    for w in [
        Workload("W1", "moons-gd", "moons", (100,), "relu", "gd", 0, 0.1, alpha=0.0,
                 unit="step"),
        Workload("W2", "moons-adam", "moons", (100,), "relu", "adam", 200, 1e-3),
        Workload("W3", "digits", "digits", (256, 128), "relu", "adam", 200, 1e-3),
        Workload("W4-float64", "wide", "wide", (256,), "relu", "adam", 200, 1e-3),
        Workload("W4-float32", "wide", "wide", (256,), "relu", "adam", 200, 1e-3,
                 dtype="float32"),
        Workload("W5", "deep-narrow", "deep-narrow", (64, 64, 64, 64), "tanh", "sgd", 32,
                 1e-3),
        Workload("W6", "sparse-text", "sparse-text", (100,), "relu", "adam", 200, 1e-3),
    ]
}


def load(workload, n_rows=None):
    """The workload's training data in its dtype: X (a C-contiguous array, or a CSR
    matrix for sparse data) and integer labels.

    ``n_rows`` (or the workload's ``rows``) keeps only the first rows.
    """
    X, y = DATASETS[workload.data]()
    n_rows = n_rows or workload.rows
    if n_rows is not None:
        X, y = X[:n_rows], y[:n_rows]
    if scipy.sparse.issparse(X):
        return X.astype(workload.dtype, copy=False), np.asarray(y)
    return np.ascontiguousarray(X, dtype=workload.dtype), np.asarray(y)


def output_layer(y):
    """scikit-learn's output for these labels: (n_outputs, output function, targets)."""
    classes = np.unique(y)
    if len(classes) == 2:
        return 1, "logistic", (y == classes[1]).astype(float).reshape(-1, 1)
    return len(classes), "softmax", np.eye(len(classes))[np.searchsorted(classes, y)]


def network_units(workload, X, y):
    if workload.solver == "gd":  # the notebook's network: one softmax output per class
        return [X.shape[1], *workload.hidden, len(np.unique(y))]
    return [X.shape[1], *workload.hidden, output_layer(y)[0]]


def useful_flops(workload, X, y):
    """Floating-point operations of one unit of work: forward products, weight gradients
    and backpropagation into every layer but the input (2 per multiply-add)."""
    units = network_units(workload, X, y)
    sizes = [a * b for a, b in zip(units[:-1], units[1:])]
    return 2 * X.shape[0] * (2 * sum(sizes) + sum(sizes[1:]))


def init_params(units, dtype, seed=0):
    """Glorot-uniform weights as scikit-learn draws them (relu/tanh factor 6)."""
    rng = np.random.RandomState(seed)
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(units[:-1], units[1:]):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        coefs.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
        intercepts.append(rng.uniform(-bound, bound, fan_out).astype(dtype))
    return coefs, intercepts


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
    from benchmarks import notebook_loop as loop

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
    try:
        import torch
    except ImportError:
        raise Unavailable("PyTorch is not installed (pip install torch)") from None

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

#: Targets of benchmarks/WORKLOADS.md: (workload, baseline implementation, minimum ratio).
TARGETS = [
    ("W1", "notebook loop", 300), ("W1", "numpy reference", 20), ("W1", "pytorch", 10),
    ("W2", "scikit-learn", 20), ("W2", "pytorch", 20),
    ("W3", "scikit-learn", 3), ("W3", "pytorch", 2),
    ("W4-float64", "scikit-learn", 2), ("W4-float64", "pytorch", 1.1),
    ("W4-float32", "pytorch", 1.1),
    ("W5", "scikit-learn", 5), ("W5", "pytorch", 5),
    ("W6", "scikit-learn", 5),
]
