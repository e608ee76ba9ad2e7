"""Test-run settings shared by tests/ and benchmarks/."""

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # A plain test run executes each benchmark once, untimed and on tiny inputs, so the
    # suites cannot rot; timing is asked for: pytest benchmarks/ --benchmark-only.
    if not config.getoption("benchmark_only") and not config.getoption("benchmark_enable"):
        config.option.benchmark_disable = True
