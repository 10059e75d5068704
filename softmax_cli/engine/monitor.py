"""The monitor: which epoch is the best by ``train.monitor``, and how long ago it was.

It decides which weights ``best.npz`` holds (and a run's final model), when early stopping
ends a run (``train.early_stopping``) and, through the count of epochs without improvement,
when the plateau schedule lowers the learning rate (:class:`~softmax_cli.schedules.Plateau`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import TrainConfig
from .state import EpochMetrics, TrainState


@dataclass
class Monitor:
    """Best epoch and epochs without improvement, by one metric.

    Its two counters are fields of the :class:`TrainState` it updates (``best_epoch`` and
    ``stale``), so that they are saved and resumed with the rest of the run; the best score
    is that of the best epoch's row. What it holds itself is the rule and, in memory, the
    best epoch's weights (a resumed run reloads them from ``best.npz``).

    Attributes:
        metric: ``val_loss`` or ``val_acc`` (``train_loss``, ``train_acc`` for a run without
            a validation split).
        min_delta: how much better than the best an epoch must be to count as an improvement.
        patience: epochs without improvement that end the run (None: never).
        best_params: copies of the best epoch's parameters, None before the first epoch.
    """

    metric: str
    min_delta: float = 0.0
    patience: int | None = None
    best_params: list[np.ndarray] | None = None

    @classmethod
    def for_run(cls, tc: TrainConfig, has_val: bool) -> "Monitor":
        """The monitor of ``train.monitor`` and ``train.early_stopping``; a run without a
        validation split monitors the same metric on its training split."""
        es = tc.early_stopping
        metric = tc.monitor if has_val else tc.monitor.replace("val", "train")
        return cls(metric, es.min_delta if es else 0.0, es.patience if es else None)

    def score(self, row: EpochMetrics) -> tuple[float, float]:
        """The epoch's score, larger is better: ``(-loss, 0)`` for a loss; ``(accuracy,
        -loss)`` for an accuracy, so that of two epochs with the same accuracy (frequent on
        a small validation split) the one with the lower loss wins."""
        if self.metric.endswith("_acc"):
            return getattr(row, self.metric), -getattr(row, self.metric.replace("_acc", "_loss"))
        return -getattr(row, self.metric), 0.0

    def update(self, state: TrainState, params: list[np.ndarray]) -> bool:
        """Judge the epoch just added to ``state.rows``: on an improvement of more than
        ``min_delta`` (or the same first score with a better second one) it becomes
        ``state.best_epoch``, ``state.stale`` is reset and ``params`` are copied; else
        ``state.stale`` counts one more epoch. Returns whether it improved."""
        row = state.rows[-1]
        best = self.score(state.rows[state.best_epoch - 1]) if state.best_epoch else (-np.inf, -np.inf)
        score = self.score(row)
        if score[0] > best[0] + self.min_delta or (score[0] == best[0] and score[1] > best[1]):
            state.best_epoch, state.stale = row.epoch, 0
            self.best_params = [p.copy() for p in params]
            return True
        state.stale += 1
        return False
