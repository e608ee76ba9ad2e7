"""Scaling sweeps: how the time per epoch grows with hidden width, batch size, number of
samples and depth, for each implementation."""

from fastmlp.bench.measure import measure
from fastmlp.bench.workloads import WORKLOADS

SWEEP_IMPLEMENTATIONS = ["numpy reference", "numba", "scikit-learn", "pytorch"]


def sweep_cases(quick=False):
    """{sweep name: (x label, {x value: workload})}."""
    moons, deep = WORKLOADS["W2"], WORKLOADS["W5"]
    widths = [16, 256] if quick else [16, 64, 256, 1024]
    batches = [10, 1000] if quick else [1, 10, 100, 1000]
    samples = [1000, 10000] if quick else [1000, 3000, 10000]
    depths = [1, 4] if quick else [1, 2, 4, 8]
    return {
        "hidden width": ("units in the hidden layer (W2: moons, adam, batch 200)",
                         {w: moons.replace(hidden=(w,)) for w in widths}),
        "batch size": ("batch size (W2's network on 1000 moons rows)",
                       {b: moons.replace(batch_size=b, rows=1000) for b in batches}),
        "samples": ("training rows (W5: 4 x 64 tanh, sgd, batch 32)",
                    {n: deep.replace(rows=n) for n in samples}),
        "depth": ("hidden layers of 64 tanh units (W5's data and solver)",
                  {d: deep.replace(hidden=(64,) * d) for d in depths}),
    }


def run_sweeps(quick=False, repeats=5, progress=None):
    """{sweep: {"label": x label, "x": [values], "timings": {x: {impl: Timing}},
    "skipped": {x: {impl: reason}}}}."""
    results = {}
    for name, (label, cases) in sweep_cases(quick).items():
        # One unit a measurement: the curves' shapes, not ratios against targets.
        timings, skipped = measure(cases, repeats, SWEEP_IMPLEMENTATIONS, min_seconds=0)
        results[name] = {"label": label, "x": list(cases), "timings": timings,
                         "skipped": skipped}
        if progress:
            progress(name)
    return results
