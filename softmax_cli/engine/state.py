"""The training state: everything the loop carries from one epoch to the next.

It is saved in ``last.npz`` (``metadata["train_state"]``, JSON) after every epoch and when a
run is interrupted, validated on load by the config's schema (the same type and range checks
as a config file, :func:`softmax_cli.config._build`) and by :meth:`TrainState.check`, and
restored in one place (:func:`load_state`). Adding a field is one line here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..checkpoint import Checkpoint
from ..config import Config, TrainConfig, _bounds, _build
from ..errors import UserError, quote

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"]
VAL_KEYS = ("val_loss", "val_acc")
# keys of the saved state that are no longer read: best_score (the monitored score of the best
# epoch, (-inf, -inf) before the first) is derived from that epoch's row since it is in `rows`
LEGACY_KEYS = ("best_score",)


@dataclass
class EpochMetrics:
    """One epoch's row of ``metrics.csv``: losses in nats, accuracies in [0, 1].

    ``val_loss`` and ``val_acc`` are None (an empty cell in ``metrics.csv``, ``""`` in the
    saved JSON) when the run has no validation split.
    """

    epoch: int = field(metadata=_bounds(1, None))
    train_loss: float = field(metadata=_bounds(0, None))
    train_acc: float = field(metadata=_bounds(0, 1))
    val_loss: Optional[float] = field(metadata=_bounds(0, None))
    val_acc: Optional[float] = field(metadata=_bounds(0, 1))
    lr: float = field(metadata=_bounds(0, None))
    epoch_time_s: float = field(metadata=_bounds(0, None))

    def as_dict(self) -> dict:
        """The row as ``{column: value}``, None for a missing validation metric."""
        return dataclasses.asdict(self)

    def to_json(self) -> dict:
        """The row as checkpoints and the saved state hold it (``""`` for None, as the CSV)."""
        return {k: "" if v is None else v for k, v in self.as_dict().items()}


@dataclass
class TrainState:
    """What a run has done so far, and what continuing it needs.

    Attributes:
        epoch: epochs finished.
        rows_done, loss_sum, correct: of the epoch in progress, when interrupted in its
            middle (0 at an epoch's end): training rows done, the sum of their losses
            (nats) and how many were classified right.
        epoch_rng: the state of the run's generator when the epoch in progress started,
            which redraws its order of rows on resume.
        rows: one :class:`EpochMetrics` per finished epoch.
        best_epoch, stale: the :class:`~softmax_cli.engine.monitor.Monitor`'s counters:
            the best epoch by ``train.monitor`` (0 before the first) and the epochs since.
        lr: the learning rate of the plateau schedule (the base rate with other schedules).
        t: optimiser steps taken (Adam's bias correction counts them).
        rng: the state of the run's generator at the last save (NumPy's PCG64 state dict).
    """

    epoch: int = field(default=0, metadata=_bounds(0, None))
    rows_done: int = field(default=0, metadata=_bounds(0, None))
    loss_sum: float = field(default=0.0, metadata=_bounds(0, None))
    correct: int = field(default=0, metadata=_bounds(0, None))
    epoch_rng: Optional[dict] = None
    rows: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = field(default=0, metadata=_bounds(0, None))
    stale: int = field(default=0, metadata=_bounds(0, None))
    lr: float = field(default=1e-3, metadata=_bounds(0, None, lo_open=True))
    t: int = field(default=0, metadata=_bounds(0, None))
    rng: Optional[dict] = None

    def finished(self, tc: TrainConfig) -> bool:
        """Whether the run is over (see :func:`run_finished`)."""
        es = tc.early_stopping
        return run_finished(self.epoch, self.stale, tc.epochs, es.patience if es else None)

    def to_json(self) -> dict:
        """The state as ``metadata["train_state"]`` holds it."""
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "rows": [row.to_json() for row in self.rows]}

    @classmethod
    def from_json(cls, raw: dict) -> "TrainState":
        """Build from ``metadata["train_state"]`` holding every field (and perhaps
        :data:`LEGACY_KEYS`), checking each value's type and range.

        Raises:
            UserError: ``KEY: expected ..., got VALUE`` (no file name).
        """
        raw = {k: v for k, v in raw.items() if k not in LEGACY_KEYS}
        if isinstance(raw.get("rows"), list):     # "" (the CSV's empty cell) is None here
            raw["rows"] = [{k: None if k in VAL_KEYS and v == "" else v for k, v in row.items()}
                           if isinstance(row, dict) else row for row in raw["rows"]]
        return _build(cls, raw, "")

    def check(self, has_val: bool, n_train: int | None = None) -> None:
        """Check that the values fit together as :func:`~softmax_cli.engine.train` writes
        them (each value's own type and range :meth:`from_json` checked). Passing, a state
        resumes without a traceback, not necessarily to the weights of an uninterrupted run.

        Args:
            has_val: whether the run has a validation split (its rows hold val metrics).
            n_train: the number of training rows when known (bounds ``rows_done``).

        Raises:
            UserError: ``KEY: expected ..., got VALUE`` for the first value that does not fit.
        """
        def bad(key: str, expected: str, value) -> UserError:
            return UserError(f"{key}: expected {expected}, got {quote(value)}")

        if n_train is not None and self.rows_done >= n_train:
            raise bad("rows_done", f"a value < {n_train} (the training images)", self.rows_done)
        if self.correct > self.rows_done:
            raise bad("correct", f"a value <= {self.rows_done} (rows_done)", self.correct)
        if self.rows_done == 0 and self.loss_sum != 0:
            raise bad("loss_sum", "0 when rows_done is 0", self.loss_sum)
        for key in ("epoch_rng", "rng"):
            try:   # the generator train() seeds; setting its state checks the value thoroughly
                np.random.default_rng(0).bit_generator.state = getattr(self, key)
            except (TypeError, ValueError, KeyError, OverflowError):
                raise bad(key, "a state of NumPy's default generator (PCG64)", getattr(self, key)) from None
        if len(self.rows) != self.epoch:
            raise bad("rows", f"a list of {self.epoch} metrics rows (one per epoch done)",
                      [r.as_dict() for r in self.rows])
        for i, row in enumerate(self.rows):
            if row.epoch != i + 1:
                raise bad(f"rows[{i}].epoch", str(i + 1), row.epoch)
            for key in VAL_KEYS:
                if (getattr(row, key) is None) == has_val:
                    raise bad(f"rows[{i}].{key}", "a number" if has_val else
                              "'' (the run has no validation split)", getattr(row, key))
        if not min(self.epoch, 1) <= self.best_epoch <= self.epoch:        # epoch 1 beats none
            raise bad("best_epoch", f"a value in 1..{self.epoch} (an epoch done)" if self.epoch
                      else "0 (no epoch is done)", self.best_epoch)
        if self.stale > self.epoch - self.best_epoch:
            raise bad("stale", f"a value <= {self.epoch - self.best_epoch} (epochs since best_epoch)",
                      self.stale)


def run_finished(epochs_done: int, stale: int, epochs: int, patience: int | None) -> bool:
    """The one rule for a finished run: all ``epochs`` trained, or early stopping's
    ``patience`` (None: no early stopping) used up by ``stale`` epochs without improvement."""
    return epochs_done >= epochs or (patience is not None and stale >= patience)


def load_state(ckpt: Checkpoint, cfg: Config, n_train: int | None = None) -> TrainState:
    """The training state of ``ckpt`` (a ``last.npz``) when its run can be continued.

    Args:
        ckpt: the checkpoint; ``cfg``: its config (``ckpt.meta["config"]``, validated).
        n_train: the number of training images when known (bounds ``rows_done``).

    Raises:
        UserError: naming the checkpoint: it has no training state (e.g. a ``best.npz``),
            its state lacks a key (an older softmax), a value is damaged (``its training
            state is damaged: KEY: expected ..., got VALUE``), or its run already finished
            (all epochs, or stopped early).
    """
    raw = ckpt.meta.get("train_state")
    if not isinstance(raw, dict):
        raise UserError(f"{ckpt.path}: no training state to resume from; resume from the run's last.npz")
    missing = [f.name for f in dataclasses.fields(TrainState) if f.name not in raw]
    if missing:   # e.g. a last.npz from before the lr schedules ("lr")
        raise UserError(f"{ckpt.path}: its training state lacks {', '.join(missing)} (written by an older "
                        f"softmax?); it cannot be resumed: start a new run from its config.yaml")
    try:
        state = TrainState.from_json(raw)
        state.check(cfg.data.val_fraction > 0, n_train)
    except UserError as exc:
        raise UserError(f"{ckpt.path}: its training state is damaged: {exc}") from None
    if state.finished(cfg.train):
        how = "stopped early at" if state.epoch < cfg.train.epochs else "trained all"
        raise UserError(f"{ckpt.path}: this run already finished ({how} epoch {state.epoch} "
                        f"of {cfg.train.epochs})")
    return state
