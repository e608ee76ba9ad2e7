"""What the estimators need from an engine: epochs of SGD/Adam, the L-BFGS objective, and
the forward pass, each on the NumPy reference (``"numpy"``) or the Numba engine.

The learning-rate schedules and stopping rules live in ``fastmlp.optim`` and act between
epochs, the same for both engines; only the per-batch work differs.

Every array is checked against the network's shapes here, before an engine reads it: the
compiled kernels index rows by the network's sizes and trust them.

Where scikit-learn's arithmetic mixes dtypes, so does fastmlp's. Its weights keep their
dtype (updated in place), but NumPy promotes everything computed from them: float32
weights with float64 inputs (X, or a regressor's y) give float64 activations or output
errors, gradients and optimizer state (moments, velocities), which then stay float64 for
later calls. The Numba kernels run one dtype throughout, so those fits take the
promoting path below, scikit-learn's loop with NumPy's promotions, on either backend.
"""

import copy

import numpy as np
import scipy.sparse

from fastmlp import optim, reference
from fastmlp.activations import HIDDEN_ACTIVATIONS, OUTPUTS


def make_schedule(params, solver, settings):
    """scikit-learn's optimizer object for ``solver``; with no params, schedule only."""
    if solver == "sgd":
        return optim.SGD(
            params, settings["learning_rate_init"], settings["learning_rate"],
            settings["momentum"], settings["nesterovs_momentum"], settings["power_t"],
        )
    return optim.Adam(
        params, settings["learning_rate_init"], settings["beta_1"], settings["beta_2"],
        settings["epsilon"],
    )


def network_units(coefs, intercepts):
    """The layer sizes of a network (inputs first), after checking that its layers chain."""
    if len(coefs) == 0 or len(coefs) != len(intercepts):
        raise ValueError(
            f"The network has {len(coefs)} coefficient matrices and {len(intercepts)} "
            "intercept vectors: it needs one of each per layer, at least one layer."
        )
    units = [coefs[0].shape[0]]
    for i, (coef, intercept) in enumerate(zip(coefs, intercepts)):
        if coef.ndim != 2 or coef.shape[0] != units[-1]:
            raise ValueError(
                f"coefs_[{i}] has shape {coef.shape}, but layer {i} has {units[-1]} inputs."
            )
        if intercept.shape != (coef.shape[1],):
            raise ValueError(
                f"intercepts_[{i}] has shape {intercept.shape}, but coefs_[{i}] has shape "
                f"{coef.shape}: expected ({coef.shape[1]},)."
            )
        units.append(coef.shape[1])
    return units


def dense(X):
    """X as NumPy's paths take it (the reference engine and the promoting path): dense
    rows. The Numba engine takes a sparse X as it is, and trains on its nonzeros."""
    return X.toarray() if scipy.sparse.issparse(X) else X


def check_data_shapes(units, X, Y=None, sample_weight=None):
    """X (n, units[0]), Y (n, units[-1]) and sample_weight (n,), or a ValueError."""
    if X.ndim != 2 or X.shape[1] != units[0]:
        raise ValueError(
            f"X has shape {X.shape}, but the network takes {units[0]} features per row."
        )
    if Y is not None and Y.shape != (X.shape[0], units[-1]):
        raise ValueError(
            f"y has shape {Y.shape}, but the network has {units[-1]} output(s) for "
            f"{X.shape[0]} rows: expected ({X.shape[0]}, {units[-1]})."
        )
    if sample_weight is not None and sample_weight.shape != (X.shape[0],):
        raise ValueError(
            f"sample_weight has shape {sample_weight.shape}, expected ({X.shape[0]},)."
        )


def check_batch_weights(sample_weight, order, batch_size):
    """scikit-learn's error for a batch whose weights sum to zero (``np.average``'s in its
    loss), raised before the epoch over ``order`` runs rather than part-way through it."""
    starts = np.arange(0, order.shape[0], batch_size)
    sums = np.add.reduceat(sample_weight[order].astype(np.float64), starts)
    if np.any(sums == 0):
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")


