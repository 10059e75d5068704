"""The training loop: epochs of seeded shuffles and mini-batch steps, validation, the monitor.

:func:`train` is the loop; :class:`Trainer` builds what it needs from a config (data,
model, optimiser, state: new or resumed) and does the bookkeeping at either end of an epoch;
:mod:`~softmax_cli.engine.step` holds the step itself (forward, loss, backward, step). The
files of a run are written by callbacks (:mod:`~softmax_cli.engine.callbacks`) into its run
directory (:mod:`~softmax_cli.engine.rundir`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..calibration import calibration_record
from ..checkpoint import Checkpoint, load_checkpoint
from ..config import Config
from ..data import Preprocessor, Splits
from ..data.sources import Dataset
from ..ema import WeightAverage
from ..errors import UserError
from ..experiment import layer_sizes, prepare_data
from ..metrics import evaluate
from ..nn import MLP, Workspace
from ..optim import Optimizer, make_optimizer
from ..schedules import Plateau, scheduled_lr
from .callbacks import (Callback, CallbackList, CheckpointWriter, CurvesWriter, EpochLog, MetricsWriter,
                        ProgressBar)
from .monitor import Monitor
from .rundir import RunDir
from .state import EpochMetrics, TrainState, load_state
from .step import StepSettings, compact_pixels, train_epoch


@dataclass
class TrainResult:
    """How a training run ended (accuracies in [0, 1], losses in nats).

    Attributes:
        run_dir: the run directory (None for a run that writes no files).
        epochs_run: epochs finished, earlier calls of a resumed run included.
        best_epoch: the best epoch by ``train.monitor`` (0: none finished).
        stopped_early: early stopping ended the run.
        best: the best epoch's metrics row (see :class:`~softmax_cli.engine.state.EpochMetrics`).
        test_loss, test_acc: of the best weights on the test split (NaN without one, or
            when the run did not finish).
        n_val, n_test: rows in the validation and test splits.
        outcome: ``finished`` (every epoch), ``stopped_early``, ``stopped`` (a callback asked),
            ``interrupted`` (SIGINT, SIGTERM) or ``diverged`` (a loss became NaN or infinite).
        stop_reason: what the callback that stopped the run gave.
        model: the best epoch's weights (None before the first epoch).
        preprocessor: the preprocessing the model's inputs go through.
        history: every epoch's metrics row.
        calibration: with ``train.calibration: temperature`` and a validation split, what
            temperature scaling found (:func:`~softmax_cli.calibration.calibration_record`:
            ``temperature``, and the validation and test NLL and ECE before and after); the
            test metrics above are then those of the calibrated probabilities. None otherwise.
    """

    run_dir: Path | None
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    best: dict = field(default_factory=dict)
    test_loss: float = float("nan")
    test_acc: float = float("nan")
    n_val: int = 0
    n_test: int = 0
    outcome: str = "finished"
    stop_reason: str | None = None
    model: MLP | None = None
    preprocessor: Preprocessor | None = None
    history: list[dict] = field(default_factory=list)
    calibration: dict | None = None


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving ``last.npz`` (see :func:`train`)."""

    def __init__(self, run_dir: Path, signal_name: str, epoch: int, rows_done: int, n: int):
        self.run_dir, self.signal_name = run_dir, signal_name
        super().__init__(f"{signal_name} in epoch {epoch} after {rows_done} of {n} training images; "
                         f"saved {run_dir / 'last.npz'}; continue with: "
                         f"softmax train --resume {run_dir / 'last.npz'}")


