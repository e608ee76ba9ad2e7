"""The Numba engine against the NumPy reference: gradients, training, threads."""

import itertools
import threading

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from numba import config

import fastmlp
from conftest import (
    ALL_ACTIVATIONS,
    ALL_OUTPUTS,
    random_network,
    random_targets,
    relative_error,
)
from fastmlp import kernels, optim, reference
from fastmlp.kernels import (
    FlatNetwork,
    Trainer,
    _activations,
    _api,
    _buffers,
    _layers,
    _math,
    _random,
    _shallow,
)
from fastmlp.kernels._threads import parallel_section

fast_inputs = pytest.mark.fast_inputs
two_threads = pytest.mark.skipif(
    config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 Numba threads"
)


def make_problem(seed, units, n_samples, output, dtype=np.float64):
    rng = np.random.default_rng(seed)
    coefs, intercepts = random_network(rng, units, np.float64, scale=1.0)
    # Scale by 1/sqrt(fan_in) so that wide layers neither saturate nor overflow.
    coefs = [c / np.sqrt(c.shape[0]) for c in coefs]
    X = rng.standard_normal((n_samples, units[0]))
    Y = random_targets(rng, output, n_samples, units[-1])
    sample_weight = rng.uniform(0.1, 2.0, n_samples)
    cast = [a.astype(dtype) for a in coefs + intercepts]
    depth = len(coefs)
    return cast[:depth], cast[depth:], X.astype(dtype), Y.astype(dtype), sample_weight.astype(dtype)


def assert_engines_agree(problem, activation, output, alpha, weighted, n_threads, rtol):
    coefs, intercepts, X, Y, sample_weight = problem
    sample_weight = sample_weight if weighted else None
    in_float64 = [[a.astype(np.float64) for a in arrays] for arrays in (coefs, intercepts)]
    expected = reference.loss_and_gradients(
        *in_float64, X.astype(np.float64), Y.astype(np.float64), activation, output, alpha,
        None if sample_weight is None else sample_weight.astype(np.float64),
    )
    loss, coef_grads, intercept_grads = kernels.loss_and_gradients(
        coefs, intercepts, X, Y, activation, output, alpha, sample_weight, n_threads
    )
    assert loss.dtype == X.dtype
    assert all(g.dtype == X.dtype for g in coef_grads + intercept_grads)
    if X.dtype == np.float64:
        expected_loss, allowances = expected[0], [0.0] * len(coef_grads + intercept_grads)
        loss_floor = 0.0
    else:
        # Where the outputs saturate, float32 itself loses digits: log-losses clip at the
        # dtype's eps (as scikit-learn does), and the output error p - y cancels. The
        # float32 loss is that of the reference run in float32, and each float32
        # gradient may be off the float64 one by twice as much as that run's is, or by
        # 4 float32 eps in absolute terms: p is known to about eps whatever its value,
        # and the reference run may happen to round its few saturated rows luckily.
        in_float32 = reference.loss_and_gradients(
            coefs, intercepts, X, Y, activation, output, alpha, sample_weight
        )
        expected_loss = in_float32[0]
        floor = 4 * np.finfo(np.float32).eps
        # A Poisson deviance near its minimum is a difference of terms of the size of Y.
        loss_floor = floor * max(1.0, float(np.max(np.abs(Y))))
        allowances = [
            max(2 * relative_error(ref, want), floor / max(np.max(np.abs(want)), floor))
            for ref, want in zip(in_float32[1] + in_float32[2], expected[1] + expected[2])
        ]
    assert abs(float(loss) - float(expected_loss)) <= rtol * abs(expected_loss) + loss_floor
    for got, want, allowance in zip(
        coef_grads + intercept_grads, expected[1] + expected[2], allowances
    ):
        assert got.shape == want.shape
        assert relative_error(got, want) <= rtol + allowance


# float64: the engines sum in different orders, a few roundings apart (~1e-15); float32
# against the float64 reference: float32 rounding through up to four layers (~1e-6).
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    widths=st.lists(st.integers(1, 300), min_size=1, max_size=4),
    n_samples=st.one_of(st.sampled_from([1, 2, 63, 64, 65, 97, 129]), st.integers(1, 300)),
    activation=st.sampled_from(ALL_ACTIVATIONS),
    output=st.sampled_from(ALL_OUTPUTS),
    alpha=st.sampled_from([0.0, 1e-3, 0.5]),
    weighted=st.booleans(),
    n_threads=st.sampled_from([1, 2]),
)
# A softmax saturated to 1 - 3.5e-4: in float32 the output error cancels to 1e-4.
@example(seed=39359804, widths=[100, 235, 85], n_samples=1, activation="identity",
         output="softmax", alpha=0.0, weighted=False, n_threads=1)
# A Poisson output near its minimum in float32: the deviance cancels (the loss floor).
@example(seed=80850, widths=[1], n_samples=1, activation="gelu", output="exp", alpha=0.0,
         weighted=False, n_threads=1)
# A logistic output saturated to 1 - 5.5e-4 in float32, over two rows (the floor above).
@example(seed=264320631, widths=[17, 207, 287, 1], n_samples=2, activation="gelu",
         output="logistic", alpha=0.0, weighted=False, n_threads=1)
# A gelu unit at z = -4.7, where 1 + tanh(u) cancels unless computed as 1 - tanh(|u|).
@example(seed=163, widths=[163, 1, 1], n_samples=1, activation="gelu", output="exp",
         alpha=0.0, weighted=False, n_threads=1)
def test_numba_equals_reference(
    dtype, seed, widths, n_samples, activation, output, alpha, weighted, n_threads
):
    units = widths + [max(2, widths[-1] % 5)] if output == "softmax" else widths + [1 + seed % 3]
    problem = make_problem(seed, units, n_samples, output, dtype)
    assume(not _near_a_kink(problem, activation))
    assert_engines_agree(problem, activation, output, alpha, weighted, n_threads, TOLERANCE[dtype])


def _near_a_kink(problem, activation):
    """Whether a hidden pre-activation lies within rounding of 0, where relu's and
    leaky_relu's derivative jumps: there the engine may land on the other side of 0 than
    the float64 reference (one float32 z of -1.2e-8 flipped a unit's error a hundredfold).
    The bound: 2 units in the last place of the sum of |a * w| a unit takes, per layer."""
    if activation not in ("relu", "leaky_relu"):
        return False
    coefs, intercepts, X = problem[:3]
    eps = np.finfo(X.dtype).eps
    coefs, intercepts = ([a.astype(np.float64) for a in arrays] for arrays in (coefs, intercepts))
    X = X.astype(np.float64)
    pre_activations, activations = reference.forward(coefs, intercepts, X, activation, "identity")
    for depth in range(1, len(coefs)):  # the hidden layers
        z, a = pre_activations[depth - 1], activations[depth - 1]
        w, b = coefs[depth - 1], intercepts[depth - 1]
        if np.any(np.abs(z) <= 2 * depth * eps * (np.abs(a) @ np.abs(w) + np.abs(b))):
            return True
    return False


# Each way the engine can run a network, chosen by kernels.plan, pinned by a shape.
EXECUTION_PATHS = {
    "serial loops": ([5, 9, 3], 37, 1, dict(parallel=False, blas=False)),
    "parallel loops": ([6, 40, 20, 4], 301, 2, dict(parallel=True, blas=False)),
    "parallel, short batch": ([3, 5, 2], 33, 2, dict(parallel=True, blas=False)),
    # Ten classes: an output layer under NARROW_OUTPUTS, on the transposed loops.
    "loops, ten outputs": ([12, 40, 10], 301, 2, dict(parallel=True, blas=False)),
    "blas": ([200, 256, 12], 70, 1, dict(parallel=False, blas=True)),
    "blas in each thread": ([200, 256, 12], 70, 2, dict(parallel=True, blas=True)),
    "blas and loops": ([3, 200, 256, 4], 70, 2, dict(parallel=True, blas=True)),
    # Chunks of 550 rows: two BLAS tiles each, the second added through its scratch.
    "blas, several tiles a chunk": ([30, 200, 256, 3], 1100, 2, dict(parallel=True, blas=True)),
}


