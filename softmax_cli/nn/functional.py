"""Activations, softmax, log-softmax and categorical cross-entropy with its fused gradient.

Shapes follow the row-batch layout of ``docs/math.md``: logits ``Z`` are
``(m, K)`` for ``m`` examples and ``K`` classes; a target is either integer labels ``(m,)``
or a distribution per row ``(m, K)`` (one-hot, or smoothed: the fused gradient is the same).
"""

from __future__ import annotations

import numpy as np

LEAKY_RELU_SLOPE = 0.01  # Maas, Hannun & Ng (2013), "Rectifier nonlinearities improve..."


# ----------------------------------------------------------------------------- activations
# Each activation works in place on the pre-activations Z and returns them as A = f(Z). It
# gets ``scratch``, an array of Z's shape and dtype it may overwrite (the workspace's), so
# that no call allocates an array of the batch's size.
def _relu(Z, scratch):
    # against a row of zeros, not the scalar 0: NumPy's maximum with a scalar operand takes
    # a loop twice as slow (17 against 8 us for 128 x 256 float32, NumPy 2.4, AVX2)
    return np.maximum(Z, np.zeros(Z.shape[-1], Z.dtype), out=Z)


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


# Each derivative takes the activations A = f(Z) of a hidden layer (m, n), the delta
# back-propagated into them (m, n) and the layer's bias gradient (n,), all of one dtype. It
# multiplies delta, in place, by f'(Z) written in terms of A, so the backward pass needs only
# the activations it kept (as scikit-learn's ``_base.py`` does):
#   relu: 1 where A > 0 (exactly where z > 0), else 0;  leaky relu: 1 where A > 0, else a;
#   tanh: 1 - A^2;  sigmoid: A (1 - A);
# and writes the column sums of the result, dJ/db = sum over rows of delta, into the bias
# gradient. One compiled pass does both (``kernels.activation_backward``: training only, so
# numba is imported here, not by ``softmax predict``). Returns delta. Adding an activation is
# an entry in ACTIVATIONS and a branch of that kernel.
def _derivative(kind: str):
    def grad(A, delta, bias_grad):
        from . import kernels   # numba: training only

        kernels.activation_backward(getattr(kernels, kind), delta.dtype.type(LEAKY_RELU_SLOPE),
                                    A, delta, bias_grad)
        return delta

    grad.__name__ = f"_{kind.lower()}_grad"
    return grad


ACTIVATIONS = {"relu": _relu, "leaky_relu": _leaky_relu, "tanh": _tanh, "sigmoid": _sigmoid}
ACTIVATION_GRADS = {name: _derivative(name.upper()) for name in ACTIVATIONS}


# ------------------------------------------------------------------- softmax and its loss
def log_softmax(Z: np.ndarray) -> np.ndarray:
    """Log-softmax of logits ``Z`` (m, K) along the last axis: ``Z - logsumexp(Z)``.

    Finite for any finite logits (math note: never ``log(softmax(Z))``). Returns a new
    array of ``Z``'s dtype and shape.
    """
    shifted = Z - Z.max(axis=-1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted


def softmax(Z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of logits ``Z`` (m, K) along the last axis, computed as ``exp(Z - max Z)``.

    Each row is positive and sums to 1; adding a constant to a row changes nothing
    (math note, "Notation"). With a ``temperature`` ``T > 0`` it is ``softmax(Z / T)``:
    ``T > 1`` flattens the distribution, ``T < 1`` sharpens it, the order of the classes
    stays (temperature scaling, Guo et al. 2017). Returns a new array of ``Z``'s dtype and shape.
    """
    E = Z - Z.max(axis=-1, keepdims=True)
    if temperature != 1.0:
        E /= E.dtype.type(temperature)
    np.exp(E, out=E)
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
    if not 0 <= label_smoothing < 1 or (label_smoothing and y.ndim != 1):
        raise ValueError(f"label_smoothing must be in [0, 1) and used with integer labels, got {label_smoothing}")
    if bias_grad.shape != Z.shape[1:] or bias_grad.dtype != Z.dtype:
        raise ValueError(f"bias_grad must be a ({Z.shape[1]},) {Z.dtype} array, got {bias_grad.shape} {bias_grad.dtype}")
    from .kernels import softmax_xent_labels, softmax_xent_targets   # numba: training only

    if y.ndim == 1:
        # the compiled loop checks the labels before it writes (hits -1: one outside [0, K))
        loss, hits = softmax_xent_labels(Z, y, float(label_smoothing), bias_grad)
        if hits < 0:
            raise ValueError(f"labels must lie in [0, {Z.shape[1]}), got {y.min()}..{y.max()}")
    else:
        loss, hits = softmax_xent_targets(Z, np.ascontiguousarray(y, dtype=Z.dtype), bias_grad)
    return float(loss), int(hits)
