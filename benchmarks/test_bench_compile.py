"""Compile time on its own: a first fit in a fresh process, with an empty Numba cache
(cold) and with the cache a previous process left (warm)."""

import os
import subprocess
import sys

import pytest

FIRST_FIT = """
import numpy as np, warnings
warnings.simplefilter("ignore")
from fastmlp import MLPClassifier
from fastmlp.cli import moons_data
X, _, y, _ = moons_data()
MLPClassifier(max_iter=2, random_state=0).fit(X.astype(np.{dtype}), y)
"""


def first_fit(dtype, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    subprocess.run([sys.executable, "-c", FIRST_FIT.format(dtype=dtype)], env=env, check=True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cold_first_fit(benchmark, dtype, tmp_path):
    benchmark.group = "compile: cold cache, import + first fit (seconds)"
    caches = iter(range(100))
    benchmark.pedantic(lambda: first_fit(dtype, tmp_path / str(next(caches))), rounds=1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_warm_first_fit(benchmark, dtype, tmp_path):
    benchmark.group = "compile: warm cache, import + first fit (seconds)"
    first_fit(dtype, tmp_path)  # fills the cache
    benchmark.pedantic(lambda: first_fit(dtype, tmp_path), rounds=3)


@pytest.mark.parametrize("peer", ["jax", "torch.compile"])
def test_peer_first_call(benchmark, peer):
    """A compiling peer's first W2 epoch in a fresh process (its compile time), beside
    fastmlp's cold first fit; skipped where the peer is not installed."""
    from fastmlp.bench.implementations import Unavailable, check_installed

    try:
        check_installed(peer)
    except Unavailable as reason:
        pytest.skip(str(reason))
    from benchmarks.targets import peer_compile_times

    benchmark.group = "compile: a peer's first W2 epoch in a fresh process (seconds)"
    result = {}
    benchmark.pedantic(lambda: result.update(peer_compile_times([peer])), rounds=1)
    benchmark.extra_info["first_call_s"] = result[peer]
