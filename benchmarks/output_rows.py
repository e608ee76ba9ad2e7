"""The output layer's elementwise work per row: the softmax and the log-losses, the
figures behind their loops in ``fastmlp.kernels._activations``.

    python -m benchmarks.output_rows [--rounds 7] [--outputs 1 2 3 10]

Per output count and dtype, nanoseconds per row of a 64-row tile (the loop plans' tile)
and of a 256-row one (the fused kernel's): the softmax (``softmax_rows``; for one output
the logistic, ``logistic_rows``) and its log-loss with the output errors, without sample
weights and with them (``log_loss_and_delta``; for one output
``binary_log_loss_and_delta``). The targets are read through a shuffled sample order, as
in training. Each function is called in a compiled loop on random data; the time is the
median over interleaved rounds. Run it on two checkouts to compare them.
"""

import argparse

import numpy as np
from numba import njit

from benchmarks.narrow_layers import interleaved_medians
from fastmlp.kernels._activations import (
    binary_log_loss_and_delta,
    log_loss_and_delta,
    logistic_rows,
    softmax_rows,
)

TILES = (64, 256)
TRAINING_ROWS = 3500


@njit(error_model="numpy")
def _activate(Z, A, rows, repeats):
    for _ in range(repeats):
        if Z.shape[1] == 1:
            logistic_rows(Z, A, rows)
        else:
            softmax_rows(Z, A, rows)


@njit(error_model="numpy")
def _loss(A, Y, order, sample_weight, D, rows, repeats):
    total = 0.0
    for repeat in range(repeats):
        start = (repeat * rows) % (order.shape[0] - rows)  # other targets each time
        if A.shape[1] == 1:
            total += binary_log_loss_and_delta(A, Y, order, start, sample_weight, D, rows)
        else:
            total += log_loss_and_delta(False, A, Y, order, start, sample_weight, D, rows)
    return total


def row_times(n_outputs, dtype, rows, rounds=7, seed=0):
    """Nanoseconds per row, ``{part: median}``; part 'activation', 'loss' (unit weights)
    or 'weighted loss'."""
    rng = np.random.default_rng(seed)
    Z = (3 * rng.standard_normal((rows, n_outputs))).astype(dtype)
    A, D = np.empty_like(Z), np.empty_like(Z)
    _activate(Z, A, rows, 1)
    Y = np.zeros((TRAINING_ROWS, n_outputs), dtype)
    if n_outputs == 1:
        Y[:, 0] = rng.integers(0, 2, TRAINING_ROWS)
    else:
        Y[np.arange(TRAINING_ROWS), rng.integers(0, n_outputs, TRAINING_ROWS)] = 1
    order = rng.permutation(TRAINING_ROWS).astype(np.int64)
    weights = rng.uniform(0.5, 2.0, TRAINING_ROWS).astype(dtype)
    repeats = max(1, int(2e6 / (rows * n_outputs)))
    calls = {
        "activation": (_activate, (Z, np.empty_like(Z), rows)),
        "loss": (_loss, (A, Y, order, np.empty(0, dtype), D, rows)),
        "weighted loss": (_loss, (A, Y, order, weights, D, rows)),
    }
    seconds = interleaved_medians(calls, repeats, rounds)
    return {part: value / rows * 1e9 for part, value in seconds.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--outputs", type=int, nargs="+", default=[1, 2, 3, 10])
    args = parser.parse_args(argv)
    print("| outputs | dtype | tile rows | activation (ns/row) | loss | weighted loss |")
    print("|---:|---|---:|---:|---:|---:|")
    for dtype in ("float64", "float32"):
        for n_outputs in args.outputs:
            for rows in TILES:
                times = row_times(n_outputs, np.dtype(dtype), rows, args.rounds)
                print(f"| {n_outputs} | {dtype} | {rows} | {times['activation']:.1f} | "
                      f"{times['loss']:.1f} | {times['weighted loss']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