def train(cfg: Config, data: tuple[Dataset, Splits] | None = None, *, resume: Checkpoint | None = None,
          callbacks: Iterable[Callback] = (), progress: bool = False, log: Callable[[str], None] | None = None,
          write_run: bool = True) -> TrainResult:
    """Train the config's MLP; with ``write_run``, in a new run directory (or ``resume``'s).

    Each epoch: a seeded shuffle of the training rows, a :func:`~softmax_cli.engine.step.train_step`
    (forward, loss, backward, step) per batch, validation, then the monitor and the learning
    rate schedule (:meth:`Trainer.end_epoch`) and the callbacks. The run ends when every
    epoch is trained or early stopping's patience is used up (one rule:
    :meth:`TrainState.finished`), or a callback asks; then the best weights are tested.

    With ``write_run``, the run directory is made once the data, the model and the optimiser
    are built (a bad input leaves no empty run behind), and SIGINT or SIGTERM stop the loop
    at the next batch boundary: ``last.npz`` is saved, then :class:`TrainingInterrupted` is
    raised; a signal after the last epoch's final batch lets the run finish. ``resume`` (such
    a ``last.npz``) continues that run in its own directory and ends with the weights and
    metrics an uninterrupted run would have had, bit for bit (same machine and thread count).

    Args:
        cfg: a validated config (for ``resume``: the checkpoint's own).
        data: ``prepare_data(cfg)`` when the caller has it already.
        resume: a ``last.npz`` checkpoint with training state to continue from.
        callbacks: more :class:`~softmax_cli.engine.callbacks.Callback`\\ s, called after the run's own.
        progress: show a tqdm bar per epoch on stderr.
        log: receives a line naming the run directory, then one line per epoch.
        write_run: write the run directory (else nothing is written and signals are not caught).

    Returns:
        A :class:`TrainResult`; the test metrics are those of the best weights.

    Raises:
        UserError: bad data, the run directory cannot be created, or ``resume`` cannot be
            continued (no training state, a damaged one, finished, its data or run directory changed).
        TrainingInterrupted: SIGINT or SIGTERM; ``last.npz`` was saved first.
        FloatingPointError: the training or validation loss became NaN or infinite (its
            message names the epoch and the checkpoint kept); the checkpoints of the last
            good epoch stay as they were.
        OSError: a checkpoint, metrics file or ``curves.png`` cannot be written; the previous
            one is intact.
        MemoryError: the network does not fit in memory.
    """
    t = Trainer.build(cfg, data, resume)
    run = None
    if write_run:
        run = RunDir.reopen(resume, cfg, t.ds, t.splits) if resume else RunDir.create(cfg, t.ds, t.splits)
    cbs = CallbackList([*t.standard_callbacks(run, progress, log), *callbacks])
    signals: list[str] = []
    # a diverging run overflows in NumPy's products: it is reported once, as the
    # FloatingPointError of end_epoch, not as NumPy's RuntimeWarnings along the way
    with _stop_requests(signals, enabled=write_run), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        cbs.on_train_start(t.state)
        on_batch, outcome = cbs.batch_hook(t.state), "finished"
        for epoch in range(t.state.epoch + 1, cfg.train.epochs + 1):
            started = time.perf_counter()
            order = t.begin_epoch(epoch)                        # this epoch's shuffle and learning rate
            cbs.on_epoch_start(t.state)
            # each batch: forward, loss, backward, step (step.train_step)
            loss_sum, correct, done = train_epoch(
                t.model, t.optimizer, t.X_train, t.splits.y_train, order, t.ws, on_batch, start=t.state.rows_done,
                loss_sum=t.state.loss_sum, correct=t.state.correct, stop=lambda: bool(signals),
                settings=t.settings, epoch=epoch)
            if done < t.n:                                      # a signal, in the middle of the epoch
                t.pause(done, loss_sum, correct)
                outcome = "interrupted"
                break
            try:
                metrics = t.end_epoch(epoch, loss_sum, correct, started)   # validation, monitor, schedule
            except FloatingPointError as exc:
                cbs.on_train_end(t.state, t.result("diverged", run))
                raise FloatingPointError(f"{exc}{t.kept(run)}") from None
            cbs.on_epoch_end(t.state, metrics)
            if t.state.finished(cfg.train):
                outcome = "finished" if epoch == cfg.train.epochs else "stopped_early"
                break
            if cbs.stop_reason or signals:
                outcome = "stopped" if cbs.stop_reason else "interrupted"
                break
        result = t.result(outcome, run, cbs.stop_reason)        # the best weights on the test split
        cbs.on_train_end(t.state, result)
    if outcome == "interrupted":
        raise TrainingInterrupted(run.path, signals[0], t.state.epoch + 1, t.state.rows_done, t.n)
    return result


