"""Gradient checking: backpropagation against central finite differences.

The relative error of one parameter array is ``||g - g_num|| / (||g|| + ||g_num||)`` over the
checked entries (Ng, UFLDL tutorial "Gradient checking and advanced optimization"; the math
note asks for float64 central differences with relative error below 1e-6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .functional import cross_entropy, smooth_labels
from .mlp import MLP

TOLERANCE = 1e-6  # math note, seed example 4


@dataclass
class ParamCheck:
    """The check of one parameter array: its name (``W0``, ``b0``, ...), shape, how many
    entries were compared, and their relative error."""

    name: str
    shape: tuple
    checked: int
    rel_error: float


def check_gradients(model: MLP, X: np.ndarray, y: np.ndarray, max_entries: int = 40,
                    eps: float = 1e-6, rng: np.random.Generator | None = None, *,
                    label_smoothing: float = 0.0, dropout: list[float] | None = None,
                    dropout_seed: int = 0) -> list[ParamCheck]:
    """Compare ``model.loss_and_grads`` with central differences of the mean cross-entropy.

    ``dJ/dp ~ (J(p + eps) - J(p - eps)) / (2 eps)`` for up to ``max_entries`` entries of each
    parameter array (all of them when the array is that small, else a random subset drawn
    from ``rng``). Use a float64 model: in float32 the differences are rounding noise.

    Args:
        model: the network; its parameters are perturbed and restored in place.
        X: inputs (m, n_features) of the model's dtype; y: labels (m,) or targets (m, K).
        label_smoothing: check the loss against smoothed targets (labels ``y`` only); the
            differences use the explicit target matrix of :func:`smooth_labels`.
        dropout: per-layer rates; every evaluation redraws the masks from
            ``default_rng(dropout_seed)``, so all of them see the same masks.

    Returns:
        One :class:`ParamCheck` per parameter array, in the order ``W0, b0, W1, b1, ...``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    targets = smooth_labels(y, model.sizes[-1], label_smoothing) if label_smoothing else y
    ws = model.workspace(len(X), dropout=dropout)

    def masks() -> np.random.Generator:
        return np.random.default_rng(dropout_seed)

    def loss() -> float:
        return cross_entropy(model.forward(X, ws, dropout, masks())[0][-1], targets)

    _, grads, _ = model.loss_and_grads(X, y, label_smoothing=label_smoothing, dropout=dropout, rng=masks())
    grads = [g.copy() for g in grads]   # the workspace's arrays; loss() reuses the workspace
    results = []
    for i, (p, g) in enumerate(zip(model.params, grads)):
        flat_p, flat_g = p.reshape(-1), g.reshape(-1)
        idx = np.arange(p.size) if p.size <= max_entries else rng.choice(p.size, max_entries, replace=False)
        numeric = np.empty(len(idx))
        for j, k in enumerate(idx):
            saved = flat_p[k]
            flat_p[k] = saved + eps
            plus = loss()
            flat_p[k] = saved - eps
            minus = loss()
            flat_p[k] = saved
            numeric[j] = (plus - minus) / (2 * eps)
        analytic = flat_g[idx]
        denom = np.linalg.norm(analytic) + np.linalg.norm(numeric)
        err = float(np.linalg.norm(analytic - numeric) / denom) if denom > 0 else 0.0
        results.append(ParamCheck(f"{'Wb'[i % 2]}{i // 2}", p.shape, len(idx), err))
    return results
