"""pytest-benchmark suite: every workload against every implementation that can run it.

    pytest benchmarks/ --benchmark-only                      # time them all
    pytest benchmarks/ --benchmark-only -k "W2 and numba"   # one row

Groups are per workload (and so per dtype); each implementation runs one unit of work
before timing starts, so compile time stays out (it has its own benchmark).
"""

import pytest

from fastmlp.bench.implementations import IMPLEMENTATIONS, Unavailable
from fastmlp.bench.workloads import WORKLOADS, load


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("workload_id", list(WORKLOADS))
def test_workload(benchmark, workload_id, implementation, n_rows):
    workload = WORKLOADS[workload_id]
    benchmark.group = f"{workload_id} {workload.name} ({workload.dtype}, per {workload.unit})"
    try:
        runner = IMPLEMENTATIONS[implementation](workload, load(workload, n_rows))
    except Unavailable as reason:
        pytest.skip(str(reason))
    rounds = 3 if implementation == "notebook loop" else 10
    benchmark.pedantic(runner.run, rounds=rounds, warmup_rounds=1)
