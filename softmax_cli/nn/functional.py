"""Activations, softmax, log-softmax and categorical cross-entropy with its fused gradient.

Shapes follow the row-batch layout of ``../shared/docs/math.md``: logits ``Z`` are
``(m, K)`` for ``m`` examples and ``K`` classes; a target is either integer labels ``(m,)``
or a distribution per row ``(m, K)`` (one-hot, or smoothed: the fused gradient is the same).
"""

from __future__ import annotations

import numpy as np

LEAKY_RELU_SLOPE = 0.01  # Maas, Hannun & Ng (2013), "Rectifier nonlinearities improve..."


# ----------------------------------------------------------------------------- activations
# Each activation works in place on the pre-activations Z and returns them as A = f(Z).
# Each derivative multiplies the back-propagated delta, in place, by f'(Z) written in terms
# of A = f(Z), so the backward pass needs only the activations it kept (as scikit-learn's
# ``_base.py`` does). Both get ``scratch``, an array of Z's shape and dtype they may overwrite
# (the workspace's), so that no call allocates an array of the batch's size. Adding an
# activation is one entry in each table.
def _relu(Z, scratch):
    return np.maximum(Z, 0, out=Z)


def _leaky_relu(Z, scratch):
    np.multiply(Z, LEAKY_RELU_SLOPE, out=scratch)
    return np.maximum(Z, scratch, out=Z)           # max(z, a z) for 0 < a < 1


def _tanh(Z, scratch):
    return np.tanh(Z, out=Z)


def _sigmoid(Z, scratch):
    # 1 / (1 + exp(-z)) written through tanh, which never overflows: sigma(z) = (1 + tanh(z/2)) / 2
    np.multiply(Z, 0.5, out=Z)
    np.tanh(Z, out=Z)
    np.add(Z, 1.0, out=Z)
    return np.multiply(Z, 0.5, out=Z)


def _relu_grad(A, delta, scratch):
    # f'(z) = 1 for z > 0, else 0 (and A > 0 exactly when z > 0). A multiply by the mask is
    # ten times faster than the boolean assignment ``delta[A <= 0] = 0``.
    np.greater(A, 0, out=scratch)
    return np.multiply(delta, scratch, out=delta)


def _leaky_relu_grad(A, delta, scratch):
    # f'(z) = 1 for z > 0 (where A > 0), else a: max([A > 0], a) holds exactly 1 or a
    np.greater(A, 0, out=scratch)
    np.maximum(scratch, LEAKY_RELU_SLOPE, out=scratch)
    return np.multiply(delta, scratch, out=delta)


def _tanh_grad(A, delta, scratch):
    np.multiply(A, A, out=scratch)
    np.subtract(1, scratch, out=scratch)           # tanh'(z) = 1 - tanh(z)^2
    return np.multiply(delta, scratch, out=delta)


def _sigmoid_grad(A, delta, scratch):
    np.subtract(1, A, out=scratch)
    np.multiply(scratch, A, out=scratch)           # sigma'(z) = sigma(z) (1 - sigma(z))
    return np.multiply(delta, scratch, out=delta)


ACTIVATIONS = {"relu": _relu, "leaky_relu": _leaky_relu, "tanh": _tanh, "sigmoid": _sigmoid}
ACTIVATION_GRADS = {"relu": _relu_grad, "leaky_relu": _leaky_relu_grad,
                    "tanh": _tanh_grad, "sigmoid": _sigmoid_grad}


