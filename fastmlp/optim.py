"""SGD and Adam for the reference engine, with scikit-learn's formulas and schedules.

These work on lists of NumPy arrays (the coefs and intercepts) and update them in place,
exactly as ``sklearn/neural_network/_stochastic_optimizers.py`` does. The Numba engine's
whole-epoch kernels implement the same per-batch updates on a flat vector
(``fastmlp/kernels/_optimizers.py``); ``tests/test_kernels.py`` pins the two together.
The learning-rate schedules act between epochs and are shared by both engines.
"""

import numpy as np


class SGD:
    """SGD with momentum or Nesterov momentum and scikit-learn's learning-rate schedules.

    ``velocity = momentum * velocity - learning_rate * grad``, then the parameter moves by
    the velocity, or with Nesterov by ``momentum * velocity - learning_rate * grad``.
    """

    def __init__(
        self, params, learning_rate_init=0.1, lr_schedule="constant", momentum=0.9,
        nesterov=True, power_t=0.5,
    ):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.nesterov = nesterov
        self.power_t = power_t
        self.velocities = [np.zeros_like(p) for p in params]

    def update(self, params, grads):
        for param, velocity, grad in zip(params, self.velocities, grads):
            velocity *= self.momentum
            velocity -= self.learning_rate * grad
            if self.nesterov:
                param += self.momentum * velocity - self.learning_rate * grad
            else:
                param += velocity

    def iteration_ends(self, time_step):
        """At the end of an epoch; ``time_step`` is the number of samples seen so far."""
        if self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        """scikit-learn's rule: stop, or with 'adaptive' divide the rate by 5 until 1e-6."""
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(f"{msg} Setting learning rate to {self.learning_rate:f}")
        return False


class Adam:
    """Adam with bias correction folded into the step size, as scikit-learn writes it."""

    def __init__(self, params, learning_rate_init=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.t = 0
        self.ms = [np.zeros_like(p) for p in params]
        self.vs = [np.zeros_like(p) for p in params]

    def update(self, params, grads):
        self.t += 1
        self.learning_rate = (
            self.learning_rate_init
            * np.sqrt(1 - self.beta_2**self.t)
            / (1 - self.beta_1**self.t)
        )
        for param, m, v, grad in zip(params, self.ms, self.vs, grads):
            m[...] = self.beta_1 * m + (1 - self.beta_1) * grad
            v[...] = self.beta_2 * v + (1 - self.beta_2) * (grad**2)
            param += -self.learning_rate * m / (np.sqrt(v) + self.epsilon)

    def iteration_ends(self, time_step):
        pass

    def trigger_stopping(self, msg, verbose):
        if verbose:
            print(msg + " Stopping.")
        return True
