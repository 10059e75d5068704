"""The math of docs/math.md: worked examples, invariances, finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from softmax_cli.nn import MLP, cross_entropy, log_softmax, softmax, softmax_cross_entropy
from softmax_cli.nn import functional
from softmax_cli.nn.gradcheck import check_gradients
from softmax_cli.optim import SGD

TOLERANCE = 1e-6   # relative error of backprop against central differences (math note, example 4)

ACTIVATIONS = ["relu", "tanh", "sigmoid", "leaky_relu"]


# ------------------------------------------------------------------ seed example 1 (Romanian)
def seed1_model() -> MLP:
    W = np.array([[0.1, 0.2, -0.3], [-0.6, -0.5, 2], [-0.2, 0.5, -3]])   # z = W x + b (K, n)
    b = np.array([0.1, 0.1, 0.1])
    return MLP([3, 3], dtype=np.float64, params=[W.T.copy(), b])         # row layout: W^T


def test_seed1_forward_loss_and_gradient():
    model, x, y = seed1_model(), np.array([[1.0, 3.0, 0.0]]), np.array([1])
    z = model.logits(x)[0]
    np.testing.assert_allclose(z, [0.8, -2.0, 1.4], atol=1e-12)
    np.testing.assert_allclose(softmax(z[None])[0], [0.3469, 0.0211, 0.6320], atol=5e-5)
    loss, grads, _ = model.loss_and_grads(x, y)
    assert loss == pytest.approx(3.8588, abs=5e-5)
    dW = grads[0].T   # back to the note's (K, n) layout: dC/dW = (a - y) x^T
    np.testing.assert_allclose(dW, [[0.3469, 1.0406, 0], [-0.9789, -2.9367, 0], [0.6320, 1.8961, 0]], atol=5e-5)
    np.testing.assert_allclose(grads[1], [0.3469, -0.9789, 0.6320], atol=5e-5)


def test_seed1_one_sgd_step_with_learning_rate_1():
    model, x, y = seed1_model(), np.array([[1.0, 3.0, 0.0]]), np.array([1])
    _, grads, _ = model.loss_and_grads(x, y)
    SGD(model.params, lr=1.0).step(grads)
    np.testing.assert_allclose(model.params[0].T, [[-0.2469, -0.8406, -0.3], [0.3789, 2.4367, 2],
                                                   [-0.8320, -1.3961, -3]], atol=5e-5)
    np.testing.assert_allclose(model.params[1], [-0.2469, 1.0789, -0.5320], atol=5e-5)


# ------------------------------------------------------------------ seed example 2 (Russian)
def test_seed2_cost_is_minimal_at_the_target_and_equals_its_entropy():
    y = np.array([[0.5, 1 / 3, 1 / 6]])
    costs = []
    for a1 in (0.1, 0.3, 0.5, 0.7, 0.9):
        a = np.array([[a1, 2 / 3 * (1 - a1), 1 / 3 * (1 - a1)]])
        costs.append(cross_entropy(np.log(a), y))   # softmax(log a) = a
    np.testing.assert_allclose(costs, [1.522, 1.099, 1.011, 1.099, 1.522], atol=5e-4)
    entropy = -(y * np.log(y)).sum()
    assert min(costs) == pytest.approx(entropy, abs=1e-12) and np.argmin(costs) == 2


# ------------------------------------------------------------------ seed example 3 (English)
def test_seed3_four_classes_gradient_negative_only_for_true_class():
    f, t = np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([2])
    np.testing.assert_allclose(softmax(f)[0], [0.0321, 0.0871, 0.2369, 0.6439], atol=5e-5)
    _, grad = softmax_cross_entropy(f.copy(), t)
    np.testing.assert_allclose(grad[0], [0.0321, 0.0871, -0.7631, 0.6439], atol=5e-5)
    assert (grad[0] < 0).tolist() == [False, False, True, False]


def test_batch_gradient_is_mean_of_per_example_gradients():
    rng = np.random.default_rng(0)
    Z, y = rng.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])
    _, batch = softmax_cross_entropy(Z.copy(), y)
    singles = [softmax_cross_entropy(Z[i:i + 1].copy(), y[i:i + 1])[1][0] for i in range(5)]
    np.testing.assert_allclose(batch, np.array(singles) / 5, atol=1e-15)


# ------------------------------------------------- fused loss == reference definitions
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_softmax_cross_entropy_matches_definitions(smoothing):
    rng = np.random.default_rng(1)
    Z, labels = rng.normal(scale=3, size=(6, 5)), rng.integers(0, 5, 6)
    Y = np.eye(5)[labels] * (1 - smoothing) + smoothing / 5
    target = labels if smoothing == 0 else Y
    loss, grad = softmax_cross_entropy(Z.copy(), target)
    assert loss == pytest.approx(-(Y * np.log(softmax(Z))).sum(axis=1).mean(), rel=1e-12)
    assert loss == pytest.approx(cross_entropy(Z, target), rel=1e-12)
    np.testing.assert_allclose(grad, (softmax(Z) - Y) / 6, atol=1e-15)


# ------------------------------------------------------------- invariances and stability
@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, (3, 6), elements=st.floats(-50, 50)), st.floats(-500, 500))
def test_softmax_is_invariant_to_shifting_the_logits(Z, c):
    A = softmax(Z)
    np.testing.assert_allclose(A, softmax(Z + c), atol=1e-12)
    np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-12)
    assert (A >= 0).all() and (A <= 1).all()
    np.testing.assert_allclose(log_softmax(Z), log_softmax(Z + c), atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_finite_for_logits_of_magnitude_1000(dtype):
    Z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]], dtype=dtype)
    y = np.array([1, 2])
    assert np.isfinite(log_softmax(Z)).all()
    # example 0: true logit -1000 vs max 1000 -> loss 2000; example 1: loss ln(1 + e) ~ 1.3133
    assert cross_entropy(Z, y) == pytest.approx((2000 + np.log1p(np.e)) / 2, rel=1e-5)
    loss, grad = softmax_cross_entropy(Z.copy(), y)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx((2000 + np.log1p(np.e)) / 2, rel=1e-5)
    # (A - Y) / m: row 0's softmax is [1, 0, 0] to float precision, row 1's [0, e, 1] / (1 + e)
    e = np.e
    expected = np.array([[1.0, -1.0, 0.0], [0.0, e / (1 + e), 1 / (1 + e) - 1]]) / 2
    np.testing.assert_allclose(grad, expected, atol=1e-6)


# -------------------------------------------------- seed example 4: finite differences
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("hidden", [[], [7], [6, 5]])
def test_backprop_matches_central_differences(activation, hidden):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    model = MLP([4, *hidden, 3], activation, dtype=np.float64, rng=rng)
    results = check_gradients(model, X, y, max_entries=1000)
    assert [r.name for r in results] == [f"{k}{i}" for i in range(len(hidden) + 1) for k in "Wb"]
    assert all(r.checked == np.prod(r.shape) for r in results)
    assert max(r.rel_error for r in results) < TOLERANCE


def test_backprop_with_smoothed_targets_matches_central_differences():
    rng = np.random.default_rng(4)
    X, labels = rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
    Y = np.eye(3)[labels] * 0.9 + 0.1 / 3
    model = MLP([4, 5, 3], "tanh", dtype=np.float64, rng=rng)
    assert max(r.rel_error for r in check_gradients(model, X, Y)) < TOLERANCE


# f'(z) in terms of A = f(z), as the math note and the textbooks write them
DERIVATIVES = {"relu": lambda A: (A > 0).astype(A.dtype),
               "leaky_relu": lambda A: np.where(A > 0, 1, 0.01).astype(A.dtype),
               "tanh": lambda A: 1 - A * A,
               "sigmoid": lambda A: A * (1 - A)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", sorted(DERIVATIVES))
def test_each_derivative_multiplies_delta_and_sums_the_bias_gradient(activation, dtype):
    # the compiled derivative of every activation, in both dtypes (gradcheck runs float64
    # only): delta * f'(z) in place, and its column sums as the layer's dJ/db
    rng = np.random.default_rng(11)
    A = functional.ACTIVATIONS[activation](rng.normal(size=(9, 7)).astype(dtype), np.empty((9, 7), dtype))
    A[0, :3] = 0                                 # ReLU's kink: its derivative is taken as 0
    delta = rng.normal(size=(9, 7)).astype(dtype)
    expected = delta * DERIVATIVES[activation](A)
    bias_grad = np.full(7, np.nan, dtype)
    out = functional.ACTIVATION_GRADS[activation](A, delta, bias_grad)
    assert out is delta and delta.dtype == dtype
    np.testing.assert_allclose(delta, expected, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_allclose(bias_grad, expected.sum(axis=0), rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_gradcheck_catches_a_wrong_derivative(monkeypatch):
    # tanh'(z) written as 1 - tanh(z) instead of 1 - tanh(z)^2: the check must fail
    def wrong(A, delta, bias_grad):
        delta *= 1 - A
        np.sum(delta, axis=0, out=bias_grad)
        return delta

    monkeypatch.setitem(functional.ACTIVATION_GRADS, "tanh", wrong)
    monkeypatch.setattr("softmax_cli.nn.mlp.ACTIVATION_GRADS", functional.ACTIVATION_GRADS)
    rng = np.random.default_rng(5)
    model = MLP([4, 6, 3], "tanh", dtype=np.float64, rng=rng)
    results = check_gradients(model, rng.normal(size=(8, 4)), rng.integers(0, 3, 8))
    assert results[0].rel_error > 1e-2          # W0 gets the wrong delta
    assert results[-2].rel_error < TOLERANCE     # the output layer does not use it


def test_forward_in_float32_agrees_with_float64():
    rng = np.random.default_rng(6)
    m64 = MLP([10, 8, 4], "relu", dtype=np.float64, rng=rng)
    m32 = MLP([10, 8, 4], "relu", dtype=np.float32, params=m64.params)
    X = rng.normal(size=(5, 10))
    assert m32.logits(X).dtype == np.float32
    np.testing.assert_allclose(m32.logits(X), m64.logits(X), rtol=1e-5, atol=1e-5)


def test_initialisation_scales_follow_he_and_glorot():
    rng = np.random.default_rng(7)
    relu = MLP([400, 300, 10], "relu", rng=rng)
    tanh = MLP([400, 300, 10], "tanh", rng=rng)
    assert relu.params[0].std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)        # He normal
    assert tanh.params[0].std() == pytest.approx(np.sqrt(2 / 700), rel=0.02)        # Glorot uniform
    assert np.abs(tanh.params[0]).max() <= np.sqrt(6 / 700)
    # the softmax layer is Glorot uniform whatever the hidden activation (He would exceed the bound)
    assert np.abs(relu.params[2]).max() <= np.sqrt(6 / 310)
    assert relu.params[2].std() == pytest.approx(np.sqrt(2 / 310), rel=0.05)
    assert not relu.params[1].any()                                                 # zero biases
