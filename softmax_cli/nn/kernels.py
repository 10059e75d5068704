"""The loops of the training step, compiled by numba.

Each replaces several NumPy calls (each a pass over memory, most allocating) by one pass: the
softmax cross-entropy with its fused gradient, the activation derivatives with the bias
gradient, the row gather of a batch with its preprocessing, the dropout mask. Each docstring
states its formula in the notation of ``docs/math.md`` (a batch of ``m`` rows, ``K`` classes:
logits ``Z`` (m, K), ``A = softmax(Z)`` row by row, targets ``Y`` (m, K), ``Δ_l = ∂J/∂Z_l``,
``⊙`` elementwise), and
``tests/test_kernels.py`` compares each with that formula written in NumPy. Their callers:
:func:`~softmax_cli.nn.functional.softmax_cross_entropy_step`, ``functional.ACTIVATION_GRADS``,
:meth:`~softmax_cli.nn.mlp.MLP.forward`, ``softmax_cli.engine.step.train_epoch``. Kept in their
own module so that ``softmax predict`` and ``softmax --help``, which never compute a gradient,
do not import numba (about 0.2 s).
"""

from __future__ import annotations

import numpy as np
from ..cache import configure_numba

configure_numba()   # compiled kernels are cached in the user cache directory, never in the package
from numba import njit  # noqa: E402


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_xent_labels(Z, y, smoothing, bias_grad):  # pragma: no cover (compiled)
    """Cross-entropy of ``A = softmax(Z)`` against labels ``y`` (m,), and its fused gradient,
    in one pass.

    With ``ε`` = ``smoothing`` and the targets ``Y_ij = (1 - ε) [j = y_i] + ε / K`` (never
    built as a matrix): ``J = (1/m) Σ_i C_i`` with ``C_i = - Σ_j Y_ij ln A_ij``, each
    ``ln A_ij = s_ij - ln Σ_k exp(s_ik)`` with ``s_i = z_i - max_k z_ik`` (log-softmax, never
    ``ln(softmax)``). ``Z`` (m, K) is overwritten with ``Δ_L = ∂J/∂Z_L = (A - Y) / m`` and
    ``bias_grad`` (K,) with ``∂J/∂b_L``, the column sums of ``Δ_L``.

    Returns ``(J, hits)``, hits = #{i : argmax_j Z_ij = y_i} (the first largest logit, as
    ``numpy.argmax``); ``(nan, -1)`` with nothing written when a label is outside ``[0, K)``.
    """
    m, K = Z.shape
    for i in range(m):
        if y[i] < 0 or y[i] >= K:                  # checked before anything is written
            return np.nan, -1
    off = smoothing / K                            # Y_ij off the label
    on = 1.0 - smoothing + off                     # Y_ij at the label
    total = 0.0
    hits = 0
    bias_grad[:] = 0
    for i in range(m):
        row = Z[i]
        best = 0                                   # the first largest logit, as np.argmax
        for j in range(1, K):
            if row[j] > row[best]:
                best = j
        hits += best == y[i]
        shift = row[best]
        s_label = row[y[i]] - shift
        sum_s = 0.0
        sum_exp = row.dtype.type(0)
        for j in range(K):
            s = row[j] - shift
            sum_s += s
            row[j] = np.exp(s)
            sum_exp += row[j]
        # C = logsumexp(s) - sum_j Y_ij s_j
        total += np.log(sum_exp) - off * sum_s - (on - off) * s_label
        for j in range(K):
            row[j] = (row[j] / sum_exp - off) / m  # (A - Y) / m off the label ...
        row[y[i]] -= (on - off) / m                # ... and at it
        for j in range(K):
            bias_grad[j] += row[j]                 # dJ/db = sum over rows of (A - Y) / m
    return total / m, hits


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_xent_targets(Z, Y, bias_grad):  # pragma: no cover (compiled)
    """:func:`softmax_xent_labels` with target distributions ``Y`` (m, K), rows summing to 1:
    ``J = -(1/m) Σ_i Σ_j Y_ij ln A_ij``; ``Z`` becomes ``Δ_L = (A - Y) / m`` and
    ``bias_grad`` its column sums ``∂J/∂b_L``. Returns ``(J, hits)``, hits = #{i : argmax_j
    Z_ij = argmax_j Y_ij}."""
    m, K = Z.shape
    total = 0.0
    hits = 0
    bias_grad[:] = 0
    for i in range(m):
        row = Z[i]
        best = 0
        label = 0                                  # the argmax of the target row
        for j in range(1, K):
            if row[j] > row[best]:
                best = j
            if Y[i, j] > Y[i, label]:
                label = j
        hits += best == label
        shift = row[best]
        target = 0.0
        sum_exp = row.dtype.type(0)
        for j in range(K):
            s = row[j] - shift
            target += Y[i, j] * s                  # sum_j y_j s_j
            row[j] = np.exp(s)
            sum_exp += row[j]
        total += np.log(sum_exp) - target
        for j in range(K):
            row[j] = (row[j] / sum_exp - Y[i, j]) / m
            bias_grad[j] += row[j]
    return total / m, hits


