"""Where an epoch's time goes, on the reference and on the Numba engine, side by side.

    python -m fastmlp profile W2 [--out DIR] [--repeats N] [--pyinstrument]

Phases: batching (the epoch's shuffle and gathering each batch's rows), forward,
backward, optimizer update, and the rest (Python around the work: loop bookkeeping,
call overhead). How each is measured:

* reference engine: each phase timed directly with ``time.perf_counter`` around the
  NumPy calls of every batch; the rest is the instrumented epoch minus the phases.
* Numba engine: the phases are fused in one compiled loop, so they are measured by
  phase-limited runs of the same kernel (``Trainer.run_epochs(last_phase=...)``): gather
  only, then gather and forward, then also backward, then the full step; each phase is
  the difference of consecutive runs. Batching adds the epoch's shuffle (compiled,
  inside the epoch's call), timed on its own. The rest is the cost of a kernel call on
  a one-row epoch.

Each engine's phases are checked against its total, timed separately as a plain epoch.
"""

import time

import numpy as np
from sklearn.utils import shuffle

from benchmarks.workloads import WORKLOADS, init_params, load, network_units, output_layer

PHASES = ("batching", "forward", "backward", "update", "rest")


def _best_times(variants, repeats, reset=lambda: None):
    """Best seconds of each callable over interleaved rounds; each timed call follows a
    warm-up of the same callable (steady state, as in benchmarks/measure.py). The best
    round is the one least disturbed by the rest of a shared machine, which is what a
    breakdown into phases needs: medians of differences drift with the neighbours.

    ``reset`` (untimed) puts the weights and optimizer back to their first state before
    every run: each timed epoch is the first epoch of a fit. Otherwise hundreds of
    profiling epochs drift the state: Adam's moments of dead units decay into subnormal
    numbers, whose arithmetic is many times slower.
    """
    from benchmarks.measure import warm_up

    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            reset()
            warm_up(fn)
            reset()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.min(t)) for name, t in times.items()}


def _setup(workload):
    X, y = load(workload)
    units = network_units(workload, X, y)
    if workload.solver == "gd":  # the notebook's step: one batch, SGD without momentum
        output, Y = "softmax", np.eye(units[-1])[y]
        solver, batch_size, momentum, shuffled = "sgd", X.shape[0], 0.0, False
    else:
        _, output, Y = output_layer(y)
        solver, batch_size = workload.solver, workload.batch_size
        momentum, shuffled = workload.momentum, True
    return X, Y.astype(workload.dtype), units, output, solver, batch_size, momentum, shuffled


def _optimizer(params, workload, solver, momentum):
    from fastmlp import optim

    if solver == "adam":
        return optim.Adam(params, workload.learning_rate)
    return optim.SGD(params, workload.learning_rate, "constant", momentum,
                     workload.nesterov and momentum > 0)


def profile_reference(workload, repeats):
    """Phase times (seconds) of one epoch on the NumPy engine, and its plain total."""
    from fastmlp import reference

    X, Y, units, output, solver, batch_size, momentum, shuffled = _setup(workload)
    coefs, intercepts = init_params(units, workload.dtype)
    optimizer = _optimizer(coefs + intercepts, workload, solver, momentum)
    first_state = [a.copy() for a in coefs + intercepts]

    def reset():
        nonlocal optimizer
        for array, first in zip(coefs + intercepts, first_state):
            array[...] = first
        optimizer = _optimizer(coefs + intercepts, workload, solver, momentum)
    rng = np.random.RandomState(0)
    n = X.shape[0]

    def instrumented_epoch():
        spent = dict.fromkeys(PHASES, 0.0)
        epoch_start = tick = time.perf_counter()
        order = shuffle(np.arange(n), random_state=rng) if shuffled else np.arange(n)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            X_batch, Y_batch = X[rows], Y[rows]
            now = time.perf_counter()
            spent["batching"] += now - tick
            tick = now
            pre, acts = reference.forward(coefs, intercepts, X_batch, workload.activation, output)
            reference.loss(acts[-1], Y_batch, output)
            now = time.perf_counter()
            spent["forward"] += now - tick
            tick = now
            deltas = reference.backward(coefs, pre, acts, Y_batch, workload.activation)
            m = X_batch.shape[0]
            grads = [(acts[i].T @ deltas[i] + workload.alpha * coefs[i]) / m
                     for i in range(len(coefs))]
            grads += [d.sum(axis=0) / m for d in deltas]
            now = time.perf_counter()
            spent["backward"] += now - tick
            tick = now
            optimizer.update(coefs + intercepts, grads)
            now = time.perf_counter()
            spent["update"] += now - tick
            tick = now
        total = time.perf_counter() - epoch_start
        spent["rest"] = total - sum(spent[p] for p in PHASES if p != "rest")
        return spent

    def plain_epoch():
        order = shuffle(np.arange(n), random_state=rng) if shuffled else np.arange(n)
        reference.train_epoch(coefs, intercepts, X, Y, order, batch_size, optimizer,
                              workload.activation, output, workload.alpha)

    runs = []
    total = _best_times({"plain": plain_epoch,
                         "instrumented": lambda: runs.append(instrumented_epoch())},
                        repeats, reset)["plain"]
    # The warm-up calls also append: keep the timed, least disturbed instrumented epoch.
    best = min(runs, key=lambda run: sum(run.values()))
    return best, total


