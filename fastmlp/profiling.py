"""Where a fit's time goes: ``fastmlp.profile(estimator, X, y)``.

An epoch of the user's estimator on the user's data is split into five phases: batching
(the epoch's shuffle and gathering each batch's rows), forward, backward, optimizer
update, and the rest (set-up and calls around the work). It is measured on the Numba
engine and on the NumPy reference side by side, and on scikit-learn's MLP where it has
the estimator's settings. How each is measured:

* reference engine and scikit-learn: an instrumented epoch, cut by ``time.perf_counter``
  into consecutive spans, each counted in one phase: the shuffle and each batch's rows
  (batching), the forward pass and loss, the backward pass and gradients, the step
  (update), the epoch's set-up before its first batch and its end after the last (the
  rest). scikit-learn's ``_backprop`` runs the forward and the backward pass: its
  forward pass is timed apart, before each ``_backprop`` of other epochs, and its
  backward pass is the ``_backprop`` less that.
* Numba engine: the phases are fused in one compiled loop, so they are measured by
  phase-limited runs of the same kernel (``Trainer.run_epochs(last_phase=...)``): gather
  only, then gather and forward, then also backward, then the full step; each phase is
  the difference of consecutive runs. Batching adds the epoch's shuffle (compiled,
  inside the epoch's call), timed on its own. The rest is the cost of a kernel call on
  a one-row epoch.
* L-BFGS (no batches): the unit is one evaluation of the loss and its gradient over all
  rows plus SciPy's work for it. Batching, forward and backward as above over one batch
  of all the rows; the rest adds the objective's own work around the engine (its
  evaluation less the engine's loss-and-gradients call, each timed); update is SciPy's
  own work per evaluation (a short ``scipy.optimize.minimize`` run less the time spent
  in its evaluations).

Every time is the best of interleaved rounds, each after a warm-up of the same work. The
total is a plain epoch (an evaluation and SciPy's work for L-BFGS) timed apart, never
computed from the phases: what the phases do not account for, the total less their sum,
is shown as such (``unaccounted``), positive where the plain epoch took longer.
"""

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

PHASES = ("batching", "forward", "backward", "update", "rest")
ENGINES = ("numba", "numpy", "scikit-learn")
#: Untimed work before each timed run: caches, branch predictors and threads warm.
WARMUP_SECONDS = 0.05
_SKLEARN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
#: How the phases are measured (the module's documentation of it), shown with a profile.
METHOD = __doc__.split("How each is measured:")[1].strip()


