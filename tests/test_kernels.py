"""Each compiled kernel against the textbook NumPy formula its docstring states (docs/math.md)."""

from __future__ import annotations

import numpy as np
import pytest

from softmax_cli.nn import kernels
from softmax_cli.optim import _adam_kernel, _sgd_kernel

RNG = np.random.default_rng(11)
M, K = 9, 5


def textbook_softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def textbook_log_softmax(Z):
    s = Z - Z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def tolerance(dtype):
    return {"rtol": 1e-12, "atol": 1e-15} if dtype == np.float64 else {"rtol": 2e-6, "atol": 1e-7}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_softmax_xent_labels_is_the_smoothed_cross_entropy_and_its_fused_gradient(dtype, eps):
    Z = (RNG.normal(size=(M, K)) * 3).astype(dtype)
    Z[0] = [1, 4, 4, 0, 2]                          # a tie: the first largest logit counts
    y = RNG.integers(0, K, M)
    y[0] = 2
    Y = (1 - eps) * np.eye(K)[y] + eps / K          # Y_ij = (1 - eps)[j == y_i] + eps / K
    Z64 = Z.astype(np.float64)
    J = -(Y * textbook_log_softmax(Z64)).sum(axis=1).mean()
    dZ = (textbook_softmax(Z64) - Y) / M            # dJ/dZ = (A - Y) / m
    out, bias_grad = Z.copy(), np.full(K, np.nan, dtype)
    loss, hits = kernels.softmax_xent_labels(out, y, eps, bias_grad)
    assert loss == pytest.approx(J, rel=1e-12 if dtype == np.float64 else 1e-6)
    assert hits == np.count_nonzero(Z.argmax(axis=1) == y) and Z.argmax(axis=1)[0] == 1
    np.testing.assert_allclose(out, dZ, **tolerance(dtype))
    np.testing.assert_allclose(bias_grad, dZ.sum(axis=0), **tolerance(dtype))


