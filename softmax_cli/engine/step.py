"""One training step and one epoch of them: the math of ``docs/math.md`` in the order it is
written, forward, loss, backward, step.

For a batch of ``m`` rows ``X = A_0`` with labels ``y`` (row layout, ``Z_l = A_{l-1} W_l + b_l``):

1. forward: ``A_l = f(Z_l)`` for the hidden layers, the logits ``Z_L`` last
   (:meth:`~softmax_cli.nn.MLP.forward`);
2. loss: ``J = (1/m) Σ_i C_i`` with ``C = - Σ_j y_j ln a_j`` and ``a = softmax(z)``, and in
   the same pass the fused output delta ``Δ_L = ∂J/∂Z_L = (A - Y) / m``
   (:func:`~softmax_cli.nn.functional.softmax_cross_entropy_step`);
3. backward: ``∂J/∂W_l = A_{l-1}ᵀ Δ_l``, ``∂J/∂b_l`` = the column sums of ``Δ_l``,
   ``Δ_{l-1} = (Δ_l W_lᵀ) ⊙ f'(Z_{l-1})`` (:meth:`~softmax_cli.nn.MLP.backward`);
4. step: the optimiser's update of every parameter, e.g. ``W ← W - η g`` for plain SGD
   (:mod:`softmax_cli.optim`), then the max-norm constraint when asked for, then the moving
   average of the weights when asked for (``θ̄ ← β θ̄ + (1 - β) θ``, :mod:`softmax_cli.ema`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..data import Preprocessor
from ..ema import WeightAverage
from ..nn import MLP, Workspace
from ..nn.functional import softmax_cross_entropy_step
from ..optim import Optimizer


@dataclass
class StepSettings:
    """What each training step does besides the gradient step (from the config's ``train``
    and ``model`` sections; the defaults are a plain step).

    Attributes:
        label_smoothing: ``eps`` of the smoothed targets.
        dropout: rate per weight layer's input (see :meth:`MLP.loss_and_grads`), or None.
        max_norm: the max-norm constraint applied after each update (None: off).
        augment: distorts a batch of raw pixel rows in place (an :class:`Augmenter`),
            before ``preprocess``.
        preprocess: the run's preprocessing. Given, the epoch's ``X`` holds raw pixels and
            each batch is preprocessed as it is gathered; None: ``X`` is model input already.
        seed: with the epoch and the batch's index, seeds the batch's own generator for
            dropout masks and distortions, so that they do not depend on where a run was
            interrupted and resumed.
        ema: the moving average of the weights, updated after each step (None: off).
    """

    label_smoothing: float = 0.0
    dropout: list[float] | None = None
    max_norm: float | None = None
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
    preprocess: Preprocessor | None = None
    seed: int = 0
    ema: WeightAverage | None = None

    def batch_rng(self, epoch: int, batch: int) -> np.random.Generator | None:
        """The generator of one batch's random draws (None when nothing is random)."""
        if self.augment is None and not (self.dropout and any(self.dropout)):
            return None
        return np.random.default_rng((self.seed, epoch, batch))


def compact_pixels(X: np.ndarray) -> np.ndarray:
    """``X`` as uint8 when that loses nothing (every value an integer in 0..255: MNIST's and
    the digits' pixels), else ``X`` itself.

    The training loop reads every row of the training set once an epoch, in random order;
    with a quarter of the bytes that gather took a third less time in isolation and about
    a quarter less inside the loop (MNIST, 2-core AMD EPYC), and no float copy of the
    preprocessed set (4 bytes a pixel) is made.
    """
    if X.dtype == np.uint8 or not (X.size and 0 <= X.min() and X.max() <= 255):    # NaN fails too
        return X
    compact = X.astype(np.uint8)
    return compact if np.array_equal(compact, X) else X


def train_step(model: MLP, optimizer: Optimizer, X: np.ndarray, y: np.ndarray, ws: Workspace,
               settings: StepSettings, noise: np.random.Generator | None) -> tuple[float, int]:
    """One gradient step on the batch ``X`` (m, n_features) of model input, ``y`` int64 (m,).

    ``X`` and ``y`` are (views of) the workspace's own buffers, as :func:`train_epoch`
    gathers them; ``noise`` draws the dropout masks. Returns ``(J, hits)``: the batch's mean
    loss (nats) before the step and how many of its rows the logits classified right.
    """
    acts, inputs = model.forward(X, ws, settings.dropout, noise)                     # forward
    loss, hits = softmax_cross_entropy_step(acts[-1], y, settings.label_smoothing,   # loss, and
                                            ws.grads[-1])                            # (A - Y) / m
    grads = model.backward(acts, inputs, ws)                                         # backward
    optimizer.step(grads)                                                            # step
    if settings.max_norm is not None:
        model.apply_max_norm(settings.max_norm)
    if settings.ema is not None:
        settings.ema.update(model.params)
    return loss, hits