# ------------------------------------------------------------------- softmax and its loss
def log_softmax(Z: np.ndarray) -> np.ndarray:
    """Log-softmax of logits ``Z`` (m, K) along the last axis: ``Z - logsumexp(Z)``.

    Finite for any finite logits (math note: never ``log(softmax(Z))``). Returns a new
    array of ``Z``'s dtype and shape.
    """
    shifted = Z - Z.max(axis=-1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted


def softmax(Z: np.ndarray) -> np.ndarray:
    """Softmax of logits ``Z`` (m, K) along the last axis, computed as ``exp(Z - max Z)``.

    Each row is positive and sums to 1; adding a constant to a row changes nothing
    (math note, "Notation"). Returns a new array of ``Z``'s dtype and shape.
    """
    E = np.exp(Z - Z.max(axis=-1, keepdims=True))
    E /= E.sum(axis=-1, keepdims=True)
    return E


def smooth_labels(y: np.ndarray, K: int, label_smoothing: float, dtype=np.float64) -> np.ndarray:
    """Target distributions ``(1 - eps) * one_hot(y) + eps / K``, shape (m, K) of ``dtype``,
    for int labels ``y`` (m,) in ``[0, K)`` (Szegedy et al. 2016, section 7)."""
    Y = np.full((len(y), K), label_smoothing / K, dtype=dtype)
    Y[np.arange(len(y)), y] += 1 - label_smoothing
    return Y


def cross_entropy(Z: np.ndarray, y: np.ndarray) -> float:
    """Mean categorical cross-entropy ``J = -(1/m) sum_i sum_j y_ij ln softmax(Z)_ij``.

    Args:
        Z: logits, float array (m, K).
        y: integer labels (m,) in ``[0, K)``, or target distributions (m, K), rows summing to 1.

    Returns:
        The batch mean as a Python float (nats). Computed through :func:`log_softmax`, so
        it stays finite for logits of any finite magnitude.
    """
    logp = log_softmax(Z)
    if y.ndim == 1:
        return float(-logp[np.arange(len(y)), y].mean())
    return float(-(y * logp).sum(axis=1).mean())


def softmax_cross_entropy(Z: np.ndarray, y: np.ndarray, label_smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """Cross-entropy of softmax(Z) against ``y`` and its gradient, in one pass over ``Z``.

    The gradient is the fused one of the math note, ``dJ/dZ = (A - Y) / m`` with
    ``A = softmax(Z)``: valid only for this softmax + cross-entropy pair. Per row, with the
    shifted logits ``s = z - max z``: ``C = logsumexp(s) - sum_j y_j s_j`` and
    ``dC/dz = softmax(s) - y``; the labels path never builds a one-hot ``Y``.

    Args:
        Z: logits, C-contiguous float32 or float64 array (m, K). Overwritten: it holds the
            gradient on return.
        y: integer labels (m,) in ``[0, K)``, or target distributions (m, K) (one-hot or
            smoothed; rows summing to 1).
        label_smoothing: ``eps`` in [0, 1), for integer labels: the target of each row is
            ``(1 - eps) * one_hot(y) + eps / K`` (Szegedy et al. 2016, "Rethinking the
            Inception architecture", section 7), and the gradient stays ``(A - Y) / m``
            with that ``Y``.

    Returns:
        ``(J, dZ)``: the mean loss (float, nats) and ``dJ/dZ``, which *is* the array ``Z``.

    Raises:
        ValueError: ``Z`` is not a C-contiguous 2-D array, ``y``'s shape does not match, a
            label is outside ``[0, K)``, or ``label_smoothing`` is outside [0, 1) or given
            with target distributions.
    """
    loss, _ = softmax_cross_entropy_step(Z, y, label_smoothing, np.empty(Z.shape[-1], dtype=Z.dtype))
    return loss, Z


def softmax_cross_entropy_step(Z: np.ndarray, y: np.ndarray, label_smoothing: float,
                               bias_grad: np.ndarray) -> tuple[float, int]:
    """:func:`softmax_cross_entropy` as a training step needs it, still in one pass over ``Z``.

    Besides turning ``Z`` into ``dJ/dZ`` (same arguments, same errors), it writes the
    column sums of ``dJ/dZ`` into ``bias_grad`` (K,) of ``Z``'s dtype: ``dJ/db`` of the
    output layer, whose input to ``b`` is 1 for every row. It returns ``(J, hits)``: the
    mean loss and how many rows' largest logit (the first, as ``numpy.argmax``) is their
    label, or with target distributions the largest target.

    Raises:
        ValueError: as :func:`softmax_cross_entropy`, or ``bias_grad`` is not (K,) of
            ``Z``'s dtype.
    """
    if Z.ndim != 2 or not Z.flags.c_contiguous or not Z.flags.writeable:
        raise ValueError(f"logits must be a writable C-contiguous (m, K) array, got shape {Z.shape}")
    if y.shape != Z.shape[:1] and y.shape != Z.shape:
        raise ValueError(f"targets of shape {y.shape} do not match logits of shape {Z.shape}")
    if y.ndim == 1 and len(y) and (y.min() < 0 or y.max() >= Z.shape[1]):
        # the compiled loop does not check indices: an outside label would write outside Z
        raise ValueError(f"labels must lie in [0, {Z.shape[1]}), got {y.min()}..{y.max()}")
    if not 0 <= label_smoothing < 1 or (label_smoothing and y.ndim != 1):
        raise ValueError(f"label_smoothing must be in [0, 1) and used with integer labels, got {label_smoothing}")
    if bias_grad.shape != Z.shape[1:] or bias_grad.dtype != Z.dtype:
        raise ValueError(f"bias_grad must be a ({Z.shape[1]},) {Z.dtype} array, got {bias_grad.shape} {bias_grad.dtype}")
    from .kernels import softmax_xent_labels, softmax_xent_targets   # numba: training only

    if y.ndim == 1:
        loss, hits = softmax_xent_labels(Z, y, float(label_smoothing), bias_grad)
    else:
        loss, hits = softmax_xent_targets(Z, np.ascontiguousarray(y, dtype=Z.dtype), bias_grad)
    return float(loss), int(hits)
