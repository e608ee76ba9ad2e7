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
OPTIONAL = {
    "pytorch": ("torch", "PyTorch is not installed (pip install torch)"),
    "torch.compile": ("torch", "PyTorch is not installed (pip install torch)"),
    "jax": ("jax", "JAX is not installed (pip install jax)"),
}


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
    #: The trained weights as NumPy arrays (coefs then intercepts; W1: the notebook's W1
    #: and W2), for the implementations that start from the shared initial weights
    #: (:func:`~fastmlp.bench.workloads.init_params`) and batch order.
    params: Callable[[], list] | None = None
    #: Seconds of the first call (compiling), for the implementations that compile.
    first_call_s: float | None = None


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

    return Runner(step, predict, _shapes(network_units(workload, X, y)),
                  params=lambda: [state["model"]["W1"], state["model"]["W2"]])


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
    return Runner(epoch, predict, _shapes(units), params=lambda: coefs + intercepts)


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
    return Runner(epoch, predict, _shapes(units),
                  params=lambda: [*map(np.copy, network.coefs),
                                  *map(np.copy, network.intercepts)])


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


def torch_compile(workload, data):
    """``torch.compile`` of the training step (loss, gradients by ``torch.func.grad`` and
    the update), on the CPU: the same initial weights, batch order (a ``RandomState(0)``
    permutation per epoch, as the NumPy reference draws it), loss, L2 penalty and Adam or
    Nesterov-SGD formulas as scikit-learn's, where the eager runner above uses PyTorch's
    own initialization and optimizers. Runs on the better of 1 and the machine's threads
    (a few epochs of each, timed at set-up; the weights are put back after)."""
    check_installed("torch.compile")
    X, y = data
    if scipy.sparse.issparse(X):
        raise Unavailable("not on a sparse X: this runner feeds PyTorch dense tensors")
    if workload.solver == "gd":
        raise Unavailable("measured on the minibatch workloads (W2-W5)")
    import time

    import torch

    units = network_units(workload, X, y)
    _, output, Y = output_layer(y)
    dtype = np.dtype(workload.dtype)
    coefs, intercepts = init_params(units, dtype)
    n_layers = len(coefs)
    activation = {"relu": torch.relu, "tanh": torch.tanh}[workload.activation]
    alpha, rate = workload.alpha, workload.learning_rate
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-8  # scikit-learn's Adam defaults
    momentum, nesterov = workload.momentum, workload.nesterov
    n, batch = X.shape[0], min(workload.batch_size, X.shape[0])

    def loss(params, X_batch, Y_batch):
        out = X_batch
        for i in range(n_layers):
            out = out @ params[i] + params[n_layers + i]
            if i < n_layers - 1:
                out = activation(out)
        if output == "logistic":  # log loss of sigmoid(out), from the logits
            data_loss = torch.mean(torch.sum(
                torch.nn.functional.softplus(out) - Y_batch * out, dim=1))
        else:
            data_loss = -torch.mean(torch.sum(Y_batch * torch.log_softmax(out, dim=1), dim=1))
        penalty = sum(torch.sum(W * W) for W in params[:n_layers])
        return data_loss + 0.5 * alpha * penalty / X_batch.shape[0]

    def step(params, first, second, step_rate, X_batch, Y_batch):
        grads = torch.func.grad(loss)(params, X_batch, Y_batch)
        if workload.solver == "adam":
            first = [beta_1 * m + (1 - beta_1) * g for m, g in zip(first, grads)]
            second = [beta_2 * v + (1 - beta_2) * g * g for v, g in zip(second, grads)]
            params = [p - step_rate * m / (torch.sqrt(v) + epsilon)
                      for p, m, v in zip(params, first, second)]
        else:  # scikit-learn's SGD, constant rate, momentum (Nesterov's or not)
            first = [momentum * v - rate * g for v, g in zip(first, grads)]
            updates = ([momentum * v - rate * g for v, g in zip(first, grads)] if nesterov
                       else first)
            params = [p + u for p, u in zip(params, updates)]
        return params, first, second

    # One compiled graph per workload, batch shape (full, last) and thread count, all of
    # the same function: above dynamo's default limit of 8, it would fall back to eager.
    for limit in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, limit):
            setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 256))
    compiled = torch.compile(step, dynamic=False)
    Xt, Yt = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(Y.astype(dtype))
    params = [torch.from_numpy(a.copy()) for a in coefs + intercepts]
    zeros = [torch.zeros_like(p) for p in params]
    state = {"state": (params, zeros, [z.clone() for z in zeros]), "t": 0}

    def epoch(rng):
        order = torch.from_numpy(rng.permutation(n))
        X_rows, Y_rows = Xt[order], Yt[order]
        params, first, second = state["state"]
        for start in range(0, n, batch):
            state["t"] += 1
            t = state["t"]
            # A tensor, not a float: a float argument would be compiled in as a constant.
            step_rate = torch.tensor(rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t))
            params, first, second = compiled(params, first, second, step_rate,
                                             X_rows[start:start + batch],
                                             Y_rows[start:start + batch])
        state["state"] = (params, first, second)

    saved = (state["state"], state["t"])
    start = time.perf_counter()
    epoch(np.random.RandomState(1))  # compiles the full batch's step and the last one's
    seconds = time.perf_counter() - start
    best = None
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        trial = np.random.RandomState(1)
        epoch(trial)
        start = time.perf_counter()
        for _ in range(3):
            epoch(trial)
        elapsed = time.perf_counter() - start
        best = min(best or (elapsed, threads), (elapsed, threads))
    torch.set_num_threads(best[1])
    state["state"], state["t"] = saved
    rng = np.random.RandomState(0)

    def trained():
        return [p.numpy().copy() for p in state["state"][0]]

    def predict(X_new):
        weights = trained()
        return _label_predictor(weights[:n_layers], weights[n_layers:],
                                workload.activation, output)(X_new)

    return Runner(lambda: epoch(rng), predict, _shapes(units), params=trained,
                  first_call_s=seconds)


