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
def softmax_xent_labels(Z, y):  # pragma: no cover (compiled)
    m, K = Z.shape
    total = 0.0
    for i in range(m):
        row = Z[i]
        shift = row.max()
        target = row[y[i]] - shift                # s_y
        sum_exp = row.dtype.type(0)
        for j in range(K):
            row[j] = np.exp(row[j] - shift)
            sum_exp += row[j]
        total += np.log(sum_exp) - target          # C = logsumexp(s) - s_y
        for j in range(K):
            row[j] = row[j] / sum_exp / m          # A / m ...
        row[y[i]] -= 1.0 / m                       # ... minus Y / m
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
