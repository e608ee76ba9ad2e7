"""MLPClassifier and MLPRegressor: scikit-learn's estimators, on fastmlp's engines.

Same parameters, defaults, fitted attributes, random-state consumption, stopping rules,
warnings and error messages as ``sklearn.neural_network`` (read alongside
``sklearn/neural_network/_multilayer_perceptron.py``), so that with the same settings and
``random_state`` a fit gives scikit-learn's weights. Added:

* ``backend="numba"`` (default) or ``"numpy"`` (the reference engine), ``n_threads``;
* ``progress=True``: a progress bar over epochs with the current loss;
* activations ``leaky_relu``, ``gelu`` (tanh form) and ``silu``;
* ``validation_loss_curve_`` when ``early_stopping`` is on.

Different on purpose: a fit or partial_fit that raises leaves the estimator as it was
(scikit-learn's keeps what the failed call did to it), and a warm start or partial_fit
whose y, hidden layers or loss do not fit the fitted network raises a ValueError before
training, where scikit-learn's broadcasts y over the outputs, reads the weights in
another layout or fails part-way (see ``_BaseMLP._check_continued_network``).

Sparse X is accepted and densified for the engines.
"""

import contextlib
import functools
import time
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn import config_context, get_config
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import (
    _check_n_features,
    _check_sample_weight,
    _is_fitted,
    check_is_fitted,
    validate_data,
)

from fastmlp import _solvers, persistence, reference
from fastmlp._solvers import StochasticSolver, forward, lbfgs_objective
from fastmlp.activations import HIDDEN_ACTIVATIONS
from fastmlp.kernels import FlatNetwork, TrainingInterrupted

_STOCHASTIC_SOLVERS = ("sgd", "adam")
#: Epochs run in one engine call take about this long, at most (one epoch may take more).
_SECONDS_PER_CALL = 0.1


@contextlib.contextmanager
def _fitting(estimator, method):
    """The context of ``fit`` and ``partial_fit``: scikit-learn's
    ``_fit_context(prefer_skip_nested_validation=True)``, and on any exception the
    estimator as it was before.

    As scikit-learn's: the parameters are checked (but by a ``partial_fit`` of a fitted
    estimator), and the scikit-learn functions called inside (``train_test_split``, the
    scores) skip their own checks, so raising their errors of the arguments. A context,
    not a decorator: the warnings of fitting name the caller of fit by their stack level.

    On failure every attribute is put back, the contents of the estimator's lists
    (``loss_curve_`` and the like grow in place) and its solver's optimizer state: a fit
    that fails or diverges part-way (scikit-learn's keeps the weights it reached, NaN
    ones included) leaves nothing to poison the next call. The weight arrays need no
    copy: fitting never writes into the estimator's arrays, it trains the solver's own
    and hands out copies.
    """
    saved = dict(estimator.__dict__)
    saved_lists = {name: list(value) for name, value in saved.items() if type(value) is list}
    optimizer = saved.get("_optimizer")
    optimizer_state = None if optimizer is None else optimizer.save_state()
    try:
        skip_validation = get_config()["skip_parameter_validation"]
        if not skip_validation and not (method == "partial_fit" and _is_fitted(estimator)):
            estimator._validate_params()
        with config_context(skip_parameter_validation=True):
            yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(saved)
        for name, items in saved_lists.items():
            saved[name][:] = items
        if optimizer is not None:
            optimizer.restore_state(optimizer_state)
        raise


