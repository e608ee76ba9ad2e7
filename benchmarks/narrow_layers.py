"""The loop kernels of a layer with few outputs, plain against transposed: the figures
behind ``fastmlp.kernels._layers.NARROW_OUTPUTS``.

    python -m benchmarks.narrow_layers [--rounds 7] [--shapes 128x10 64x10 64x16 ...]

Per layer shape and dtype, microseconds for one 64-row tile (the loop plans' tile): the
forward product, the weight gradient and the error passed down, on the plain loops
(``_dense_loops``, ``_grad_loops``, ``_backprop_loops``) and on the transposed ones that
layers of fewer than ``NARROW_OUTPUTS`` outputs run (``_dense_narrow``, ``_grad_narrow``
and its gradient added back, ``_backprop_narrow``), and the forward product as one dot
product per entry (the transposed form before the blocked one). Each kernel is called in
a compiled loop on random data; the time is the median over interleaved rounds.
"""

import argparse
import time

import numpy as np
from numba import njit

from fastmlp.kernels._layers import (
    _backprop_loops,
    _backprop_narrow,
    _dense_loops,
    _dense_narrow,
    _grad_loops,
    _grad_narrow,
    _transpose,
)
from fastmlp.kernels._math import FASTMATH

TILE_ROWS = 64
SHAPES = ("128x10", "64x10", "32x10", "64x3", "64x12", "64x16", "128x26")


@njit(error_model="numpy", fastmath=FASTMATH)
def _dense_dots(A, WT, b, Z, rows):
    """The forward product as one contiguous dot product per entry, begun at the bias."""
    fan_out, fan_in = WT.shape
    for i in range(rows):
        a = A[i]
        for j in range(fan_out):
            w = WT[j]
            total = b[j]
            for k in range(fan_in):
                total += a[k] * w[k]
            Z[i, j] = total


@njit(error_model="numpy", fastmath=FASTMATH)
def _plain(A, W, b, Z, D, G, g, D_prev, rows, part, repeats):
    for _ in range(repeats):
        if part == 0:
            _dense_loops(A, W, b, Z, rows)
        elif part == 1:
            _grad_loops(A, D, G, g, rows)
        else:
            _backprop_loops(D, W, D_prev, rows)


@njit(error_model="numpy", fastmath=FASTMATH)
def _transposed(A, W, WT, GT, b, Z, D, G, g, D_prev, rows, part, repeats):
    """As the tile kernel runs a narrow layer: W.T made in the forward pass, the
    transposed gradient added back to G after it."""
    fan_in, fan_out = W.shape
    for _ in range(repeats):
        if part == 0:
            _transpose(W, WT)
            _dense_narrow(A, WT, b, Z, rows)
        elif part == 1:
            _grad_narrow(A, D, GT, g, rows)
            for k in range(fan_in):
                for j in range(fan_out):
                    G[k, j] += GT[j, k]
        elif part == 2:
            _backprop_narrow(D, WT, D_prev, rows)
        else:
            _transpose(W, WT)
            _dense_dots(A, WT, b, Z, rows)


def tile_times(fan_in, fan_out, dtype, rounds=7, seed=0):
    """Microseconds per tile, ``{(form, part): median}``; part 'forward', 'gradient' or
    'error'; form 'plain', 'transposed' or 'dots' (the forward only)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((TILE_ROWS, fan_in)).astype(dtype)
    W = rng.standard_normal((fan_in, fan_out)).astype(dtype)
    WT = np.ascontiguousarray(W.T)
    b = rng.standard_normal(fan_out).astype(dtype)
    D = rng.standard_normal((TILE_ROWS, fan_out)).astype(dtype)
    Z, G, GT = np.zeros_like(D), np.zeros_like(W), np.zeros_like(WT)
    g, D_prev = np.zeros_like(b), np.zeros((TILE_ROWS, fan_in), dtype)
    repeats = max(1, int(3e7 / (TILE_ROWS * fan_in * fan_out)))
    parts = ("forward", "gradient", "error")
    calls = {}
    for index, part in enumerate(parts):
        calls["plain", part] = (_plain, (A, W, b, Z, D, G, g, D_prev, TILE_ROWS, index))
        calls["transposed", part] = (
            _transposed, (A, W, WT, GT, b, Z, D, G, g, D_prev, TILE_ROWS, index))
    calls["dots", "forward"] = (_transposed, (A, W, WT, GT, b, Z, D, G, g, D_prev, TILE_ROWS, 3))
    seconds = interleaved_medians(calls, repeats, rounds)
    return {key: value * 1e6 for key, value in seconds.items()}


def interleaved_medians(calls, repeats, rounds):
    """Seconds per call of each ``calls[key] = (function, args)``, called as
    ``function(*args, repeats)`` (a compiled loop of ``repeats`` calls): the median over
    ``rounds`` interleaved rounds, after one untimed call of each (its compile)."""
    for function, args in calls.values():
        function(*args, 1)
    samples = {key: [] for key in calls}
    for _ in range(rounds):
        for key, (function, args) in calls.items():
            start = time.perf_counter()
            function(*args, repeats)
            samples[key].append((time.perf_counter() - start) / repeats)
    return {key: float(np.median(values)) for key, values in samples.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES),
                        help="layers as INPUTSxOUTPUTS")
    args = parser.parse_args(argv)
    print("| layer | dtype | plain: forward, gradient, error (us) | transposed | "
          "forward as one dot per entry | plain / transposed |")
    print("|---|---|---|---|---:|---:|")
    for dtype in ("float64", "float32"):
        for shape in args.shapes:
            fan_in, fan_out = (int(v) for v in shape.split("x"))
            times = tile_times(fan_in, fan_out, np.dtype(dtype), args.rounds)
            plain = [times["plain", part] for part in ("forward", "gradient", "error")]
            narrow = [times["transposed", part] for part in ("forward", "gradient", "error")]
            print(f"| {fan_in} -> {fan_out} | {dtype} | "
                  f"{', '.join(f'{t:.1f}' for t in plain)} (sum {sum(plain):.1f}) | "
                  f"{', '.join(f'{t:.1f}' for t in narrow)} (sum {sum(narrow):.1f}) | "
                  f"{times['dots', 'forward']:.1f} | {sum(plain) / sum(narrow):.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
