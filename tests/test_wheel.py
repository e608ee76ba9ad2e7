"""The package stands on its own: its wheel, installed in a fresh virtual environment,
runs every command from a folder outside the source tree, where the repository's
``benchmarks/`` cannot be imported.

Minutes (the build, the dependencies from the package index or pip's cache, the kernels'
first compile), so the normal run leaves it out: ``python -m pytest -m wheel
tests/test_wheel.py`` runs it, as CI does. Its assertions are about exit codes, output
and files, never time.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
#: What the build reads (pyproject.toml names the package and its readme).
BUILD_INPUTS = ("pyproject.toml", "README.md")


def run(command, cwd=None, check=True):
    """Run ``command`` with the environment's own Python paths only (none of the source
    tree's); its output, or with ``check=False`` the completed process."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PYTHONNOUSERSITE="1", MPLBACKEND="Agg")
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    if not check:
        return result
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the new environment's python, an empty folder outside the source tree)."""
    work = tmp_path_factory.mktemp("wheel")
    # The build runs on a copy, so it leaves no build/ or egg-info in the clone.
    source = work / "source"
    shutil.copytree(ROOT / "fastmlp", source / "fastmlp",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    for name in BUILD_INPUTS:
        shutil.copy(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", work / "dist",
         source])
    (wheel,) = (work / "dist").glob("fastmlp-*.whl")
    run([sys.executable, "-m", "venv", work / "venv"])
    python = work / "venv" / ("Scripts" if os.name == "nt" else "bin") / "python"
    run([python, "-m", "pip", "install", "--quiet", wheel])
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    return python, elsewhere


def test_the_installed_package_is_the_wheel_and_has_no_benchmarks(installed):
    python, elsewhere = installed
    where = run([python, "-c", "import fastmlp; print(fastmlp.__file__)"], cwd=elsewhere)
    assert Path(where.strip()).is_relative_to(python.parent.parent)
    outside = run([python, "-c", "import benchmarks"], cwd=elsewhere, check=False)
    assert "ModuleNotFoundError" in outside.stderr


def test_version(installed):
    python, elsewhere = installed
    expected = f"fastmlp {fastmlp.__version__}"
    assert run([python, "-m", "fastmlp", "--version"], cwd=elsewhere).strip() == expected
    script = python.parent / ("fastmlp.exe" if os.name == "nt" else "fastmlp")
    assert run([script, "--version"], cwd=elsewhere).strip() == expected


def test_warmup(installed):
    python, elsewhere = installed
    out = run([python, "-m", "fastmlp", "warmup"], cwd=elsewhere)
    assert "float64:" in out and "float32:" in out


def test_demo(installed):
    python, elsewhere = installed
    out = run([python, "-m", "fastmlp", "demo"], cwd=elsewhere)
    assert "test accuracy" in out and "numba" in out and "numpy" in out
    picture = elsewhere / "reports" / "demo_decision_boundary.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_of_a_workload(installed):
    python, elsewhere = installed
    out = run([python, "-m", "fastmlp", "profile", "W2", "--repeats", "2"], cwd=elsewhere)
    assert out.startswith("W2 moons-adam: fastmlp.profile(MLPClassifier(")
    for row in ("batching", "forward", "backward", "update", "rest", "total", "unaccounted"):
        assert f"\n{row} " in out
    assert "scikit-learn" in out
    assert (elsewhere / "reports" / "profile-W2.txt").read_text().startswith("W2 moons-adam")
    assert (elsewhere / "reports" / "profile-W2.png").stat().st_size > 0


def test_profile_of_a_csv_file(installed):
    python, elsewhere = installed
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4))
    label = (X[:, 0] - X[:, 2] > 0).astype(int)
    np.savetxt(elsewhere / "mine.csv", np.column_stack([X, label]), delimiter=",",
               header="a,b,c,d,label", comments="")
    out = run([python, "-m", "fastmlp", "profile", "--data", "mine.csv", "--target", "label",
               "--param", "hidden_layer_sizes=(16,)", "--repeats", "2"], cwd=elsewhere)
    assert "MLPClassifier: 4-16-1 relu, adam, 500 rows, batches of 200, float64" in out
    assert "unaccounted" in out
    assert (elsewhere / "reports" / "profile-mine.txt").exists()


def test_bench_quick_within_a_few_seconds(installed):
    python, elsewhere = installed
    out = run([python, "-m", "fastmlp", "bench", "--quick", "--seconds", "3"], cwd=elsewhere)
    assert "W1 moons-gd" in out and "vs notebook loop" in out and "vs numpy reference" in out
    # Each measurement warms up for 0.2 s and pauses 0.15 s after: the seven workloads'
    # rounds, three measurements each at least, cannot all fit in 3 s.
    assert "not measured within the time limit: " in out
