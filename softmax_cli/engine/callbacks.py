"""Callbacks: what happens around the training loop, each concern an object of its own.

The loop (:func:`~softmax_cli.engine.train`) calls, in order: ``on_train_start(state)``; per
epoch ``on_epoch_start(state)``, ``on_batch_end(state, rows_done, loss_sum)`` after every
batch, ``on_epoch_end(state, metrics)``; and ``on_train_end(state, result)`` however the run
ends (finished, stopped, interrupted, diverged: ``result.outcome`` says which). A callback
asks the loop to stop after the current epoch with :meth:`Callback.request_stop`; the run
then ends as a finished one does (the best weights are tested and saved).

``state`` is the :class:`~softmax_cli.engine.state.TrainState`: read it, do not change it.
``metrics`` is the epoch's row of ``metrics.csv`` as a dict (``epoch``, ``train_loss``,
``train_acc``, ``val_loss``, ``val_acc``, ``lr``, ``epoch_time_s``; the val metrics None
without a validation split).

The run's own outputs are callbacks too: :class:`ProgressBar`, :class:`EpochLog`,
:class:`MetricsWriter` (``metrics.csv``), :class:`CheckpointWriter` (``best.npz``,
``last.npz``) and :class:`CurvesWriter` (``curves.png``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..csvout import dict_rows_text
from .state import METRIC_COLUMNS, TrainState

if TYPE_CHECKING:
    from ..data import Preprocessor
    from ..ema import WeightAverage
    from ..nn import MLP
    from ..optim import Optimizer
    from .loop import TrainResult
    from .rundir import RunDir

CURVES_EVERY_S = 10.0   # redraw curves.png at most this often while training (drawing takes ~1 s)


class Callback:
    """Base class of callbacks: every hook does nothing; override the ones you need.

    Example, stopping a run once the validation accuracy reaches 0.99::

        class Enough(Callback):
            def on_epoch_end(self, state, metrics):
                if metrics["val_acc"] >= 0.99:
                    self.request_stop(f"val_acc {metrics['val_acc']:.4f} at epoch {metrics['epoch']}")
    """

    stop_reason: str | None = None

    def on_train_start(self, state: TrainState) -> None:
        """Before the first epoch (of this call: a resumed run starts mid-way)."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Before epoch ``state.epoch + 1``'s first batch (or the first batch left of it)."""

    def on_batch_end(self, state: TrainState, rows_done: int, loss_sum: float) -> None:
        """After each batch: rows of the epoch done, and the sum of their losses (nats)."""

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        """After each epoch's validation, with the state updated (best epoch, learning rate)."""

    def on_train_end(self, state: TrainState, result: TrainResult) -> None:
        """When the run ends, however it ends (``result.outcome``)."""

    def request_stop(self, reason: str = "a callback asked to stop") -> None:
        """Ask the loop to stop after the current epoch; ``reason`` ends up in
        ``TrainResult.stop_reason``."""
        self.stop_reason = reason


class CallbackList:
    """Calls each hook of every callback, in order."""

    def __init__(self, callbacks: Iterable[Callback]):
        self.callbacks = list(callbacks)

    def on_train_start(self, state: TrainState) -> None:
        for cb in self.callbacks:
            cb.on_train_start(state)

    def on_epoch_start(self, state: TrainState) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(state)

    def batch_hook(self, state: TrainState) -> Callable[[int, float, int], None] | None:
        """The per-batch call for :func:`~softmax_cli.engine.step.train_epoch`: None when
        no callback overrides ``on_batch_end`` (nothing to call thousands of times)."""
        busy = [cb for cb in self.callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
        if not busy:
            return None

        def on_batch(rows_done: int, loss_sum: float, batch_rows: int) -> None:
            for cb in busy:
                cb.on_batch_end(state, rows_done, loss_sum)

        return on_batch

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(state, metrics)

    def on_train_end(self, state: TrainState, result: TrainResult) -> None:
        for cb in self.callbacks:
            cb.on_train_end(state, result)

    @property
    def stop_reason(self) -> str | None:
        """The first stop requested by a callback, or None."""
        return next((cb.stop_reason for cb in self.callbacks if getattr(cb, "stop_reason", None)), None)


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr: images done and the epoch's mean loss so far."""

    def __init__(self, n_rows: int, epochs: int):
        self.n_rows, self.epochs, self.bar = n_rows, epochs, None

    def on_epoch_start(self, state: TrainState) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.n_rows, initial=state.rows_done, desc=f"epoch {state.epoch + 1}/{self.epochs}",
                        unit="img", unit_scale=True, leave=False, dynamic_ncols=True, mininterval=0.5)

    def on_batch_end(self, state: TrainState, rows_done: int, loss_sum: float) -> None:
        self.bar.update(rows_done - self.bar.n)
        self.bar.set_postfix(loss=f"{loss_sum / rows_done:.4f}", refresh=False)

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        self._close()

    def on_train_end(self, state: TrainState, result: TrainResult) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochLog(Callback):
    """Lines for a person: the run directory first, then one line per epoch."""

    def __init__(self, log: Callable[[str], None], epochs: int, run: RunDir | None = None):
        self.log, self.epochs, self.run = log, epochs, run

    def on_train_start(self, state: TrainState) -> None:
        if self.run is not None:
            self.log(f"{'continuing' if self.run.resumed else 'writing'} {self.run.path}")

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        text = (f"epoch {metrics['epoch']:>3}/{self.epochs}  train_loss {metrics['train_loss']:.4f}  "
                f"train_acc {metrics['train_acc']:.4f}")
        if metrics["val_loss"] is not None:
            text += f"  val_loss {metrics['val_loss']:.4f}  val_acc {metrics['val_acc']:.4f}"
        self.log(text + f"  ({metrics['epoch_time_s']:.2f}s)")