# --- JAX: the whole epoch as one jitted call -----------------------------------------


def _jax():
    check_installed("jax")
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 as the workloads ask
    return jax


def _timed_compile(jitted, *args):
    """The compiled executable of ``jitted`` for ``args``, and the seconds compiling took
    (tracing, lowering and XLA's compilation: what a first call adds to an epoch)."""
    import time

    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def _jax_notebook(workload, data):
    """W1 in JAX: one jitted full-batch gradient-ascent step of the notebook's network
    (bias rows in ``W1`` and ``W2``), from the notebook's initial weights."""
    jax = _jax()
    import jax.numpy as jnp

    X, y = data
    model = _notebook_model(workload, X, y)
    n_classes = model["W2"].shape[1]
    Xb = jnp.asarray(np.hstack([X, np.ones((X.shape[0], 1))]))
    targets = jnp.asarray(np.eye(n_classes)[y])
    rate = workload.learning_rate

    def log_likelihood(weights):
        W1, W2 = weights
        hidden = jax.nn.relu(Xb @ W1)
        hidden = jnp.concatenate([hidden, jnp.ones((hidden.shape[0], 1), hidden.dtype)], 1)
        return jnp.mean(jnp.sum(targets * jax.nn.log_softmax(hidden @ W2), axis=1))

    def step(weights):
        grads = jax.grad(log_likelihood)(weights)
        return tuple(w + rate * g for w, g in zip(weights, grads))

    state = {"weights": (jnp.asarray(model["W1"]), jnp.asarray(model["W2"]))}
    compiled, seconds = _timed_compile(jax.jit(step), state["weights"])

    def run():
        state["weights"] = compiled(state["weights"])
        state["weights"][0].block_until_ready()

    def predict(X_new):
        from fastmlp import notebook

        W1, W2 = (np.asarray(w) for w in state["weights"])
        return notebook.forward(X_new, {"W1": W1, "W2": W2})[1].argmax(axis=1)

    return Runner(run, predict, _shapes(network_units(workload, X, y)),
                  params=lambda: [np.asarray(w) for w in state["weights"]],
                  first_call_s=seconds)


