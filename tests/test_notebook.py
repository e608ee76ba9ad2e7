"""The notebook drop-in against an independent per-example implementation of its formulas."""

import numpy as np
import pytest

from conftest import relative_error
from fastmlp import notebook
from fastmlp.bench import notebook_loop
from fastmlp.cli import moons_data

BACKENDS = ["numpy", "numba"]


@pytest.fixture(scope="module")
def moons():
    return moons_data()


def random_model(rng, n_feature=2, n_hidden=7, n_class=3, scale=1.0):
    return dict(
        W1=scale * rng.standard_normal((n_feature + 1, n_hidden)),
        W2=scale * rng.standard_normal((n_hidden + 1, n_class)),
    )


def test_init_weights_draws_like_the_notebook():
    np.random.seed(7)
    model = notebook.init_weights()
    np.random.seed(7)
    W1 = np.random.randn(3, 100)
    W2 = np.random.randn(101, 2)
    assert list(model) == ["W1", "W2"]
    np.testing.assert_array_equal(model["W1"], W1)
    np.testing.assert_array_equal(model["W2"], W2)


def test_init_weights_module_defaults_and_overrides(monkeypatch):
    monkeypatch.setattr(notebook, "n_feature", 5)
    model = notebook.init_weights(8, n_class=4)
    assert model["W1"].shape == (6, 8) and model["W2"].shape == (9, 4)


def test_softmax_matches_notebook_and_survives_large_logits(rng):
    x = rng.standard_normal(5)
    np.testing.assert_allclose(notebook.softmax(x), notebook_loop.softmax(x), rtol=1e-15)
    big = np.array([1000.0, 999.0, -5.0])
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(notebook_loop.softmax(big)).any()  # the notebook overflows
    expected = np.exp(big - 1000.0) / np.exp(big - 1000.0).sum()
    np.testing.assert_allclose(notebook.softmax(big), expected, rtol=1e-15)