def train_epoch(model: MLP, optimizer: Optimizer, X: np.ndarray, y: np.ndarray,
                order: np.ndarray, ws: Workspace,
                on_batch: Callable[[int, float, int], None] | None = None, *,
                start: int = 0, loss_sum: float = 0.0, correct: int = 0,
                stop: Callable[[], bool] | None = None, settings: StepSettings | None = None,
                epoch: int = 1) -> tuple[float, int, int]:
    """One epoch of mini-batch training: the batches are consecutive slices of ``order``.

    Each batch's rows are gathered from ``X`` into ``ws.X`` (so the data is never copied
    whole) and preprocessed in the same pass (``settings.preprocess``; with
    ``settings.augment`` the distortion comes between), then one :func:`train_step`;
    nothing of the batch's size is allocated. The batch size is ``ws.batch_size``.

    Args:
        X: raw pixels (n, n_features), uint8 (see :func:`compact_pixels`) or of the model's
            dtype, with ``settings.preprocess``; else inputs of the model's dtype.
        y: int64 labels (n,).
        order: int64 row indices (n,), a permutation of ``range(n)``.
        ws: the workspace of ``model`` for the batch size.
        on_batch: called after every batch with (rows seen, sum of losses so far, rows in
            the batch), e.g. to show progress.
        start, loss_sum, correct: continue an epoch stopped after ``start`` rows of
            ``order``, with the sums it had reached (a resumed run).
        stop: asked after every batch but the last; True ends the epoch early, at that
            batch boundary.
        settings: label smoothing, dropout, max-norm and augmentation (default: none).
        epoch: the 1-based epoch number, which seeds the batches' random draws.

    Returns:
        ``(loss_sum, correct, end)``: the sum over rows of each row's batch loss (nats;
        divide by ``n`` for the epoch's mean), how many rows were classified right before
        their step, and how many rows of ``order`` are done (``len(order)`` unless stopped).

    Raises:
        ValueError: ``order`` holds an index outside ``range(len(X))`` (the compiled gather
            does not check its indices, so they are checked here, once an epoch).
    """
    bs, n = ws.batch_size, len(order)
    if n and (order.min() < 0 or order.max() >= len(X)):
        raise ValueError(f"order holds row indices outside 0..{len(X) - 1}: {order.min()}..{order.max()}")
    s = settings if settings is not None else StepSettings()
    gather = _gatherer(X, ws, s)
    for lo in range(start, n, bs):
        batch = order[lo:lo + bs]
        m = len(batch)
        xb = gather(batch, ws.X[:m])
        yb = np.take(y, batch, out=ws.y[:m], mode="clip")
        noise = s.batch_rng(epoch, lo // bs)
        if s.augment is not None:
            s.preprocess.transform(s.augment(xb, noise), inplace=True)
        loss, hits = train_step(model, optimizer, xb, yb, ws, s, noise)
        loss_sum += loss * m
        correct += hits
        if on_batch is not None:
            on_batch(lo + m, loss_sum, m)
        if stop is not None and lo + m < n and stop():
            return loss_sum, correct, lo + m
    return loss_sum, correct, n


def _gatherer(X: np.ndarray, ws: Workspace, s: StepSettings) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``gather(rows, out)``: the rows ``X[rows]`` written into ``out`` as model input, that is
    preprocessed (``s.preprocess``, unless ``s.augment`` distorts the raw pixels first)."""
    if s.preprocess is None:
        return lambda rows, out: np.take(X, rows, axis=0, out=out, mode="clip")
    from ..nn.kernels import gather_rows      # numba

    dt, d = ws.X.dtype, ws.X.shape[1]
    if s.augment is None:
        offset, scale = s.preprocess.offset.astype(dt), s.preprocess.scale.astype(dt)
    else:                                    # raw rows, preprocessed after the distortion
        offset, scale = np.zeros(d, dt), np.ones(d, dt)

    def gather(rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        gather_rows(X, rows, offset, scale, out)
        return out

    return gather
