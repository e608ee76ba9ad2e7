"""The benchmark workloads, every implementation that runs them, and how they are timed.

What ``python -m fastmlp bench`` and ``python -m fastmlp profile W2`` run, in the
installed package: :mod:`~fastmlp.bench.workloads` (the workloads and their data),
:mod:`~fastmlp.bench.implementations` (fastmlp's engines and the peers: the notebook's
loop, scikit-learn, PyTorch where installed), :mod:`~fastmlp.bench.measure` (interleaved
rounds, ratios round by round) and :mod:`~fastmlp.bench.ratios` (the side-by-side run and
its table). The repository's pytest-benchmark suites and its report import these.
"""