def profile_numba(workload, repeats):
    """Phase times (seconds) of one epoch on the Numba engine, and its plain total."""
    from fastmlp.kernels import FlatNetwork, Trainer, resolve_n_threads
    from fastmlp.kernels._layers import PHASE_BACKWARD, PHASE_FORWARD, PHASE_GATHER
    from fastmlp.kernels._random import shuffle as compiled_shuffle
    from fastmlp.kernels._random import shuffle_state

    X, Y, units, output, solver, batch_size, momentum, shuffled = _setup(workload)
    coefs, intercepts = init_params(units, workload.dtype)
    network = FlatNetwork.from_arrays(coefs, intercepts)
    # All the threads at every call: the phase runs and the plain epoch alike.
    trainer = Trainer(network, workload.activation, output, solver=solver, alpha=workload.alpha,
                      batch_size=batch_size, momentum=momentum,
                      nesterov=workload.nesterov and momentum > 0,
                      n_threads=resolve_n_threads(None))
    Xc, Yc, no_weights = trainer.prepare(X, Y)
    rng = np.random.RandomState(0)
    n = X.shape[0]
    order = np.arange(n, dtype=np.int64)
    first_theta = network.theta.copy()

    def reset():
        network.theta[:] = first_theta
        trainer.state_1[:] = 0
        trainer.state_2[:] = 0
        trainer.adam_step = 0

    # The phase runs read the rows in a shuffled order too: a sorted one would gather
    # faster than a real epoch does.
    phase_order = shuffle(order, random_state=0) if shuffled else order

    def run(last_phase, rows=None):
        rows = phase_order if rows is None else rows
        return lambda: trainer.run_epochs(Xc, Yc, no_weights, rows, workload.learning_rate,
                                          last_phase=last_phase)

    def plain_epoch():  # shuffled inside the call, as in a fit
        trainer.run_epochs(Xc, Yc, no_weights, order, workload.learning_rate,
                           random_state=rng if shuffled else None)

    t = _best_times({
        "gather": run(PHASE_GATHER), "forward": run(PHASE_FORWARD),
        "backward": run(PHASE_BACKWARD), "full": run(3),
        "shuffle": lambda: compiled_shuffle(order, shuffle_state(rng, n)),
        "call": run(PHASE_GATHER, order[:1]), "plain": plain_epoch,
    }, repeats, reset)
    phases = {
        "batching": (t["shuffle"] if shuffled else 0.0) + max(t["gather"] - t["call"], 0.0),
        "forward": max(t["forward"] - t["gather"], 0.0),
        "backward": max(t["backward"] - t["forward"], 0.0),
        "update": max(t["full"] - t["backward"], 0.0),
        "rest": t["call"],
    }
    return phases, t["plain"]


def profile(workload_id, repeats=15):
    workload = WORKLOADS[workload_id]
    return {
        "reference": profile_reference(workload, repeats),
        "numba": profile_numba(workload, repeats),
    }


def format_profile(workload_id, results):
    unit = WORKLOADS[workload_id].unit
    ref, ref_total = results["reference"]
    fast, fast_total = results["numba"]
    lines = [f"{workload_id}: milliseconds per {unit}, best of the interleaved rounds", "",
             f"{'phase':<10} {'reference':>11} {'numba':>11} {'speedup':>9}"]
    for phase in PHASES:
        speedup = ref[phase] / fast[phase] if fast[phase] > 0 else float("inf")
        lines.append(f"{phase:<10} {1e3 * ref[phase]:>11.3f} {1e3 * fast[phase]:>11.3f} "
                     f"{speedup:>8.1f}x")
    for name, phases, total in (("reference", ref, ref_total), ("numba", fast, fast_total)):
        summed = sum(phases.values())
        lines.append(f"{name}: phases add up to {1e3 * summed:.3f} ms; a plain {unit} took "
                     f"{1e3 * total:.3f} ms ({100 * (summed - total) / total:+.1f} %)")
    how = __doc__.split("How each is measured:")[1].split("Each engine")[0]
    lines += ["", "How each is measured:", *(line for line in how.strip().splitlines())]
    return "\n".join(lines)


def plot_profile(workload_id, results, path):
    """One stacked bar per engine, each on its own axis: the totals differ tenfold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, engine in zip(axes, ("reference", "numba")):
        bottom = 0.0
        for phase, color in zip(PHASES, colors):
            height = 1e3 * results[engine][0][phase]
            ax.bar([engine], [height], bottom=bottom, color=color, label=phase, width=0.5)
            bottom += height
        ax.set_ylabel(f"ms per {WORKLOADS[workload_id].unit}")
    axes[1].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"fastmlp profile: {workload_id} ({WORKLOADS[workload_id].name})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