@dataclass
class Profile:
    """Seconds per unit (an epoch, or an L-BFGS evaluation) in each phase, per engine.

    Attributes
    ----------
    unit : str
        ``"epoch"``, or ``"evaluation"`` for L-BFGS.
    description : str
        The network, solver, rows, batch size and dtype profiled.
    phases : dict
        ``phases[engine][phase]``: seconds per unit in each of :data:`PHASES`.
    totals : dict
        ``totals[engine]``: seconds of a plain unit, timed apart from the phases.
    skipped : dict
        ``skipped[engine]``: why that engine was not profiled.
    method : str
        How the phases and totals were measured.
    """

    unit: str
    description: str
    phases: dict = field(default_factory=dict)
    totals: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    method: str = METHOD

    @property
    def unaccounted(self):
        """``{engine: seconds}``: each plain total less the sum of its phases (negative
        where the phases add up to more, as timing them costs a little)."""
        return {engine: self.totals[engine] - sum(self.phases[engine].values())
                for engine in self.phases}

    def to_dict(self):
        """The raw numbers: ``{engine: {phase: seconds, ..., "total": seconds,
        "unaccounted": seconds}}``."""
        unaccounted = self.unaccounted
        return {engine: {**self.phases[engine], "total": self.totals[engine],
                         "unaccounted": unaccounted[engine]}
                for engine in self.phases}

    def to_frame(self):
        """The raw numbers as a pandas DataFrame (rows: phases and total; columns:
        engines), in seconds; ``frame.attrs["unaccounted"]`` holds :attr:`unaccounted`."""
        import pandas as pd

        frame = pd.DataFrame(self.to_dict()).loc[[*PHASES, "total"]]
        frame.attrs["unaccounted"] = self.unaccounted
        return frame

    def table(self):
        """A table for the terminal: milliseconds per unit, and each engine's phases
        against its plain total."""
        engines = list(self.phases)
        lines = [f"{self.description}", f"milliseconds per {self.unit}, best of the "
                 "interleaved rounds", "",
                 f"{'phase':<12}" + "".join(f"{engine:>14}" for engine in engines)]
        for phase in PHASES:
            lines.append(f"{phase:<12}" + "".join(
                f"{1e3 * self.phases[engine][phase]:>14.3f}" for engine in engines))
        lines.append(f"{'total':<12}" + "".join(
            f"{1e3 * self.totals[engine]:>14.3f}" for engine in engines))
        unaccounted = self.unaccounted
        lines.append(f"{'unaccounted':<12}" + "".join(
            f"{1e3 * unaccounted[engine]:>14.3f}" for engine in engines))
        if "numba" in self.phases:
            lines.append(f"{'vs numba':<12}" + "".join(
                f"{self.totals[engine] / self.totals['numba']:>13.1f}x" for engine in engines))
        lines.append("")
        for engine in engines:
            summed, total = sum(self.phases[engine].values()), self.totals[engine]
            lines.append(f"{engine}: the phases add up to {1e3 * summed:.3f} ms, a plain "
                         f"{self.unit} took {1e3 * total:.3f} ms: "
                         f"{100 * unaccounted[engine] / total:+.1f} % unaccounted")
        for engine, reason in self.skipped.items():
            lines.append(f"{engine}: not profiled ({reason})")
        lines += ["", "How each is measured:", *self.method.splitlines()]
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def plot(self, path=None):
        """One stacked bar of the phases per engine, each on its own axis (the totals
        may differ tenfold), with a line at the plain total; saved to ``path`` if given.
        Returns the matplotlib figure."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        engines = list(self.phases)
        fig, axes = plt.subplots(1, len(engines), figsize=(3.5 * len(engines), 4),
                                 squeeze=False)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, engine in zip(axes[0], engines):
            bottom = 0.0
            for phase, color in zip(PHASES, colors):
                height = 1e3 * self.phases[engine][phase]
                ax.bar([engine], [height], bottom=bottom, color=color, label=phase, width=0.5)
                bottom += height
            ax.plot([-0.4, 0.4], [1e3 * self.totals[engine]] * 2, color="k", linewidth=1,
                    linestyle="--", label=f"plain {self.unit}")
            ax.set_ylabel(f"ms per {self.unit}")
        axes[0][-1].legend(loc="upper right", fontsize=8)
        fig.suptitle(f"fastmlp profile: {self.description}", fontsize=9)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return fig


def _warm_up(run):
    deadline = time.perf_counter() + WARMUP_SECONDS
    run()
    while time.perf_counter() < deadline:
        run()


def _best_times(variants, repeats, reset=lambda: None):
    """Best seconds of each callable over interleaved rounds; each timed call follows a
    warm-up of the same callable. The best round is the one least disturbed by the rest
    of a shared machine, which is what a breakdown into phases needs.

    ``reset`` (untimed) puts the weights and optimizer back to their first state before
    every run: each timed epoch is the first epoch after the start. Otherwise hundreds
    of profiling epochs drift the state: Adam's moments of dead units decay into
    subnormal numbers, whose arithmetic is many times slower.
    """
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            reset()
            _warm_up(run)
            reset()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.min(t)) for name, t in times.items()}


@dataclass
class _Problem:
    """The estimator's training problem as the engines take it."""

    X: np.ndarray
    Y: np.ndarray
    coefs: list
    intercepts: list
    activation: str
    output: str
    solver: str
    batch_size: int
    shuffle: bool
    settings: dict
    alpha: float
    n_threads: object
    estimator: object
    gathers: bool = True  # False: every batch is all the rows, read in place


