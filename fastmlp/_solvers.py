"""What the estimators need from an engine: epochs of SGD/Adam, the L-BFGS objective, and
the forward pass, each on the NumPy reference (``"numpy"``) or the Numba engine.

The learning-rate schedules and stopping rules live in ``fastmlp.optim`` and act between
epochs, the same for both engines; only the per-batch work differs.
"""

import numpy as np

from fastmlp import optim, reference


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


class StochasticSolver:
    """Optimizer state that persists across ``partial_fit`` calls, and the epoch runner.

    ``coefs`` and ``intercepts`` are the solver's own arrays, updated in place by each
    epoch; :meth:`set_weights` loads the estimator's current weights into them.
    """

    def __init__(self, backend, coefs, intercepts, activation, output, solver, settings,
                 alpha, batch_size, n_threads):
        self.backend = backend
        self.solver, self.settings = solver, settings
        self.seconds_per_row = np.inf  # an epoch's time per row, once measured
        self.activation, self.output = activation, output
        self.alpha, self.batch_size = alpha, batch_size
        if backend == "numba":
            from fastmlp.kernels import FlatNetwork, Trainer

            self.network = FlatNetwork.from_arrays(coefs, intercepts)
            self.trainer = Trainer(
                self.network, activation, output, solver=solver, alpha=alpha,
                batch_size=batch_size, momentum=settings["momentum"],
                nesterov=settings["nesterovs_momentum"], beta_1=settings["beta_1"],
                beta_2=settings["beta_2"], epsilon=settings["epsilon"], n_threads=n_threads,
            )
            self.schedule = make_schedule([], solver, settings)
            self.coefs, self.intercepts = self.network.coefs, self.network.intercepts
        else:
            self.coefs = [c.copy() for c in coefs]
            self.intercepts = [b.copy() for b in intercepts]
            self.schedule = make_schedule(self.coefs + self.intercepts, solver, settings)

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.backend == "numba":  # pickling made the views copies: views again
            self.coefs, self.intercepts = self.network.coefs, self.network.intercepts

    def restart(self):
        """The optimizer state of a new solver (moments, velocities, step count and
        learning rate), in the buffers this one has."""
        if self.backend == "numba":
            self.trainer.reset()
            self.schedule = make_schedule([], self.solver, self.settings)
        else:
            self.schedule = make_schedule(self.coefs + self.intercepts, self.solver,
                                          self.settings)

    def set_weights(self, coefs, intercepts):
        for target, source in zip(self.coefs + self.intercepts, coefs + intercepts):
            if target is not source:
                target[...] = source

    def set_batch_size(self, batch_size):
        self.batch_size = batch_size
        if self.backend == "numba":
            self.trainer.batch_size = batch_size

    def prepare(self, X, Y, sample_weight):
        """The epoch's data in the weights' dtype (C-contiguous for the kernels)."""
        dtype = self.coefs[0].dtype
        X = np.ascontiguousarray(X, dtype=dtype)
        Y = np.ascontiguousarray(Y, dtype=dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)
        if self.backend == "numba":
            return self.trainer.prepare(X, Y, sample_weight)
        return X, Y, sample_weight

    def run_epochs(self, X, Y, sample_weight, order, n_epochs, random_state):
        """``n_epochs`` epochs, each over the rows ``order``, which ``random_state`` (None:
        no shuffling) shuffles in place before each, as scikit-learn does; returns
        scikit-learn's loss of each epoch. The Numba engine runs them in one call."""
        if self.backend == "numba":
            return self.trainer.run_epochs(
                X, Y, sample_weight, order, self.schedule.learning_rate, n_epochs,
                random_state=random_state,
            ).tolist()
        losses = []
        for _ in range(n_epochs):
            if random_state is not None:
                random_state.shuffle(order)
            losses.append(float(reference.train_epoch(
                self.coefs, self.intercepts, X, Y, order, self.batch_size, self.schedule,
                self.activation, self.output, self.alpha, sample_weight,
            )))
        return losses


def forward(backend, coefs, intercepts, X, activation, output):
    """The network's output for each row of dense X, in the dtype of X and the weights."""
    dtype = np.result_type(X.dtype, coefs[0].dtype)
    if backend == "numba":
        from fastmlp import kernels

        network = kernels.FlatNetwork.from_arrays(coefs, intercepts, dtype)
        return kernels.predict(network, X, activation, output)
    coefs = [c.astype(dtype, copy=False) for c in coefs]
    intercepts = [b.astype(dtype, copy=False) for b in intercepts]
    _, activations = reference.forward(coefs, intercepts, X.astype(dtype, copy=False),
                                       activation, output)
    return activations[-1]


def lbfgs_objective(backend, units, dtype, X, Y, sample_weight, activation, output, alpha,
                    n_threads):
    """``packed -> (loss, gradient)`` in scikit-learn's ``_pack`` layout, for SciPy."""
    from fastmlp.kernels import FlatNetwork

    layout = FlatNetwork(units, dtype)  # only its offsets, to unpack the vector
    X = np.ascontiguousarray(X, dtype=dtype)
    Y = np.ascontiguousarray(Y, dtype=dtype)
    if sample_weight is not None:
        sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)
    if backend == "numba":
        from fastmlp import kernels

        def objective(packed):
            layout.theta[:] = packed
            loss, coef_grads, intercept_grads = kernels.loss_and_gradients(
                layout.coefs, layout.intercepts, X, Y, activation, output, alpha,
                sample_weight, n_threads,
            )
            return float(loss), np.concatenate([g.ravel() for g in coef_grads + intercept_grads])

    else:

        def objective(packed):
            layout.theta[:] = packed
            loss, coef_grads, intercept_grads = reference.loss_and_gradients(
                layout.coefs, layout.intercepts, X, Y, activation, output, alpha, sample_weight
            )
            return float(loss), np.concatenate([g.ravel() for g in coef_grads + intercept_grads])

    return objective, layout
