"""Learning-rate schedules: the learning rate of each epoch (it is constant within an epoch
and written to ``metrics.csv``'s ``lr`` column).

With base learning rate ``lr0`` (``train.optimizer.lr``), ``E`` epochs and ``W`` warm-up
epochs, epoch ``e`` (1-based) gets:

- warm-up, any schedule, ``e <= W``: ``lr0 * e / W`` (linear warm-up, Goyal et al. 2017,
  "Accurate, large minibatch SGD: training ImageNet in 1 hour", section 2.2);
- ``constant``: ``lr0``;
- ``step``: ``lr0 * gamma ** floor((e - W - 1) / step_size)``, a decay by ``gamma`` every
  ``step_size`` epochs;
- ``cosine``: ``min_lr + (lr0 - min_lr) * (1 + cos(pi * (e - W - 1) / (E - W))) / 2``, the
  annealing of Loshchilov & Hutter 2017 ("SGDR: stochastic gradient descent with warm
  restarts", eq. 5) over the epochs after warm-up, without restarts;
- ``plateau``: ``lr0``, multiplied by ``factor`` (not below ``min_lr``) each time the
  monitored validation metric has gone ``patience`` epochs without improving, as Keras'
  ``ReduceLROnPlateau`` and PyTorch's ``ReduceLROnPlateau`` do. It depends on the run's
  history, so it is a state machine (:class:`Plateau`); the others are functions of ``e``.
"""

from __future__ import annotations

import math

from .config import ScheduleConfig


def scheduled_lr(cfg: ScheduleConfig, lr0: float, epoch: int, epochs: int) -> float:
    """The learning rate of 1-based ``epoch`` of ``epochs`` for the step, cosine and constant
    schedules, and the warm-up of every schedule (``plateau`` past its warm-up gives ``lr0``;
    :class:`Plateau` lowers it from there).

    Raises:
        ValueError: ``epoch`` outside ``1..epochs``.
    """
    if not 1 <= epoch <= epochs:
        raise ValueError(f"epoch {epoch} outside 1..{epochs}")
    warm = cfg.warmup_epochs
    if epoch <= warm:
        return lr0 * epoch / warm
    after = epoch - warm - 1          # epochs since warm-up ended: 0, 1, ...
    if cfg.name == "step":
        return lr0 * cfg.gamma ** (after // cfg.step_size)
    if cfg.name == "cosine":
        return cfg.min_lr + (lr0 - cfg.min_lr) * (1 + math.cos(math.pi * after / (epochs - warm))) / 2
    return lr0


class Plateau:
    """Reduce-on-plateau: ``lr <- max(min_lr, lr * factor)`` after every ``patience`` epochs
    in a row without improvement of the monitored metric.

    The caller counts the epochs since the last improvement (the training loop's early-
    stopping counter, which uses the same monitor and ``min_delta``) and passes it to
    :meth:`update`; the only state of its own is the current lr, saved for ``--resume``.
    """

    def __init__(self, cfg: ScheduleConfig, lr0: float, lr: float | None = None):
        self.cfg, self.lr = cfg, lr0 if lr is None else lr

    def update(self, epochs_without_improvement: int) -> float:
        """Call after each epoch's validation; returns the lr for the next epoch."""
        if epochs_without_improvement and epochs_without_improvement % self.cfg.patience == 0:
            self.lr = max(self.cfg.min_lr, self.lr * self.cfg.factor)
        return self.lr
