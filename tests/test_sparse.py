"""A sparse X (CSR rows) against the dense path and the NumPy reference on the densified
matrix: losses, gradients, outputs and training; the CSR checks at the engine's
boundary; weights identical to the bit for every thread count; memory.

Tolerances. The sparse path sums a row's nonzeros in their stored order, where the dense
loops add a row's inputs in blocks of four columns (or BLAS does, in its own order), and
it adds a chunk's rows one at a time into the first layer's gradient, where the dense
loops add blocks of four rows: the two differ only in the order of their sums. A sum of
n terms taken in two orders differs by at most about ``2 * n * eps`` times its sum of
|terms|; the comparisons allow ``4 * n * eps`` (the longest sum of the problem, over
rows or units) relative to the largest entry, the layers above it passing the
difference on with derivatives of about 1. Over 150 random problems of up to 700 rows
and 400 features the largest difference seen was 1.2e-15 (float64) and 1.2e-6
(float32), within a tenth of that bound.
"""


import numpy as np
import pytest
import scipy.sparse
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from numba import config

from conftest import (
    ALL_ACTIVATIONS,
    ALL_OUTPUTS,
    random_targets,
    relative_error,
    traced_peak,
)
from fastmlp import kernels, optim, reference
from fastmlp.kernels import FlatNetwork, Trainer, _api, _optimizers

# An IndexError in a kernel called by address (NUMBA_BOUNDSCHECK=1) cannot propagate
# through its C call: Python reports it as unraisable, which fails the test here.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

fast_inputs = pytest.mark.fast_inputs
two_threads = pytest.mark.skipif(
    config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 Numba threads"
)
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])


