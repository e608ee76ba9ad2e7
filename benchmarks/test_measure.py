"""The arithmetic of the report: ratios taken round by round, and the GEMM share."""

import pytest

from benchmarks.targets import target_rows
from fastmlp.bench.measure import GEMM_SIZE, MACHINE_GEMM, Timing, speedup


def test_a_ratio_pairs_the_times_of_each_round():
    """The machine's slow state (1.6 times as long) took the baseline's rounds 1 and 2
    and only round 2 of ours: the ratio of the medians says 3.2, the rounds say 2 (one
    round apart)."""
    baseline = Timing([1.0, 1.6, 1.6])
    ours = Timing([0.5, 0.5, 0.8])
    assert baseline.median / ours.median == pytest.approx(3.2)
    assert speedup(baseline, ours) == pytest.approx(2.0)


def test_a_baseline_with_fewer_rounds_is_paired_with_the_first():
    assert speedup(Timing([4.0, 4.0]), Timing([1.0, 2.0, 0.1, 0.1])) == pytest.approx(3.0)


def test_the_gemm_share_and_the_floor_compare_an_epoch_with_the_gemm_of_its_round():
    gemm_flops = 2 * GEMM_SIZE**3
    useful = 0.5 * gemm_flops  # an epoch of half a GEMM's FLOPs
    # Each round: the epoch takes as long as 0.7 GEMMs (a 71 % share, 1.4 times its
    # floor of half a GEMM), in either state.
    timings = {"W4-float64": {
        MACHINE_GEMM: Timing([0.10, 0.16, 0.16]),
        "numba": Timing([0.07, 0.112, 0.07 * 1.6]),
    }}
    rows = {label: (measured, met) for label, measured, met
            in target_rows(timings, {"W4-float64": useful}, {"W4-float64": {"flops": useful}})}
    measured, met = rows["W4-float64 >= 65% of the GEMM rate"]
    assert measured.startswith("71%") and met
    assert rows["W4-float64 <= 1.3x its floor"] == ("1.40x", False)
    assert rows["W4-float32 <= 1.3x its floor"] == ("not measured", None)


def test_a_measurement_runs_units_for_its_whole_span(monkeypatch):
    """Every implementation is timed over the same span (the mean of its units), so a
    short unit is not timed in a moment a long one could not fit in. The clock is a fake
    one that each run moves on by 10 ms: nothing here depends on this machine's speed."""
    from types import SimpleNamespace

    from fastmlp.bench import measure
    from fastmlp.bench.implementations import Runner

    clock = [0.0]
    runs = []

    def run():
        runs.append(1)
        clock[0] += 0.01

    monkeypatch.setattr(measure, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    runner = Runner(run, None, [], units_per_run=2)
    seconds = measure._timed_units(runner, 0.05)
    assert len(runs) == 5
    assert seconds == pytest.approx(0.005, rel=1e-12)  # per unit: two units a run
    runs.clear()
    measure._timed_units(runner, 0)
    assert len(runs) == 1