def _problem(estimator, X, y):
    """Fit a copy of ``estimator`` for one epoch (its validation, label encoding and
    initial weights are then the estimator's own) and read its problem off it."""
    import scipy.sparse
    from sklearn.base import clone, is_classifier
    from sklearn.exceptions import ConvergenceWarning

    model = clone(estimator).set_params(max_iter=1, warm_start=False, early_stopping=False,
                                        verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    dtype = model.coefs_[0].dtype
    if scipy.sparse.issparse(X):  # each engine takes it as its fit does
        X = scipy.sparse.csr_matrix(X, dtype=dtype)
    else:
        X = np.ascontiguousarray(X, dtype=dtype)
    if is_classifier(model):
        Y = model._label_binarizer.transform(np.asarray(y))
    else:
        Y = np.asarray(y)
    Y = np.ascontiguousarray(Y.reshape(len(Y), -1), dtype=dtype)
    n = X.shape[0]
    if model.batch_size == "auto":
        batch_size = min(200, n)
    else:
        batch_size = int(np.clip(model.batch_size, 1, n))
    settings = {name: getattr(model, name) for name in (
        "learning_rate_init", "momentum", "nesterovs_momentum", "beta_1", "beta_2",
        "epsilon")}
    return _Problem(X, Y, [c.copy() for c in model.coefs_],
                    [b.copy() for b in model.intercepts_], model.activation,
                    model.out_activation_, model.solver, batch_size, model.shuffle, settings,
                    model.alpha, getattr(model, "n_threads", None), model)


def _reference_optimizer(problem, params):
    from fastmlp import optim

    s = problem.settings
    if problem.solver == "adam":
        return optim.Adam(params, s["learning_rate_init"], s["beta_1"], s["beta_2"],
                          s["epsilon"])
    return optim.SGD(params, s["learning_rate_init"], "constant", s["momentum"],
                     s["nesterovs_momentum"])


def _profile_reference(problem, repeats):
    from fastmlp import reference
    from fastmlp._solvers import dense

    X, Y = dense(problem.X), problem.Y  # as the reference engine's fit takes a sparse X
    coefs = [c.copy() for c in problem.coefs]
    intercepts = [b.copy() for b in problem.intercepts]
    params = coefs + intercepts
    state = {"optimizer": _reference_optimizer(problem, params)}

    def reset():
        for array, first in zip(params, problem.coefs + problem.intercepts):
            array[...] = first
        state["optimizer"] = _reference_optimizer(problem, params)

    rng = np.random.RandomState(0)
    n, batch_size = X.shape[0], problem.batch_size

    def order():
        return rng.permutation(n) if problem.shuffle else np.arange(n)

    def instrumented_epoch():
        """Consecutive spans of the epoch, each counted in one phase: every instant
        between the first reading of the clock and the last is in exactly one."""
        spent = dict.fromkeys(PHASES, 0.0)
        tick = time.perf_counter()
        rows_order = order()
        for start in range(0, n, batch_size):
            rows = rows_order[start : start + batch_size]
            X_batch, Y_batch = (X[rows], Y[rows]) if problem.gathers else (X, Y)
            now = time.perf_counter()
            spent["batching"] += now - tick
            tick = now
            pre, acts = reference.forward(coefs, intercepts, X_batch, problem.activation,
                                          problem.output)
            reference.loss(acts[-1], Y_batch, problem.output)
            sum(np.dot(c.ravel(), c.ravel()) for c in coefs)  # the loss's penalty term
            now = time.perf_counter()
            spent["forward"] += now - tick
            tick = now
            deltas = reference.backward(coefs, pre, acts, Y_batch, problem.activation)
            m = X_batch.shape[0]
            grads = [(acts[i].T @ deltas[i] + problem.alpha * coefs[i]) / m
                     for i in range(len(coefs))]
            grads += [d.sum(axis=0) / m for d in deltas]
            now = time.perf_counter()
            spent["backward"] += now - tick
            tick = now
            state["optimizer"].update(params, grads)
            now = time.perf_counter()
            spent["update"] += now - tick
            tick = now
        spent["rest"] += time.perf_counter() - tick  # the epoch's end after its last batch
        return spent

    def plain_epoch():
        reference.train_epoch(coefs, intercepts, X, Y, order(), batch_size,
                              state["optimizer"], problem.activation, problem.output,
                              problem.alpha)

    runs = []
    total = _best_times({"plain": plain_epoch,
                         "instrumented": lambda: runs.append(instrumented_epoch())},
                        repeats, reset)["plain"]
    # The warm-up calls also append: keep the least disturbed instrumented epoch.
    return min(runs, key=lambda run: sum(run.values())), total


def _profile_numba(problem, repeats):
    from fastmlp.kernels import FlatNetwork, Trainer, resolve_n_threads
    from fastmlp.kernels._layers import PHASE_BACKWARD, PHASE_FORWARD, PHASE_GATHER
    from fastmlp.kernels._random import shuffle as compiled_shuffle
    from fastmlp.kernels._random import shuffle_state

    s = problem.settings
    network = FlatNetwork.from_arrays(problem.coefs, problem.intercepts)
    # All the threads at every call: the phase runs and the plain epoch alike.
    trainer = Trainer(network, problem.activation, problem.output, solver=problem.solver,
                      alpha=problem.alpha, batch_size=problem.batch_size,
                      momentum=s["momentum"], nesterov=s["nesterovs_momentum"],
                      beta_1=s["beta_1"], beta_2=s["beta_2"], epsilon=s["epsilon"],
                      n_threads=resolve_n_threads(problem.n_threads))
    Xc, Yc, no_weights = trainer.prepare(problem.X, problem.Y)
    rng = np.random.RandomState(0)
    n = Xc.shape[0]
    order = np.arange(n, dtype=np.int64)
    first_theta = network.theta.copy()
    learning_rate = s["learning_rate_init"]

    def reset():
        network.theta[:] = first_theta
        trainer.reset()

    # The phase runs read the rows in a shuffled order too: a sorted one would gather
    # faster than a real epoch does.
    phase_order = np.random.RandomState(0).permutation(n) if problem.shuffle else order

    def run(last_phase, rows=None):
        rows = phase_order if rows is None else rows
        return lambda: trainer.run_epochs(Xc, Yc, no_weights, rows, learning_rate,
                                          last_phase=last_phase)

    def plain_epoch():  # shuffled inside the call, as in a fit
        trainer.run_epochs(Xc, Yc, no_weights, order, learning_rate,
                           random_state=rng if problem.shuffle else None)

    t = _best_times({
        "gather": run(PHASE_GATHER), "forward": run(PHASE_FORWARD),
        "backward": run(PHASE_BACKWARD), "full": run(3),
        "shuffle": lambda: compiled_shuffle(order, shuffle_state(rng, n)),
        "call": run(PHASE_GATHER, order[:1]), "plain": plain_epoch,
    }, repeats, reset)
    return _numba_phases(t, problem.shuffle), t["plain"]


def _numba_phases(t, shuffled):
    """The Numba engine's phases from the best times ``t`` of its phase-limited runs:
    each phase the difference of consecutive runs (none below zero), batching the
    gather less a call's cost plus the shuffle, the rest a call's cost. The plain epoch
    (``t["plain"]``) is the total, and takes no part in them."""
    return {
        "batching": (t["shuffle"] if shuffled else 0.0) + max(t["gather"] - t["call"], 0.0),
        "forward": max(t["forward"] - t["gather"], 0.0),
        "backward": max(t["backward"] - t["forward"], 0.0),
        "update": max(t["full"] - t["backward"], 0.0),
        "rest": t["call"],
    }


def _sklearn_model(problem):
    """scikit-learn's MLP with the estimator's settings and weights, ready to step."""
    from sklearn.base import is_classifier
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

    estimator = problem.estimator
    cls = MLPClassifier if is_classifier(estimator) else MLPRegressor
    names = set(cls().get_params())
    params = {k: v for k, v in estimator.get_params().items() if k in names}
    model = cls(**params)
    model.coefs_ = [c.copy() for c in problem.coefs]
    model.intercepts_ = [b.copy() for b in problem.intercepts]
    model.out_activation_ = problem.output
    model.n_layers_ = len(problem.coefs) + 1
    model.n_outputs_ = problem.Y.shape[1]
    s = problem.settings
    params = model.coefs_ + model.intercepts_
    if problem.solver == "adam":
        model._optimizer = AdamOptimizer(params, s["learning_rate_init"], s["beta_1"],
                                         s["beta_2"], s["epsilon"])
    else:
        model._optimizer = SGDOptimizer(params, s["learning_rate_init"], "constant",
                                        s["momentum"], s["nesterovs_momentum"])
    return model


def _profile_sklearn(problem, repeats):
    X, Y = problem.X, problem.Y
    state = {"model": _sklearn_model(problem)}

    def reset():
        state["model"] = _sklearn_model(problem)

    rng = np.random.RandomState(0)
    n, batch_size = X.shape[0], problem.batch_size
    units = [X.shape[1]] + [c.shape[1] for c in problem.coefs]

    def epoch(spent=None, forward_apart=False):
        """scikit-learn's epoch loop. Given ``spent``, cut into consecutive spans each
        counted in one phase: set-up and end in the rest, each ``_backprop`` whole (it
        runs a forward pass, then the backward one) in "backprop"; with
        ``forward_apart``, a forward pass is also timed apart before each ``_backprop``,
        in "forward"."""
        model = state["model"]
        params = model.coefs_ + model.intercepts_
        tick = time.perf_counter()
        activations = [None] + [np.empty((batch_size, u), X.dtype) for u in units[1:]]
        deltas = [np.empty_like(a) for a in activations[1:]]
        coef_grads = [np.empty_like(c) for c in problem.coefs]
        intercept_grads = [np.empty_like(b) for b in problem.intercepts]
        if spent is not None:
            now = time.perf_counter()
            spent["rest"] += now - tick
            tick = now
        order = rng.permutation(n) if problem.shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            X_batch, Y_batch = X[rows], Y[rows]
            activations[0] = X_batch
            if spent is not None:
                now = time.perf_counter()
                spent["batching"] += now - tick
                tick = now
                if forward_apart:
                    model._forward_pass(activations)
                    now = time.perf_counter()
                    spent["forward"] += now - tick
                    tick = now
            _, coef_grads, intercept_grads = model._backprop(
                X_batch, Y_batch, None, activations, deltas, coef_grads, intercept_grads)
            if spent is not None:
                now = time.perf_counter()
                spent["backprop"] += now - tick
                tick = now
            model._optimizer.update_params(params, coef_grads + intercept_grads)
            if spent is not None:
                now = time.perf_counter()
                spent["update"] += now - tick
                tick = now
        if spent is not None:
            spent["rest"] += time.perf_counter() - tick

    runs = {False: [], True: []}

    def instrumented(forward_apart):
        def run():
            spent = dict.fromkeys(["batching", "forward", "backprop", "update", "rest"], 0.0)
            epoch(spent, forward_apart)
            runs[forward_apart].append(spent)
        return run

    total = _best_times({"plain": epoch, "instrumented": instrumented(False),
                         "forward apart": instrumented(True)}, repeats, reset)["plain"]
    # The warm-up calls also append: keep the least disturbed epoch of each kind. The
    # backward pass is a ``_backprop`` less a forward pass, each timed in epochs of
    # their own: after a forward pass of the same batch, ``_backprop``'s own runs on
    # warm caches and would leave the backward pass looking faster than it is.
    spans = min(runs[False], key=lambda run: sum(run.values()))
    forward = min(run["forward"] for run in runs[True])
    return {"batching": spans["batching"], "forward": forward,
            "backward": max(spans["backprop"] - forward, 0.0), "update": spans["update"],
            "rest": spans["rest"]}, total


def profile(estimator, X, y, *, repeats=7, engines=ENGINES):
    """Split an epoch of ``estimator`` on ``(X, y)`` into its phases, per engine.

    Each engine trains the estimator's network from the same initial weights (those of
    a one-epoch ``fit`` of a copy) on the same rows, and each timed epoch starts from
    them: the phases of a first epoch, without the compile time.

    Parameters
    ----------
    estimator : fastmlp.MLPClassifier or fastmlp.MLPRegressor
        The settings to profile: network (``hidden_layer_sizes``), ``activation``,
        ``solver`` and its settings (``learning_rate_init``, ``momentum``,
        ``nesterovs_momentum``, ``beta_1``, ``beta_2``, ``epsilon``), ``batch_size``,
        ``shuffle``, ``alpha`` and ``n_threads``. Fitted or not; it is left as it is (a
        copy is fitted for one epoch, whatever its ``max_iter``, ``warm_start`` and
        ``early_stopping``).
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        The training data, as ``fit`` takes it. Its dtype decides the engines' (float32
        X: float32 weights and arithmetic); a sparse X is trained on its nonzeros by the
        Numba engine and scikit-learn, on dense rows by the reference engine, as their
        fits do.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        The targets, as ``fit`` takes them: labels for a classifier, values for a
        regressor.
    repeats : int, default=7
        Interleaved rounds of every measurement; each time reported is the best of its
        rounds (the one least disturbed by the rest of the machine). Each timed run
        follows an untimed warm-up of the same work, 0.05 s at least: a
        round runs some 14 epochs of the Numba engine and 4 of each other one, more
        where an epoch is shorter than that.
    engines : sequence of str, default=("numba", "numpy", "scikit-learn")
        The engines to profile, in the order of the table's columns, any of
        ``"numba"`` (fastmlp's Numba engine), ``"numpy"`` (its NumPy reference engine)
        and ``"scikit-learn"`` (scikit-learn's MLP). scikit-learn's is
        profiled where it has the estimator's settings (its own activations, and the
        stochastic solvers); otherwise it is left out, with the reason in
        :attr:`Profile.skipped`.

    Returns
    -------
    Profile
        Seconds per epoch (per evaluation of the loss and gradient for
        ``solver="lbfgs"``) in batching, forward, backward, update and the rest, per
        engine; each engine's plain total, timed apart from its phases; and what the
        phases leave unaccounted of it (:attr:`Profile.unaccounted`). ``print(profile)``
        for a table, ``.plot(path)`` for a chart, ``.to_dict()`` or ``.to_frame()`` for
        the raw numbers. ``.method`` says how each engine was measured.

    See Also
    --------
    fastmlp.profiling : how each engine's phases are measured.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> import fastmlp
    >>> X, y = load_digits(return_X_y=True)
    >>> result = fastmlp.profile(fastmlp.MLPClassifier((256, 128)), X / 16, y)  # doctest: +SKIP
    >>> print(result)  # doctest: +SKIP
    >>> result.to_dict()["numba"]["forward"]  # seconds per epoch  # doctest: +SKIP
    """
    problem = _problem(estimator, X, y)
    units = [problem.X.shape[1]] + [c.shape[1] for c in problem.coefs]
    lbfgs = problem.solver == "lbfgs"
    description = (f"{type(estimator).__name__}: {'-'.join(map(str, units))} "
                   f"{problem.activation}, {problem.solver}, "
                   f"{problem.X.shape[0]} rows" + ("" if lbfgs else
                                                    f", batches of {problem.batch_size}")
                   + f", {problem.X.dtype}")
    result = Profile("evaluation" if lbfgs else "epoch", description)
    if lbfgs:  # one batch of all the rows, stepped by SciPy
        problem.batch_size, problem.shuffle = problem.X.shape[0], False
    for engine in engines:
        if engine == "scikit-learn" and problem.activation not in _SKLEARN_ACTIVATIONS:
            result.skipped[engine] = f"no {problem.activation!r} activation"
            continue
        if engine == "scikit-learn" and lbfgs:
            result.skipped[engine] = "L-BFGS evaluations are profiled on fastmlp's engines"
            continue
        run = {"numba": _profile_numba, "numpy": _profile_reference,
               "scikit-learn": _profile_sklearn}[engine]
        if lbfgs:
            phases, total = _profile_lbfgs(problem, repeats, engine)
        else:
            phases, total = run(problem, repeats)
        result.phases[engine], result.totals[engine] = phases, total
    return result


def _profile_lbfgs(problem, repeats, engine):
    """An L-BFGS evaluation: the engine's phases over one batch of all the rows (without
    a step), the objective's own work around the engine in the rest, SciPy's own work
    per evaluation as the update; the total is an evaluation and that work, timed."""
    import scipy.optimize

    from fastmlp import reference
    from fastmlp._solvers import dense, lbfgs_objective

    backend = "numba" if engine == "numba" else "numpy"
    # The objective reads X as it is: the reference's phases gather no rows.
    phase_problem = _Problem(**{**problem.__dict__, "solver": "sgd", "gathers": False})
    phase_problem.settings = {**problem.settings, "learning_rate_init": 0.0, "momentum": 0.0,
                              "nesterovs_momentum": False}
    profiler = _profile_numba if engine == "numba" else _profile_reference
    phases, _ = profiler(phase_problem, repeats)
    units = [problem.X.shape[1]] + [c.shape[1] for c in problem.coefs]
    objective = lbfgs_objective(backend, units, problem.X.dtype, problem.X, problem.Y, None,
                                problem.activation, problem.output, problem.alpha,
                                problem.n_threads)
    packed = np.hstack([a.ravel() for a in problem.coefs + problem.intercepts])
    if engine == "numba":
        from fastmlp import kernels

        def engine_call():
            kernels.loss_and_gradients(problem.coefs, problem.intercepts, problem.X,
                                       problem.Y, problem.activation, problem.output,
                                       problem.alpha, None, problem.n_threads)
    else:
        X = dense(problem.X)

        def engine_call():
            reference.loss_and_gradients(problem.coefs, problem.intercepts, X, problem.Y,
                                         problem.activation, problem.output, problem.alpha)

    spent = {"objective": 0.0, "calls": 0}

    def timed(theta):
        start = time.perf_counter()
        value = objective(theta)
        spent["objective"] += time.perf_counter() - start
        spent["calls"] += 1
        return value

    def minimize():
        spent["objective"], spent["calls"] = 0.0, 0
        start = time.perf_counter()
        scipy.optimize.minimize(timed, packed, method="L-BFGS-B", jac=True,
                                options={"maxiter": 5})
        return (time.perf_counter() - start - spent["objective"]) / spent["calls"]

    t = _best_times({"evaluation": lambda: objective(packed), "engine": engine_call},
                    repeats)
    updates = [minimize() for _ in range(max(3, repeats // 2))]
    # The objective's packing, unpacking and copies around the engine's call.
    around = max(t["evaluation"] - t["engine"], 0.0)
    phases = {**phases, "update": min(updates), "rest": phases["rest"] + around}
    return phases, t["evaluation"] + phases["update"]