class _BaseMLP(BaseEstimator):
    """Shared fitting logic of MLPClassifier and MLPRegressor."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS))],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "backend": [StrOptions({"numba", "numpy"})],
        "n_threads": [None, Interval(Integral, None, None, closed="neither")],
        "progress": ["boolean"],
    }

    @classmethod
    def _get_param_names(cls):
        """scikit-learn's, from the signature read once per class (reading it is half
        the cost of validating the parameters)."""
        return list(_param_names(cls))

    def _validate_params(self):
        """scikit-learn's validation, skipped where the parameters are those validated
        last (refits with ``warm_start``, each ``partial_fit``)."""
        params = _comparable(self.get_params(deep=False))
        if params is None or params != getattr(self, "_validated_params", None):
            super()._validate_params()
            self._validated_params = params

    def _store_params(self, params):
        """Store the constructor's arguments unchanged, as scikit-learn requires."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    # --- fitting ------------------------------------------------------------------------

    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._n_threads()
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden_layer_sizes}.")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)

        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        layer_units = [X.shape[1]] + hidden_layer_sizes + [y.shape[1]]
        if not first_pass and self.solver not in _STOCHASTIC_SOLVERS:
            layer_units = self._check_continued_network(layer_units)
        self.n_outputs_ = y.shape[1]
        self._random_state = self._seeded_random_state()
        if first_pass:
            self._initialize(y, layer_units, X.dtype)

        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, y, sample_weight, layer_units, incremental,
                                 continued=not first_pass)
        else:
            self._fit_lbfgs(X, y, sample_weight, layer_units)

        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may"
                " contain large values and need to be preprocessed."
            )
        return self

    def _n_threads(self):
        """``n_threads`` as the engine takes it: None or a Python int. Any integer type
        passes the parameter check (NumPy's too); a bool, though Integral, does not."""
        n_threads = self.n_threads
        if n_threads is None:
            return None
        if isinstance(n_threads, bool) or not isinstance(n_threads, Integral) or n_threads == 0:
            raise ValueError(f"n_threads must be a non-zero integer or None, got {n_threads!r}.")
        return int(n_threads)

    def _check_continued_network(self, layer_units):
        """The layer sizes a warm start or ``partial_fit`` trains: the fitted network's,
        checked against this call's data and parameters before anything runs.

        scikit-learn goes on with the fitted weights whatever the call says. Where they
        do not fit it, its arithmetic breaks part-way (or, for L-BFGS, reads the weights
        in the new layout); fastmlp raises instead. A y of one column for a network of
        several outputs is broadcast over them by scikit-learn's ``a - y`` and leaves
        ``n_outputs_`` unequal to the network's: fastmlp raises there too. Hidden
        layers of new widths, as many as before, are trained as fitted by the stochastic
        solvers, as scikit-learn's are (it reads ``hidden_layer_sizes`` only to make a
        network).
        """
        name = type(self).__name__
        fitted = _solvers.network_units(self.coefs_, self.intercepts_)
        if layer_units[0] != fitted[0]:
            raise ValueError(
                f"X has {layer_units[0]} features, but the network of this {name} takes "
                f"{fitted[0]}."
            )
        if layer_units[-1] != fitted[-1]:
            raise ValueError(
                f"y has {layer_units[-1]} output(s), but this {name} was fitted with "
                f"{fitted[-1]}: warm_start and partial_fit go on training the fitted network, "
                "whose outputs cannot change. Fit a new one (warm_start=False) instead."
            )
        hidden, fitted_hidden = layer_units[1:-1], fitted[1:-1]
        if hidden != fitted_hidden and (
            self.solver == "lbfgs" or len(hidden) != len(fitted_hidden)
        ):
            raise ValueError(
                f"hidden_layer_sizes is {tuple(hidden)}, but the fitted network's hidden "
                f"layers have {tuple(fitted_hidden)} units: warm_start and partial_fit go on "
                "training the fitted network"
                + (", and L-BFGS needs its sizes" if self.solver == "lbfgs" else "")
                + ". Fit a new one (warm_start=False) to change them."
            )
        if not is_classifier(self):
            output = "exp" if self.loss == "poisson" else "identity"
            if output != self.out_activation_:
                raise ValueError(
                    f"loss={self.loss!r} does not match the fitted network, whose output "
                    f"activation is {self.out_activation_!r}: warm_start and partial_fit go "
                    "on training the fitted network. Fit a new one (warm_start=False) to "
                    "change the loss."
                )
        return fitted

    def _seeded_random_state(self):
        """``check_random_state(self.random_state)``: for an int seed, a RandomState in
        the state ``RandomState(seed)`` starts in.

        Making one costs 90 microseconds (it is seeded from the OS first), and setting a
        state through ``set_state`` 35: so one is kept, with a copy of its generator's
        first state words, written back at each fit with the same seed. Those words are
        all the state its draws here use (uniform draws, shuffles, permutations); the
        cached Gaussian that ``set_state`` also resets is never drawn.
        """
        from fastmlp.kernels._random import shuffle_state

        seed = self.random_state
        if not isinstance(seed, Integral):
            return check_random_state(seed)
        key = (type(seed), seed)
        kept = getattr(self, "_kept_random_state", None)
        if kept is not None and kept[0] == key:
            _, random_state, first_words = kept
            shuffle_state(random_state, 0)[:] = first_words
            return random_state
        random_state = check_random_state(seed)
        words = shuffle_state(random_state, 0)
        if words is not None:  # else (another NumPy's RandomState) a new one each fit
            self._kept_random_state = (key, random_state, words.copy())
        return random_state

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"

        # Glorot-uniform weights, drawn from the random state in scikit-learn's order.
        self.coefs_, self.intercepts_ = [], []
        factor = 2.0 if self.activation == "logistic" else 6.0
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = self._random_state.uniform(-bound, bound, fan_out)
            self.coefs_.append(coef.astype(dtype, copy=False))
            self.intercepts_.append(intercept.astype(dtype, copy=False))
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]

        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _solver_settings(self):
        return {
            name: getattr(self, name)
            for name in ("learning_rate_init", "learning_rate", "momentum",
                         "nesterovs_momentum", "power_t", "beta_1", "beta_2", "epsilon")
        }

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be "
                "clipped",
                stacklevel=4,
            )
        return int(np.clip(self.batch_size, 1, n_samples))

    def _split_validation(self, X, y, sample_weight):
        """scikit-learn's validation split: same random draws, stratified for one output."""
        stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
        if sample_weight is None:
            X_train, X_val, y_train, y_val = train_test_split(
                X, y, random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify,
            )
            sw_train = sw_val = None
        else:
            X_train, X_val, y_train, y_val, sw_train, sw_val = train_test_split(
                X, y, sample_weight, random_state=self._random_state,
                test_size=self.validation_fraction, stratify=stratify,
            )
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        y_val_targets = y_val
        if is_classifier(self):
            y_val = self._label_binarizer.inverse_transform(y_val)
        return X_train, X_val, y_train, y_val, y_val_targets, sw_train, sw_val

    def _fit_stochastic(self, X, y, sample_weight, layer_units, incremental, continued=False):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            X_train, X_val, y_train, y_val, y_val_targets, sw_train, sw_val = (
                self._split_validation(X, y, sample_weight)
            )
        else:
            X_train, y_train, sw_train = X, y, sample_weight
            X_val = y_val = y_val_targets = sw_val = None

        n_samples = X_train.shape[0]
        batch_size = self._batch_size(n_samples)
        # Where scikit-learn's checks come before its loop fails on a network that does
        # not fit: after its own errors, as there.
        if continued:
            self._check_continued_network(layer_units)
        if not hasattr(self, "loss_curve_"):
            # Fitted by L-BFGS, which keeps no loss curve: scikit-learn's loop fails on
            # it after the first epoch; here before any.
            raise AttributeError(f"'{type(self).__name__}' object has no attribute 'loss_curve_'")
        if early_stopping and self.validation_scores_ is None:
            raise ValueError(
                "early_stopping=True cannot go on from a fit without early stopping: it "
                "kept no validation scores. Fit anew (warm_start=False) to stop early."
            )
        n_threads = self._n_threads()
        # A new fit starts a new optimizer, as scikit-learn's does; partial_fit goes on
        # with the one it has, and with this call's activation and alpha, which
        # scikit-learn reads at each call. A new one for the same network and settings
        # reuses the last one's buffers (made ready for the engine's threads once).
        if not (incremental and hasattr(self, "_optimizer")):
            settings = self._solver_settings()
            config = (
                self.backend, [c.shape for c in self.coefs_], self.coefs_[0].dtype,
                self.activation, self.out_activation_, self.solver, settings, self.alpha,
                n_threads,
            )
            if getattr(self, "_optimizer_config", None) == config:
                self._optimizer.restart()
            else:
                self._optimizer = StochasticSolver(
                    self.backend, self.coefs_, self.intercepts_, self.activation,
                    self.out_activation_, self.solver, settings, self.alpha, batch_size,
                    n_threads,
                )
                self._optimizer_config = config
        else:
            optimizer = self._optimizer
            if optimizer.coefs[0].dtype != self.coefs_[0].dtype and optimizer.units == (
                _solvers.network_units(self.coefs_, self.intercepts_)
            ):  # left by a stochastic fit before one by L-BFGS, whose weights are float64
                self._optimizer = self._optimizer.for_weights(self.coefs_, self.intercepts_)
                self._optimizer_config = None
            self._optimizer.update_settings(self.activation, self.alpha, n_threads)
        solver = self._optimizer
        solver.set_weights(self.coefs_, self.intercepts_)
        solver.set_batch_size(batch_size)
        X_epoch, Y_epoch, sw_epoch = solver.prepare(X_train, y_train, sw_train)
        sample_idx = np.arange(n_samples, dtype=np.int64)
        random_state = self._random_state if self.shuffle else None
        progress = self._progress_bar()
        # Not measured yet on this solver: the first call runs one epoch.
        seconds_per_epoch = solver.seconds_per_row * n_samples
        try:
            self.n_iter_ = 0
            stopped = False
            while not stopped and self.n_iter_ < self.max_iter:
                n_epochs = self._epochs_per_call(incremental, seconds_per_epoch)
                started = time.perf_counter()
                interrupted = None
                try:
                    losses = solver.run_epochs(
                        X_epoch, Y_epoch, sw_epoch, sample_idx, n_epochs, random_state
                    )
                except TrainingInterrupted as caught:  # the epochs completed count
                    interrupted, losses = caught, caught.losses.tolist()
                seconds_per_epoch = (time.perf_counter() - started) / n_epochs
                solver.seconds_per_row = seconds_per_epoch / n_samples
                self.coefs_, self.intercepts_ = solver.coefs, solver.intercepts
                # scikit-learn's end of each epoch, in order; at most the last can stop.
                for loss in losses:
                    stopped = self._end_epoch(
                        loss, n_samples, solver, progress, incremental, early_stopping,
                        (X_val, y_val, y_val_targets, sw_val),
                    )
                    if stopped:
                        break
                if interrupted is not None:
                    raise interrupted
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        finally:
            if progress is not None:
                progress.close()
        # The solver's arrays are updated in place by later fits: hand out copies.
        self.coefs_ = [c.copy() for c in solver.coefs]
        self.intercepts_ = [b.copy() for b in solver.intercepts]
        if early_stopping:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _end_epoch(self, loss, n_samples, solver, progress, incremental, early_stopping,
                   validation):
        """scikit-learn's work after an epoch: the loss curve, progress and verbose
        output, the validation score, the stopping rule, the learning-rate schedule and
        the iteration warning. Returns whether training stops here."""
        X_val, y_val, y_val_targets, sw_val = validation
        self.loss_ = loss
        self.n_iter_ += 1
        self.t_ += n_samples
        self.loss_curve_.append(self.loss_)
        if progress is not None:
            progress.update()
            progress.set_postfix(loss=f"{self.loss_:.6g}")
        if self.verbose:
            print(f"Iteration {self.n_iter_:d}, loss = {self.loss_:.8f}")

        if early_stopping:
            self.validation_loss_curve_.append(
                self._validation_loss(X_val, y_val_targets, sw_val)
            )
        self._update_no_improvement_count(early_stopping, X_val, y_val, sw_val)
        solver.schedule.iteration_ends(self.t_)

        if self._no_improvement_count > self.n_iter_no_change:
            if early_stopping:
                msg = (
                    f"Validation score did not improve more than tol={self.tol:f} "
                    f"for {self.n_iter_no_change:d} consecutive epochs."
                )
            else:
                msg = (
                    f"Training loss did not improve more than tol={self.tol:f} "
                    f"for {self.n_iter_no_change:d} consecutive epochs."
                )
            if solver.schedule.trigger_stopping(msg, self.verbose):
                return True
            self._no_improvement_count = 0

        if incremental:
            return True
        if self.n_iter_ == self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter:d}) "
                "reached and the optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=5,  # the caller of fit or partial_fit
            )
        return False

    def _progress_bar(self):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.max_iter, desc=type(self).__name__, unit="epoch")

    def _epochs_per_call(self, incremental, seconds_per_epoch):
        """How many epochs the engine may run in one call: none of scikit-learn's checks
        between them could act, and they take about ``_SECONDS_PER_CALL``, so that the
        progress bar moves and Ctrl-C stops training soon.

        The checks act after an epoch only with early stopping (the validation score
        needs that epoch's weights), under ``invscaling`` (a new rate each epoch), in
        ``partial_fit`` (one epoch), or once the no-improvement count passes
        ``n_iter_no_change``: it grows by at most one per epoch.
        """
        invscaling = self.solver == "sgd" and self.learning_rate == "invscaling"
        if incremental or self.early_stopping or invscaling:
            return 1
        n_epochs = self.max_iter - self.n_iter_
        if self.n_iter_no_change != np.inf:
            n_epochs = min(n_epochs, self.n_iter_no_change + 1 - self._no_improvement_count)
        if seconds_per_epoch * n_epochs > _SECONDS_PER_CALL:
            n_epochs = int(_SECONDS_PER_CALL / seconds_per_epoch)
        return max(n_epochs, 1)

    def _validation_loss(self, X_val, Y_val, sample_weight):
        """The training loss (data term plus penalty) on the validation set: NaN where
        its weights sum to zero (scikit-learn's score of it raises, or not, after)."""
        if sample_weight is not None and np.sum(sample_weight) == 0:
            return np.nan
        y_out = forward(self.backend, self.coefs_, self.intercepts_, X_val, self.activation,
                        self.out_activation_)
        Y = np.asarray(Y_val, dtype=y_out.dtype)
        data = reference.loss(y_out, Y, self.out_activation_, sample_weight)
        n = X_val.shape[0] if sample_weight is None else np.sum(sample_weight)
        penalty = 0.5 * self.alpha * sum(np.dot(c.ravel(), c.ravel()) for c in self.coefs_) / n
        return float(data + penalty)

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        score = self._score(X, y, sample_weight=sample_weight) if early_stopping else None
        self._count_no_improvement(score)

    def _count_no_improvement(self, validation_score):
        """scikit-learn's rule after an epoch: the validation score (early stopping; None
        otherwise) or the training loss against the best so far, by ``tol``. Shared with
        fits on Dask, which score the validation rows there."""
        if validation_score is not None:
            self.validation_scores_.append(validation_score)
            if self.verbose:
                print(f"Validation score: {self.validation_scores_[-1]:f}")
            last_score = self.validation_scores_[-1]
            if last_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_score > self.best_validation_score_:
                self.best_validation_score_ = last_score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [b.copy() for b in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _fit_lbfgs(self, X, y, sample_weight, layer_units):
        packed = np.hstack([a.ravel() for a in self.coefs_ + self.intercepts_])
        objective = lbfgs_objective(
            self.backend, layer_units, packed.dtype, X, y, sample_weight, self.activation,
            self.out_activation_, self.alpha, self._n_threads(),
        )
        result = scipy.optimize.minimize(
            objective, packed, method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
        )
        self.n_iter_ = min(result.nit, self.max_iter)
        if result.status != 0:
            message = (
                f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                f"(status={result.status}):\n{result.message}\n"
            )
            if self.n_iter_ == self.max_iter:
                message += (
                    "\nIncrease the number of iterations to improve the convergence "
                    f"(max_iter={self.max_iter})."
                )
            warnings.warn(message, ConvergenceWarning, stacklevel=3)
        self.loss_ = result.fun
        # L-BFGS's own iterate, float64 whatever the weights were (scikit-learn's
        # _unpack makes its weights views of it): predictions from them are float64.
        fitted = FlatNetwork(layer_units, np.float64)
        fitted.theta[:] = result.x
        self.coefs_ = [c.copy() for c in fitted.coefs]
        self.intercepts_ = [b.copy() for b in fitted.intercepts]

    # --- prediction -----------------------------------------------------------------------

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        if not scipy.sparse.issparse(X):
            X = np.asarray(X)
        return forward(self.backend, self.coefs_, self.intercepts_, X, self.activation,
                       self.out_activation_)

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            float32 X trains in float32, anything else in float64.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        if _on_dask(X):
            return _dask().fit(self, X, y, sample_weight=sample_weight)
        with _fitting(self, "fit"):
            return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                "partial_fit is only available for stochastic optimizers. "
                f"{self.solver} is not stochastic."
            )
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # Pickling, copies and skops store the plain state of fastmlp.persistence (numbers,
    # strings, arrays, lists and dicts): no object of a type skops would have to be told
    # to trust, and the engine's buffers are rebuilt when next needed.
    def __getstate__(self):
        return persistence.plain_state(self)

    def __setstate__(self, state):
        persistence.set_plain_state(self, state)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's, on fastmlp's engines.

    Takes every parameter of ``sklearn.neural_network.MLPClassifier`` with the same
    default and meaning, and gives the same fitted model for the same ``random_state``.

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose,
    warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
    beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As in scikit-learn; ``activation`` also takes ``"leaky_relu"``, ``"gelu"`` and
        ``"silu"``.
    backend : {"numba", "numpy"}, default="numba"
        The Numba engine, or the NumPy reference engine.
    n_threads : int, default=None
        Threads for the Numba engine (negative: all but ``-1 - n``). None: all of
        Numba's, or one where that has been running faster (on a busy machine); the
        weights are the same either way.
    progress : bool, default=False
        Show a progress bar over epochs with the current loss.

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_,
    t_, coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_,
    n_outputs_, out_activation_
        As in scikit-learn.
    validation_loss_curve_ : list of float
        With ``early_stopping``, the loss on the validation set after each epoch.
    """

    def __init__(
        self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
        batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
        max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
        warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
        validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
        max_fun=15000, backend="numba", n_threads=None, progress=False,
    ):
        self._store_params(locals())

    loss = "log_loss"

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_X_y(self, X, y, reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = _unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    "`y` has classes not in `self.classes_`. "
                    f"`self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        return X, _binarize(self._label_binarizer, y)

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        if _on_dask(X):
            return _dask().predict(self, X)
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return _labels_of(self._label_binarizer, y_pred)

    def score(self, X, y, sample_weight=None):
        """The mean accuracy on ``(X, y)``, as scikit-learn's; on Dask for dask collections
        (``fastmlp.dask.score``)."""
        if _on_dask(X):
            return _dask().score(self, X, y, sample_weight=sample_weight)
        return super().score(X, y, sample_weight=sample_weight)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, _accuracy)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single iteration over the given data.

        ``classes`` (all classes across calls) is required on the first call.
        """
        if _on_dask(X):
            return _dask().partial_fit(self, X, y, sample_weight=sample_weight, classes=classes)
        with _fitting(self, "partial_fit"):
            if _first_partial_fit_call(self, classes):
                self._label_binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    self._label_binarizer.fit(y)
                else:
                    self._label_binarizer.fit(classes)
            return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """The log of ``predict_proba(X)``."""
        if _on_dask(X):
            return _dask().predict_log_proba(self, X)
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Probability estimates, shape (n_samples, n_classes), in ``classes_`` order."""
        if _on_dask(X):
            return _dask().predict_proba(self, X)
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's, on fastmlp's engines.

    ``loss`` is ``"squared_error"`` (identity output) or ``"poisson"`` (exp output, for
    ``y >= 0``; as in scikit-learn, a negative y is not refused and makes the loss NaN).
    Every other parameter and attribute is as in :class:`MLPClassifier`.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
        solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
        learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True, random_state=None,
        tol=1e-4, verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
        early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
        epsilon=1e-8, n_iter_no_change=10, max_fun=15000, backend="numba", n_threads=None,
        progress=False,
    ):
        self._store_params(locals())

    def predict(self, X):
        """Predict using the multi-layer perceptron model: (n_samples,) or (n, n_outputs)."""
        if _on_dask(X):
            return _dask().predict(self, X)
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def score(self, X, y, sample_weight=None):
        """The coefficient of determination R^2 on ``(X, y)``, as scikit-learn's; on Dask
        for dask collections (``fastmlp.dask.score``)."""
        if _on_dask(X):
            return _dask().score(self, X, y, sample_weight=sample_weight)
        return super().score(X, y, sample_weight=sample_weight)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    def _validate_input(self, X, y, incremental, reset):
        X, y = _validate_X_y(self, X, y, reset, y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        # No check of y >= 0 for loss="poisson": scikit-learn's MLPRegressor has none,
        # and trains on, its loss NaN (its gradient, exp(z) - y, stays finite).
        return X, y

    # scikit-learn's regressor checks the solver lazily here (its partial_fit with lbfgs
    # runs a full L-BFGS fit); kept for parity.
    @available_if(lambda est: est._check_solver)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single iteration over the given data."""
        if _on_dask(X):
            return _dask().partial_fit(self, X, y, sample_weight=sample_weight)
        with _fitting(self, "partial_fit"):
            return self._fit(X, y, sample_weight=sample_weight, incremental=True)