# which derivative activation_backward applies (functional.ACTIVATION_GRADS names them)
RELU, LEAKY_RELU, TANH, SIGMOID = 0, 1, 2, 3


@njit(cache=True, nogil=True, error_model="numpy")
def activation_backward(kind, slope, A, delta, bias_grad):  # pragma: no cover (compiled)
    """A hidden layer's delta and bias gradient from the delta back-propagated into it.

    ``delta`` (m, n) holds ``Δ_{l+1} W_{l+1}ᵀ`` and becomes ``Δ_l = (Δ_{l+1} W_{l+1}ᵀ) ⊙
    f'(Z_l)``, with ``f'`` written through the layer's activations ``A = A_l = f(Z_l)``
    (m, n): relu 1 where ``a > 0``, else 0; leaky relu 1 where ``a > 0``, else ``slope``;
    tanh ``1 - a²``; sigmoid ``a (1 - a)``. ``bias_grad`` (n,) becomes ``∂J/∂b_l``, the
    column sums of ``Δ_l``. ``kind`` is RELU, LEAKY_RELU, TANH or SIGMOID.
    """
    # one pass where NumPy made three (the mask or f', the product, the sum); `kind` is the
    # same for every entry, so the compiler moves the branch out of the loop
    zero, one = delta.dtype.type(0), delta.dtype.type(1)
    bias_grad[:] = 0
    for i in range(delta.shape[0]):
        a_row, d_row = A[i], delta[i]
        for j in range(d_row.size):
            a, d = a_row[j], d_row[j]
            if kind == RELU:                       # 1 where z > 0 (where A > 0), else 0
                d = d * (one if a > zero else zero)
            elif kind == LEAKY_RELU:               # 1 where A > 0, else the slope
                d = d * (one if a > zero else slope)
            elif kind == TANH:                     # 1 - tanh(z)^2
                d = d * (one - a * a)
            else:                                  # sigma(z) (1 - sigma(z))
                d = d * ((one - a) * a)
            d_row[j] = d
            bias_grad[j] += d


@njit(cache=True, nogil=True, error_model="numpy")
def gather_rows(X, rows, offset, scale, out):  # pragma: no cover (compiled)
    """``out_i = (X_{rows_i} - offset) / scale`` (elementwise): a batch's rows gathered and
    preprocessed in one pass (``Preprocessor.transform``'s arithmetic, in ``out``'s dtype).

    ``X`` (n, d) raw pixels, uint8 (a quarter of the bytes) or float; ``rows`` (m,) integer
    row indices, not checked (``train_epoch`` checks them once an epoch); ``offset`` and
    ``scale`` (d,) and ``out`` (m, d) of the model's dtype, float32 or float64.
    """
    dt = out.dtype.type
    for i in range(rows.size):
        src = X[rows[i]]
        dst = out[i]
        for j in range(dst.size):
            dst[j] = (dt(src[j]) - offset[j]) / scale[j]


@njit(cache=True, nogil=True, error_model="numpy")
def dropout_mask(U, rate, scale):  # pragma: no cover (compiled)
    """Inverted dropout's mask (Srivastava et al. 2014), in place: each uniform draw
    ``U_ij`` in [0, 1) becomes 0 if ``U_ij < p`` (``p`` = ``rate``: probability ``p``), else
    ``scale = 1 / (1 - p)``, so that ``E[mask_ij] = 1``."""
    flat = U.reshape(-1)
    for i in range(flat.size):
        flat[i] = scale if flat[i] >= rate else 0
