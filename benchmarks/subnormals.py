"""How a workload's epoch time moves as training goes on, beside the count of subnormal
numbers in the weights and the optimizer's state:

    python -m benchmarks.subnormals [W2] [--blocks 8] [--epochs 200]

The report times thousands of epochs back to back. On W2 the Adam moments of dead ReLU
units decay geometrically towards zero and, after some hundreds of epochs, into subnormal
numbers (below ``np.finfo(np.float64).tiny``), and so do a few weights; some processors
compute with those far more slowly. scikit-learn's fit reaches the same values (fastmlp
gives its weights), so both are timed in that state.
"""

import argparse
import time
import warnings

import numpy as np

from fastmlp.bench.implementations import IMPLEMENTATIONS
from fastmlp.bench.workloads import WORKLOADS, load


def _subnormals(values):
    tiny = np.finfo(values.dtype).tiny
    return int(((np.abs(values) < tiny) & (values != 0)).sum())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", nargs="?", default="W2")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=200, help="epochs a block")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    workload = WORKLOADS[args.workload]
    runner = IMPLEMENTATIONS["numba"](workload, load(workload))
    trainer = next(cell.cell_contents for cell in runner.run.__closure__
                   if type(cell.cell_contents).__name__ == "Trainer")
    for block in range(1, args.blocks + 1):
        start = time.perf_counter()
        for _ in range(args.epochs):
            runner.run()
        seconds = (time.perf_counter() - start) / args.epochs
        counts = {name: _subnormals(values) for name, values in (
            ("weights", trainer.network.theta), ("state 1", trainer.state_1),
            ("state 2", trainer.state_2)) if values is not None and values.size}
        print(f"epochs {block * args.epochs:5d}: {seconds * 1e3:.3f} ms an epoch; "
              f"subnormal values: {counts}", flush=True)


if __name__ == "__main__":
    main()
