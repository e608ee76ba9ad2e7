"""``python -m fastmlp bench``: the Numba engine and its peers side by side, as ratios."""

import time

from fastmlp.bench.measure import measure, speedup
from fastmlp.bench.workloads import WORKLOADS

#: What the Numba engine is compared with, in the order of the table's columns.
BASELINES = ("notebook loop", "numpy reference", "scikit-learn", "pytorch", "torch.compile",
             "jax")
FULL_ROUNDS, QUICK_ROUNDS = 10, 3


def run(workload_ids=None, rounds=FULL_ROUNDS, seconds=None, log=print):
    """Time the Numba engine and every installed baseline on the workloads.

    Parameters
    ----------
    workload_ids : sequence of str, optional
        Keys of :data:`~fastmlp.bench.workloads.WORKLOADS` (default: all, in order).
    rounds : int
        Interleaved rounds; each ratio is the median of the rounds' ratios.
    seconds : float, optional
        A limit on the run: the workloads are then timed one after another, each over
        an equal share of the time left and one unit of work per measurement, with as
        many rounds as fit in its share (one at least); workloads not started within
        the limit are left out. Without it, every measurement lasts a second and every
        round times every workload.
    log : callable
        Called with a line of progress.

    Returns
    -------
    timings : dict
        ``timings[workload][implementation]``: a :class:`~fastmlp.bench.measure.Timing`.
    skipped : dict
        ``skipped[workload][implementation]``: why it could not run there.
    not_reached : list of str
        The workloads left out by the ``seconds`` limit.
    """
    ids = list(workload_ids or WORKLOADS)
    names = ["numba", *BASELINES]
    if seconds is None:
        timings, skipped = measure(
            {wid: WORKLOADS[wid] for wid in ids}, rounds, names,
            progress=lambda done, total: log(f"  round {done}/{total}"))
        return timings, skipped, []
    deadline = time.perf_counter() + seconds
    timings, skipped = {}, {}
    for i, wid in enumerate(ids):
        now = time.perf_counter()
        if now >= deadline:
            return timings, skipped, ids[i:]
        share = (deadline - now) / (len(ids) - i)
        case_timings, case_skipped = measure({wid: WORKLOADS[wid]}, rounds, names,
                                             min_seconds=0, deadline=now + share)
        timings.update(case_timings)
        skipped.update(case_skipped)
        done = len(next(iter(case_timings[wid].values())).seconds) if case_timings[wid] else 0
        log(f"  {wid}: {done} round{'s' * (done != 1)}")
    return timings, skipped, []


def ratio_table(timings, skipped, not_reached=()):
    """The table for the terminal: per workload, the Numba engine's median time and how
    many times faster it ran than each baseline; then what was not measured, and why."""
    baselines = [b for b in BASELINES if any(b in by_name for by_name in timings.values())]
    header = ["workload", "unit", "numba", *(f"vs {b}" for b in baselines)]
    rows = []
    for wid, by_name in timings.items():
        if "numba" not in by_name:
            continue
        workload = WORKLOADS[wid]
        rows.append([f"{wid} {workload.name}", workload.unit,
                     f"{1e3 * by_name['numba'].median:.3f} ms",
                     *(f"{speedup(by_name[b], by_name['numba']):.1f}x" if b in by_name
                       else "-" for b in baselines)])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    reasons = {}
    for wid, by_name in skipped.items():
        for name, reason in by_name.items():
            reasons.setdefault((name, reason), []).append(wid)
    if reasons:
        lines += ["", "not run:"]
        lines += [f"  {name} on {', '.join(wids)}: {reason}"
                  for (name, reason), wids in reasons.items()]
    if not_reached:
        lines += ["", f"not measured within the time limit: {', '.join(not_reached)}"]
    return "\n".join(lines)