@dataclass
class Trainer:
    """What :func:`train` works with: the data, the model, its optimiser and the state.

    Attributes:
        X_train: the training split's raw pixels (uint8 when lossless: :func:`compact_pixels`),
            preprocessed batch by batch as they are gathered.
        X_val: the validation split, preprocessed (None without one).
        rng: the run's generator (seeded by ``cfg.seed``): initial weights, then each epoch's order.
    """

    cfg: Config
    ds: Dataset
    splits: Splits
    pre: Preprocessor
    model: MLP
    optimizer: Optimizer
    settings: StepSettings
    X_train: np.ndarray
    X_val: np.ndarray | None
    rng: np.random.Generator
    monitor: Monitor
    state: TrainState
    plateau: Plateau | None = None
    ws: Workspace | None = None
    evaluated: MLP | None = None      # what is validated and kept: the model, or its weight average

    @property
    def ema(self) -> WeightAverage | None:
        """The moving average of the weights (``train.ema``), None when off."""
        return self.settings.ema

    @property
    def n(self) -> int:
        """Rows in the training split."""
        return len(self.splits.y_train)

    @classmethod
    def build(cls, cfg: Config, data: tuple[Dataset, Splits] | None = None,
              resume: Checkpoint | None = None) -> "Trainer":
        """Build from the config (and ``resume``'s model, preprocessing and state).

        Raises:
            UserError: bad data, or ``resume`` cannot be continued (see :meth:`restore`).
        """
        ds, splits = data if data is not None else prepare_data(cfg)
        tc, dtype = cfg.train, np.dtype(cfg.model.dtype)
        rng = np.random.default_rng(cfg.seed)
        pre = resume.preprocessor if resume else Preprocessor.fit(splits.X_train, ds.pixel_max, cfg.data.normalize)
        batch = min(tc.batch_size, len(splits.y_train))
        settings = StepSettings(label_smoothing=tc.label_smoothing, dropout=cfg.model.dropout_rates(),
                                max_norm=tc.max_norm, preprocess=pre, seed=cfg.seed)
        if tc.augment is not None:   # every source has 2-D images (CSV: data.image_shape or square)
            from ..augment import Augmenter

            settings.augment = Augmenter(tc.augment, ds.image_shape, batch)
        model = resume.model if resume else MLP(layer_sizes(cfg, ds), cfg.model.activation, dtype=dtype, rng=rng)
        optimizer = make_optimizer(tc.optimizer.name, model.params, decay=[True, False] * model.n_layers,
                                   **{k: v for k, v in vars(tc.optimizer).items() if k != "name"})
        if tc.ema is not None:        # starts at the initial weights; a resumed run's is restored
            settings.ema = WeightAverage(model.params, tc.ema)
        t = cls(cfg, ds, splits, pre, model, optimizer, settings, compact_pixels(splits.X_train),
                None if splits.X_val is None else pre.transform(splits.X_val, dtype), rng,
                Monitor.for_run(tc, splits.X_val is not None), TrainState(lr=tc.optimizer.lr))
        t.evaluated = model if settings.ema is None else MLP(   # shares the average's arrays
            model.sizes, model.activation, dtype=model.dtype, params=settings.ema.averaged)
        if resume:
            t.restore(resume)
        if tc.schedule.name == "plateau":
            t.plateau = Plateau(tc.schedule, tc.optimizer.lr, lr=t.state.lr)
        t.ws = model.workspace(batch, dropout=settings.dropout)    # every batch reuses these buffers
        return t

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt`` (a ``last.npz``): its state, optimiser, weight average, generator
        and best weights.

        Raises:
            UserError: naming the checkpoint: no training state, a damaged one (see
                :func:`~softmax_cli.engine.state.load_state`), a finished run, or a run
                directory whose ``best.npz`` no longer matches.
        """
        self.state = s = load_state(ckpt, self.cfg, self.n)
        if ckpt.model.sizes != layer_sizes(self.cfg, self.ds):
            raise UserError(f"{ckpt.path}: the model is {ckpt.model.sizes}, its config's data gives "
                            f"{layer_sizes(self.cfg, self.ds)}")
        try:
            self.optimizer.load_state(s.t, ckpt.optimizer_state)
            if self.ema is not None:
                self.ema.load_state(ckpt.optimizer_state)
            self.rng.bit_generator.state = s.epoch_rng if s.rows_done else s.rng
        except (ValueError, TypeError, KeyError) as exc:
            raise UserError(f"{ckpt.path}: unusable training state: {exc}") from None
        if s.best_epoch:
            best_path = ckpt.path.parent / "best.npz"
            best = load_checkpoint(best_path)
            if best.meta.get("epoch") != s.best_epoch:
                raise UserError(f"{best_path}: holds epoch {best.meta.get('epoch')}, the run's best was "
                                f"epoch {s.best_epoch}")
            self.monitor.best_params = best.model.params

    def standard_callbacks(self, run: RunDir | None, progress: bool,
                           log: Callable[[str], None] | None) -> list[Callback]:
        """The run's own callbacks, in the order their outputs are written each epoch."""
        epochs = self.cfg.train.epochs
        cbs: list[Callback] = [ProgressBar(self.n, epochs)] if progress else []
        if run is not None:
            cbs += [MetricsWriter(run), CheckpointWriter(run, self.model, self.pre, self.optimizer,
                                                         self.evaluated, self.ema)]
        if log is not None:
            cbs.append(EpochLog(log, epochs, run))
        if run is not None:
            cbs.append(CurvesWriter(run.path / "curves.png", self.monitor.metric,
                                    train_conditions=train_conditions(self.cfg)))
        return cbs

    def begin_epoch(self, epoch: int) -> np.ndarray:
        """Set the epoch's learning rate and return its order of training rows (int64 (n,)).

        The order is drawn from the run's generator, whose state at the start of the epoch
        is kept (``state.epoch_rng``): an epoch interrupted and resumed redraws the same one.
        """
        if self.state.rows_done == 0:
            self.state.epoch_rng = self.rng.bit_generator.state
        else:
            self.rng.bit_generator.state = self.state.epoch_rng
        tc = self.cfg.train
        self.optimizer.lr = scheduled_lr(tc.schedule, tc.optimizer.lr, epoch, tc.epochs)
        if self.plateau is not None and epoch > tc.schedule.warmup_epochs:
            self.optimizer.lr = self.plateau.lr
        return self.rng.permutation(self.n)

    def end_epoch(self, epoch: int, loss_sum: float, correct: int, started: float) -> dict:
        """Validate (the weight average with ``train.ema``), record the epoch's metrics row, let
        the monitor judge it, set the next learning rate of a plateau schedule; returns the row
        (:meth:`EpochMetrics.as_dict`).

        Raises:
            FloatingPointError: the training or validation loss is NaN or infinite (the
                state is left as it was after the previous epoch).
        """
        train_loss, val_loss, val_acc = loss_sum / self.n, None, None
        if self.X_val is not None:
            ev = evaluate(self.evaluated, self.X_val, self.splits.y_val)
            val_loss, val_acc = ev.loss, ev.accuracy
        for name, value in (("train loss", train_loss), ("val loss", val_loss)):
            if value is not None and not math.isfinite(value):
                raise FloatingPointError(f"epoch {epoch}: the {name} became {value}; try a lower train.optimizer.lr")
        row = EpochMetrics(epoch, train_loss, correct / self.n, val_loss, val_acc, self.optimizer.lr,
                           time.perf_counter() - started)
        s = self.state
        s.rows.append(row)
        self.monitor.update(s, self.evaluated.params)
        if self.plateau is not None and epoch >= self.cfg.train.schedule.warmup_epochs:
            s.lr = self.plateau.update(s.stale)
        s.epoch, s.rows_done, s.loss_sum, s.correct = epoch, 0, 0.0, 0
        self._sync()
        return row.as_dict()

    def pause(self, rows_done: int, loss_sum: float, correct: int) -> None:
        """Record an epoch stopped after ``rows_done`` rows, to be saved and resumed."""
        self.state.rows_done, self.state.loss_sum, self.state.correct = rows_done, loss_sum, correct
        self._sync()

    def _sync(self) -> None:
        """Copy what the optimiser and the generator hold into the state, to be saved."""
        self.state.t, self.state.rng = self.optimizer.t, self.rng.bit_generator.state

    def result(self, outcome: str, run: RunDir | None, stop_reason: str | None = None) -> TrainResult:
        """The run's :class:`TrainResult`; a run that ended normally has its best weights
        evaluated on the test split (when it has rows)."""
        s, X_test, y_test = self.state, self.splits.X_test, self.splits.y_test
        best = None
        if self.monitor.best_params is not None:
            best = MLP(self.model.sizes, self.model.activation, dtype=self.model.dtype, params=self.monitor.best_params)
        result = TrainResult(run_dir=run.path if run else None, epochs_run=len(s.rows), best_epoch=s.best_epoch,
                             stopped_early=outcome == "stopped_early",
                             best=s.rows[s.best_epoch - 1].as_dict() if s.best_epoch else {},
                             n_val=0 if self.X_val is None else len(self.X_val), n_test=len(y_test),
                             outcome=outcome, stop_reason=stop_reason, model=best, preprocessor=self.pre,
                             history=[row.as_dict() for row in s.rows])
        if outcome not in ("finished", "stopped_early", "stopped") or best is None:
            return result
        X_test = self.pre.transform(X_test, self.model.dtype) if len(y_test) else None
        if self.cfg.train.calibration == "temperature" and self.X_val is not None:
            result.calibration = calibration_record(best.logits(self.X_val), self.splits.y_val,
                                                    None if X_test is None else best.logits(X_test), y_test)
        if X_test is not None:
            T = result.calibration["temperature"] if result.calibration else 1.0
            test = evaluate(best, X_test, y_test, temperature=T)
            result.test_loss, result.test_acc = test.loss, test.accuracy
        return result

    def kept(self, run: RunDir | None) -> str:
        """What a failed run leaves behind, for its error message: `` (KEPT)`` or ``""``."""
        if run is None:
            return ""
        if self.state.rows:
            return f" ({run.path / 'last.npz'} holds epoch {self.state.epoch}, the last good one)"
        return f" (no checkpoint was written to {run.path})"


def train_conditions(cfg: Config) -> tuple[str, ...]:
    """What makes the training figures of ``metrics.csv`` unlike the validation figures: the
    regularisers on only in training (dropout, label smoothing, augmentation), by name."""
    on = []
    if any(cfg.model.dropout_rates()):
        on.append("dropout")
    if cfg.train.label_smoothing:
        on.append("label smoothing")
    if cfg.train.augment is not None:
        on.append("augmentation")
    return tuple(on)


@contextlib.contextmanager
def _stop_requests(requested: list[str], enabled: bool = True):
    """While training: SIGINT (Ctrl-C) and SIGTERM only append their name to ``requested``,
    which the loop honours at the next batch boundary so that what it saves is consistent;
    a second Ctrl-C interrupts at once. Nothing is caught when not ``enabled`` or outside
    the main thread."""
    def handler(signum, frame):
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.append(signal.Signals(signum).name)

    if not enabled or threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