@fast_inputs
@pytest.mark.parametrize("path", sorted(EXECUTION_PATHS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_each_execution_path(path, dtype):
    units, n_samples, n_threads, expected = EXECUTION_PATHS[path]
    if n_threads > config.NUMBA_NUM_THREADS:
        pytest.skip("needs more Numba threads")
    run_plan = kernels.plan(units, n_samples, n_threads)
    assert run_plan.parallel == expected["parallel"]
    assert bool(run_plan.use_blas.any()) == expected["blas"]
    for output in ALL_OUTPUTS:
        problem = make_problem(7, units[:-1] + [units[-1] if output != "exp" else 2], n_samples,
                               output, dtype)
        assert_engines_agree(problem, "tanh", output, 0.1, True, n_threads, TOLERANCE[dtype])


@fast_inputs
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_every_activation_small(activation):
    problem = make_problem(3, [3, 4, 5, 2], 9, "softmax")
    assert_engines_agree(problem, activation, "softmax", 0.2, True, 1, 1e-10)


@fast_inputs
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_one_hidden_relu_layer_on_few_inputs(dtype, n_threads):
    """The fused kernel of _shallow.py, for every input and output count it takes, and
    every output with each output count, with sample weights and without (the losses
    take another loop without); 150 rows end in a block of fewer than four rows in each
    chunk (the outputs' pass) and, in chunks of 75 rows, in an odd row (the gradient's
    pass, two rows at a time), as does 1 row; 1100 take several tiles.

    Each pair of counts with an output is a kernel compiled apart (about two seconds),
    so each pair of counts runs two of the outputs, in turn: every output meets each
    output count it takes, and every input count runs four kernels."""
    if n_threads > config.NUMBA_NUM_THREADS:
        pytest.skip("needs more Numba threads")
    for n_in in range(1, _shallow.SHALLOW_MAX_INPUTS + 1):
        for n_out in range(1, _shallow.SHALLOW_MAX_OUTPUTS + 1):
            units = [n_in, 37, n_out]
            assert _shallow.is_shallow(units, _activations.RELU)
            assert kernels.plan(units, 1100, n_threads, _activations.RELU).tile * n_threads < 1100
            outputs = [out for out in ALL_OUTPUTS if n_out > 1 or out != "softmax"]
            turn = 2 * (n_in - 1)
            for output in (outputs[turn % len(outputs)], outputs[(turn + 1) % len(outputs)]):
                for n_samples, weighted in itertools.product((1, 150, 1100), (True, False)):
                    problem = make_problem(n_in + 10 * n_out, units, n_samples, output, dtype)
                    assert_engines_agree(problem, "relu", output, 0.1, weighted, n_threads,
                                         TOLERANCE[dtype])


def _units_with_subnormal_weights(dtype, n_in, n_out, x_scale):
    """A network of 24 ReLU units on n_in inputs, and rows of about x_scale: units 0 to
    5 dead (intercept -0.5) and 6 to 11 alive (+0.5), their incoming coefs all
    subnormal; 12 to 17 with subnormal incoming coefs too but an intercept of four times
    the smallest normal number, which their products with the rows outweigh; the rest
    plain, their coefs over x_scale. Units 0 to 11 have subnormal outgoing coefs too."""
    rng = np.random.default_rng(n_in + 10 * n_out)
    tiny = np.finfo(dtype).tiny
    coefs, intercepts = random_network(rng, [n_in, 24, n_out], np.float64, scale=1.0)
    coefs = [c.astype(dtype) for c in coefs]
    intercepts = [b.astype(dtype) for b in intercepts]

    def subnormal(shape):
        signs = rng.choice([-1, 1], shape)
        return (signs * rng.uniform(0.01, 0.9, shape) * tiny).astype(dtype)

    coefs[0][:, 18:] /= x_scale
    coefs[0][:, :18] = subnormal((n_in, 18))
    coefs[1][:12] = subnormal((12, n_out))
    intercepts[0][:6], intercepts[0][6:12] = -0.5, 0.5
    intercepts[0][12:18] = rng.choice([-4, 4], 6) * tiny
    X = (rng.standard_normal((300, n_in)) * x_scale).astype(dtype)
    return coefs, intercepts, X


@fast_inputs
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_hidden_units_whose_incoming_coefs_are_subnormal(dtype, n_threads):
    """The fused kernel reads a unit's incoming coefs as zero where they are all
    subnormal and its intercept is far larger than their products with the rows can be
    (_shallow.py). It gives the reference engine's gradient, which computes with them,
    for units on either side of that limit: units 12 to 17 have subnormal coefs and an
    intercept below it, so that their z changes sign from row to row and their error is
    of the size of the others' (read as zero, they would be dead or alive on every
    row); on rows of 1e300 (float32: 3e34) no unit may be read so (their products then
    change the alive units' activations by some 1e-8 of them; float32: 1e-4). A kernel
    that read every such unit as zero failed each case; one that ignored the rows' size,
    each case of large rows. And on the units above the limit, the same results to the
    bit as with those coefs zero (with no penalty, which would differ: alpha times the
    coefs)."""
    if n_threads > config.NUMBA_NUM_THREADS:
        pytest.skip("needs more Numba threads")
    for n_in, n_out, output in ((2, 1, "logistic"), (3, 2, "softmax"), (4, 2, "identity")):
        for x_scale in (1e6, 1e300 if dtype == np.float64 else 3e34):
            coefs, intercepts, X = _units_with_subnormal_weights(dtype, n_in, n_out, x_scale)
            rng = np.random.default_rng(n_in)
            Y = random_targets(rng, output, X.shape[0], n_out).astype(dtype)
            sample_weight = rng.uniform(0.1, 2.0, X.shape[0]).astype(dtype)
            problem = coefs, intercepts, X, Y, sample_weight
            assert_engines_agree(problem, "relu", output, 0.1, True, n_threads,
                                 TOLERANCE[dtype])
            if x_scale > 1e6:
                continue
            zeroed = [c.copy() for c in coefs]
            zeroed[0][:, :12], zeroed[1][:6] = 0, 0
            results = [kernels.loss_and_gradients(c, intercepts, X, Y, "relu", output, 0.0,
                                                  sample_weight, n_threads)
                       for c in (coefs, zeroed)]
            (loss, coef_grads, intercept_grads), (loss_0, coef_grads_0, intercept_grads_0) = results
            assert loss == loss_0
            for got, want in zip(coef_grads + intercept_grads, coef_grads_0 + intercept_grads_0):
                assert np.array_equal(got, want)


def test_public_backend_switch():
    coefs, intercepts, X, Y, sample_weight = make_problem(11, [4, 8, 3], 50, "softmax")
    args = (coefs, intercepts, X, Y)
    kwargs = dict(activation="gelu", alpha=0.01, sample_weight=sample_weight)
    numba_result = fastmlp.loss_and_gradients(*args, backend="numba", **kwargs)
    numpy_result = fastmlp.loss_and_gradients(*args, backend="numpy", **kwargs)
    assert relative_error(numba_result[0], numpy_result[0]) <= 1e-12


SOLVERS = {
    "sgd": dict(solver="sgd", momentum=0.9, nesterov=False),
    "nesterov": dict(solver="sgd", momentum=0.9, nesterov=True),
    "adam": dict(solver="adam", beta_1=0.9, beta_2=0.999, epsilon=1e-8),
}


def reference_optimizer(params, settings, learning_rate):
    if settings["solver"] == "adam":
        return optim.Adam(params, learning_rate, settings["beta_1"], settings["beta_2"],
                          settings["epsilon"])
    return optim.SGD(params, learning_rate, "constant", settings["momentum"],
                     settings["nesterov"])


@fast_inputs
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("units", [[5, 12, 7, 3], [3, 12, 2]], ids=["deep", "shallow"])
def test_whole_epoch_training_equals_reference_steps(solver, weighted, units):
    settings = SOLVERS[solver]
    n_samples, batch_size, n_epochs, learning_rate = 150, 32, 4, 0.01
    coefs, intercepts, X, Y, sample_weight = make_problem(5, units, n_samples, "softmax")
    sample_weight = sample_weight if weighted else None
    rng = np.random.default_rng(0)
    orders = [rng.permutation(n_samples) for _ in range(n_epochs)]

    ref_coefs, ref_intercepts = [c.copy() for c in coefs], [b.copy() for b in intercepts]
    optimizer = reference_optimizer(ref_coefs + ref_intercepts, settings, learning_rate)
    network = FlatNetwork.from_arrays(coefs, intercepts)
    trainer = Trainer(network, "relu", "softmax", alpha=1e-3, batch_size=batch_size,
                      n_threads=1, **settings)
    Xc, Yc, weights = trainer.prepare(X, Y, sample_weight)
    for order in orders:
        expected_loss = reference.train_epoch(
            ref_coefs, ref_intercepts, X, Y, order, batch_size, optimizer, "relu", "softmax",
            1e-3, sample_weight,
        )
        (loss,) = trainer.run_epochs(Xc, Yc, weights, order.astype(np.int64), learning_rate)
        assert relative_error(loss, expected_loss) <= 1e-9
        for got, want in zip(network.coefs + network.intercepts, ref_coefs + ref_intercepts):
            assert relative_error(got, want) <= 1e-9


@fast_inputs
@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("weight_sum", [32.0, 1.0, 0.5, 200.0, 0.75, 37.3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("two_gradients", [True, False], ids=["two chunks", "one"])
@pytest.mark.parametrize("kind", ["plain", "careful", "careful, unusual values"])
def test_the_step_rounds_as_numpy_does(solver, weight_sum, dtype, two_gradients, kind, rng):
    """The step divides by the batch's weight sum as scikit-learn does (by its
    reciprocal, see _math.quotient): the same bits, for gradients of any size. So does
    the careful step (_optimizers, dividing), also where a fifth of the weights and
    first states are subnormal, with no gradient but the penalty's, some dividends
    cancel to subnormal numbers, and others are huge: there the plain step's quotient
    may round otherwise (run on these values, it did in float64 Adam with a weight sum
    of 37.3), and a trainer takes the careful step in float64."""
    from fastmlp.kernels import _optimizers

    settings = SOLVERS[solver]
    n_coefs, n_params = 900, 1000
    theta, grad, other, state_1, state_2 = (
        rng.standard_normal(n_params).astype(dtype) for _ in range(5))
    state_2 = np.abs(state_2)
    # Gradients over most of the dtype's range (their squares finite), some zero.
    widest = 150 if dtype == np.float64 else 18
    grad *= (10.0 ** rng.uniform(-widest, widest, n_params)).astype(dtype)
    grad[::50] = 0
    if not two_gradients:
        other[:] = 0
    t = np.dtype(dtype).type
    alpha, learning_rate, step_size = t(1e-3), t(0.01), t(0.003)
    if kind == "careful, unusual values":
        finfo = np.finfo(dtype)
        decayed = rng.choice(n_coefs, n_coefs // 5, replace=False)
        theta[decayed] *= t(0.3) * finfo.tiny
        state_1[decayed] *= t(0.5) * finfo.tiny
        grad[decayed], other[decayed] = 0, 0
        cancelled = rng.choice(n_coefs, 20, replace=False)  # dividends of a few ulps
        grad[cancelled] = -(alpha * theta[cancelled]) * t(1 + 4 * finfo.eps)
        other[cancelled] = 0
        grad[rng.choice(n_params, 5, replace=False)] = finfo.max / 4
        assert _optimizers.has_unusual_values(theta, state_1) == (dtype == np.float64)
    is_adam = settings["solver"] == "adam"
    expected_theta, expected_1, expected_2 = theta.copy(), state_1.copy(), state_2.copy()
    g = grad + other
    g[:n_coefs] += alpha * theta[:n_coefs]
    with np.errstate(over="ignore", invalid="ignore"):
        g = g / t(weight_sum)
        if is_adam:
            beta_1, beta_2, epsilon = t(0.9), t(0.999), t(1e-8)
            expected_1[:] = beta_1 * state_1 + (1 - beta_1) * g
            expected_2[:] = beta_2 * state_2 + (1 - beta_2) * (g * g)
            expected_theta += -step_size * expected_1 / (np.sqrt(expected_2) + epsilon)
        else:
            momentum = t(0.9)
            expected_1[:] = momentum * state_1 - learning_rate * g
            update = (momentum * expected_1 - learning_rate * g if settings["nesterov"]
                      else expected_1)
            expected_theta += update
    steps = (_optimizers.FINISH_AND_STEP if kind == "plain"
             else _optimizers.CAREFUL_FINISH_AND_STEP)
    step = steps[_optimizers.ADAM if is_adam else _optimizers.SGD]
    optimizer = _optimizers.Optimizer(
        state_1=state_1, state_2=state_2 if is_adam else state_2[:0],
        solver=_optimizers.ADAM if is_adam else _optimizers.SGD, adam_step=0,
        learning_rate=learning_rate, alpha=alpha, momentum=t(0.9),
        nesterov=settings.get("nesterov", False), beta_1=t(0.9), beta_2=t(0.999),
        epsilon=t(1e-8),
    )
    step(theta, grad, other if two_gradients else other[:0], n_coefs, t(weight_sum),
         step_size, optimizer)
    np.testing.assert_array_equal(theta, expected_theta)
    np.testing.assert_array_equal(state_1, expected_1)
    if is_adam:
        np.testing.assert_array_equal(state_2, expected_2)


@fast_inputs
@pytest.mark.parametrize("n_threads", [1, 2])
def test_training_on_decayed_weights_takes_the_careful_steps(n_threads, monkeypatch):
    """Where some weights are subnormal, the trainer steps with the careful steps
    (_optimizers), and only there: the weights of 20 inputs that are zero on every row,
    6,000 subnormal numbers whose gradient is the penalty's alone, get NumPy's Adam step
    to the bit. (Below its range, the plain steps' quotient may round otherwise: see
    test_the_step_rounds_as_numpy_does.)"""
    from fastmlp.kernels import _api

    if n_threads > config.NUMBA_NUM_THREADS:
        pytest.skip("needs more Numba threads")
    rng = np.random.default_rng(3)
    n_rows, hidden, alpha, learning_rate = 200, 300, 1e-2, 1e-3
    X = np.zeros((n_rows, 21))
    X[:, 20] = rng.standard_normal(n_rows)
    Y = np.eye(2)[rng.integers(0, 2, n_rows)]
    coefs, intercepts = random_network(rng, [21, hidden, 2], np.float64, scale=1.0)
    signs = rng.choice([-1.0, 1.0], (20, hidden))
    decayed = signs * rng.uniform(0.01, 0.9, (20, hidden)) * np.finfo(np.float64).tiny
    asked = []
    step_kernel = _api._step_kernel
    monkeypatch.setattr(_api, "_step_kernel", lambda *args: asked.append(args[2:]) or
                        step_kernel(*args))

    def trained(first_coefs):
        network = FlatNetwork.from_arrays([first_coefs, coefs[1]], intercepts)
        trainer = Trainer(network, "relu", "softmax", solver="adam", alpha=alpha,
                          batch_size=n_rows, n_threads=n_threads)
        Xc, Yc, no_weights = trainer.prepare(X, Y)
        trainer.run_epochs(Xc, Yc, no_weights, np.arange(n_rows, dtype=np.int64),
                           learning_rate)
        return network.coefs[0][:20]

    trained(coefs[0])
    assert asked == [(False,)]
    w = decayed
    after = trained(np.vstack([decayed, coefs[0][20:]]))
    assert asked[1:] == [(True,)]
    # One Adam step from zero moments, on g = alpha * w / n (the data's part is zero).
    g = alpha * w / n_rows
    m, v = (1 - 0.9) * g, (1 - 0.999) * (g * g)
    step_size = learning_rate * np.sqrt(1 - 0.999) / (1 - 0.9)
    np.testing.assert_array_equal(after, w + -step_size * m / (np.sqrt(v) + 1e-8))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_quotient_rounds_as_a_division_does(dtype, rng):
    """Compiled, _math.quotient divides without a division; its bits are the division's
    over the range it claims: float64 dividends from 1e-290 to 1e290, every finite
    float32 (subnormals too), by awkward divisors, with exact multiples among them."""
    from numba import njit

    from fastmlp.kernels._math import quotient

    @njit(error_model="numpy")
    def quotients(dividends, divisor, reciprocal, out):
        for i in range(dividends.shape[0]):
            out[i] = quotient(dividends[i], divisor, reciprocal)

    n = 200_000
    exponents = (-290, 290) if dtype == np.float64 else (-45, 38)
    for divisor in [3.0, 37.0, 200.0, 199.0, 1797.0, 0.3, 1 / 3, 2.0**20, 5e-6, 123456.789]:
        divisor = dtype(divisor)
        dividends = rng.standard_normal(n) * 10.0 ** rng.uniform(*exponents, n)
        with np.errstate(over="ignore"):
            dividends = dividends.astype(dtype)
            dividends[: n // 4] = divisor * rng.integers(1, 2**24, n // 4).astype(dtype)
            expected = dividends / divisor
        finite = np.isfinite(expected) & np.isfinite(dividends)
        dividends, expected = dividends[finite], expected[finite]
        got = np.empty_like(dividends)
        quotients(dividends, divisor, dtype(1) / divisor, got)
        np.testing.assert_array_equal(got, expected)


def train_copy(network, X, Y, n_threads, n_epochs=3, solver="adam", calls=1):
    copy = FlatNetwork(network.units, network.dtype)
    copy.theta[:] = network.theta
    output = "softmax" if network.units[-1] > 1 else "logistic"
    trainer = Trainer(copy, "relu", output, solver=solver, batch_size=200, n_threads=n_threads)
    Xc, Yc, weights = trainer.prepare(X, Y)
    order = np.arange(X.shape[0], dtype=np.int64)[::-1].copy()
    for _ in range(calls):
        trainer.run_epochs(Xc, Yc, weights, order, 1e-3, n_epochs)
    return copy.theta


THREE_THREADS = """
import hashlib
import numpy as np
from fastmlp import kernels
from test_kernels import make_problem, train_copy

# The step in parallel slices (2883 parameters), and on copies of the weights (227).
for units in ([10, 64, 32, 3], [10, 16, 3]):
    coefs, intercepts, X, Y, _ = make_problem(9, units, 1000, "softmax")
    network = kernels.FlatNetwork.from_arrays(coefs, intercepts)
    assert kernels.plan(network.units, 200, 3).n_chunks == kernels._planner.CHUNKS
    for solver in ("sgd", "adam"):
        for n_threads in (3, 2, 1, None):
            theta = train_copy(network, X, Y, n_threads=n_threads, solver=solver)
            print(f"{solver}-{network.n_params}-{n_threads}",
                  hashlib.sha256(theta.tobytes()).hexdigest())
"""


def test_every_thread_count_gives_the_same_weights_to_the_bit():
    """The chunks of a batch, and the order their sums are taken in, are fixed by the
    batch's rows, never by the threads: three Numba threads (Numba fixes its count at
    import, so in a process of their own), asked for 3, 2, 1 or all of them, give the
    weights of this process on one thread, to the bit."""
    import hashlib
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    env = {**os.environ, "NUMBA_NUM_THREADS": "3",
           "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)])}
    done = subprocess.run([sys.executable, "-c", THREE_THREADS], cwd=tests, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    digests = dict(line.split() for line in done.stdout.splitlines())
    assert len(digests) == 16
    for units in ([10, 64, 32, 3], [10, 16, 3]):
        coefs, intercepts, X, Y, _ = make_problem(9, units, 1000, "softmax")
        network = FlatNetwork.from_arrays(coefs, intercepts)
        for solver in ("sgd", "adam"):
            here = hashlib.sha256(train_copy(network, X, Y, 1, solver=solver).tobytes())
            for n_threads in (3, 2, 1, None):
                key = f"{solver}-{network.n_params}-{n_threads}"
                assert digests[key] == here.hexdigest(), key


@two_threads
def test_same_thread_count_gives_bitwise_identical_weights():
    coefs, intercepts, X, Y, _ = make_problem(9, [10, 64, 32, 3], 1000, "softmax")
    network = FlatNetwork.from_arrays(coefs, intercepts)
    assert kernels.plan(network.units, 200, 2).parallel  # the threads really split batches
    first = train_copy(network, X, Y, n_threads=2)
    second = train_copy(network, X, Y, n_threads=2)
    np.testing.assert_array_equal(first, second)
    serial = train_copy(network, X, Y, n_threads=1)
    np.testing.assert_array_equal(first, serial)  # the same chunks, on one thread


@two_threads
@pytest.mark.parametrize("units", [[10, 64, 32, 3], [2, 100, 1], [150, 256, 12]],
                         ids=["loops", "fused", "blas"])
def test_a_parallel_plan_on_one_thread_gives_the_same_weights(units, monkeypatch):
    """The engine may run a parallel plan's chunks on one thread when that is faster
    (kernels._threads.ThreadChoice): the same chunks, summed in the same order, so the
    same weights to the bit, whichever count each call gets."""
    from fastmlp.kernels import _threads

    coefs, intercepts, X, Y, _ = make_problem(5, units, 1000, "softmax")
    network = FlatNetwork.from_arrays(coefs, intercepts)
    counts = iter([])
    monkeypatch.setattr(_threads.ThreadChoice, "next", lambda self: next(counts))
    # One engine call per epoch, however slow the machine (a slow one cuts an epoch
    # into calls of SECONDS_PER_CALL, each taking a count of its own).
    monkeypatch.setattr(_api, "SECONDS_PER_CALL", np.inf)
    results = []
    for pattern in ([2, 2, 2, 2], [1, 1, 1, 1], [2, 1, 1, 2]):
        counts = iter(pattern)
        results.append(train_copy(network, X, Y, n_threads=None, n_epochs=1, calls=4))
        assert next(counts, None) is None  # every call took its count from the choice
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def train_in_team(network, X, Y, solver, n_threads):
    """Three shuffled epochs, weighted, in one call; returns the weights, the losses, the
    Adam step count and the order, and the plan's meeting place after."""
    copy = FlatNetwork(network.units, network.dtype)
    copy.theta[:] = network.theta
    trainer = Trainer(copy, "tanh", "softmax", solver=solver, alpha=1e-3, batch_size=200,
                      n_threads=n_threads)
    weights = np.linspace(0.5, 1.5, X.shape[0])
    Xc, Yc, weights = trainer.prepare(X, Y, weights)
    order = np.arange(X.shape[0], dtype=np.int64)
    losses = trainer.run_epochs(Xc, Yc, weights, order, 1e-2, 3,
                                random_state=np.random.RandomState(3))
    sync = trainer._plan_for(200)[1].sync
    return copy.theta, losses, trainer.adam_step, order, sync


@two_threads
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_team_steps_alike_with_copies_of_the_weights_or_slices_of_them(solver, monkeypatch):
    """Two threads step copies of their own of a small network's weights, or slices of a
    larger one's (``_epochs.train_epochs_parallel``): the same weights either way, to
    the bit, and those of one thread working both chunks."""
    from fastmlp.kernels import _planner, _team

    coefs, intercepts, X, Y, _ = make_problem(4, [10, 64, 32, 3], 1000, "softmax")
    network = FlatNetwork.from_arrays(coefs, intercepts)
    runs = {}
    for name, largest in (("copies", 10**9), ("slices", 0)):
        monkeypatch.setattr(_planner, "REPLICATED_STEP_MAX_PARAMS", largest)
        assert kernels.plan(network.units, 200, 2).replicated_step == (name == "copies")
        runs[name] = train_in_team(network, X, Y, solver, n_threads=2)
        assert runs[name][4][_team.MODE] == _team.TEAM  # the threads met: a team ran
    serial = train_in_team(network, X, Y, solver, n_threads=1)
    np.testing.assert_array_equal(runs["copies"][0], runs["slices"][0])
    for theta, losses, adam_step, order, _ in runs.values():
        np.testing.assert_array_equal(theta, serial[0])
        # The loss's penalty is summed over the step's slices, or whole on copies.
        np.testing.assert_allclose(losses, serial[1], rtol=1e-12)
        assert adam_step == serial[2] == (15 if solver == "adam" else 0)
        np.testing.assert_array_equal(order, serial[3])


@two_threads
def test_a_team_whose_threads_never_meet_runs_on_one(monkeypatch):
    """Where a region's iterations run one after the other (here: Numba held to one
    thread, though asked for a team of two), the first member waits, then runs the
    whole team's work alone, and the second finds it done: the team's results, to the
    bit, and no hang."""
    from fastmlp.kernels import _api, _team, _threads

    coefs, intercepts, X, Y, _ = make_problem(6, [10, 64, 32, 3], 1000, "softmax")
    network = FlatNetwork.from_arrays(coefs, intercepts)
    # The team's driver at once, as after a second of fits on one thread: otherwise, in a
    # process that has not yet compiled or loaded it, these calls run alone for now and
    # never meet as a team (how long the earlier tests took would decide).
    monkeypatch.setattr(_api._parallel_driver, "seconds_alone",
                        _api.PARALLEL_COMPILE_AFTER_SECONDS)
    team = train_in_team(network, X, Y, "adam", n_threads=None)
    assert team[4][_team.MODE] == _team.TEAM  # the threads met
    monkeypatch.setattr(_threads.ThreadChoice, "next", lambda self: 1)
    monkeypatch.setattr(_api, "_team_size", lambda run_plan, n_threads: run_plan.n_chunks)
    alone = train_in_team(network, X, Y, "adam", n_threads=None)
    assert alone[4][_team.MODE] == _team.SOLO
    np.testing.assert_array_equal(alone[0], team[0])
    np.testing.assert_array_equal(alone[1], team[1])


def test_thread_choice_follows_the_faster_count():
    from fastmlp.kernels._threads import ThreadChoice

    choice = ThreadChoice(2)
    choice.RETRY_EVERY, choice.RETRY_ONE_EVERY = 6, 5
    seconds = {2: 1.0, 1: 1.1}
    chosen = []
    for call in range(1, 25):
        if call == 13:  # the machine changes: two threads now the slower
            seconds = {2: 5.0, 1: 3.0}
        count = choice.next()
        chosen.append(count)
        # Two threads after a call on one are slow, as idle threads wake up: that call
        # must not count.
        woken = count == 2 and len(chosen) > 1 and chosen[-2] == 1
        choice.record(count, 100.0 if woken else seconds[count])
    # Two threads run first twice (the second timed), then one thread once (timed at
    # once: no thread wakes); two threads win unless one is clearly faster, and one
    # thread is retried once every fifth call. After the change, timed on the 13th
    # call, one thread runs, and two threads run twice every sixth call.
    assert chosen[:3] == [2, 2, 1]
    assert chosen[3:12] == [2, 1, 2, 2, 2, 2, 1, 2, 2]
    assert chosen[12:] == [2, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 2]


@two_threads
def test_trainers_of_one_shape_share_their_thread_choice():
    """A grid search makes a trainer per fit: each learns from what the ones before it
    measured instead of timing one thread again. Another shape, batch or solver has a
    choice of its own."""
    def choice(units, batch_size=64, solver="adam"):
        network = FlatNetwork(units, np.float64)
        trainer = Trainer(network, "relu", "softmax", solver=solver, batch_size=batch_size)
        run_plan, _, thread_choice = trainer._plan_for(batch_size)
        assert run_plan.parallel
        return thread_choice

    first = choice([20, 64, 3])
    assert choice([20, 64, 3]) is first
    assert choice([20, 64, 4]) is not first
    assert choice([20, 64, 3], batch_size=80) is not first
    assert choice([20, 64, 3], solver="sgd") is not first


@two_threads
@pytest.mark.parametrize("units", [[10, 64, 32, 3], [150, 256, 12]], ids=["loops", "blas"])
def test_calls_from_four_python_threads_give_the_serial_results(units):
    """Concurrent calls on two threads each give, bitwise, what one call on one thread
    from the main thread gives. BLAS plans hold BLAS to one thread until the last
    concurrent call ends: a call that lifted the limit while another ran once gave that
    one products on BLAS's threads, other in the last bit."""
    coefs, intercepts, X, Y, _ = make_problem(13, units, 1000, "softmax")
    network = FlatNetwork.from_arrays(coefs, intercepts)
    results, errors = [None] * 4, []

    def work(slot, barrier, repeats):
        try:
            barrier.wait()
            for _ in range(repeats):
                weights = train_copy(network, X, Y, n_threads=2)
                grads = kernels.loss_and_gradients(coefs, intercepts, X, Y, "relu", "softmax",
                                                   0.1, None, 2)
            results[slot] = (weights, grads)
        except Exception as error:  # surfaced in the main thread below
            errors.append(error)

    expected_weights = train_copy(network, X, Y, n_threads=1)
    expected_grads = kernels.loss_and_gradients(coefs, intercepts, X, Y, "relu", "softmax",
                                                0.1, None, 1)
    barrier = threading.Barrier(4)
    threads = [threading.Thread(target=work, args=(slot, barrier, 3)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    for weights, (loss, coef_grads, intercept_grads) in results:
        np.testing.assert_array_equal(weights, expected_weights)
        assert loss == expected_grads[0]
        for got, want in zip(coef_grads + intercept_grads,
                             expected_grads[1] + expected_grads[2]):
            np.testing.assert_array_equal(got, want)


@two_threads
def test_blas_stays_on_one_thread_until_the_last_section_ends():
    """Two BLAS sections on two Python threads, the first ending while the second runs:
    BLAS stays on one thread until the second ends, then has its count back. Here the
    main thread controls OpenBLAS for threadpoolctl, which then ignores other threads'
    limits; the limit holds all the same."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    first_in, second_in, first_out = (threading.Event() for _ in range(3))
    seen, errors = {}, []

    def first():
        try:
            with parallel_section(None, blas_in_threads=True):
                first_in.set()
                assert second_in.wait(timeout=60)
                seen["both"] = blas_threads()
        except Exception as error:  # surfaced in the main thread below
            errors.append(error)
        finally:
            first_out.set()

    def second():
        try:
            assert first_in.wait(timeout=60)
            with parallel_section(None, blas_in_threads=True):
                second_in.set()
                assert first_out.wait(timeout=60)
                seen["second alone"] = blas_threads()
        except Exception as error:
            errors.append(error)

    with threadpool_limits(limits=2, user_api="blas"):  # the main thread takes control
        before = blas_threads()
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        after = blas_threads()
    assert not errors, errors
    assert max(before) == 2
    assert seen == {"both": [1] * len(before), "second alone": [1] * len(before)}
    assert after == before


@two_threads
def test_one_trainer_called_from_two_python_threads_runs_one_call_at_a_time():
    """A call's threads share the trainer's buffers and meeting place, so a trainer runs
    one call at a time: two threads calling it at once get, in turn, what two calls in a
    row give (here all alike: a learning rate of zero leaves the weights as they are)."""
    coefs, intercepts, X, Y, _ = make_problem(21, [10, 64, 32, 3], 1000, "softmax")
    network = FlatNetwork.from_arrays(coefs, intercepts)
    trainer = Trainer(network, "relu", "softmax", batch_size=200, n_threads=2)
    Xc, Yc, no_weights = trainer.prepare(X, Y)
    order = np.arange(1000, dtype=np.int64)
    expected = trainer.run_epochs(Xc, Yc, no_weights, order, 0.0, 20)
    losses, barrier = [], threading.Barrier(2)

    def work():
        barrier.wait()
        for _ in range(5):
            losses.append(trainer.run_epochs(Xc, Yc, no_weights, order, 0.0, 20))

    threads = [threading.Thread(target=work, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(losses) == 10, "a call never returned"
    for got in losses:
        np.testing.assert_array_equal(got, expected)


def test_a_pickled_trainer_trains_on_as_the_original():
    import pickle

    coefs, intercepts, X, Y, _ = make_problem(22, [10, 64, 32, 3], 600, "softmax")
    trainer = Trainer(FlatNetwork.from_arrays(coefs, intercepts), "relu", "softmax")
    Xc, Yc, no_weights = trainer.prepare(X, Y)
    order = np.arange(600, dtype=np.int64)
    trainer.run_epochs(Xc, Yc, no_weights, order, 1e-3, 2)
    copy = pickle.loads(pickle.dumps(trainer))
    for each in (trainer, copy):
        each.run_epochs(Xc, Yc, no_weights, order, 1e-3, 2)
    np.testing.assert_array_equal(copy.network.theta, trainer.network.theta)


@two_threads
@pytest.mark.parametrize("units", [[10, 64, 32, 3], [7, 300, 5]], ids=["copies", "slices"])
def test_buffers_start_cache_lines(units):
    """The weights, optimizer state and every thread's row of every per-thread buffer
    start a cache line (64 bytes), also after pickling. (The team tests above train on
    these padded rows.)"""
    import pickle

    def assert_aligned(trainer):
        run_plan, work, _ = trainer._plan_for(200)
        assert run_plan.parallel
        arrays = [trainer.network.theta, trainer.state_1, trainer.state_2, work.sync]
        for buffer in (work.works, work.grads, work.scratch, work.theta_copies,
                       *work.state_copies):
            arrays.extend(buffer)
        for array in arrays:
            assert array.ctypes.data % _buffers.CACHE_LINE == 0

    coefs, intercepts, X, Y, _ = make_problem(23, units, 400, "softmax")
    trainer = Trainer(FlatNetwork.from_arrays(coefs, intercepts), "relu", "softmax",
                      n_threads=2)
    assert_aligned(trainer)
    assert trainer._plan_for(200)[1].grads.shape[1] > trainer.network.n_params  # padded
    Xc, Yc, no_weights = trainer.prepare(X, Y)
    order = np.arange(400, dtype=np.int64)
    trainer.run_epochs(Xc, Yc, no_weights, order, 1e-3, 2)
    assert_aligned(pickle.loads(pickle.dumps(trainer)))


@fast_inputs
@pytest.mark.parametrize(("units", "activation"), [([4, 9, 6, 3], "silu"), ([3, 9, 2], "relu")],
                         ids=["deep", "shallow"])
def test_predict_equals_reference_forward(units, activation):
    coefs, intercepts, X, _, _ = make_problem(17, units, 130, "softmax")
    network = FlatNetwork.from_arrays(coefs, intercepts)
    got = kernels.predict(network, X, activation, "softmax")
    _, activations = reference.forward(coefs, intercepts, X, activation, "softmax")
    assert relative_error(got, activations[-1]) <= 1e-12


@fast_inputs
def test_loop_products_for_every_remainder(rng):
    """The loop kernels work in blocks of four rows and two or four inputs; every
    remainder of rows and inputs, and blocks of zero inputs (skipped), give NumPy's
    products. So do the forms for layers with few outputs."""
    for fan_in in range(1, 10):
        for rows in range(1, 10):
            for fan_out in (1, 2, 3, 10, 17):
                A = rng.standard_normal((rows + 2, fan_in))
                A[:, ::3] = 0.0  # ReLU zeros: whole blocks of them for small fan_in
                W = rng.standard_normal((fan_in, fan_out))
                b = rng.standard_normal(fan_out)
                D = rng.standard_normal((rows + 2, fan_out))
                Z = np.full((rows + 2, fan_out), np.nan)
                _layers._dense_loops(A, W, b, Z, rows)
                np.testing.assert_allclose(Z[:rows], A[:rows] @ W + b, rtol=1e-13, atol=1e-13)
                assert np.isnan(Z[rows:]).all()  # rows past the tile's are left alone
                G, g = rng.standard_normal((fan_in, fan_out)), rng.standard_normal(fan_out)
                expected_G, expected_g = G + A[:rows].T @ D[:rows], g + D[:rows].sum(0)
                _layers._grad_loops(A, D, G, g, rows)
                np.testing.assert_allclose(G, expected_G, rtol=1e-13, atol=1e-13)
                np.testing.assert_allclose(g, expected_g, rtol=1e-13, atol=1e-13)
                D_prev = np.full((rows + 2, fan_in), np.nan)
                _layers._backprop_loops(D, W, D_prev, rows)
                np.testing.assert_allclose(D_prev[:rows], D[:rows] @ W.T, rtol=1e-13, atol=1e-13)
                # The forms for few outputs, on W.T and the transposed gradient.
                WT = np.ascontiguousarray(W.T)
                Z[:] = np.nan
                _layers._dense_narrow(A, WT, b, Z, rows)
                np.testing.assert_allclose(Z[:rows], A[:rows] @ W + b, rtol=1e-13, atol=1e-13)
                assert np.isnan(Z[rows:]).all()
                GT, g = np.full((fan_out, fan_in), np.nan), rng.standard_normal(fan_out)
                expected_g = g + D[:rows].sum(0)
                _layers._grad_narrow(A, D, GT, g, rows)
                np.testing.assert_allclose(GT, D[:rows].T @ A[:rows], rtol=1e-13, atol=1e-13)
                np.testing.assert_allclose(g, expected_g, rtol=1e-13, atol=1e-13)
                D_prev[:] = np.nan
                _layers._backprop_narrow(D, WT, D_prev, rows)
                np.testing.assert_allclose(D_prev[:rows], D[:rows] @ W.T, rtol=1e-13, atol=1e-13)
                assert np.isnan(D_prev[rows:]).all()


@fast_inputs
def test_flat_network_views_share_memory():
    network = FlatNetwork([3, 4, 2], np.float32)
    network.theta[:] = np.arange(network.n_params)
    assert network.coefs[0].shape == (3, 4) and network.intercepts[1].shape == (2,)
    network.coefs[1][0, 0] = -1.0
    assert network.theta[network.coef_off[1]] == -1.0
    assert network.n_params == 3 * 4 + 4 * 2 + 4 + 2


@pytest.mark.parametrize("n_rows", [1, 2, 3, 200, 624, 625, 3500])
def test_shuffle_draws_what_numpy_draws(n_rows):
    """Many shuffles in a row, so that the twister regenerates its state at every offset."""
    for seed in (0, 1, 2**32 - 1):
        numpy_state, ours = np.random.RandomState(seed), np.random.RandomState(seed)
        state = _random.shuffle_state(ours, n_rows)
        for _ in range(7):
            expected = np.arange(n_rows, dtype=np.int64) * 3
            got = expected.copy()
            numpy_state.shuffle(expected)
            _random.shuffle(got, state)
            assert got.tolist() == expected.tolist()
        assert ours.randint(2**31) == numpy_state.randint(2**31)  # and left the same state
    other_generator = np.random.RandomState(np.random.PCG64(0))
    assert _random.shuffle_state(other_generator, 10) is None
    assert _random.shuffle_state(np.random.default_rng(0), 10) is None


@pytest.mark.parametrize("generator", ["MT19937", "PCG64"])
def test_run_epochs_shuffles_before_each_epoch_as_numpy(generator):
    """In compiled code on NumPy's usual generator, by RandomState.shuffle on others."""
    coefs, intercepts, X, Y, _ = make_problem(2, [4, 9, 3], 300, "softmax")
    runs = []
    for in_one_call in (True, False):
        network = FlatNetwork.from_arrays(coefs, intercepts)
        trainer = Trainer(network, "relu", "softmax", batch_size=64)
        Xc, Yc, no_weights = trainer.prepare(X, Y)
        random_state = np.random.RandomState(getattr(np.random, generator)(5))
        order = np.arange(300, dtype=np.int64)
        if in_one_call:
            losses = trainer.run_epochs(Xc, Yc, no_weights, order, 1e-2, 4,
                                        random_state=random_state)
        else:
            losses = []
            for _ in range(4):
                random_state.shuffle(order)
                losses.extend(trainer.run_epochs(Xc, Yc, no_weights, order, 1e-2))
        runs.append((list(losses), network.theta.tolist(), order.tolist(), random_state.rand()))
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="writable C-contiguous int64"):
        trainer.run_epochs(Xc, Yc, no_weights, np.arange(300, dtype=np.int32), 1e-2,
                           random_state=random_state)


def test_warmup_compiles_and_runs():
    from fastmlp.kernels import _epochs, _optimizers

    report = fastmlp.warmup(dtypes=("float64",))
    assert list(report) == ["float64"] and report["float64"]["seconds"] >= 0
    assert fastmlp.warmup(dtypes=("float64",))["float64"]["kernels"] == []  # all ready
    compiled = [_epochs.train_epochs_alone, *_optimizers.FINISH_AND_STEP.values()]
    if config.NUMBA_NUM_THREADS >= 2:
        compiled += [_epochs.train_epochs_parallel]
    for kernel in compiled if not config.DISABLE_JIT else []:
        assert kernel.signatures, kernel.__name__


@pytest.mark.skipif(config.DISABLE_JIT, reason="inspects compiled code")
def test_training_loops_hold_no_copy_of_the_tile_or_step_code():
    """The tile's forward/backward pass and the optimizer step are compiled once: the
    loops around them call them by address (fastmlp/kernels/_calls.py). A direct call
    would link a copy of their code into every loop, and double a first fit's compile."""
    from numba import njit

    from fastmlp.kernels import _epochs

    fastmlp.warmup(dtypes=("float64",))
    loops = [_epochs.train_epochs_alone, _layers.forward_rows]
    if config.NUMBA_NUM_THREADS >= 2:  # the team's region, and each member's epochs
        loops += [_epochs.train_epochs_parallel, _epochs._member_epochs]
    for loop in loops:
        # Compiled afresh (not loaded from the cache), so that its LLVM IR is at hand,
        # with the IR of every kernel it calls directly (the parallel regions included).
        fresh = njit(error_model="numpy")(loop.py_func)
        fresh.compile(loop.signatures[0])
        code = fresh.inspect_llvm(loop.signatures[0])
        assert "tile_gradient" not in code and "finish_and_step" not in code
        assert loop is _epochs._member_epochs or "_member_epochs" not in code
        assert loop.__name__ in code.split("define", 2)[1]  # the IR is the loop's own


def _kernels_with_loops():
    """(module, name, calls wide_vectors first) for every kernel of fastmlp/kernels that
    Numba compiles on its own (a jitted function neither inlined by Numba nor a parallel
    region, whose loops Numba outlines into functions of its own) and that loops, in its
    own body or in a function Numba inlines into it."""
    import ast
    import pathlib

    def njit_options(node):
        for decorator in getattr(node, "decorator_list", []):
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            # (numba.njit, or fastmlp.kernels._calls.jit, which takes njit's options)
            if getattr(target, "id", getattr(target, "attr", None)) in ("njit", "jit"):
                keywords = call.keywords if call else []
                return {k.arg: getattr(k.value, "value", None) for k in keywords}
        return None

    functions = {}  # (module, name): (node, options)
    for path in sorted(pathlib.Path(kernels.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            options = njit_options(node)
            if isinstance(node, ast.FunctionDef) and options is not None:
                functions[path.stem, node.name] = (node, options)

    def inlined(module, name):
        """The function Numba inlines for a call of ``name`` in ``module`` (its own
        module's, else an imported one), or None."""
        for key in [(module, name)] + [key for key in functions if key[1] == name]:
            if key in functions and functions[key][1].get("inline") == "always":
                return key
        return None

    def loops(key, seen=()):
        node = functions[key][0]
        if any(isinstance(inner, (ast.For, ast.While)) for inner in ast.walk(node)):
            return True
        called = {getattr(inner.func, "id", None) for inner in ast.walk(node)
                  if isinstance(inner, ast.Call)}
        callees = {inlined(key[0], name) for name in called} - {None, *seen}
        return any(loops(callee, seen + (key,)) for callee in callees)

    found = []
    for (module, name), (node, options) in functions.items():
        if options.get("inline") == "always" or options.get("parallel"):
            continue
        if not loops((module, name)):
            continue
        body = node.body[1:] if ast.get_docstring(node) is not None else node.body
        found.append((module, name, bool(body) and ast.unparse(body[0]) == "wide_vectors()"))
    return found


@pytest.mark.skipif(config.DISABLE_JIT, reason="inspects compiled code")
def test_kernels_ask_for_wide_vectors():
    """Each kernel compiled on its own that loops calls ``_math.wide_vectors()`` first (a
    loop is vectorized in its own function, before LLVM inlines it anywhere), but those
    of ``_math.DEFAULT_VECTORS``, and the call gives the kernel's function LLVM's
    attribute for the CPU's widest vectors. (A parallel region's loop body is a function
    Numba outlines, without the attribute: the regions only call other kernels.)"""
    import re

    from numba import njit

    from fastmlp.kernels import _optimizers

    found = _kernels_with_loops()
    assert len(found) > 40  # (the walk found the kernels)
    without = sorted(f"{module}.{name}" for module, name, calls in found if not calls)
    assert without == sorted(_math.DEFAULT_VECTORS)  # each with its reason there

    # The SGD step, compiled afresh (not loaded from the cache), so that its LLVM IR is
    # at hand: the attribute is on the step's own function.
    signature = _optimizers.finish_and_step_signature(np.float64)
    fresh = njit(error_model="numpy")(_optimizers.sgd_finish_and_step.py_func)
    fresh.compile(signature.args)
    code = fresh.inspect_llvm(signature.args)
    own = next(line for line in code.splitlines()
               if line.startswith("define") and "sgd_finish_and_step" in line
               and "cpython" not in line and "cfunc" not in line)
    group = re.search(r"#(\d+) \{$", own).group(1)
    assert _math.PREFER_WIDE_VECTORS in re.search(
        rf"^attributes #{group} = \{{(.*)\}}$", code, re.MULTILINE).group(1)


def _scaled_sum(x, scale, out):
    """A small function for the compiles below: out[0] = scale * sum(x), returned."""
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i]
    out[0] = scale * total
    return out[0]


@pytest.mark.skipif(config.DISABLE_JIT, reason="inspects compiled code")
@pytest.mark.parametrize("callers", ["python", "address", "kernels"])
def test_kernels_get_only_the_wrappers_their_callers_use(callers):
    """``_calls.jit(callers)`` compiles a function with Numba's wrapper for Python only
    for ``"python"``, the one callable from C only for ``"address"``, neither for
    ``"kernels"``; each is right called from a kernel, by address where it has the
    wrapper for C, and from Python, where the others run through a compiled caller."""
    from numba import njit, types

    from fastmlp.kernels._calls import CompiledKernel, jit

    function = jit(callers, error_model="numpy")(_scaled_sum)
    signature = types.float64(types.float64[::1], types.float64, types.float64[::1])
    function.compile(signature.args)
    code = function.inspect_llvm(signature.args)
    defined = [line for line in code.splitlines() if line.startswith("define")]
    assert any("cpython" in line for line in defined) == (callers == "python")
    assert any("cfunc" in line for line in defined) == (callers == "address")

    x, out = np.arange(5.0), np.zeros(1)
    assert function(x, 2.0, out) == 20.0 and out[0] == 20.0  # from Python

    @njit
    def call(x, scale, out):
        return function(x, scale, out)

    assert call(x, 3.0, out) == 30.0 and out[0] == 30.0  # from a kernel
    if callers == "address":
        kernel = CompiledKernel(function, signature)
        assert kernel.address != 0

        @njit
        def call_by_address(kernel, x, scale, out):
            return kernel(x, scale, out)

        assert call_by_address(kernel, x, 4.0, out) == 40.0 and out[0] == 40.0
    else:  # no wrapper for C: no address to call (it would be null)
        with pytest.raises(TypeError, match="no wrapper callable from C"):
            CompiledKernel(function, signature)


@pytest.mark.skipif(config.DISABLE_JIT, reason="turns the JIT off after the import")
def test_a_kernels_part_called_from_python_with_the_jit_turned_off_runs_as_python(
        monkeypatch):
    """With the JIT turned off after the import, a function without the wrapper for
    Python, called from Python, runs as Python (its compiled caller would be Python too,
    and call it back without end)."""
    from fastmlp.kernels._calls import jit

    function = jit("kernels", error_model="numpy")(_scaled_sum)
    monkeypatch.setattr(config, "DISABLE_JIT", True)
    out = np.zeros(1)
    assert function(np.arange(5.0), 2.0, out) == 20.0 and out[0] == 20.0


def test_every_kernel_says_who_calls_it():
    """Every function of fastmlp/kernels that Numba compiles on its own is made with
    ``_calls.jit``, which names its callers (and so the wrappers it needs), not with
    ``numba.njit``: only those Numba inlines (``inline="always"``) may be (and ``_calls``,
    which makes ``jit``, compiles with ``njit`` its callers for Python)."""
    import ast
    import pathlib

    plain, named = [], 0
    for path in sorted(pathlib.Path(kernels.__file__).parent.glob("*.py")):
        if path.stem == "_calls":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            for decorator in getattr(node, "decorator_list", []):
                if not isinstance(decorator, ast.Call):
                    assert getattr(decorator, "id", None) != "njit", (path.stem, node.name)
                    continue
                name = getattr(decorator.func, "id", getattr(decorator.func, "attr", None))
                options = {k.arg: getattr(k.value, "value", None) for k in decorator.keywords}
                if name == "jit":
                    assert decorator.args[0].value in ("python", "address", "kernels")
                    named += 1
                elif name == "njit" and options.get("inline") != "always":
                    plain.append(f"{path.stem}.{node.name}")
    assert named > 40 and plain == []


@fast_inputs
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_tanh_is_numpys(dtype, rng):
    """The engine's own tanh (vectorizable, see _math.py) is within 2 ulp of NumPy's."""
    z = np.concatenate([
        rng.standard_normal(2000) * 4, rng.uniform(-0.7, 0.7, 2000),
        [0.0, 1e-300, 1e-30, 0.625, -0.625, 0.6249999, 19.9, 20.0, -25.0, 700.0],
    ]).astype(dtype)
    z = z[np.isfinite(z)].reshape(-1, 1)
    out = np.empty_like(z)
    _activations.activate(_activations.TANH, z, out, z.shape[0])
    expected = np.tanh(z.astype(np.float64))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=2 * np.finfo(dtype).eps, atol=0)

    specials = np.array([[np.nan], [np.inf], [-np.inf], [-0.0]], dtype=dtype)
    out = np.empty_like(specials)
    _activations.activate(_activations.TANH, specials, out, 4)
    np.testing.assert_array_equal(out.ravel(), [np.nan, 1.0, -1.0, 0.0])


def test_exp_and_log_are_numpys(rng):
    """The engine's own exp and log (vectorizable, see _math.py): within 1 ulp of NumPy's,
    exp also at its edges (overflow, subnormal results, underflow, inf and NaN)."""
    from numba import njit

    @njit
    def apply(function, x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = function(x[i])
        return out

    x = np.concatenate([rng.uniform(-750, 715, 20000), rng.standard_normal(20000) * 3, [
        0.0, 1e-300, 709.78, 709.79, -708.3, -708.4, -745.1, -745.2, np.inf, -np.inf]])
    with np.errstate(over="ignore"):
        expected = np.exp(x)
    got = apply(_math.exp, x)
    normal = np.isfinite(expected) & (expected >= np.finfo(np.float64).tiny)
    np.testing.assert_allclose(got[normal], expected[normal], rtol=np.finfo(float).eps, atol=0)
    np.testing.assert_allclose(got[~normal], expected[~normal], rtol=0, atol=5e-324)
    assert np.isnan(apply(_math.exp, np.array([np.nan])))[0]

    y = np.concatenate([rng.uniform(0, 1, 20000), 10.0 ** rng.uniform(-307, 308, 20000),
                        [np.finfo(float).tiny, np.finfo(float).eps, 1.0, 1 - 2**-53, 2**0.5]])
    np.testing.assert_allclose(apply(_math.log_positive, y), np.log(y),
                               rtol=np.finfo(float).eps, atol=np.finfo(float).eps)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_gelu_keeps_its_digits_where_tanh_nears_minus_one(dtype):
    """gelu = 0.5 z (1 + tanh(u)) and its derivative, to a few ulp of their float64
    values, also below z = -3, where 1 + tanh(u) computed as written cancels to nothing
    (float32 gradients were 3 % off there)."""
    z = np.linspace(-6.0, 4.0, 4001).astype(dtype).reshape(-1, 1)
    z64 = z.astype(np.float64)
    u = np.sqrt(2 / np.pi) * (z64 + 0.044715 * z64**3)
    # 1 + tanh(u) = 2 s and 1 - tanh(u)**2 = 4 s (1 - s), s = 1 / (1 + exp(-2u)).
    s, one_minus_s = 1 / (1 + np.exp(-2 * u)), 1 / (1 + np.exp(2 * u))
    slope = 2 * z64 * s * one_minus_s * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * z64**2)
    a, d = np.empty_like(z), np.ones_like(z)
    _activations.activate(_activations.GELU, z, a, z.shape[0])
    _activations.scale_by_derivative(_activations.GELU, z, a, d, z.shape[0])
    bound = 64 * np.finfo(dtype).eps
    assert np.all(np.abs(a - z64 * s) <= bound * np.abs(z64 * s))
    assert np.all(np.abs(d - (s + slope)) <= bound * (np.abs(s) + np.abs(slope)))


@two_threads
def test_blas_in_threads_restores_blas_threads():
    """A parallel plan with BLAS layers holds BLAS to one thread only while it runs."""
    from threadpoolctl import threadpool_info

    def blas_threads():
        return sorted(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")

    before = blas_threads()
    problem = make_problem(5, [200, 256, 12], 70, "softmax")
    assert kernels.plan([200, 256, 12], 70, 2).parallel
    assert_engines_agree(problem, "relu", "softmax", 0.0, False, 2, 1e-10)
    assert blas_threads() == before
