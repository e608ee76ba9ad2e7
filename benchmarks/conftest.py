import pytest

from fastmlp.bench.measure import STEADY_ALLOCATOR  # noqa: F401  (same allocator as bench)

#: Rows kept by the untimed run of a plain test session.
TINY_ROWS = 120


@pytest.fixture
def n_rows(request):
    """None (the whole workload) when timing, a tiny slice in a plain test run."""
    return TINY_ROWS if request.config.option.benchmark_disable else None
