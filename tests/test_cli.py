import subprocess
import sys

import numpy as np


def test_demo_runs_and_writes_the_picture(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fastmlp", "demo", "--steps", "5", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    assert "numpy" in result.stdout
    picture = tmp_path / "demo_decision_boundary.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def run_fastmlp(*args, cwd=None):
    result = subprocess.run([sys.executable, "-m", "fastmlp", *args], capture_output=True,
                            text=True, timeout=600, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_bench_times_the_installed_peers_within_its_limit():
    out = run_fastmlp("bench", "--quick", "--seconds", "1", "--workloads", "W2", "W3")
    assert "W2 moons-adam" in out and "vs numpy reference" in out and "vs scikit-learn" in out
    # W2's round outlasts the limit: its three measurements at least (numba, the NumPy
    # reference, scikit-learn) each warm up for 0.2 s and pause 0.15 s after.
    assert "not measured within the time limit: W3" in out


def test_profile_of_a_workload_writes_its_table_and_plot(tmp_path):
    out = run_fastmlp("profile", "W2", "--repeats", "1", "--out", str(tmp_path))
    assert out.startswith("W2 moons-adam: fastmlp.profile(MLPClassifier(")
    assert "unaccounted" in out and "scikit-learn" in out
    assert (tmp_path / "profile-W2.txt").read_text().startswith("W2 moons-adam")
    assert (tmp_path / "profile-W2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_of_a_data_file(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    label = (X[:, 0] + X[:, 1] > 0).astype(int)
    np.savetxt(tmp_path / "mine.csv", np.column_stack([X, label]), delimiter=",",
               header="a,b,c,label", comments="")
    out = run_fastmlp("profile", "--data", "mine.csv", "--target", "label", "--param",
                      "hidden_layer_sizes=(8,)", "--repeats", "1", "--out", ".", cwd=tmp_path)
    assert "MLPClassifier: 3-8-1 relu, adam, 200 rows" in out and "unaccounted" in out
    assert (tmp_path / "profile-mine.png").exists()