def promoting_loss_and_gradients(coefs, intercepts, X, Y, activation, output, alpha,
                                 sample_weight):
    """scikit-learn's ``_backprop``, each operation in the dtype NumPy gives it: float32
    weights with float64 X or Y give float64 errors and gradients, and a float64 loss."""
    pre_activations, activations = reference.forward(coefs, intercepts, X, activation, output)
    data_loss = reference.loss(activations[-1], Y, output, sample_weight)
    n = X.shape[0] if sample_weight is None else sample_weight.sum()
    squared_norm = sum(np.dot(c.ravel(), c.ravel()) for c in coefs)
    loss = data_loss + (0.5 * alpha) * squared_norm / n
    deltas = reference.backward(coefs, pre_activations, activations, Y, activation,
                                sample_weight)
    coef_grads = [
        (activations[i].T @ deltas[i] + alpha * coefs[i]) / n for i in range(len(coefs))
    ]
    intercept_grads = [deltas[i].sum(axis=0) / n for i in range(len(coefs))]
    return loss, coef_grads + intercept_grads


def _copy_optimizer(optimizer):
    """A copy of an ``fastmlp.optim`` object: its numbers, and its per-parameter arrays
    (velocities, moments) copied; a deep copy costs ten times as much per partial_fit."""
    if optimizer is None:
        return None
    duplicate = copy.copy(optimizer)
    for name, value in vars(optimizer).items():
        if type(value) is list:
            setattr(duplicate, name, [array.copy() for array in value])
    return duplicate