def test_softmax_xent_labels_writes_nothing_for_a_label_outside_the_classes():
    Z = RNG.normal(size=(3, K))
    before, bias_grad = Z.copy(), np.full(K, 7.0)
    loss, hits = kernels.softmax_xent_labels(Z, np.array([0, K, 1]), 0.0, bias_grad)
    assert np.isnan(loss) and hits == -1
    np.testing.assert_array_equal(Z, before)
    assert (bias_grad == 7.0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_xent_targets_is_the_cross_entropy_against_distributions(dtype):
    Z = (RNG.normal(size=(M, K)) * 3).astype(dtype)
    Y = RNG.dirichlet(np.ones(K), M).astype(dtype)
    Z64, Y64 = Z.astype(np.float64), Y.astype(np.float64)
    J = -(Y64 * textbook_log_softmax(Z64)).sum(axis=1).mean()
    dZ = (textbook_softmax(Z64) - Y64) / M
    out, bias_grad = Z.copy(), np.empty(K, dtype)
    loss, hits = kernels.softmax_xent_targets(out, Y, bias_grad)
    assert loss == pytest.approx(J, rel=1e-12 if dtype == np.float64 else 1e-6)
    assert hits == np.count_nonzero(Z.argmax(axis=1) == Y.argmax(axis=1))
    np.testing.assert_allclose(out, dZ, **tolerance(dtype))
    np.testing.assert_allclose(bias_grad, dZ.sum(axis=0), **tolerance(dtype))


# f'(z) of each activation written through z itself, the textbook way (not through A = f(z))
DERIVATIVES = {
    "RELU": (lambda Z: np.maximum(Z, 0), lambda Z: (Z > 0).astype(float)),
    "LEAKY_RELU": (lambda Z: np.where(Z > 0, Z, 0.01 * Z), lambda Z: np.where(Z > 0, 1.0, 0.01)),
    "TANH": (np.tanh, lambda Z: 1 / np.cosh(Z) ** 2),
    "SIGMOID": (lambda Z: 1 / (1 + np.exp(-Z)), lambda Z: np.exp(-Z) / (1 + np.exp(-Z)) ** 2),
}


@pytest.mark.parametrize("kind", DERIVATIVES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_backward_is_delta_times_f_prime_and_its_column_sums(kind, dtype):
    f, f_prime = DERIVATIVES[kind]
    Z = RNG.normal(size=(M, 7))
    back = RNG.normal(size=(M, 7))                  # delta_{l+1} W_{l+1}^T
    delta = back * f_prime(Z)                       # delta_l = (delta_{l+1} W_{l+1}^T) * f'(Z_l)
    out, bias_grad = back.astype(dtype), np.full(7, np.nan, dtype)
    kernels.activation_backward(getattr(kernels, kind), dtype(0.01), f(Z).astype(dtype), out, bias_grad)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(out, delta, **tol)
    np.testing.assert_allclose(bias_grad, delta.sum(axis=0), **tol)   # dJ/db_l


@pytest.mark.parametrize("raw", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_rows_is_the_preprocessed_rows(raw, dtype):
    X = RNG.integers(0, 256, (30, 6)).astype(raw)
    rows = RNG.permutation(30)[:11]
    offset, scale = RNG.normal(size=6).astype(dtype), RNG.uniform(0.5, 2, 6).astype(dtype)
    out = np.empty((11, 6), dtype)
    kernels.gather_rows(X, rows, offset, scale, out)
    np.testing.assert_array_equal(out, (X[rows].astype(dtype) - offset) / scale)   # (X_rows - offset) / scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_is_zero_below_the_rate_and_the_inverse_keep_probability_above(dtype):
    U = RNG.random((50, 40)).astype(dtype)
    rate = 0.3
    out = U.copy()
    kernels.dropout_mask(out, dtype(rate), dtype(1 / (1 - rate)))
    np.testing.assert_array_equal(out, np.where(U >= rate, dtype(1 / (1 - rate)), 0).astype(dtype))


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_kernel_is_the_momentum_update(momentum, nesterov):
    p, g, v = RNG.normal(size=8), RNG.normal(size=8), RNG.normal(size=8)
    lr, lam = 0.1, 0.01
    g2 = g + lam * p                                # L2 decay into the gradient
    if momentum:
        v_new = momentum * v + g2
        p_new = p - lr * (g2 + momentum * v_new if nesterov else v_new)
    else:
        v_new, p_new = v, p - lr * g2
    pk, vk = p.copy(), v.copy()
    _sgd_kernel(pk, g, vk, lr, momentum, nesterov, lam)
    np.testing.assert_allclose(pk, p_new, rtol=1e-15)
    np.testing.assert_allclose(vk, v_new, rtol=1e-15)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_kernel_is_algorithm_1(decoupled):
    p, g = RNG.normal(size=8), RNG.normal(size=8)
    m, v = RNG.normal(size=8) * 0.1, RNG.random(8) * 0.1
    b1, b2, eps, lr, lam, t = 0.9, 0.999, 1e-8, 0.01, 0.05, 3
    g2 = g if decoupled else g + lam * p
    m_new = b1 * m + (1 - b1) * g2
    v_new = b2 * v + (1 - b2) * g2 ** 2
    m_hat, v_hat = m_new / (1 - b1 ** t), v_new / (1 - b2 ** t)
    shrink = 1 - lr * lam if decoupled else 1.0
    p_new = shrink * p - lr * m_hat / (np.sqrt(v_hat) + eps)
    pk, mk, vk = p.copy(), m.copy(), v.copy()
    tiny = np.finfo(np.float64).tiny
    _adam_kernel(pk, g, mk, vk, b1, 1 - b1, b2, 1 - b2, lr / (1 - b1 ** t), 1 / (1 - b2 ** t), eps,
                 0.0 if decoupled else lam, shrink, tiny, np.sqrt(tiny / (1 - b2)))
    np.testing.assert_allclose(pk, p_new, rtol=1e-13)
    np.testing.assert_allclose(mk, m_new, rtol=1e-14)
    np.testing.assert_allclose(vk, v_new, rtol=1e-14)
