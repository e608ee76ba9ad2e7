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

A sparse X (CSR or CSC) trains and predicts on its nonzeros on the Numba engine; the
NumPy reference engine makes it dense.
"""

import contextlib
import time
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse
from sklearn import config_context, get_config
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    _is_fitted,
    validate_data,
)

from fastmlp import _solvers, persistence, reference
from fastmlp._sklearn_shortcuts import (
    _accuracy,
    _binarize,
    _check_is_fitted,
    _comparable,
    _first_partial_fit_call,
    _fit_classes,
    _labels_of,
    _param_names,
    _validate_X_y,
)
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
        # scikit-learn's copies of the initial weights. Here the same arrays: no fit
        # writes into them (the solvers train weights of their own, and coefs_ is bound
        # to new arrays after), and a wide network holds one copy less while it fits
        # (the W4 fit of benchmarks.targets.fit_memory(): 12.5 MiB of resident memory
        # added, not 13.2).
        self._best_coefs = list(self.coefs_)
        self._best_intercepts = list(self.intercepts_)

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
        # Fitted without feature names, X of the fitted width: validate_data would pass
        # a plain float array on unchanged (see forward_plain_rows).
        state = self.__dict__
        if "feature_names_in_" not in state and getattr(X, "ndim", 0) == 2 and (
            X.shape[1] == state.get("n_features_in_")
        ):
            y_out = _solvers.forward_plain_rows(self.backend, self.coefs_, self.intercepts_,
                                                X, self.activation, self.out_activation_,
                                                self.n_threads)
            if y_out is not None:
                return y_out
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
        """Train the network on ``(X, y)``, from new weights unless ``warm_start``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The training rows. float32 X trains in float32 (with ``"sgd"`` and
            ``"adam"``), anything else in float64; a sparse matrix (CSR or CSC) trains
            on its nonzeros. A dask array or DataFrame trains on Dask
            (``fastmlp.dask.fit``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets: class labels of any type, or a 0/1 indicator matrix for
            multilabel targets (``MLPClassifier``); real values, one column per output
            (``MLPRegressor``).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows: each row's share of the loss and of its
            gradient, each batch's divided by the batch's total weight. None weighs
            every row 1.

        Returns
        -------
        self : object
            The fitted estimator.
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

    A feed-forward network trained on the log-loss (cross-entropy) by Adam, stochastic
    gradient descent or L-BFGS, for binary, multiclass and multilabel targets of any
    label type. It takes every parameter of ``sklearn.neural_network.MLPClassifier``,
    with the same defaults, and with the same settings and ``random_state`` gives the
    same fitted model, to float64 rounding; the work runs on fastmlp's compiled Numba
    engine (or on its NumPy reference engine).

    Parameters
    ----------
    hidden_layer_sizes : array-like of int, or int, default=(100,)
        The number of units in each hidden layer, from the input side: ``(64, 32)`` is
        two hidden layers of 64 and 32 units, an int one layer. The input and output
        layers take their sizes from the data.
    activation : str, default="relu"
        The function every hidden unit applies to its weighted input ``z``: ``"relu"``
        (``max(0, z)``), ``"identity"`` (``z``), ``"logistic"`` (``1 / (1 + exp(-z))``)
        or ``"tanh"``, as in scikit-learn; and, in fastmlp only, ``"leaky_relu"``
        (``z``, or ``0.01 * z`` where ``z <= 0``), ``"gelu"`` (in its tanh form,
        ``0.5 z (1 + tanh(sqrt(2 / pi) (z + 0.044715 z^3)))``) and ``"silu"``
        (``z / (1 + exp(-z))``). The output layer's function follows from the targets
        (``out_activation_``).
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
        How the weights are optimized. ``"adam"`` (Adam) and ``"sgd"`` (stochastic
        gradient descent with momentum) take one step per minibatch and run in epochs,
        whole passes over the training rows. ``"lbfgs"`` runs SciPy's L-BFGS-B, a
        quasi-Newton method, on the loss of all rows at once: often the better choice
        for a few thousand rows or fewer.
    alpha : float, default=0.0001
        The strength of the L2 penalty on the weights (not the biases): ``0.5 * alpha``
        times the sum of the squared weights, divided by the number of rows (or by the
        sum of their weights), is added to the loss. At least 0.
    batch_size : int or "auto", default="auto"
        Rows per minibatch of ``"sgd"`` and ``"adam"``; ``"auto"`` takes
        ``min(200, n_samples)``. A size larger than the training rows is cut to their
        number, with a warning. ``"lbfgs"`` does not use minibatches.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The step-size schedule of ``solver="sgd"``. ``"constant"``: always
        ``learning_rate_init``. ``"invscaling"``: after each epoch,
        ``learning_rate_init / (t_ + 1) ** power_t``, ``t_`` being the rows seen so
        far. ``"adaptive"``: ``learning_rate_init`` until the rule of ``tol`` and
        ``n_iter_no_change`` would stop training; then the rate is divided by 5 and
        training goes on, until the rate is at most 1e-6.
    learning_rate_init : float, default=0.001
        The step size ``"sgd"`` starts with, and the base step size of ``"adam"``.
        Greater than 0.
    power_t : float, default=0.5
        The exponent of the ``"invscaling"`` schedule (``solver="sgd"`` only).
    max_iter : int, default=200
        The most epochs of ``"sgd"`` or ``"adam"`` that one ``fit`` runs (reaching it
        warns with ``ConvergenceWarning``), or the most iterations of ``"lbfgs"``.
    shuffle : bool, default=True
        Whether ``"sgd"`` and ``"adam"`` shuffle the training rows before each epoch,
        drawing from ``random_state``.
    random_state : int, RandomState instance or None, default=None
        The source of every random draw of a fit, in scikit-learn's order: the initial
        weights (uniform, in Glorot's range), the validation split of
        ``early_stopping``, then the shuffle before each epoch. An int gives the same
        model at every fit, on any number of threads; None draws from NumPy's global
        random state.
    tol : float, default=1e-4
        The smallest change that counts as an improvement. ``"sgd"`` and ``"adam"``
        count the epochs in a row whose training loss is not ``tol`` below the lowest
        so far (with ``early_stopping``: whose validation accuracy is not ``tol`` above
        the highest so far), and stop once the count exceeds ``n_iter_no_change``. For
        ``"lbfgs"`` it is SciPy's ``gtol``: L-BFGS-B stops once no component of its
        projected gradient exceeds ``tol`` (or by its other rules).
    verbose : bool or int, default=False
        Print the loss after each epoch of ``"sgd"`` or ``"adam"`` (and the validation
        accuracy with ``early_stopping``), and why training stopped.
    warm_start : bool, default=False
        When True, ``fit`` goes on training the fitted network instead of drawing new
        weights, and ``loss_curve_`` goes on growing. The data must fit that network:
        the same features and classes, as many hidden layers (for ``"lbfgs"``, of the
        same sizes; the stochastic solvers keep the fitted sizes, as scikit-learn's
        do); otherwise ``fit`` raises ``ValueError`` before training.
    momentum : float, default=0.9
        The momentum of ``solver="sgd"``, in [0, 1]: each step carries on this share
        of the last one.
    nesterovs_momentum : bool, default=True
        Whether ``solver="sgd"`` takes Nesterov's form of momentum, whose gradient
        step looks ahead along the velocity.
    early_stopping : bool, default=False
        When True, ``"sgd"`` and ``"adam"`` hold out ``validation_fraction`` of the
        training rows (stratified by class where there is one output), score the
        network's accuracy on them after each epoch, stop by ``tol`` and
        ``n_iter_no_change`` on that score instead of the training loss, and end with
        the weights of the best-scoring epoch. Refused by ``partial_fit``; ignored by
        ``"lbfgs"``.
    validation_fraction : float, default=0.1
        The share of the training rows held out with ``early_stopping``, in [0, 1);
        at least two rows must be held out.
    beta_1 : float, default=0.9
        Adam's decay rate for its running mean of the gradients, in [0, 1).
    beta_2 : float, default=0.999
        Adam's decay rate for its running mean of the squared gradients, in [0, 1).
    epsilon : float, default=1e-8
        Added to the square root of Adam's mean squared gradient, the denominator of
        its step, so that it is never zero. Greater than 0.
    n_iter_no_change : int or np.inf, default=10
        How many epochs in a row without an improvement of ``tol`` ``"sgd"`` and
        ``"adam"`` allow: they stop at the next one. ``np.inf`` never stops early.
    max_fun : int, default=15000
        The most evaluations of the loss and its gradient that ``"lbfgs"`` may make
        (an iteration makes one or more).
    backend : {"numba", "numpy"}, default="numba"
        The engine that trains and predicts: fastmlp's compiled Numba kernels, or its
        NumPy reference engine, the plain implementation the kernels are tested
        against (slower; the same results to float64 rounding). Not in scikit-learn.
    n_threads : int or None, default=None
        The threads the Numba engine may use. A positive count is capped at Numba's
        (``NUMBA_NUM_THREADS``); a negative one counts back from it, as in joblib (-1:
        all, -2: all but one); 0 is refused. None: Numba's count, except that each
        engine call runs on one thread where that has lately been faster (on a busy
        machine). A batch is split into at most two chunks of rows, so one fit keeps
        at most two threads busy. The weights are the same for every value. Ignored
        by ``backend="numpy"``. Not in scikit-learn.
    progress : bool, default=False
        Show a progress bar (tqdm) over the epochs of ``"sgd"`` and ``"adam"``, with
        the current loss. Not in scikit-learn.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted (for a multilabel indicator ``y``, the column
        indices): the column order of ``predict_proba``.
    loss_ : float
        The training loss (log-loss plus the L2 penalty) after the last epoch: for
        ``"sgd"`` and ``"adam"``, the batches' losses, each taken before its step,
        averaged over the epoch's rows; for ``"lbfgs"``, the loss at the fitted weights.
    best_loss_ : float or None
        The lowest value in ``loss_curve_``; None with ``early_stopping`` (see
        ``best_validation_score_``). Set by ``"sgd"`` and ``"adam"`` only.
    loss_curve_ : list of float
        ``loss_`` after each epoch, one entry per epoch since the weights were drawn
        (``warm_start`` fits and ``partial_fit`` calls append to it). Set by ``"sgd"``
        and ``"adam"`` only.
    validation_scores_ : list of float or None
        With ``early_stopping``, the accuracy on the held-out rows after each epoch;
        None otherwise. Set by ``"sgd"`` and ``"adam"`` only.
    best_validation_score_ : float or None
        With ``early_stopping``, the highest of ``validation_scores_``: the fitted
        weights are that epoch's. None otherwise. Set by ``"sgd"`` and ``"adam"`` only.
    validation_loss_curve_ : list of float
        With ``early_stopping``, the loss (log-loss plus the L2 penalty) on the
        held-out rows after each epoch; NaN where their sample weights sum to zero.
        Set only with ``early_stopping``. Not in scikit-learn.
    t_ : int
        The training rows that ``"sgd"`` and ``"adam"`` have stepped through since the
        weights were drawn (epochs times rows, over ``warm_start`` fits and
        ``partial_fit`` calls): the ``t`` of ``"invscaling"``. ``"lbfgs"`` does not
        change it.
    coefs_ : list of ndarray
        The weight matrices, ``n_layers_ - 1`` of them: ``coefs_[i]``, of shape (units
        of layer i, units of layer i + 1), maps layer i to the next (layer 0 is the
        input). float32 where ``X`` was float32 and the solver stochastic, float64
        otherwise.
    intercepts_ : list of ndarray
        The bias vectors: ``intercepts_[i]``, of shape (units of layer i + 1,), is
        added to layer i + 1's weighted input.
    n_features_in_ : int
        The number of features ``X`` had at ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        The column names of ``X`` at ``fit``, set only where they were all strings (a
        pandas DataFrame, for instance).
    n_iter_ : int
        The epochs that the last ``fit`` ran (1 after ``partial_fit``), or for
        ``"lbfgs"`` its iterations.
    n_layers_ : int
        The layers, input and output included: ``len(hidden_layer_sizes) + 2``.
    n_outputs_ : int
        The output units: 1 for two classes, one per class for more, one per label for
        multilabel targets.
    out_activation_ : str
        The output function: ``"logistic"`` for two classes and multilabel targets (a
        probability per output), ``"softmax"`` for more than two classes.

    See Also
    --------
    MLPRegressor : The same network for real-valued targets.
    sklearn.neural_network.MLPClassifier : scikit-learn's classifier, whose fitted
        model this one gives.
    fastmlp.save : Write a fitted model to a file, without pickle.

    Notes
    -----
    Where fastmlp differs from scikit-learn on purpose:

    * a ``fit`` or ``partial_fit`` that raises (on bad input, or on weights that
      diverge) leaves the estimator exactly as it was; scikit-learn's keeps what the
      failed call did to it;
    * a ``warm_start`` fit or ``partial_fit`` whose ``y``, hidden layers or loss do not
      fit the fitted network raises ``ValueError`` before training, where
      scikit-learn's broadcasts ``y`` over the outputs, reads the weights in another
      layout or fails part-way.

    Its warnings and error messages are scikit-learn's, word for word. A sparse ``X``
    (CSR or CSC) trains and predicts on its nonzeros on the Numba engine; the NumPy
    engine makes it dense. A dask array or dataframe trains and predicts on Dask
    (``fastmlp.dask``). Ctrl-C stops an ``"sgd"`` or ``"adam"`` fit within about a
    tenth of a second and keeps the epochs done, with scikit-learn's warning. Pickling
    and ``copy.deepcopy`` store plain state only (numbers, strings, arrays, lists and
    dicts).

    Examples
    --------
    >>> from sklearn.datasets import make_moons
    >>> from fastmlp import MLPClassifier
    >>> X, y = make_moons(n_samples=200, noise=0.1, random_state=0)
    >>> clf = MLPClassifier(hidden_layer_sizes=(32,), solver="lbfgs", random_state=0)
    >>> clf = clf.fit(X, y)
    >>> clf.classes_
    array([0, 1])
    >>> clf.predict([[0.0, 1.0], [1.0, -0.5]])  # a point on each moon
    array([0, 1])
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    >>> clf.score(X, y) > 0.95
    True

    The same settings give scikit-learn's model:

    >>> import numpy as np
    >>> from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
    >>> reference = SklearnMLPClassifier(hidden_layer_sizes=(32,), solver="lbfgs",
    ...                                  random_state=0).fit(X, y)
    >>> all(np.allclose(a, b) for a, b in zip(clf.coefs_, reference.coefs_))
    True
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
        _fit_classes(self, y, incremental)
        return X, _binarize(self._label_binarizer, y)

    def predict(self, X):
        """Predict the class of each row of ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The rows to classify (a dask array or DataFrame is predicted on Dask, block
            by block: ``fastmlp.dask.predict``).

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The most probable class of each row, a label of ``classes_`` (for two
            classes, the second where its probability is above 0.5); for multilabel
            targets, a 0/1 row of every label whose probability is above 0.5.
        """
        if _on_dask(X):
            return _dask().predict(self, X)
        _check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return _labels_of(self._label_binarizer, y_pred)

    def score(self, X, y, sample_weight=None):
        """The mean accuracy of ``predict(X)`` against ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The rows to classify (dask collections are scored on Dask:
            ``fastmlp.dask.score``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their true labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the mean; None weighs every row 1.

        Returns
        -------
        score : float
            The weighted share of rows predicted right; for multilabel targets, of rows
            with every label right.
        """
        if _on_dask(X):
            return _dask().score(self, X, y, sample_weight=sample_weight)
        return _accuracy(y, self.predict(X), sample_weight)  # (as ClassifierMixin.score)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, _accuracy)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Train for one epoch over ``(X, y)``, going on from the current weights.

        Only for ``solver="sgd"`` and ``"adam"`` (with ``"lbfgs"`` the method is not
        there: reading it raises ``AttributeError``), and not with ``early_stopping``.
        On an unfitted estimator the first call draws the weights; otherwise training
        goes on with the fitted network and optimizer state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The rows of this epoch (a dask array or DataFrame trains on Dask).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their labels, among ``classes`` (or a 0/1 indicator matrix for multilabel
            targets).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows, as in :meth:`fit`.
        classes : array-like of shape (n_classes,), default=None
            Every class that any call will see. Required on the first call (unless
            ``fit`` ran before), where it sets ``classes_``; later, the same or None.

        Returns
        -------
        self : object
            The updated estimator.
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
        """The natural log of :meth:`predict_proba`'s probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The rows to classify.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            ``log(predict_proba(X))``: a class whose probability is 0 (an underflow)
            gets ``-inf``.
        """
        if _on_dask(X):
            return _dask().predict_log_proba(self, X)
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """The probability of each class for each row of ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The rows to classify (a dask array or DataFrame is predicted on Dask).

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``. Each row sums to 1, except for
            multilabel targets, where each column is that label's own probability.
            float32 where both the weights and X are float32, else float64.
        """
        if _on_dask(X):
            return _dask().predict_proba(self, X)
        _check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:  # np.vstack([1 - y_pred, y_pred]).T, in one array
            y_proba = np.empty((y_pred.shape[0], 2), dtype=y_pred.dtype)
            np.subtract(1, y_pred, out=y_proba[:, 0])
            y_proba[:, 1] = y_pred
            return y_proba
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's, on fastmlp's engines.

    A feed-forward network trained on the squared error (or the Poisson deviance) by
    Adam, stochastic gradient descent or L-BFGS, for one or several real-valued
    targets. It takes every parameter of ``sklearn.neural_network.MLPRegressor``,
    with the same defaults, and with the same settings and ``random_state`` gives the
    same fitted model, to float64 rounding; the work runs on fastmlp's compiled Numba
    engine (or on its NumPy reference engine).

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        What training minimizes, and so the output layer's function.
        ``"squared_error"``: half the mean squared error, averaged over the outputs,
        with an identity output. ``"poisson"``: the mean of ``y log(y / p) - y + p``
        (half the Poisson deviance), summed over the outputs, with an ``exp`` output
        ``p``, for counts and other targets ``y >= 0``; as in scikit-learn, a negative
        ``y`` is not refused, and makes the loss NaN. The first positional parameter,
        as in scikit-learn.
    hidden_layer_sizes : array-like of int, or int, default=(100,)
        The number of units in each hidden layer, from the input side: ``(64, 32)`` is
        two hidden layers of 64 and 32 units, an int one layer. The input and output
        layers take their sizes from the data.
    activation : str, default="relu"
        The function every hidden unit applies to its weighted input ``z``: ``"relu"``
        (``max(0, z)``), ``"identity"`` (``z``), ``"logistic"`` (``1 / (1 + exp(-z))``)
        or ``"tanh"``, as in scikit-learn; and, in fastmlp only, ``"leaky_relu"``
        (``z``, or ``0.01 * z`` where ``z <= 0``), ``"gelu"`` (in its tanh form,
        ``0.5 z (1 + tanh(sqrt(2 / pi) (z + 0.044715 z^3)))``) and ``"silu"``
        (``z / (1 + exp(-z))``). The output layer's function follows from the targets
        (``out_activation_``).
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
        How the weights are optimized. ``"adam"`` (Adam) and ``"sgd"`` (stochastic
        gradient descent with momentum) take one step per minibatch and run in epochs,
        whole passes over the training rows. ``"lbfgs"`` runs SciPy's L-BFGS-B, a
        quasi-Newton method, on the loss of all rows at once: often the better choice
        for a few thousand rows or fewer.
    alpha : float, default=0.0001
        The strength of the L2 penalty on the weights (not the biases): ``0.5 * alpha``
        times the sum of the squared weights, divided by the number of rows (or by the
        sum of their weights), is added to the loss. At least 0.
    batch_size : int or "auto", default="auto"
        Rows per minibatch of ``"sgd"`` and ``"adam"``; ``"auto"`` takes
        ``min(200, n_samples)``. A size larger than the training rows is cut to their
        number, with a warning. ``"lbfgs"`` does not use minibatches.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The step-size schedule of ``solver="sgd"``. ``"constant"``: always
        ``learning_rate_init``. ``"invscaling"``: after each epoch,
        ``learning_rate_init / (t_ + 1) ** power_t``, ``t_`` being the rows seen so
        far. ``"adaptive"``: ``learning_rate_init`` until the rule of ``tol`` and
        ``n_iter_no_change`` would stop training; then the rate is divided by 5 and
        training goes on, until the rate is at most 1e-6.
    learning_rate_init : float, default=0.001
        The step size ``"sgd"`` starts with, and the base step size of ``"adam"``.
        Greater than 0.
    power_t : float, default=0.5
        The exponent of the ``"invscaling"`` schedule (``solver="sgd"`` only).
    max_iter : int, default=200
        The most epochs of ``"sgd"`` or ``"adam"`` that one ``fit`` runs (reaching it
        warns with ``ConvergenceWarning``), or the most iterations of ``"lbfgs"``.
    shuffle : bool, default=True
        Whether ``"sgd"`` and ``"adam"`` shuffle the training rows before each epoch,
        drawing from ``random_state``.
    random_state : int, RandomState instance or None, default=None
        The source of every random draw of a fit, in scikit-learn's order: the initial
        weights (uniform, in Glorot's range), the validation split of
        ``early_stopping``, then the shuffle before each epoch. An int gives the same
        model at every fit, on any number of threads; None draws from NumPy's global
        random state.
    tol : float, default=1e-4
        The smallest change that counts as an improvement. ``"sgd"`` and ``"adam"``
        count the epochs in a row whose training loss is not ``tol`` below the lowest
        so far (with ``early_stopping``: whose validation R^2 is not ``tol`` above
        the highest so far), and stop once the count exceeds ``n_iter_no_change``. For
        ``"lbfgs"`` it is SciPy's ``gtol``: L-BFGS-B stops once no component of its
        projected gradient exceeds ``tol`` (or by its other rules).
    verbose : bool or int, default=False
        Print the loss after each epoch of ``"sgd"`` or ``"adam"`` (and the validation
        R^2 with ``early_stopping``), and why training stopped.
    warm_start : bool, default=False
        When True, ``fit`` goes on training the fitted network instead of drawing new
        weights, and ``loss_curve_`` goes on growing. The data must fit that network:
        the same features, outputs and loss, as many hidden layers (for ``"lbfgs"``,
        of the same sizes; the stochastic solvers keep the fitted sizes, as
        scikit-learn's do); otherwise ``fit`` raises ``ValueError`` before training.
    momentum : float, default=0.9
        The momentum of ``solver="sgd"``, in [0, 1]: each step carries on this share
        of the last one.
    nesterovs_momentum : bool, default=True
        Whether ``solver="sgd"`` takes Nesterov's form of momentum, whose gradient
        step looks ahead along the velocity.
    early_stopping : bool, default=False
        When True, ``"sgd"`` and ``"adam"`` hold out ``validation_fraction`` of the
        training rows, score the network's R^2 on them after each epoch, stop by
        ``tol`` and ``n_iter_no_change`` on that score instead of the training loss,
        and end with the weights of the best-scoring epoch. Refused by ``partial_fit``; ignored by
        ``"lbfgs"``.
    validation_fraction : float, default=0.1
        The share of the training rows held out with ``early_stopping``, in [0, 1);
        at least two rows must be held out.
    beta_1 : float, default=0.9
        Adam's decay rate for its running mean of the gradients, in [0, 1).
    beta_2 : float, default=0.999
        Adam's decay rate for its running mean of the squared gradients, in [0, 1).
    epsilon : float, default=1e-8
        Added to the square root of Adam's mean squared gradient, the denominator of
        its step, so that it is never zero. Greater than 0.
    n_iter_no_change : int or np.inf, default=10
        How many epochs in a row without an improvement of ``tol`` ``"sgd"`` and
        ``"adam"`` allow: they stop at the next one. ``np.inf`` never stops early.
    max_fun : int, default=15000
        The most evaluations of the loss and its gradient that ``"lbfgs"`` may make
        (an iteration makes one or more).
    backend : {"numba", "numpy"}, default="numba"
        The engine that trains and predicts: fastmlp's compiled Numba kernels, or its
        NumPy reference engine, the plain implementation the kernels are tested
        against (slower; the same results to float64 rounding). Not in scikit-learn.
    n_threads : int or None, default=None
        The threads the Numba engine may use. A positive count is capped at Numba's
        (``NUMBA_NUM_THREADS``); a negative one counts back from it, as in joblib (-1:
        all, -2: all but one); 0 is refused. None: Numba's count, except that each
        engine call runs on one thread where that has lately been faster (on a busy
        machine). A batch is split into at most two chunks of rows, so one fit keeps
        at most two threads busy. The weights are the same for every value. Ignored
        by ``backend="numpy"``. Not in scikit-learn.
    progress : bool, default=False
        Show a progress bar (tqdm) over the epochs of ``"sgd"`` and ``"adam"``, with
        the current loss. Not in scikit-learn.

    Attributes
    ----------
    loss_ : float
        The training loss (``loss``'s data term plus the L2 penalty) after the last
        epoch: for ``"sgd"`` and ``"adam"``, the batches' losses, each taken before its
        step, averaged over the epoch's rows; for ``"lbfgs"``, the loss at the fitted
        weights.
    best_loss_ : float or None
        The lowest value in ``loss_curve_``; None with ``early_stopping`` (see
        ``best_validation_score_``). Set by ``"sgd"`` and ``"adam"`` only.
    loss_curve_ : list of float
        ``loss_`` after each epoch, one entry per epoch since the weights were drawn
        (``warm_start`` fits and ``partial_fit`` calls append to it). Set by ``"sgd"``
        and ``"adam"`` only.
    validation_scores_ : list of float or None
        With ``early_stopping``, the R^2 on the held-out rows after each epoch;
        None otherwise. Set by ``"sgd"`` and ``"adam"`` only.
    best_validation_score_ : float or None
        With ``early_stopping``, the highest of ``validation_scores_``: the fitted
        weights are that epoch's. None otherwise. Set by ``"sgd"`` and ``"adam"`` only.
    validation_loss_curve_ : list of float
        With ``early_stopping``, the loss (data term plus the L2 penalty) on the
        held-out rows after each epoch; NaN where their sample weights sum to zero.
        Set only with ``early_stopping``. Not in scikit-learn.
    t_ : int
        The training rows that ``"sgd"`` and ``"adam"`` have stepped through since the
        weights were drawn (epochs times rows, over ``warm_start`` fits and
        ``partial_fit`` calls): the ``t`` of ``"invscaling"``. ``"lbfgs"`` does not
        change it.
    coefs_ : list of ndarray
        The weight matrices, ``n_layers_ - 1`` of them: ``coefs_[i]``, of shape (units
        of layer i, units of layer i + 1), maps layer i to the next (layer 0 is the
        input). float32 where ``X`` was float32 and the solver stochastic, float64
        otherwise.
    intercepts_ : list of ndarray
        The bias vectors: ``intercepts_[i]``, of shape (units of layer i + 1,), is
        added to layer i + 1's weighted input.
    n_features_in_ : int
        The number of features ``X`` had at ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        The column names of ``X`` at ``fit``, set only where they were all strings (a
        pandas DataFrame, for instance).
    n_iter_ : int
        The epochs that the last ``fit`` ran (1 after ``partial_fit``), or for
        ``"lbfgs"`` its iterations.
    n_layers_ : int
        The layers, input and output included: ``len(hidden_layer_sizes) + 2``.
    n_outputs_ : int
        The output units: one per target column.
    out_activation_ : str
        The output function: ``"identity"`` for ``loss="squared_error"``, ``"exp"`` for
        ``loss="poisson"``.

    See Also
    --------
    MLPClassifier : The same network for class labels.
    sklearn.neural_network.MLPRegressor : scikit-learn's regressor, whose fitted
        model this one gives.
    fastmlp.save : Write a fitted model to a file, without pickle.

    Notes
    -----
    Where fastmlp differs from scikit-learn on purpose:

    * a ``fit`` or ``partial_fit`` that raises (on bad input, or on weights that
      diverge) leaves the estimator exactly as it was; scikit-learn's keeps what the
      failed call did to it;
    * a ``warm_start`` fit or ``partial_fit`` whose ``y``, hidden layers or loss do not
      fit the fitted network raises ``ValueError`` before training, where
      scikit-learn's broadcasts ``y`` over the outputs, reads the weights in another
      layout or fails part-way.

    Its warnings and error messages are scikit-learn's, word for word. A sparse ``X``
    (CSR or CSC) trains and predicts on its nonzeros on the Numba engine; the NumPy
    engine makes it dense. A dask array or dataframe trains and predicts on Dask
    (``fastmlp.dask``). Ctrl-C stops an ``"sgd"`` or ``"adam"`` fit within about a
    tenth of a second and keeps the epochs done, with scikit-learn's warning. Pickling
    and ``copy.deepcopy`` store plain state only (numbers, strings, arrays, lists and
    dicts).

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from fastmlp import MLPRegressor
    >>> X, y = make_regression(n_samples=200, n_features=4, noise=1.0, random_state=0)
    >>> y = y / y.std()
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), solver="lbfgs", random_state=0)
    >>> reg = reg.fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    >>> reg.score(X, y) > 0.99
    True
    >>> reg.n_outputs_, reg.out_activation_
    (1, 'identity')
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
        """The network's prediction for each row of ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The rows to predict (a dask array or DataFrame is predicted on Dask, block
            by block: ``fastmlp.dask.predict``).

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values: one column per output, a 1-d array for one output.
        """
        if _on_dask(X):
            return _dask().predict(self, X)
        _check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def score(self, X, y, sample_weight=None):
        """The coefficient of determination R^2 of ``predict(X)`` against ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The rows to predict (dask collections are scored on Dask:
            ``fastmlp.dask.score``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their true values.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows; None weighs every row 1.

        Returns
        -------
        score : float
            ``1 - (residual sum of squares) / (total sum of squares)``, averaged over
            the outputs: 1 for perfect predictions, 0 for predicting the mean of ``y``,
            negative for worse.
        """
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
        """Train for one epoch over ``(X, y)``, going on from the current weights.

        For ``solver="sgd"`` and ``"adam"``, and not with ``early_stopping``: on an
        unfitted estimator the first call draws the weights; otherwise training goes on
        with the fitted network and optimizer state. With ``solver="lbfgs"``, as in
        scikit-learn, a call runs a whole L-BFGS fit from the current weights.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The rows of this epoch (a dask array or DataFrame trains on Dask).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their target values.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows, as in :meth:`fit`.

        Returns
        -------
        self : object
            The updated estimator.
        """
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