def jax_jit(workload, data):
    """JAX on the CPU: a whole epoch as one jitted call, ``lax.scan`` over the full
    batches and one more step for scikit-learn's shorter last batch; the rows are
    gathered in the batch order inside the call, the order drawn as the NumPy reference
    draws it (a ``RandomState(0)`` permutation per epoch). The same initial weights,
    loss, L2 penalty (``alpha * W / n_batch``) and Adam or Nesterov-SGD formulas as
    scikit-learn's."""
    if scipy.sparse.issparse(data[0]):
        raise Unavailable("not on a sparse X: this runner feeds JAX dense arrays")
    if workload.solver == "gd":
        return _jax_notebook(workload, data)
    jax = _jax()
    import jax.numpy as jnp
    from jax import lax

    X, y = data
    units = network_units(workload, X, y)
    _, output, Y = output_layer(y)
    dtype = np.dtype(workload.dtype)
    coefs, intercepts = init_params(units, dtype)
    n_layers = len(coefs)
    activation = {"relu": jax.nn.relu, "tanh": jnp.tanh}[workload.activation]
    alpha, rate = workload.alpha, workload.learning_rate
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-8  # scikit-learn's Adam defaults
    momentum, nesterov = workload.momentum, workload.nesterov
    n, batch = X.shape[0], min(workload.batch_size, X.shape[0])
    n_full, last = divmod(n, batch)

    def loss(params, X_batch, Y_batch):
        out = X_batch
        for i in range(n_layers):
            out = out @ params[i] + params[n_layers + i]
            if i < n_layers - 1:
                out = activation(out)
        if output == "logistic":  # log loss of sigmoid(out), from the logits
            data_loss = jnp.mean(jnp.sum(jax.nn.softplus(out) - Y_batch * out, axis=1))
        else:
            data_loss = -jnp.mean(jnp.sum(Y_batch * jax.nn.log_softmax(out), axis=1))
        penalty = sum(jnp.sum(W * W) for W in params[:n_layers])
        return data_loss + 0.5 * alpha * penalty / X_batch.shape[0]

    def step(state, batch_rows):
        params, first, second, t = state
        grads = jax.grad(loss)(params, *batch_rows)
        if workload.solver == "adam":
            t = t + 1
            first = [beta_1 * m + (1 - beta_1) * g for m, g in zip(first, grads)]
            second = [beta_2 * v + (1 - beta_2) * g * g for v, g in zip(second, grads)]
            step_rate = (rate * jnp.sqrt(1 - beta_2**t) / (1 - beta_1**t)).astype(dtype)
            params = [p - step_rate * m / (jnp.sqrt(v) + epsilon)
                      for p, m, v in zip(params, first, second)]
        else:  # scikit-learn's SGD, constant rate, momentum (Nesterov's or not)
            first = [momentum * v - rate * g for v, g in zip(first, grads)]
            updates = ([momentum * v - rate * g for v, g in zip(first, grads)] if nesterov
                       else first)
            params = [p + u for p, u in zip(params, updates)]
        return (params, first, second, t), None

    def epoch(state, X_all, Y_all, order):
        X_rows, Y_rows = X_all[order], Y_all[order]
        full = n_full * batch
        batches = (X_rows[:full].reshape(n_full, batch, -1),
                   Y_rows[:full].reshape(n_full, batch, -1))
        state, _ = lax.scan(step, state, batches)
        if last:
            state, _ = step(state, (X_rows[full:], Y_rows[full:]))
        return state

    params = [jnp.asarray(a) for a in coefs + intercepts]
    zeros = [jnp.zeros_like(p) for p in params]
    state = {"state": (params, zeros, list(zeros), jnp.asarray(0.0, dtype=np.float64))}
    X_all, Y_all = jnp.asarray(X), jnp.asarray(Y.astype(dtype))
    rng = np.random.RandomState(0)
    compiled, seconds = _timed_compile(jax.jit(epoch), state["state"], X_all, Y_all,
                                       np.arange(n))

    def run():
        state["state"] = compiled(state["state"], X_all, Y_all, rng.permutation(n))
        state["state"][0][0].block_until_ready()

    def trained():
        return [np.asarray(p) for p in state["state"][0]]

    def predict(X_new):
        weights = trained()
        return _label_predictor(weights[:n_layers], weights[n_layers:],
                                workload.activation, output)(X_new)

    return Runner(run, predict, _shapes(units), params=trained, first_call_s=seconds)


IMPLEMENTATIONS = {
    "notebook loop": notebook_loop,
    "numpy reference": numpy_reference,
    "numba": numba_engine,
    "numba loss_and_gradients": numba_loss_and_gradients,
    "fastmlp MLPClassifier": fastmlp_estimator,
    "scikit-learn": sklearn_mlp,
    "pytorch": pytorch,
    "torch.compile": torch_compile,
    "jax": jax_jit,
}

#: Implementations whose rounds run in a worker process of their own: their thread pools
#: keep spinning after each call and would slow whatever runs next in the same process.
ISOLATED = ("pytorch", "torch.compile", "jax")