class StochasticSolver:
    """Optimizer state that persists across ``partial_fit`` calls, and the epoch runner.

    ``coefs`` and ``intercepts`` are the solver's own arrays, updated in place by each
    epoch; :meth:`set_weights` loads the estimator's current weights into them.
    :meth:`prepare` checks a call's data against the network and chooses its path: the
    backend's, or the promoting one where the call mixes dtypes (see the module's
    docstring). ``schedule`` is the optimizer object whose learning rate the estimator's
    per-epoch rules read and change.
    """

    def __init__(self, backend, coefs, intercepts, activation, output, solver, settings,
                 alpha, batch_size, n_threads):
        self.backend = backend
        self.solver, self.settings = solver, settings
        self.seconds_per_row = np.inf  # an epoch's time per row, once measured
        self.activation, self.output = activation, output
        self.alpha, self.batch_size, self.n_threads = alpha, batch_size, n_threads
        self.units = network_units(coefs, intercepts)
        self.promoting = False  # whether the current call takes the promoting path
        self._promoted = None  # that path's optimizer (float64 state), once taken
        self._weights_may_vanish = False  # whether a batch's weights can sum to zero
        if backend == "numba":
            from fastmlp.kernels import FlatNetwork

            self.network = FlatNetwork.from_arrays(coefs, intercepts)
            self.trainer = self._new_trainer()
            self._schedule = make_schedule([], solver, settings)
            self.coefs, self.intercepts = self.network.coefs, self.network.intercepts
        else:
            self.coefs = [c.copy() for c in coefs]
            self.intercepts = [b.copy() for b in intercepts]
            self._schedule = make_schedule(self.coefs + self.intercepts, solver, settings)

    def _new_trainer(self):
        from fastmlp.kernels import Trainer

        settings = self.settings
        return Trainer(
            self.network, self.activation, self.output, solver=self.solver, alpha=self.alpha,
            batch_size=self.batch_size, momentum=settings["momentum"],
            nesterov=settings["nesterovs_momentum"], beta_1=settings["beta_1"],
            beta_2=settings["beta_2"], epsilon=settings["epsilon"], n_threads=self.n_threads,
        )

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.backend == "numba":  # pickling made the views copies: views again
            self.coefs, self.intercepts = self.network.coefs, self.network.intercepts

    @property
    def schedule(self):
        return self._schedule if self._promoted is None else self._promoted

    def restart(self):
        """The optimizer state of a new solver (moments, velocities, step count and
        learning rate), in the buffers this one has."""
        self._promoted = None
        if self.backend == "numba":
            self.trainer.reset()
            self._schedule = make_schedule([], self.solver, self.settings)
        else:
            self._schedule = make_schedule(self.coefs + self.intercepts, self.solver,
                                           self.settings)

    def update_settings(self, activation, alpha, n_threads):
        """The settings scikit-learn reads afresh at each ``partial_fit`` (its optimizer,
        with the learning rate, momentum and moments, persists)."""
        if (activation, alpha, n_threads) == (self.activation, self.alpha, self.n_threads):
            return
        self.activation, self.alpha, self.n_threads = activation, alpha, n_threads
        if self.backend == "numba":
            old, self.trainer = self.trainer, self._new_trainer()
            self.trainer.state_1[:] = old.state_1
            self.trainer.state_2[:] = old.state_2
            self.trainer.adam_step = old.adam_step

    def save_state(self):
        """Everything a call may change, for :meth:`restore_state` to put back."""
        state = {
            "attributes": dict(self.__dict__),
            "optimizers": (_copy_optimizer(self._schedule), _copy_optimizer(self._promoted)),
        }
        if self.backend == "numba":
            trainer = self.trainer
            state["trainer"] = (trainer, trainer.state_1.copy(), trainer.state_2.copy(),
                                trainer.adam_step)
        return state

    def restore_state(self, state):
        self.__dict__.clear()
        self.__dict__.update(state["attributes"])
        self._schedule, self._promoted = state["optimizers"]
        if self.backend == "numba":
            trainer, state_1, state_2, adam_step = state["trainer"]
            trainer.state_1[:] = state_1
            trainer.state_2[:] = state_2
            trainer.adam_step = adam_step

    def set_weights(self, coefs, intercepts):
        if network_units(coefs, intercepts) != self.units:
            raise ValueError(
                f"The weights are of a network of layer sizes {network_units(coefs, intercepts)}"
                f", but this solver trains one of {self.units}."
            )
        for target, source in zip(self.coefs + self.intercepts, coefs + intercepts):
            if target is not source:
                target[...] = source

    def set_batch_size(self, batch_size):
        self.batch_size = batch_size
        if self.backend == "numba":
            self.trainer.batch_size = batch_size

    def _optimizer_arrays(self):
        """The optimizer's state per parameter (views): velocities or first moments,
        Adam's second moments (None for SGD), and Adam's step count."""
        if self._promoted is not None or self.backend == "numpy":
            optimizer = self.schedule
            if self.solver == "sgd":
                return optimizer.velocities, None, 0
            return optimizer.ms, optimizer.vs, optimizer.t
        network, trainer = self.network, self.trainer

        def views(flat):
            return network.coef_views(flat) + network.intercept_views(flat)

        if self.solver == "sgd":
            return views(trainer.state_1), None, 0
        return views(trainer.state_1), views(trainer.state_2), trainer.adam_step

    def _load_optimizer_arrays(self, firsts, seconds, steps, learning_rate):
        """Write a state of :meth:`_optimizer_arrays`' form into this solver's, each value
        converted to its dtype."""
        own_firsts, own_seconds, _ = self._optimizer_arrays()
        for target, value in zip(own_firsts, firsts):
            target[...] = value
        if self.solver == "adam":
            for target, value in zip(own_seconds, seconds):
                target[...] = value
            if self._promoted is not None or self.backend == "numpy":
                self.schedule.t = steps
            else:
                self.trainer.adam_step = steps
        self.schedule.learning_rate = learning_rate

    def _promote(self):
        """The optimizer state in float64, as scikit-learn's becomes at its first step on
        float64 gradients (each value exactly the float32 one)."""
        state = self._optimizer_arrays()
        learning_rate = self.schedule.learning_rate
        templates = [np.zeros(p.shape) for p in self.coefs + self.intercepts]
        self._promoted = make_schedule(templates, self.solver, self.settings)
        self._load_optimizer_arrays(*state, learning_rate)

    def for_weights(self, coefs, intercepts):
        """A solver for these weights, of this network's shapes in another dtype, that goes
        on with this one's optimizer state, as scikit-learn's optimizer goes on with
        whatever weights it is given (the state takes their dtype at its next step)."""
        solver = StochasticSolver(
            self.backend, coefs, intercepts, self.activation, self.output, self.solver,
            self.settings, self.alpha, self.batch_size, self.n_threads,
        )
        solver._load_optimizer_arrays(*self._optimizer_arrays(), self.schedule.learning_rate)
        solver.seconds_per_row = self.seconds_per_row
        return solver

    def prepare(self, X, Y, sample_weight):
        """The epoch's data as this call's path takes it, after checking its shapes:
        the weights' dtype (C-contiguous for the kernels), or, on the promoting path,
        the dtypes scikit-learn computes with."""
        check_data_shapes(self.units, X, Y, sample_weight)
        self._weights_may_vanish = sample_weight is not None and not np.all(sample_weight > 0)
        dtype = self.coefs[0].dtype
        if self._promoted is None and X.dtype == dtype and Y.dtype in (dtype, np.bool_):
            self.promoting = False  # the usual case, without result_type's microseconds
        else:
            state_dtype = dtype if self._promoted is None else np.dtype(np.float64)
            self.promoting = np.result_type(dtype, X.dtype, Y.dtype, state_dtype) != dtype
        if self.promoting:
            if self._promoted is None:
                self._promote()
            return dense(X), Y, sample_weight
        Y = np.ascontiguousarray(Y, dtype=dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)
        if self.backend == "numba":  # a sparse X trains on its nonzeros
            return self.trainer.prepare(X, Y, sample_weight)
        return np.ascontiguousarray(dense(X), dtype=dtype), Y, sample_weight

    def run_epochs(self, X, Y, sample_weight, order, n_epochs, random_state):
        """``n_epochs`` epochs, each over the rows ``order``, which ``random_state`` (None:
        no shuffling) shuffles in place before each, as scikit-learn does; returns
        scikit-learn's loss of each epoch. The Numba engine runs them in one call.

        Where some sample weight is not positive, a batch's weights may sum to zero:
        then the epochs run one at a time, each batch's sum checked first.
        """
        if not self._weights_may_vanish:
            return self._run(X, Y, sample_weight, order, n_epochs, random_state)
        losses = []
        for _ in range(n_epochs):
            if random_state is not None:
                random_state.shuffle(order)
            check_batch_weights(sample_weight, order, self.batch_size)
            losses.extend(self._run(X, Y, sample_weight, order, 1, None))
        return losses

    def _run(self, X, Y, sample_weight, order, n_epochs, random_state):
        if self.backend == "numba" and not self.promoting:
            return self.trainer.run_epochs(
                X, Y, sample_weight, order, self.schedule.learning_rate, n_epochs,
                random_state=random_state,
            ).tolist()
        losses = []
        for _ in range(n_epochs):
            if random_state is not None:
                random_state.shuffle(order)
            if self.promoting:
                losses.append(float(self._promoting_epoch(X, Y, sample_weight, order)))
                continue
            losses.append(float(reference.train_epoch(
                self.coefs, self.intercepts, X, Y, order, self.batch_size, self.schedule,
                self.activation, self.output, self.alpha, sample_weight,
            )))
        return losses

    def _promoting_epoch(self, X, Y, sample_weight, order):
        """scikit-learn's epoch: its batches, losses and updates, in its dtypes."""
        params = self.coefs + self.intercepts
        accumulated = 0.0
        for start in range(0, order.shape[0], self.batch_size):
            rows = order[start : start + self.batch_size]
            weights = None if sample_weight is None else sample_weight[rows]
            loss, grads = promoting_loss_and_gradients(
                self.coefs, self.intercepts, X[rows], Y[rows], self.activation, self.output,
                self.alpha, weights,
            )
            accumulated += loss * len(rows)
            self._promoted.update(params, grads)
        return accumulated / order.shape[0]


