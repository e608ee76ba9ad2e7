"""The standard workloads W1-W6: their data, network and training settings.

The table of ``benchmarks/WORKLOADS.md`` in the repository, as code. ``python -m fastmlp
bench`` times them (:mod:`fastmlp.bench.implementations` runs them), ``python -m fastmlp
profile W2`` profiles one, and the repository's benchmark suites and report import them.
All data comes from scikit-learn's generators or its bundled datasets: nothing is
downloaded.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse


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


def moons_data():
    """The notebook's data: 5000 moons, noise 0.1, a 70/30 split (3500 training rows).

    Returns ``X_train, X_test, y_train, y_test`` as ``train_test_split`` gives them.
    """
    from sklearn.datasets import make_moons
    from sklearn.model_selection import train_test_split

    X, y = make_moons(n_samples=5000, noise=0.1, random_state=42)
    return train_test_split(X, y, random_state=42, test_size=0.3)


def _moons():
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
        Workload("W3-float32", "digits", "digits", (256, 128), "relu", "adam", 200, 1e-3,
                 dtype="float32"),
        Workload("W4-float64", "wide", "wide", (256,), "relu", "adam", 200, 1e-3),
        Workload("W4-float32", "wide", "wide", (256,), "relu", "adam", 200, 1e-3,
                 dtype="float32"),
        Workload("W5", "deep-narrow", "deep-narrow", (64, 64, 64, 64), "tanh", "sgd", 32,
                 1e-3),
        Workload("W5-float32", "deep-narrow", "deep-narrow", (64, 64, 64, 64), "tanh", "sgd",
                 32, 1e-3, dtype="float32"),
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


def estimator_for(workload, n_rows):
    """A :class:`fastmlp.MLPClassifier` with the workload's settings, for
    :func:`fastmlp.profile` (``n_rows``: the training rows, W1's batch).

    W1's full-batch gradient ascent is an epoch of plain SGD over one batch of all the
    rows without shuffling; its network then has scikit-learn's single logistic output
    for two classes where the notebook's has two softmax outputs.
    """
    from fastmlp import MLPClassifier

    full_batch = workload.solver == "gd"
    return MLPClassifier(
        hidden_layer_sizes=workload.hidden, activation=workload.activation,
        solver="sgd" if full_batch else workload.solver, alpha=workload.alpha,
        batch_size=n_rows if full_batch else workload.batch_size,
        learning_rate_init=workload.learning_rate,
        momentum=0.0 if full_batch else workload.momentum,
        nesterovs_momentum=workload.nesterov and not full_batch, shuffle=not full_batch,
        random_state=0,
    )