def _on_dask(X):
    """Whether X is a dask collection, which trains and predicts on Dask (fastmlp.dask);
    asked without importing dask."""
    return hasattr(type(X), "__dask_graph__")


def _dask():
    from fastmlp import dask

    return dask


def _validate_X_y(estimator, X, y, reset, y_numeric=False):
    """``validate_data`` of X and y as scikit-learn's MLPs call it.

    Float arrays that it would return unchanged, all finite, skip its per-array checks
    (a tenth of a millisecond, mostly spent asking whether X is a dataframe); everything
    else goes through them, and gets their errors. An estimator fitted on a dataframe
    still has its feature names checked.
    """
    if (
        type(X) is np.ndarray
        and type(y) is np.ndarray
        and X.dtype in (np.float64, np.float32)
        and y.dtype.kind in "biuf"
        and X.ndim == 2
        and y.ndim in (1, 2)
        and 0 not in X.shape
        and 0 not in y.shape
        and y.shape[0] == X.shape[0]
        and np.isfinite(X.sum())  # a NaN or inf anywhere makes the sum one
        and (y.dtype.kind != "f" or np.isfinite(y.sum()))
    ):
        if hasattr(estimator, "feature_names_in_"):  # to drop, or to warn about
            return validate_data(estimator, X, y, reset=reset, skip_check_array=True)
        _check_n_features(estimator, X, reset=reset)  # an array has no feature names
        return X, y
    return validate_data(
        estimator, X, y, accept_sparse=["csr", "csc"], multi_output=True, y_numeric=y_numeric,
        dtype=(np.float64, np.float32), reset=reset,
    )


