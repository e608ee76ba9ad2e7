import subprocess
import sys


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