def forward_plain_rows(backend, coefs, intercepts, X, activation, output, n_threads):
    """The network's outputs for X on the engine's prediction path
    (``fastmlp.kernels._predict``), where X is what scikit-learn's validation passes on
    unchanged: a C-contiguous 2-d float ndarray of at least one row, in the weights'
    dtype, as are the weights. ``None`` for anything else, and for an X holding a NaN or
    an infinity: the caller then validates X and takes :func:`forward`.

    Everything checked here is cheap: this is the path of a single row, whose
    arithmetic costs a fraction of scikit-learn's validation. The weights must be arrays
    of one Numba type each (2-d coefs, 1-d intercepts, all C-contiguous, aligned and
    writeable), so that the compiled code takes them as one tuple type for any depth.
    """
    if backend != "numba" or type(X) is not np.ndarray or X.ndim != 2 or X.shape[0] == 0:
        return None
    dtype = X.dtype
    if dtype.char not in "fd" or not X.flags.c_contiguous or not X.flags.aligned:
        return None
    if len(coefs) == 0 or len(coefs) != len(intercepts):
        return None
    for array, ndim in ((*((c, 2) for c in coefs), *((b, 1) for b in intercepts))):
        if (type(array) is not np.ndarray or array.ndim != ndim or array.dtype != dtype
                or not array.flags.c_contiguous or not array.flags.aligned
                or not array.flags.writeable):
            return None
    hidden, out = HIDDEN_ACTIVATIONS.get(activation), OUTPUTS.get(output)
    if hidden is None or out is None:
        return None
    from fastmlp.kernels import _predict, resolve_n_threads

    try:
        return _predict.forward(X, tuple(coefs), tuple(intercepts), hidden.code, out.code,
                                resolve_n_threads(n_threads))
    except ValueError:  # layers that do not chain: say which
        check_data_shapes(network_units(coefs, intercepts), X)
        raise