def random_csr(rng, n_rows, n_features, density, dtype=np.float64, *, index_dtype=np.int32,
               shuffled=False, duplicates=False, empty_rows=0, full_rows=0):
    """A CSR matrix of about ``density``, standard normal values, of the structure asked
    for: its first ``full_rows`` rows hold every feature, the next ``empty_rows`` none;
    column indices sorted within each row, or ``shuffled``; each column at most once a
    row, unless ``duplicates`` (a few columns stored twice, which SciPy sums); index
    arrays of ``index_dtype``, whatever SciPy would pick."""
    indptr, indices = [0], []
    for row in range(n_rows):
        if row < full_rows:
            columns = np.arange(n_features)
        elif row < full_rows + empty_rows:
            columns = np.arange(0)
        else:
            columns = np.flatnonzero(rng.random(n_features) < density)
        if duplicates and columns.size:
            columns = np.concatenate([columns, rng.choice(columns, 1 + columns.size // 3)])
        if shuffled:
            columns = rng.permutation(columns)
        indices.append(columns)
        indptr.append(indptr[-1] + columns.size)
    indices = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    data = rng.standard_normal(indices.size).astype(dtype)
    X = scipy.sparse.csr_matrix((data, indices, np.asarray(indptr)), shape=(n_rows, n_features))
    # SciPy's constructor makes indices that fit int32; set them as asked.
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    return X


def sparse_problem(seed, units, n_rows, density, output, dtype=np.float64, **structure):
    """Weights, a sparse X (see ``random_csr``), targets and sample weights. The first
    layer's weights are scaled by the square root of a row's expected nonzeros, the
    others' by their fan-in's, so that no layer saturates on average."""
    rng = np.random.default_rng(seed)
    X = random_csr(rng, n_rows, units[0], density, dtype, **structure)
    scales = [np.sqrt(max(1.0, density * units[0]))] + [np.sqrt(u) for u in units[1:-1]]
    coefs = [(rng.standard_normal((a, b)) / s).astype(dtype)
             for a, b, s in zip(units[:-1], units[1:], scales)]
    intercepts = [rng.standard_normal(b).astype(dtype) for b in units[1:]]
    Y = random_targets(rng, output, n_rows, units[-1], dtype)
    sample_weight = rng.uniform(0.1, 2.0, n_rows).astype(dtype)
    return coefs, intercepts, X, Y, sample_weight


def output_units(units, output, seed=0):
    """``units`` with an output layer the output activation takes (softmax: 2 or more)."""
    return units + [2 + seed % 2] if output == "softmax" else units + [1 + seed % 3]


def near_a_kink(coefs, intercepts, X, activation):
    """Whether a relu or leaky_relu pre-activation lies within rounding of 0 (2 units in
    the last place of the unit's sum of |a * w|, per layer), where the derivative jumps
    and the two paths' roundings may land on either side (as in ``test_kernels.py``)."""
    if activation not in ("relu", "leaky_relu"):
        return False
    eps = np.finfo(coefs[0].dtype).eps
    coefs, intercepts = ([a.astype(np.float64) for a in arrays] for arrays in (coefs, intercepts))
    pre_activations, activations = reference.forward(
        coefs, intercepts, X.astype(np.float64), activation, "identity")
    for depth in range(1, len(coefs)):
        z, a = pre_activations[depth - 1], activations[depth - 1]
        w, b = coefs[depth - 1], intercepts[depth - 1]
        if np.any(np.abs(z) <= 2 * depth * eps * (np.abs(a) @ np.abs(w) + np.abs(b))):
            return True
    return False


def order_tolerance(dtype, units, n_rows):
    """The module docstring's ``4 * n * eps`` for the problem's longest sum."""
    return 4 * max(*units, n_rows) * np.finfo(dtype).eps


def assert_arrays_close(got, want, rtol, floor):
    """Each pair within ``rtol`` of the largest entry of ``want``, or ``floor`` absolute."""
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert np.max(np.abs(g.astype(np.float64) - w), initial=0) <= (
            rtol * np.max(np.abs(w), initial=0) + floor)


def assert_sparse_matches(problem, activation, output, alpha, weighted, n_threads):
    """The engine's loss and gradients on the CSR matrix: those on its dense copy within
    the order tolerance, and the reference's on the densified matrix within
    ``test_kernels.py``'s tolerances (1e-10 in float64; in float32, twice the float32
    reference's own distance from the float64 one, or 4 eps where outputs saturate)."""
    coefs, intercepts, X, Y, sample_weight = problem
    weights = sample_weight if weighted else None
    dense = X.toarray()
    if near_a_kink(coefs, intercepts, dense, activation):
        pytest.skip("a pre-activation within rounding of relu's kink")
    got = kernels.loss_and_gradients(coefs, intercepts, X, Y, activation, output, alpha,
                                     weights, n_threads)
    on_dense = kernels.loss_and_gradients(coefs, intercepts, dense, Y, activation, output,
                                          alpha, weights, n_threads)
    dtype = X.dtype
    eps = np.finfo(dtype).eps
    units = [c.shape[0] for c in coefs] + [coefs[-1].shape[1]]
    # Where outputs saturate (log-losses clip at eps, and p - y cancels), the output error
    # is known to about eps whatever its size: 4 eps absolute, for each path.
    rtol, floor = order_tolerance(dtype, units, X.shape[0]), 4 * eps
    assert got[0].dtype == dtype
    assert abs(float(got[0]) - float(on_dense[0])) <= rtol * abs(float(on_dense[0])) + floor
    assert_arrays_close(got[1] + got[2], on_dense[1] + on_dense[2], rtol, floor)

    in_float64 = [[a.astype(np.float64) for a in arrays] for arrays in (coefs, intercepts)]
    expected = reference.loss_and_gradients(
        *in_float64, dense.astype(np.float64), Y.astype(np.float64), activation, output, alpha,
        None if weights is None else weights.astype(np.float64))
    arrays = got[1] + got[2]
    if dtype == np.float64:
        allowances, expected_loss, loss_floor = [1e-10] * len(arrays), expected[0], 0.0
    else:
        in_float32 = reference.loss_and_gradients(coefs, intercepts, dense, Y, activation,
                                                  output, alpha, weights)
        expected_loss = in_float32[0]
        # As for the arrays: also twice the float32 reference's own distance from the
        # float64 one (a saturated row's clipped log-loss differs there by much more
        # than a rounding).
        loss_floor = floor * max(1.0, float(np.max(np.abs(Y)))) + 2 * abs(
            float(in_float32[0]) - float(expected[0]))
        allowances = [
            1e-4 + max(2 * relative_error(ref, want), floor / max(np.max(np.abs(want)), floor))
            for ref, want in zip(in_float32[1] + in_float32[2], expected[1] + expected[2])]
    assert abs(float(got[0]) - float(expected_loss)) <= (
        (1e-10 if dtype == np.float64 else 1e-4) * abs(expected_loss) + loss_floor)
    for array, want, allowance in zip(arrays, expected[1] + expected[2], allowances):
        # Or within the floor absolutely: where the float64 gradient is exactly 0 (an
        # activation's derivative underflowing), float32's own functions may give 1e-17.
        assert (relative_error(array, want) <= allowance
                or np.max(np.abs(array - want)) <= floor), (relative_error(array, want),
                                                             allowance)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_features=st.integers(1, 400),
    hidden=st.lists(st.integers(1, 120), min_size=0, max_size=3),
    density=st.sampled_from([0.0, 0.003, 0.05, 0.3, 1.0]),
    n_rows=st.one_of(st.sampled_from([1, 2, 63, 64, 65, 129]), st.integers(1, 300)),
    activation=st.sampled_from(ALL_ACTIVATIONS),
    output=st.sampled_from(ALL_OUTPUTS),
    alpha=st.sampled_from([0.0, 1e-3, 0.5]),
    weighted=st.booleans(),
    n_threads=st.sampled_from([1, 2]),
    index_dtype=st.sampled_from([np.int32, np.int64]),
    shuffled=st.booleans(),
)
# Rows with every feature and empty rows, in one matrix.
@example(seed=1, n_features=40, hidden=[30], density=0.1, n_rows=70, activation="tanh",
         output="softmax", alpha=0.0, weighted=True, n_threads=2, index_dtype=np.int32,
         shuffled=True)
def test_sparse_rows_equal_dense_rows_and_the_reference(
    dtype, seed, n_features, hidden, density, n_rows, activation, output, alpha, weighted,
    n_threads, index_dtype, shuffled,
):
    units = output_units([n_features, *hidden], output, seed)
    full_rows, empty_rows = (seed % 3, seed % 5) if n_rows > 8 else (0, 0)
    problem = sparse_problem(seed, units, n_rows, density, output, dtype,
                             index_dtype=index_dtype, shuffled=shuffled,
                             full_rows=full_rows, empty_rows=empty_rows)
    assume(not near_a_kink(*problem[:3], activation))
    assert_sparse_matches(problem, activation, output, alpha, weighted, n_threads)


@fast_inputs
@DTYPES
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_every_activation_and_output_on_sparse_rows(activation, dtype):
    for seed, output in enumerate(ALL_OUTPUTS):
        units = output_units([12, 7, 5], output, seed)
        problem = sparse_problem(seed, units, 11, 0.3, output, dtype, full_rows=1, empty_rows=2)
        assert_sparse_matches(problem, activation, output, 0.1, True, 1)


# Every structure SciPy allows a CSR matrix to hold, in a matrix of its own.
STRUCTURES = {
    "sorted, int32": dict(),
    "sorted, int64": dict(index_dtype=np.int64),
    "unsorted, int32": dict(shuffled=True),
    "unsorted, int64": dict(shuffled=True, index_dtype=np.int64),
    "duplicated columns": dict(duplicates=True, shuffled=True),
    "all rows empty": dict(empty_rows=9),
    "all rows full": dict(full_rows=9),
    "empty and full rows": dict(full_rows=2, empty_rows=3),
}


@fast_inputs
@DTYPES
@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_every_csr_structure(structure, dtype):
    for n_features in (1, 3, 10):
        for seed, output in enumerate(ALL_OUTPUTS):
            units = output_units([n_features, 6], output, seed)
            problem = sparse_problem(seed, units, 9, 0.4, output, dtype, **STRUCTURES[structure])
            assert problem[2].indices.dtype == STRUCTURES[structure].get("index_dtype", np.int32)
            assert_sparse_matches(problem, "tanh", output, 0.01, seed % 2 == 0, 1)


@fast_inputs
@DTYPES
def test_one_row(dtype):
    for output in ALL_OUTPUTS:
        problem = sparse_problem(3, output_units([8, 5, 4], output), 1, 0.5, output, dtype)
        assert_sparse_matches(problem, "gelu", output, 0.0, True, 1)


# Each way a sparse X can run, pinned by a shape: (units, rows, density, threads, plan).
SPARSE_PATHS = {
    "no hidden layer": ([40, 3], 150, 0.2, 1, dict(blas=False, chunks=2)),
    "few hidden units (narrow on dense rows)": ([40, 5, 3], 150, 0.2, 2,
                                                dict(blas=False, chunks=2)),
    "deep": ([60, 20, 15, 10, 4], 301, 0.1, 2, dict(blas=False, chunks=2)),
    "few nonzeros a batch: one chunk": ([5000, 20, 3], 100, 0.001, 2,
                                        dict(blas=False, chunks=1)),
    # BLAS for the layers above the first, in tiles of 512 rows: several a chunk.
    "blas above": ([50, 200, 256, 4], 1100, 0.1, 2, dict(blas=True, chunks=2)),
}


@DTYPES
@pytest.mark.parametrize("path", sorted(SPARSE_PATHS))
def test_each_sparse_path(path, dtype):
    units, n_rows, density, n_threads, expected = SPARSE_PATHS[path]
    if n_threads > config.NUMBA_NUM_THREADS:
        pytest.skip("needs more Numba threads")
    for seed, output in enumerate(ALL_OUTPUTS):
        structure = dict(full_rows=1, empty_rows=1) if expected["chunks"] > 1 else {}
        with_output = output_units(units[:-1], output, seed)
        problem = sparse_problem(seed, with_output, n_rows, density, output, dtype, **structure)
        X = problem[2]
        run_plan = kernels.plan(with_output, n_rows, n_threads, None, X.nnz / n_rows)
        assert not run_plan.use_blas[0]  # the first layer runs on the nonzeros
        assert bool(run_plan.use_blas.any()) == expected["blas"]
        assert run_plan.n_chunks == expected["chunks"]
        assert_sparse_matches(problem, "tanh", output, 0.1, True, n_threads)


@fast_inputs
@DTYPES
@pytest.mark.parametrize(("units", "activation"), [([30, 9, 3], "silu"), ([3, 9, 2], "relu"),
                                                   ([30, 3], "identity")],
                         ids=["deep", "few inputs", "no hidden layer"])
def test_predict_on_sparse_rows(units, activation, dtype):
    coefs, intercepts, X, _, _ = sparse_problem(17, units, 130, 0.2, "softmax", dtype,
                                                full_rows=2, empty_rows=3, shuffled=True)
    network = FlatNetwork.from_arrays(coefs, intercepts)
    got = kernels.predict(network, X, activation, "softmax")
    on_dense = kernels.predict(network, X.toarray(), activation, "softmax")
    _, activations = reference.forward(coefs, intercepts, X.toarray(), activation, "softmax")
    eps = np.finfo(dtype).eps
    assert got.dtype == dtype
    # Both comparisons differ only in the order of the sums over units (the reference's
    # on BLAS).
    for want in (on_dense, activations[-1]):
        assert_arrays_close([got], [want], order_tolerance(dtype, units, 1), 4 * eps)


def test_predict_over_several_engine_calls():
    """More rows than one engine call works (``_api.SEGMENT_ROWS``)."""
    units = [20, 6, 3]
    coefs, intercepts, X, _, _ = sparse_problem(4, units, _api.SEGMENT_ROWS + 700, 0.1,
                                                "softmax")
    network = FlatNetwork.from_arrays(coefs, intercepts)
    got = kernels.predict(network, X, "tanh", "softmax")
    _, activations = reference.forward(coefs, intercepts, X.toarray(), "tanh", "softmax")
    assert relative_error(got, activations[-1]) <= 1e-12


@fast_inputs
@pytest.mark.parametrize("kind", ["csc", "coo", "csr_array", "lil"])
def test_other_sparse_formats_run_as_csr(kind):
    """Other formats are converted to CSR rows, as scikit-learn converts them: the same
    results to the bit (the same CSR matrix runs)."""
    coefs, intercepts, X, Y, weights = sparse_problem(8, [15, 6, 3], 40, 0.3, "softmax")
    other = {"csc": X.tocsc(), "coo": X.tocoo(), "csr_array": scipy.sparse.csr_array(X),
             "lil": X.tolil()}[kind]
    args = ("tanh", "softmax", 0.1, weights, 1)
    want = kernels.loss_and_gradients(coefs, intercepts, X, Y, *args)
    got = kernels.loss_and_gradients(coefs, intercepts, other, Y, *args)
    for g, w in zip([got[0], *got[1], *got[2]], [want[0], *want[1], *want[2]]):
        np.testing.assert_array_equal(g, w)
    network = FlatNetwork.from_arrays(coefs, intercepts)
    np.testing.assert_array_equal(kernels.predict(network, other, "tanh", "softmax"),
                                  kernels.predict(network, X, "tanh", "softmax"))
    trainer = Trainer(network, "tanh", "softmax", batch_size=16)
    prepared = trainer.prepare(other, Y)[0]
    assert prepared.format == "csr" and prepared.indices.dtype == np.int32
    np.testing.assert_array_equal(prepared.toarray(), X.toarray())


def sparse_training(network, X, Y, sample_weight, orders, **settings):
    """Weights and losses of a copy of ``network`` trained one epoch per order."""
    copy = FlatNetwork(network.units, network.dtype)
    copy.theta[:] = network.theta
    trainer = Trainer(copy, "tanh", "softmax", alpha=1e-3, batch_size=32, **settings)
    Xc, Yc, weights = trainer.prepare(X, Y, sample_weight)
    losses = [trainer.run_epochs(Xc, Yc, weights, order.astype(np.int64), 0.01)[0]
              for order in orders]
    return copy, losses


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
def test_training_on_sparse_rows_equals_reference_steps(solver, weighted):
    """Four epochs of 32-row batches on a CSR matrix, with empty rows and full rows: the
    reference's steps on the densified matrix (to 1e-9, as ``test_kernels.py``'s dense
    training is held: the steps pass the gradients' rounding on), and the engine's own
    on the dense copy (to the order tolerance)."""
    settings = SOLVERS[solver]
    units, n_rows = [25, 12, 7, 3], 150
    coefs, intercepts, X, Y, sample_weight = sparse_problem(
        5, units, n_rows, 0.2, "softmax", full_rows=3, empty_rows=4, shuffled=True)
    sample_weight = sample_weight if weighted else None
    rng = np.random.default_rng(0)
    orders = [rng.permutation(n_rows) for _ in range(4)]
    network = FlatNetwork.from_arrays(coefs, intercepts)
    on_sparse, sparse_losses = sparse_training(network, X, Y, sample_weight, orders,
                                               n_threads=1, **settings)
    on_dense, dense_losses = sparse_training(network, X.toarray(), Y, sample_weight, orders,
                                             n_threads=1, **settings)
    ref_coefs, ref_intercepts = [c.copy() for c in coefs], [b.copy() for b in intercepts]
    optimizer = reference_optimizer(ref_coefs + ref_intercepts, settings, 0.01)
    ref_losses = [reference.train_epoch(ref_coefs, ref_intercepts, X.toarray(), Y, order, 32,
                                        optimizer, "tanh", "softmax", 1e-3, sample_weight)
                  for order in orders]
    assert relative_error(sparse_losses, ref_losses) <= 1e-9
    for got, want in zip(on_sparse.coefs + on_sparse.intercepts, ref_coefs + ref_intercepts):
        assert relative_error(got, want) <= 1e-9
    rtol = order_tolerance(np.float64, units, n_rows)
    assert relative_error(sparse_losses, dense_losses) <= rtol
    assert relative_error(on_sparse.theta, on_dense.theta) <= rtol


# (units, density, chunks, the step on copies of the weights): the three team plans.
THREAD_CASES = {
    "two chunks, the step in slices": ([2000, 32, 3], 0.3, 2, False),
    "two chunks, the step on copies": ([300, 16, 3], 0.3, 2, True),
    "one chunk": ([2000, 32, 3], 0.0005, 1, False),
}


@two_threads
@pytest.mark.parametrize("case", sorted(THREAD_CASES))
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_sparse_rows_give_the_same_weights_on_every_thread_count(case, solver):
    """A batch's chunks are fixed by its rows and X (never by the threads), and so is
    every sum: 1, 2 or all the threads give weights identical to the bit, shuffled
    epochs and all."""
    units, density, chunks, copies = THREAD_CASES[case]
    coefs, intercepts, X, Y, _ = sparse_problem(12, units, 700, density, "softmax",
                                                full_rows=1, empty_rows=5, shuffled=True)
    run_plan = kernels.plan(units, 200, 2, None, X.nnz / X.shape[0])
    assert (run_plan.n_chunks, run_plan.replicated_step) == (chunks, copies)
    thetas = []
    for n_threads in (1, 2, None):
        network = FlatNetwork.from_arrays(coefs, intercepts)
        trainer = Trainer(network, "relu", "softmax", solver=solver, batch_size=200,
                          n_threads=n_threads)
        Xc, Yc, no_weights = trainer.prepare(X, Y)
        trainer.run_epochs(Xc, Yc, no_weights, np.arange(X.shape[0]), 1e-2, 3,
                           random_state=np.random.RandomState(1))
        thetas.append(network.theta.copy())
    for theta in thetas[1:]:
        np.testing.assert_array_equal(theta, thetas[0])


def _set(name, value):
    def change(X):
        setattr(X, name, value(X))
        return X

    return change


# A CSR matrix whose arrays were set by hand, as SciPy lets them be, each wrong in one way.
MALFORMED = {
    "indptr short": (_set("indptr", lambda X: X.indptr[:-1]), "indptr must have"),
    "indptr long": (_set("indptr", lambda X: np.append(X.indptr, X.indptr[-1])),
                    "indptr must have"),
    "indptr decreasing": (_set("indptr", lambda X: np.r_[X.indptr[:3], X.indptr[2] - 1,
                                                          X.indptr[4:]]), "never decrease"),
    "indptr not from 0": (_set("indptr", lambda X: X.indptr + 1), "start at 0"),
    "indptr past the values": (_set("indptr", lambda X: np.r_[X.indptr[:-1], X.nnz + 3]),
                               "past the"),
    "index negative": (_set("indices", lambda X: np.r_[-1, X.indices[1:]]), "indices must lie"),
    "index past the matrix": (_set("indices", lambda X: np.r_[X.indices[:-1], max(X.shape)]),
                              "indices must lie"),
    "more values than indices": (_set("data", lambda X: np.append(X.data, 1.0)),
                                 "same length"),
    "float indices": (_set("indices", lambda X: X.indices.astype(np.float64)),
                      "integer array"),
}


@fast_inputs
@pytest.mark.parametrize("fault", sorted(MALFORMED))
def test_a_malformed_csr_matrix_is_refused_before_any_kernel_runs(fault):
    change, message = MALFORMED[fault]
    coefs, intercepts, X, Y, _ = sparse_problem(6, [10, 8, 3], 30, 0.3, "softmax")
    network = FlatNetwork.from_arrays(coefs, intercepts)
    before = network.theta.copy()
    trainer = Trainer(network, "relu", "softmax", batch_size=16)
    prepared = trainer.prepare(X, Y)
    bad = change(X.copy())
    with pytest.raises(ValueError, match=message):
        trainer.prepare(bad, Y)
    with pytest.raises(ValueError, match=message):
        trainer.run_epochs(change(prepared[0].copy()), *prepared[1:], np.arange(30), 1e-2)
    with pytest.raises(ValueError, match=message):
        kernels.loss_and_gradients(coefs, intercepts, bad, Y, "relu", "softmax", 0.0, None)
    with pytest.raises(ValueError, match=message):
        kernels.predict(network, bad, "relu", "softmax")
    np.testing.assert_array_equal(network.theta, before)
    # The same faults in a CSC matrix's arrays, which are checked before its conversion.
    with pytest.raises(ValueError, match=message):
        kernels.predict(network, change(X.tocsc()), "relu", "softmax")


@fast_inputs
def test_sparse_data_must_match_the_network():
    coefs, intercepts, X, Y, _ = sparse_problem(6, [10, 8, 3], 30, 0.3, "softmax")
    network = FlatNetwork.from_arrays(coefs, intercepts)
    trainer = Trainer(network, "relu", "softmax", batch_size=16)
    Xc, Yc, no_weights = trainer.prepare(X, Y)
    order = np.arange(30)
    with pytest.raises(ValueError, match="features"):
        trainer.run_epochs(trainer.prepare(X[:, :9], Y)[0], Yc, no_weights, order, 1e-2)
    with pytest.raises(ValueError, match="Y must have shape"):
        trainer.run_epochs(Xc[:29], Yc, no_weights, order[:29], 1e-2)
    with pytest.raises(ValueError, match="float64"):
        trainer.run_epochs(Xc.astype(np.float32), Yc, no_weights, order, 1e-2)
    with pytest.raises(ValueError, match="CSR"):
        trainer.run_epochs(Xc.tocsc(), Yc, no_weights, order, 1e-2)
    with pytest.raises(ValueError, match="row indices"):
        trainer.run_epochs(Xc, Yc, no_weights, order + 1, 1e-2)


# --- memory ----------------------------------------------------------------------------
#
# tracemalloc counts every NumPy array (the engine's buffers, a copy of X or of its rows,
# scikit-learn's temporaries) at its allocation; the kernels themselves allocate nothing
# on a sparse X but the shuffle's scratch (8 bytes a row), which it does not see.

#: What the engine may allocate beyond scikit-learn's MLPClassifier on the same fit or
#: prediction.
ALLOWANCE = 10 * 2**20
#: The small arrays of an engine call, whatever the data's size (each epoch's loss, empty
#: and read-only views, the team's meeting place): a few kB.
SMALL_ARRAYS = 2**16


def text_like(n_rows, seed=0):
    """A bag-of-words X of 10000 features, 0.1 % of them nonzero, and 10 classes."""
    from sklearn.datasets import make_multilabel_classification

    X, labels = make_multilabel_classification(
        n_samples=n_rows, n_features=10000, n_classes=10, n_labels=1, length=10,
        allow_unlabeled=False, sparse=True, return_indicator="dense", random_state=seed)
    return X, labels.argmax(axis=1)


def engine_fit(X, y, n_epochs, n_threads=None):
    """scikit-learn's fit of hidden (100,) with Adam, in the engine's pieces: the weights,
    the trainer, its data and the epochs."""
    network = FlatNetwork([X.shape[1], 100, 10], np.float64)
    network.theta[:] = np.random.RandomState(0).uniform(-0.02, 0.02, network.n_params)
    trainer = Trainer(network, "relu", "softmax", solver="adam", alpha=1e-4, batch_size=200,
                      n_threads=n_threads)
    Xc, Yc, no_weights = trainer.prepare(X, np.eye(10)[y])
    trainer.run_epochs(Xc, Yc, no_weights, np.arange(X.shape[0]), 1e-3, n_epochs,
                       random_state=np.random.RandomState(0))
    return network, trainer


def sklearn_fit(X, y, n_epochs):
    import warnings

    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier(hidden_layer_sizes=(100,), max_iter=n_epochs, random_state=0,
                             n_iter_no_change=np.inf).fit(X, y)


def test_a_sparse_fit_allocates_no_more_than_scikit_learns():
    X, y = text_like(4000)
    engine_fit(X[:300], y[:300], 1)  # kernels compiled or loaded, and
    sklearn_fit(X[:300], y[:300], 1)  # scikit-learn's modules imported, untraced
    ours, _ = traced_peak(lambda: engine_fit(X, y, 2))
    theirs, _ = traced_peak(lambda: sklearn_fit(X, y, 2))
    assert ours <= theirs + ALLOWANCE, (ours / 2**20, theirs / 2**20)


def test_a_sparse_prediction_allocates_no_more_than_scikit_learns():
    X, y = text_like(4000)
    network, _ = engine_fit(X[:300], y[:300], 1)
    model = sklearn_fit(X[:300], y[:300], 1)
    kernels.predict(network, X[:10], "relu", "softmax")  # untraced, as above
    model.predict_proba(X[:10])
    ours, probabilities = traced_peak(lambda: kernels.predict(network, X, "relu", "softmax"))
    theirs, _ = traced_peak(lambda: model.predict_proba(X))
    assert probabilities.shape == (4000, 10)
    assert ours <= theirs + ALLOWANCE, (ours / 2**20, theirs / 2**20)


def test_sparse_epochs_allocate_the_engines_buffers_and_nothing_the_size_of_x():
    """Training on a sparse X allocates the engine's own buffers (gradient and a
    workspace of the layers' tiles, at the first call; the weights and optimizer state
    exist before) and, at every call, 8 bytes a row for the row pointers made int64, a
    few small arrays and, every few calls, the look for unusual weights' temporaries
    (a chunk of values at a time: _optimizers.has_unusual_values): never a tile of X's
    rows densified (64 rows of 10000 features would be 5 MB)."""
    X, y = text_like(4000)
    engine_fit(X[:300], y[:300], 1)  # kernels compiled or loaded
    network = FlatNetwork([X.shape[1], 100, 10], np.float64)
    trainer = Trainer(network, "relu", "softmax", solver="adam", batch_size=200)
    Xc, Yc, no_weights = trainer.prepare(X, np.eye(10)[y])
    order = np.arange(X.shape[0])

    def epochs():
        return trainer.run_epochs(Xc, Yc, no_weights, order, 1e-3, 2)

    first, _ = traced_peak(epochs)
    work = trainer._workspace
    assert work.works.shape[1] < 64 * X.shape[1]  # no room for a tile of input rows
    buffers = sum(array.nbytes for array in (work.works, work.grads, work.scratch,
                                             work.theta_copies, *work.state_copies))
    look = _optimizers.UNUSUAL_CHUNK * 9  # a shifted copy and a mask
    per_call = 8 * (X.shape[0] + 1) + SMALL_ARRAYS + look
    assert first <= buffers + per_call
    again, _ = traced_peak(epochs)  # the buffers are made once
    assert again <= per_call