@functools.cache
def _param_names(cls):
    return tuple(BaseEstimator._get_param_names.__func__(cls))


def _comparable(params):
    """The parameters as a tuple that compares equal only to the same values of the same
    types (lists as tuples); None where a value cannot be compared so (an array)."""
    items = []
    for name, value in sorted(params.items()):
        if type(value) is list:
            value = (list, *value)
        try:
            hash(value)
        except TypeError:
            return None
        items.append((name, type(value), value))
    return tuple(items)


def _unique_labels(y):
    """``unique_labels(y)``. Integer labels in one column need none of its type checks
    (a tenth of a millisecond per fit) and take the direct route."""
    if y.ndim == 1 and y.dtype.kind in "iu":
        if y.size and 0 <= y.min() and y.max() <= 4 * y.size:  # counted: a fifth the time
            return np.flatnonzero(np.bincount(y)).astype(y.dtype)
        return np.unique(y)
    return unique_labels(y)


def _binarize(binarizer, y):
    """``binarizer.transform(y).astype(bool)``, where ``y`` holds only known classes.

    Labels in one column are binarized directly (one column for two classes, one-hot for
    more, as ``LabelBinarizer`` does): its checks of the label type cost more than half a
    millisecond per fit, as long as a whole epoch on small data. Anything else, and any
    label not in ``classes_``, goes through ``LabelBinarizer`` and its errors.
    """
    classes = binarizer.classes_
    if (
        y.ndim == 1
        and len(classes) >= 2
        and binarizer.y_type_ in ("binary", "multiclass")
        and not binarizer.sparse_output
    ):
        index = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
        if np.array_equal(classes[index], y):
            if len(classes) == 2:
                return (index == 1).reshape(-1, 1)
            one_hot = np.zeros((y.shape[0], len(classes)), dtype=bool)
            one_hot[np.arange(y.shape[0]), index] = True
            return one_hot
    return binarizer.transform(y).astype(bool)


