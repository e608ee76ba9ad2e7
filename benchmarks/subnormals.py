"""How a workload's epoch time moves as training goes on, beside the count of subnormal
numbers in the weights and the optimizer's state:

    python -m benchmarks.subnormals [W2] [--blocks 8] [--epochs 200] [--steps]

The report times thousands of epochs back to back. On W2 the Adam moments of dead ReLU
units decay geometrically towards zero and, after some hundreds of epochs, into subnormal
numbers (below ``np.finfo(np.float64).tiny``), and so do a few weights; some processors
compute with those far more slowly. scikit-learn's fit reaches the same values (fastmlp
gives its weights), so both are timed in that state.

With ``--steps``, at the end, the optimizer's step alone on the state reached: the plain
step and the careful one (``fastmlp.kernels._optimizers``), and the plain one with the
subnormal values zeroed, on a stand-in gradient (zero where a weight or first state is
subnormal, as a dead unit's is, standard normal elsewhere), each the best mean of five
runs of 2000 steps.
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


def _step_times(trainer, learning_rate):
    """Microseconds a step takes: plain, careful, and plain with the subnormals zeroed."""
    from fastmlp.kernels import _optimizers

    network = trainer.network
    tiny = np.finfo(network.dtype).tiny
    subnormal = [(np.abs(a) < tiny) & (a != 0) for a in (network.theta, trainer.state_1)]
    grad = np.random.default_rng(0).standard_normal(network.n_params).astype(network.dtype)
    grad[subnormal[0] | subnormal[1]] = 0
    solver = _optimizers.SOLVERS[trainer.solver]
    n_coefs = int(network.int_off[0])
    weight_sum = network.dtype.type(trainer.batch_size)
    times = {}
    for name, steps, zeroed in (("plain", _optimizers.FINISH_AND_STEP, False),
                                ("careful", _optimizers.CAREFUL_FINISH_AND_STEP, False),
                                ("plain, subnormals zeroed", _optimizers.FINISH_AND_STEP,
                                 True)):
        theta, state_1, state_2 = (a.copy() for a in (network.theta, trainer.state_1,
                                                      trainer.state_2))
        if zeroed:
            theta[subnormal[0]], state_1[subnormal[1]] = 0, 0
        optimizer = _optimizers.Optimizer.of(trainer, learning_rate)._replace(
            state_1=state_1, state_2=state_2)
        step, arguments = steps[solver], (theta, grad, grad[:0], n_coefs, weight_sum,
                                          network.dtype.type(1e-3), optimizer)
        step(*arguments)
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(2000):
                step(*arguments)
            best = min(best, (time.perf_counter() - start) / 2000)
        times[name] = round(best * 1e6, 2)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", nargs="?", default="W2")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=200, help="epochs a block")
    parser.add_argument("--steps", action="store_true",
                        help="then time the optimizer's step alone (see above)")
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
    if args.steps:
        print(f"one step, us: {_step_times(trainer, workload.learning_rate)}")


if __name__ == "__main__":
    main()