def test_forward_matches_notebook_for_one_example_and_a_batch(rng):
    model = random_model(rng)
    X = rng.standard_normal((9, 2))
    h_batch, p_batch = notebook.forward(X, model)
    for i, x in enumerate(X):
        h_ref, p_ref = notebook_loop.forward(x, model)
        h, p = notebook.forward(x, model)
        assert h.shape == h_ref.shape and p.shape == p_ref.shape
        np.testing.assert_allclose(h, h_ref, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(p, p_ref, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(h_batch[i], h_ref, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(p_batch[i], p_ref, rtol=1e-13, atol=1e-15)


def test_backward_matches_notebook(rng):
    model = random_model(rng)
    xs = rng.standard_normal((11, 2))
    hs = np.hstack([np.maximum(rng.standard_normal((11, 7)), 0), np.ones((11, 1))])
    errs = rng.standard_normal((11, 3))
    ours = notebook.backward(model, xs, hs, errs)
    theirs = notebook_loop.backward(model, xs, hs, errs)
    for layer in ("W1", "W2"):
        assert relative_error(ours[layer], theirs[layer]) <= 1e-14


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_samples", [1, 2, 37])
def test_get_gradient_matches_notebook(rng, backend, n_samples):
    model = random_model(rng)
    X = rng.standard_normal((n_samples, 2))
    y = rng.integers(0, 3, n_samples).astype(float)  # the notebook takes int(label)
    ours = notebook.get_gradient(model, X, y, backend=backend)
    theirs = notebook_loop.get_gradient(model, X, y)
    assert list(ours) == ["W1", "W2"]
    for layer in ("W1", "W2"):
        # Batched products sum in another order than per-example ones: a few roundings.
        assert relative_error(ours[layer], theirs[layer]) <= 1e-13


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_step_and_ascent_match_notebook_and_leave_input_alone(rng, backend):
    model = random_model(rng, n_class=2)
    before = {k: v.copy() for k, v in model.items()}
    X = rng.standard_normal((50, 2))
    y = rng.integers(0, 2, 50)
    stepped = notebook.gradient_step(model, X, y, learning_rate=0.3, backend=backend)
    expected = notebook_loop.gradient_step(model, X, y, learning_rate=0.3)
    for layer in model:
        np.testing.assert_array_equal(model[layer], before[layer])
        assert relative_error(stepped[layer], expected[layer]) <= 1e-13

    trained = notebook.gradient_ascent(model, X, y, no_iter=5, verbose=False, backend=backend)
    expected = model
    for _ in range(5):
        expected = notebook_loop.gradient_step(expected, X, y)
    for layer in model:
        assert relative_error(trained[layer], expected[layer]) <= 1e-12


def test_steps_with_new_labels_shapes_and_threads_use_their_own_targets(rng):
    """The Numba steps keep a trainer and the one-hot targets per thread: new labels,
    a new network shape and other threads each get theirs."""
    import threading

    X = rng.standard_normal((60, 2))
    y = rng.integers(0, 3, 60)
    models = [random_model(rng, n_hidden=7), random_model(rng, n_hidden=5)]
    cases = [(models[0], y), (models[0], (y + 1) % 3), (models[1], y), (models[0], y)]
    expected = [notebook_loop.gradient_step(model, X, labels) for model, labels in cases]
    for (model, labels), want in zip(cases, expected):
        got = notebook.gradient_step(model, X, labels)
        for layer in got:
            assert relative_error(got[layer], want[layer]) <= 1e-13
    results = [None] * len(cases)

    def step(slot):
        model, labels = cases[slot]
        for _ in range(20):
            results[slot] = notebook.gradient_step(model, X, labels)

    threads = [threading.Thread(target=step, args=(slot,)) for slot in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(results, expected):
        for layer in got:
            assert relative_error(got[layer], want[layer]) <= 1e-13


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_logits_give_finite_correct_gradients(rng, backend):
    model = random_model(rng, n_class=2, scale=300.0)
    X = rng.standard_normal((20, 2))
    y = rng.integers(0, 2, 20)
    with np.errstate(over="ignore", invalid="ignore"):
        naive = notebook_loop.get_gradient(model, X, y)
    assert any(np.isnan(g).any() for g in naive.values())  # the notebook breaks down here
    grad = notebook.get_gradient(model, X, y, backend=backend)
    # Independent stable computation: shift the logits before exponentiating.
    Xb = np.hstack([X, np.ones((20, 1))])
    z1 = Xb @ model["W1"]
    h = np.hstack([np.maximum(z1, 0), np.ones((20, 1))])
    z2 = h @ model["W2"]
    p = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    errs = np.eye(2)[y] - p
    expected = notebook_loop.backward(model, X, h, errs)
    for layer in ("W1", "W2"):
        assert np.all(np.isfinite(grad[layer]))
        assert relative_error(grad[layer], expected[layer]) <= 1e-12


def test_gradient_ascent_prints_like_the_notebook(rng, capsys):
    model = random_model(rng, n_class=2)
    X, y = rng.standard_normal((10, 2)), rng.integers(0, 2, 10)
    notebook.gradient_ascent(model, X, y, no_iter=3)
    assert capsys.readouterr().out == "Iteration 0\nIteration 1\nIteration 2\n"
    notebook.gradient_ascent(model, X, y, no_iter=3, verbose=False)
    assert capsys.readouterr().out == ""


def _test_accuracy(model, X_test, y_test):
    _, prob = notebook.forward(X_test, model)
    return np.mean(prob.argmax(axis=1) == y_test)


@pytest.mark.parametrize("backend", BACKENDS)
def test_notebook_experiment_200_iterations(moons, backend):
    X_train, X_test, y_train, y_test = moons
    for seed in range(5):
        np.random.seed(seed)
        model = notebook.init_weights()
        model = notebook.gradient_ascent(
            model, X_train, y_train, no_iter=200, verbose=False, backend=backend
        )
        assert _test_accuracy(model, X_test, y_test) >= 0.985


@pytest.mark.parametrize("backend", BACKENDS)
def test_notebook_experiment_10_iterations(moons, backend):
    X_train, X_test, y_train, y_test = moons
    accuracies = []
    for seed in range(10):
        np.random.seed(seed)
        model = notebook.init_weights()
        model = notebook.gradient_ascent(
            model, X_train, y_train, no_iter=10, verbose=False, backend=backend
        )
        accuracies.append(_test_accuracy(model, X_test, y_test))
    assert 0.80 <= np.mean(accuracies) <= 0.93