def _labels_of(binarizer, y_pred):
    """``binarizer.inverse_transform(y_pred)`` for the network's dense outputs.

    One output column (two classes) is thresholded at 0.5 and several take their
    argmax, as ``LabelBinarizer`` does, without its checks: predicting, and scoring
    the validation set after every epoch of early stopping, cost a fraction of what
    they did on small data. Multilabel outputs go through ``LabelBinarizer``.
    """
    classes = binarizer.classes_
    if not binarizer.sparse_input_ and binarizer.pos_label == 1 and binarizer.neg_label == 0:
        if binarizer.y_type_ == "multiclass" and y_pred.ndim == 2:
            return classes.take(y_pred.argmax(axis=1), mode="clip")
        if binarizer.y_type_ == "binary" and y_pred.ndim == 1 and len(classes) == 2:
            return classes[(y_pred > 0.5).astype(np.intp)]
    return binarizer.inverse_transform(y_pred)


def _accuracy(y_true, y_pred, sample_weight=None):
    """``accuracy_score``; labels in one column of one plain dtype, with positive weights
    if any, skip its checks (the validation score of every early-stopping epoch)."""
    if (
        (sample_weight is None or np.all(sample_weight > 0))
        and y_true.ndim == 1
        and y_pred.shape == y_true.shape
        and y_true.dtype == y_pred.dtype
        and y_true.dtype.kind in "biuU"
    ):
        return float(np.average(y_true == y_pred, weights=sample_weight))
    return accuracy_score(y_true, y_pred, sample_weight=sample_weight)


def _first_partial_fit_call(estimator, classes):
    """scikit-learn's first-call logic for ``partial_fit(classes=...)``."""
    if getattr(estimator, "classes_", None) is None and classes is None:
        raise ValueError("classes must be passed on the first call to partial_fit.")
    if classes is not None:
        if getattr(estimator, "classes_", None) is not None:
            if not np.array_equal(estimator.classes_, unique_labels(classes)):
                raise ValueError(
                    f"`classes={classes!r}` is not the same as on last call to "
                    f"partial_fit, was: {estimator.classes_!r}"
                )
        else:
            estimator.classes_ = unique_labels(classes)
            return True
    return False