class MetricsWriter(Callback):
    """``metrics.csv``: a row per epoch (:data:`METRIC_COLUMNS`), rewritten atomically after each."""

    def __init__(self, run: RunDir):
        self.run = run

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        # the one CSV writer (spreadsheet-safe); None is an empty cell
        text = dict_rows_text(METRIC_COLUMNS, (row.as_dict() for row in state.rows))
        self.run.write("metrics.csv", text.encode())


class CheckpointWriter(Callback):
    """``best.npz`` whenever the monitored metric improves (rewritten at the end with the
    test metrics added) and ``last.npz`` after every epoch and on an interrupt: the weights,
    the optimiser state, the weight average and the training state, everything ``--resume``
    continues from. ``best.npz`` holds ``evaluated`` (the weight average with ``train.ema``,
    else ``model`` itself), ``last.npz`` the weights being trained."""

    def __init__(self, run: RunDir, model: MLP, pre: Preprocessor, optimizer: Optimizer,
                 evaluated: MLP | None = None, ema: WeightAverage | None = None):
        self.run, self.model, self.pre, self.optimizer = run, model, pre, optimizer
        self.evaluated, self.ema = evaluated if evaluated is not None else model, ema

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        row = state.rows[-1].to_json()
        if state.best_epoch == state.epoch:
            self.run.save("best.npz", self.evaluated, self.pre, state.epoch, row)
        self._save_last(state)

    def on_train_end(self, state: TrainState, result: TrainResult) -> None:
        if result.outcome == "interrupted" and state.rows_done:      # in the middle of an epoch
            self._save_last(state)
        elif result.outcome in ("finished", "stopped_early", "stopped"):
            best = state.rows[result.best_epoch - 1].to_json()
            extra = {"calibration": result.calibration} if result.calibration else None
            self.run.save("best.npz", result.model, self.pre, result.best_epoch,
                          {**best, "test_loss": result.test_loss, "test_acc": result.test_acc}, extra=extra)

    def _save_last(self, state: TrainState) -> None:
        row = state.rows[-1].to_json() if state.rows else {}
        arrays = {**self.optimizer.state_arrays(), **(self.ema.state_arrays() if self.ema else {})}
        self.run.save("last.npz", self.model, self.pre, state.epoch, row, state.to_json(), arrays)


class CurvesWriter(Callback):
    """Keeps ``curves.png`` of a run (:func:`~softmax_cli.report.plot_curves`) up to date.

    Drawing costs about a second (importing matplotlib, then 0.3-0.8 s a picture), longer
    than a whole epoch of a small model, so the picture is drawn after an epoch only when
    :data:`CURVES_EVERY_S` seconds have passed since training started or since it was last
    drawn (a short run draws it once), and always when training ends: finished, stopped
    early, interrupted (SIGINT, SIGTERM) or stopped by a non-finite loss. Each picture is
    written atomically, so an interrupted run keeps a whole one; a resumed run holds all
    earlier rows, so its final picture shows every epoch. matplotlib is imported on the
    first drawing.
    """

    def __init__(self, path: Path, monitor: str, every_s: float = CURVES_EVERY_S,
                 train_conditions: tuple[str, ...] = ()):
        self.path, self.monitor, self.every_s = path, monitor, every_s
        self.train_conditions = train_conditions     # e.g. ("dropout",): see report.plot_curves
        self.drawn_at = time.monotonic()     # the clock starts with training

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        self.update([row.to_json() for row in state.rows], state.best_epoch)

    def on_train_end(self, state: TrainState, result: TrainResult) -> None:
        self.update([row.to_json() for row in state.rows], state.best_epoch, force=True)

    def update(self, rows: list[dict], best_epoch: int, force: bool = False) -> None:
        """Redraw from ``rows`` (``metrics.csv`` rows) when due or ``force``; nothing without rows.

        Raises:
            OSError: the picture cannot be written; the previous one is intact.
        """
        if not rows or not (force or time.monotonic() - self.drawn_at >= self.every_s):
            return
        from ..report import plot_curves

        plot_curves(self.path, rows, best_epoch, self.monitor, self.train_conditions)
        self.drawn_at = time.monotonic()
