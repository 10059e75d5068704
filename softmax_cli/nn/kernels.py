"""The loops behind :func:`softmax_cli.nn.functional.softmax_cross_entropy`, compiled by numba.

One pass per row of logits instead of the ten NumPy calls (each allocating) that the same
formulas take; the formulas and their derivation are in the docstring of
``softmax_cross_entropy`` and in ``../shared/docs/math.md``. Kept in their own module so that
``softmax predict`` and ``softmax --help``, which never compute a gradient, do not import
numba (about 0.2 s).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_xent_labels(Z, y, smoothing):  # pragma: no cover (compiled)
    # targets Y_ij = (1 - smoothing) [j == y_i] + smoothing / K, never built as a matrix
    m, K = Z.shape
    off = smoothing / K                            # Y_ij off the label
    on = 1.0 - smoothing + off                     # Y_ij at the label
    total = 0.0
    for i in range(m):
        row = Z[i]
        shift = row.max()
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
    return total / m


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_xent_targets(Z, Y):  # pragma: no cover (compiled)
    m, K = Z.shape
    total = 0.0
    for i in range(m):
        row = Z[i]
        shift = row.max()
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
    return total / m


@njit(cache=True, nogil=True, error_model="numpy")
def dropout_mask(U, rate, scale):  # pragma: no cover (compiled)
    # U holds uniform [0, 1) draws; each becomes the inverted-dropout factor of its unit:
    # 0 with probability `rate`, else scale = 1 / (1 - rate)
    flat = U.reshape(-1)
    for i in range(flat.size):
        flat[i] = scale if flat[i] >= rate else 0