def forward(backend, coefs, intercepts, X, activation, output):
    """The network's output for each row of X (dense or sparse), in the dtype of X and
    the weights."""
    check_data_shapes(network_units(coefs, intercepts), X)
    dtype = np.result_type(X.dtype, coefs[0].dtype)
    if backend == "numba":
        from fastmlp import kernels

        network = kernels.FlatNetwork.from_arrays(coefs, intercepts, dtype)
        return kernels.predict(network, X, activation, output)
    X = dense(X)
    coefs = [c.astype(dtype, copy=False) for c in coefs]
    intercepts = [b.astype(dtype, copy=False) for b in intercepts]
    _, activations = reference.forward(coefs, intercepts, X.astype(dtype, copy=False),
                                       activation, output)
    return activations[-1]


def lbfgs_objective(backend, units, weights_dtype, X, Y, sample_weight, activation, output,
                    alpha, n_threads):
    """``packed -> (loss, gradient)`` in scikit-learn's ``_pack`` layout, for SciPy.

    SciPy evaluates the function at points in the dtype of the starting vector, the
    packed weights (float32 weights: float32 points, each iterate rounded), while L-BFGS
    keeps its own iterate in float64: scikit-learn's fitted weights are that float64
    vector. The objective computes as scikit-learn's ``_backprop`` on weights of
    ``weights_dtype``: on the backend, or on the promoting path where X or y is wider.
    """
    from fastmlp.kernels import FlatNetwork

    check_data_shapes(units, X, Y, sample_weight)
    if sample_weight is not None and sample_weight.sum() == 0:
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    dtype = np.dtype(weights_dtype)
    layout = FlatNetwork(units, dtype)  # weights of the point evaluated, in their dtype
    if np.result_type(dtype, X.dtype, Y.dtype) != dtype:
        X = dense(X)

        def gradient(coefs, intercepts):
            loss, grads = promoting_loss_and_gradients(
                coefs, intercepts, X, Y, activation, output, alpha, sample_weight
            )
            return loss, grads[: len(coefs)], grads[len(coefs) :]

    elif backend == "numba":
        from fastmlp import kernels

        if not scipy.sparse.issparse(X):  # (a sparse X's values are cast by the kernels)
            X = np.ascontiguousarray(X, dtype=dtype)
        Y = np.ascontiguousarray(Y, dtype=dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)

        def gradient(coefs, intercepts):
            return kernels.loss_and_gradients(
                coefs, intercepts, X, Y, activation, output, alpha, sample_weight, n_threads
            )

    else:
        # The weights keep the dtype scikit-learn gives them (that of X): their sum, the
        # gradient's divisor, is rounded as there.
        X = np.asarray(dense(X), dtype=dtype)
        Y = np.asarray(Y, dtype=dtype)

        def gradient(coefs, intercepts):
            return reference.loss_and_gradients(
                coefs, intercepts, X, Y, activation, output, alpha, sample_weight
            )

    def objective(packed):
        layout.theta[:] = packed
        loss, coef_grads, intercept_grads = gradient(layout.coefs, layout.intercepts)
        return float(loss), np.concatenate([g.ravel() for g in coef_grads + intercept_grads])

    return objective
