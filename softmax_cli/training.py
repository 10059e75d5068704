"""The training loop: seeded shuffling, mini-batches, validation, checkpoints, early stopping.

A run writes into its own directory (see :func:`make_run_dir`): the resolved ``config.yaml``,
``metrics.csv`` (one row per epoch, rewritten atomically after each), ``last.npz`` (after every
epoch), ``best.npz`` (whenever ``train.monitor`` improves; at the end it is rewritten
with the test metrics added) and ``curves.png`` (see :class:`CurvesWriter`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .checkpoint import Checkpoint, atomic_write, load_checkpoint, save_checkpoint
from .config import Config, dump_yaml
from .csvout import dict_rows_text
from .data import Preprocessor, Splits, load_dataset, make_splits
from .data.images import style_for
from .data.sources import Dataset
from .errors import UserError, quote, quote_data
from .metrics import Evaluation, evaluate
from .nn import MLP, Workspace
from .optim import Optimizer, make_optimizer
from .schedules import Plateau, scheduled_lr

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"]
CURVES_EVERY_S = 10.0   # redraw curves.png at most this often while training (drawing takes ~1 s)


class CurvesWriter:
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

    def __init__(self, path: Path, monitor: str, every_s: float = CURVES_EVERY_S):
        self.path, self.monitor, self.every_s = path, monitor, every_s
        self.drawn_at = time.monotonic()     # the clock starts with training

    def update(self, rows: list[dict], best_epoch: int, force: bool = False) -> None:
        """Redraw from ``rows`` (``metrics.csv`` rows) when due or ``force``; nothing without rows.

        Raises:
            OSError: the picture cannot be written; the previous one is intact.
        """
        if not rows or not (force or time.monotonic() - self.drawn_at >= self.every_s):
            return
        from .report import plot_curves

        plot_curves(self.path, rows, best_epoch, self.monitor)
        self.drawn_at = time.monotonic()


def make_run_dir(output_dir: str | Path, name: str) -> Path:
    """Create and return ``output_dir/name``, or ``name-2``, ``name-3``, ... if taken.

    An existing run directory is never reused, so no earlier run is overwritten.

    Raises:
        UserError: ``output_dir`` exists and is not a directory, or it or the run directory
            cannot be created (permissions, a name too long, a read-only file system).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir}: output.dir exists and is not a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for i in range(1, 100_000):
            path = output_dir / (name if i == 1 else f"{name}-{i}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise UserError(f"{exc.filename or output_dir}: cannot create the run directory "
                        f"(output.dir, name): {exc.strerror or exc}") from None
    raise UserError(f"{output_dir}: no free run directory name for {name!r}")


def prepare_data(cfg: Config) -> tuple[Dataset, Splits]:
    """Load the config's dataset and split it (the same split for train and eval).

    The splits hold copies of every row, so the returned dataset's ``X`` and ``y`` are
    emptied (0 rows, the same number of features): keeping both would double the memory
    (for MNIST, 180 MiB more).

    Raises:
        UserError: the data cannot be read or split (see :func:`load_dataset`).
    """
    ds = load_dataset(cfg.data)
    splits = make_splits(ds, cfg.data, cfg.seed)
    ds.X, ds.y = np.empty((0, ds.X.shape[1]), ds.X.dtype), np.empty(0, ds.y.dtype)
    return ds, splits


def evaluate_checkpoint(ckpt: Checkpoint, cfg: Config, split: str, origin: str,
                        keep_images: bool = False) -> Evaluation:
    """Evaluate a checkpoint on one split (``train``, ``val`` or ``test``) of ``cfg``'s data.

    The data's classes are matched to the checkpoint's by name, so a data set holding only
    some of the classes (say the digits 3 and 5) is scored against the right outputs.
    ``keep_images`` also returns the split's images (``Evaluation.images``: float32
    (n, h, w), the raw pixels divided by the data's ``pixel_max``), e.g. to draw them.

    Raises:
        UserError: naming ``origin``: no validation split, a feature count the model does not
            take, or a class the model does not know; or the data cannot be loaded.
    """
    ds, splits = prepare_data(cfg)
    X, y = splits.part(split)
    if X is None:
        raise UserError(f"{origin}: there is no validation split (data.val_fraction is 0)")
    if X.shape[1] != ckpt.model.sizes[0]:
        raise UserError(f"{origin}: the data has {X.shape[1]} features per image, "
                        f"the model expects {ckpt.model.sizes[0]}")
    unknown = [c for c in ds.classes if c not in ckpt.classes]
    if unknown:
        raise UserError(f"{origin}: class {quote_data(unknown[0])} of the data is not one the model "
                        f"knows ({', '.join(ckpt.classes)})")
    to_model = np.array([ckpt.classes.index(c) for c in ds.classes], dtype=np.int64)
    ev = evaluate(ckpt.model, ckpt.preprocessor.transform(X, ckpt.model.dtype), to_model[y])
    if keep_images:
        ev.images = (X / np.float32(ds.pixel_max)).astype(np.float32, copy=False).reshape(-1, *ds.image_shape)
    return ev


def layer_sizes(cfg: Config, ds: Dataset) -> list[int]:
    """``[n_features, *hidden, n_classes]`` of the config's network on dataset ``ds``."""
    return [ds.X.shape[1], *cfg.model.hidden, len(ds.classes)]


def run_gradcheck(cfg: Config, samples: int = 8, entries: int = 40) -> tuple[list[int], int, list]:
    """Gradient check of the config's network, in float64, on ``samples`` training examples.

    The inputs are preprocessed exactly as training would (fitted on the training split).

    Returns:
        ``(sizes, n_samples, checks)`` with one :class:`~softmax_cli.nn.gradcheck.ParamCheck`
        per parameter array.

    Raises:
        UserError: the config's data cannot be loaded.
    """
    from .nn.gradcheck import check_gradients

    ds, splits = prepare_data(cfg)
    rng = np.random.default_rng(cfg.seed)
    pre = Preprocessor.fit(splits.X_train, ds.pixel_max, cfg.data.normalize)
    pick = rng.choice(len(splits.y_train), min(samples, len(splits.y_train)), replace=False)
    X, y = pre.transform(splits.X_train[pick], np.float64), splits.y_train[pick]
    sizes = layer_sizes(cfg, ds)
    model = MLP(sizes, cfg.model.activation, dtype=np.float64, rng=rng)
    return sizes, len(y), check_gradients(model, X, y, max_entries=entries, rng=rng,
                                          label_smoothing=cfg.train.label_smoothing,
                                          dropout=cfg.model.dropout_rates(), dropout_seed=cfg.seed)


@dataclass
class TrainResult:
    """What a training run ended with (accuracies in [0, 1], losses in nats)."""

    run_dir: Path
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    best: dict = field(default_factory=dict)   # metrics row of the best epoch
    test_loss: float = float("nan")
    test_acc: float = float("nan")
    n_val: int = 0
    n_test: int = 0


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
    """

    label_smoothing: float = 0.0
    dropout: list[float] | None = None
    max_norm: float | None = None
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
    preprocess: Preprocessor | None = None
    seed: int = 0

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


def train_epoch(model: MLP, optimizer: Optimizer, X: np.ndarray, y: np.ndarray,
                order: np.ndarray, ws: Workspace,
                on_batch: Callable[[int, float, int], None] | None = None, *,
                start: int = 0, loss_sum: float = 0.0, correct: int = 0,
                stop: Callable[[], bool] | None = None, settings: StepSettings | None = None,
                epoch: int = 1) -> tuple[float, int, int]:
    """One epoch of mini-batch training: the batches are consecutive slices of ``order``.

    Each batch's rows are gathered from ``X`` into ``ws.X`` (so the data is never copied
    whole) and preprocessed in the same pass (``settings.preprocess``; with
    ``settings.augment`` the distortion comes between), then one
    :meth:`MLP.loss_and_grads`, one optimiser step and the max-norm constraint; nothing of
    the batch's size is allocated. The batch size is ``ws.batch_size``.

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
        stop: asked after every batch; True ends the epoch early, at that batch boundary.
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
    if s.preprocess is not None:
        from .nn.kernels import gather_rows      # numba

        dt, d = ws.X.dtype, ws.X.shape[1]
        if s.augment is None:
            offset, scale = s.preprocess.offset.astype(dt), s.preprocess.scale.astype(dt)
        else:                                    # raw rows, preprocessed after the distortion
            offset, scale = np.zeros(d, dt), np.ones(d, dt)
    for lo in range(start, n, bs):
        batch = order[lo:lo + bs]
        m = len(batch)
        if s.preprocess is not None:
            xb = ws.X[:m]
            gather_rows(X, batch, offset, scale, xb)
        else:
            xb = np.take(X, batch, axis=0, out=ws.X[:m], mode="clip")
        yb = np.take(y, batch, out=ws.y[:m], mode="clip")
        noise = s.batch_rng(epoch, lo // bs)
        if s.augment is not None:
            s.preprocess.transform(s.augment(xb, noise), inplace=True)
        loss, grads, hits = model.loss_and_grads(xb, yb, ws, label_smoothing=s.label_smoothing,
                                                 dropout=s.dropout, rng=noise)
        optimizer.step(grads)
        if s.max_norm is not None:
            model.apply_max_norm(s.max_norm)
        loss_sum += loss * m
        correct += hits
        if on_batch is not None:
            on_batch(lo + m, loss_sum, m)
        if stop is not None and lo + m < n and stop():
            return loss_sum, correct, lo + m
    return loss_sum, correct, n


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving ``last.npz`` (see :func:`train`)."""

    def __init__(self, run_dir: Path, signal_name: str, epoch: int, rows_done: int, n: int):
        self.run_dir, self.signal_name = run_dir, signal_name
        super().__init__(f"{signal_name} in epoch {epoch} after {rows_done} of {n} training images; "
                         f"saved {run_dir / 'last.npz'}; continue with: "
                         f"softmax train --resume {run_dir / 'last.npz'}")


@contextlib.contextmanager
def _stop_requests():
    """While training: SIGINT (Ctrl-C) and SIGTERM only record a request, which the loop
    honours at the next batch boundary so that what it saves is consistent; a second Ctrl-C
    interrupts at once. Yields the list of requested signal names."""
    requested: list[str] = []

    def handler(signum, frame):
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.append(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _write_metrics(path: Path, rows: list[dict]) -> None:
    text = dict_rows_text(METRIC_COLUMNS, rows)     # the one CSV writer (spreadsheet-safe)
    atomic_write(path, lambda f: f.write(text.encode()))


def train(cfg: Config, data: tuple[Dataset, Splits] | None = None, *, progress: bool = False,
          log: Callable[[str], None] = lambda s: None, resume: Checkpoint | None = None) -> TrainResult:
    """Train the config's MLP and write a new run directory (:func:`make_run_dir`).

    The run directory is created only once the data, the model and the optimiser are built,
    so a bad input leaves no empty run behind. After every epoch ``last.npz`` holds the
    weights, the optimiser state, the RNG state and the metrics so far; on SIGINT or SIGTERM
    the loop stops at the next batch boundary, saves the same mid-epoch and raises
    :class:`TrainingInterrupted`. ``resume`` (such a ``last.npz``) continues that run in its
    own directory, and ends with the weights and metrics an uninterrupted run would have
    had, bit for bit (same machine and thread count). ``curves.png`` shows the metrics so
    far; :class:`CurvesWriter` says when it is redrawn (always at the end, interrupted or not).

    Args:
        cfg: a validated config (for ``resume``: the checkpoint's own).
        data: ``prepare_data(cfg)`` when the caller has it already.
        progress: show a tqdm bar per epoch on stderr.
        log: receives a line naming the run directory, then one line per epoch.
        resume: a ``last.npz`` checkpoint with training state to continue from.

    Returns:
        A :class:`TrainResult`; the test metrics are those of the best weights.

    Raises:
        UserError: bad data, the run directory cannot be created, or ``resume`` cannot be
            continued (no training state, a damaged one, finished, its run directory changed).
        TrainingInterrupted: SIGINT or SIGTERM; ``last.npz`` was saved first.
        FloatingPointError: the training or validation loss became NaN or infinite (its
            message names the epoch and the checkpoint kept); the checkpoints of the last
            good epoch stay as they were.
        OSError: a checkpoint, metrics file or ``curves.png`` cannot be written; the previous
            one is intact.
        MemoryError: the network does not fit in memory.
    """
    from tqdm import tqdm

    ds, splits = data if data is not None else prepare_data(cfg)
    dtype = np.dtype(cfg.model.dtype)
    rng = np.random.default_rng(cfg.seed)
    pre = Preprocessor.fit(splits.X_train, ds.pixel_max, cfg.data.normalize) if resume is None else resume.preprocessor
    tc = cfg.train
    n, bs = len(splits.y_train), tc.batch_size
    settings = StepSettings(label_smoothing=tc.label_smoothing, dropout=cfg.model.dropout_rates(),
                            max_norm=tc.max_norm, preprocess=pre, seed=cfg.seed)
    if tc.augment is not None:   # every source has 2-D images (CSV: data.image_shape or square)
        from .augment import Augmenter

        settings.augment = Augmenter(tc.augment, ds.image_shape, min(bs, n))
    X_train = compact_pixels(splits.X_train)    # raw pixels, preprocessed batch by batch
    y_train = splits.y_train
    X_val = pre.transform(splits.X_val, dtype) if splits.X_val is not None else None

    sizes = layer_sizes(cfg, ds)
    model = MLP(sizes, cfg.model.activation, dtype=dtype, rng=rng) if resume is None else resume.model
    opt_cfg = tc.optimizer
    optimizer = make_optimizer(opt_cfg.name, model.params, decay=[True, False] * model.n_layers,
                               **{k: v for k, v in vars(opt_cfg).items() if k != "name"})
    plateau = Plateau(tc.schedule, opt_cfg.lr) if tc.schedule.name == "plateau" else None

    es = tc.early_stopping
    part = "val" if X_val is not None else "train"
    monitor = tc.monitor.replace("val", part)
    # what a resumed run restores: everything the loop below reads from one epoch to the next
    state = {"epoch": 0, "rows_done": 0, "loss_sum": 0.0, "correct": 0, "epoch_rng": None,
             "rows": [], "best_score": [-np.inf, -np.inf], "best_epoch": 0, "stale": 0, "lr": opt_cfg.lr}
    best_params = None
    if resume is None:
        run_dir = make_run_dir(cfg.output.dir, cfg.name)
        config_text = dump_yaml(cfg.to_dict()).encode()   # read back by YAML 1.1 and 1.2 alike
        atomic_write(run_dir / "config.yaml", lambda f: f.write(config_text))
    else:
        run_dir = resume.path.parent
        state, best_params = _restore(resume, optimizer, rng, sizes, cfg, run_dir, n)
        if plateau is not None:
            plateau.lr = state["lr"]
    log(f"{'continuing' if resume else 'writing'} {run_dir}")
    meta = {"classes": ds.classes, "image_shape": list(ds.image_shape), "config": cfg.to_dict(),
            "data": ds.description, "image_style": style_for(cfg.data.source)}

    def save_last(epoch: int, row: dict | None) -> None:
        save_checkpoint(run_dir / "last.npz", model, pre,
                        {**meta, "epoch": epoch, "metrics": row or {},
                         "train_state": {**state, "t": optimizer.t, "rng": rng.bit_generator.state}},
                        optimizer.state_arrays())

    ws = model.workspace(min(bs, n), dropout=settings.dropout)   # every batch reuses these buffers
    rows = state["rows"]
    curves = CurvesWriter(run_dir / "curves.png", monitor)
    stopped_early = False
    # a diverging run overflows in NumPy's products: it is reported once, as the
    # FloatingPointError below, not as NumPy's RuntimeWarnings along the way
    with _stop_requests() as requested, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(state["epoch"] + 1, cfg.train.epochs + 1):
            if state["rows_done"] == 0:
                state["epoch_rng"] = rng.bit_generator.state   # to redraw this epoch's order
            else:
                rng.bit_generator.state = state["epoch_rng"]
            start = time.perf_counter()
            order = rng.permutation(n)
            optimizer.lr = scheduled_lr(tc.schedule, opt_cfg.lr, epoch, tc.epochs)
            if plateau is not None and epoch > tc.schedule.warmup_epochs:
                optimizer.lr = plateau.lr
            with tqdm(total=n, initial=state["rows_done"], desc=f"epoch {epoch}/{cfg.train.epochs}",
                      unit="img", unit_scale=True, leave=False, disable=not progress,
                      dynamic_ncols=True, mininterval=0.5) as bar:
                def show(seen: int, loss_sum: float, batch_rows: int) -> None:
                    bar.update(batch_rows)
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", refresh=False)

                loss_sum, correct, done = train_epoch(
                    model, optimizer, X_train, y_train, order, ws, show if progress else None,
                    start=state["rows_done"], loss_sum=state["loss_sum"], correct=state["correct"],
                    stop=lambda: bool(requested), settings=settings, epoch=epoch)
            if done < n:
                state.update(rows_done=done, loss_sum=loss_sum, correct=correct)
                save_last(epoch - 1, rows[-1] if rows else None)
                curves.update(rows, state["best_epoch"], force=True)
                raise TrainingInterrupted(run_dir, requested[0], epoch, done, n)
            row = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n,
                   "val_loss": "", "val_acc": "", "lr": optimizer.lr}
            if X_val is not None:
                ev = evaluate(model, X_val, splits.y_val)
                row.update(val_loss=ev.loss, val_acc=ev.accuracy)
            for key in ("train_loss", "val_loss"):
                if row[key] != "" and not np.isfinite(row[key]):
                    curves.update(rows, state["best_epoch"], force=True)
                    kept = (f"{run_dir / 'last.npz'} holds epoch {rows[-1]['epoch']}, the last good one"
                            if rows else f"no checkpoint was written to {run_dir}")
                    raise FloatingPointError(
                        f"epoch {epoch}: the {key.replace('_', ' ')} became {row[key]}; try a lower "
                        f"train.optimizer.lr ({kept})")
            row["epoch_time_s"] = time.perf_counter() - start
            rows.append(row)
            _write_metrics(run_dir / "metrics.csv", rows)

            meta_epoch = {**meta, "epoch": epoch, "metrics": row}
            score = _score(row, monitor, part)
            best = state["best_score"]
            if score[0] > best[0] + (es.min_delta if es else 0.0) or (score[0] == best[0] and score[1] > best[1]):
                state.update(best_score=list(score), best_epoch=epoch, stale=0)
                best_params = [p.copy() for p in model.params]
                save_checkpoint(run_dir / "best.npz", model, pre, meta_epoch)
            else:
                state["stale"] += 1
            if plateau is not None and epoch >= tc.schedule.warmup_epochs:
                state["lr"] = plateau.update(state["stale"])
            state.update(epoch=epoch, rows_done=0, loss_sum=0.0, correct=0)
            save_last(epoch, row)
            log(_epoch_line(row, cfg.train.epochs))
            if es is not None and state["stale"] >= es.patience:
                stopped_early = True
                break
            if requested:
                curves.update(rows, state["best_epoch"], force=True)
                raise TrainingInterrupted(run_dir, requested[0], epoch + 1, 0, n)
            curves.update(rows, state["best_epoch"])
    curves.update(rows, state["best_epoch"], force=True)

    best_epoch = state["best_epoch"]
    best_model = MLP(sizes, cfg.model.activation, dtype=dtype, params=best_params)
    test = evaluate(best_model, pre.transform(splits.X_test, dtype), splits.y_test)
    best_row = rows[best_epoch - 1]
    save_checkpoint(run_dir / "best.npz", best_model, pre,
                    {**meta, "epoch": best_epoch,
                     "metrics": {**best_row, "test_loss": test.loss, "test_acc": test.accuracy}})
    return TrainResult(run_dir=run_dir, epochs_run=len(rows), best_epoch=best_epoch,
                       stopped_early=stopped_early, best=best_row, test_loss=test.loss,
                       test_acc=test.accuracy,
                       n_val=0 if X_val is None else len(X_val), n_test=len(splits.y_test))


_STATE_KEYS = ("epoch", "rows_done", "loss_sum", "correct", "epoch_rng", "rows", "best_score",
               "best_epoch", "stale", "lr", "t", "rng")


def _score(row: dict, monitor: str, part: str) -> tuple[float, float]:
    """The epoch's score on the monitored metric, larger is better: ``(-loss, 0)`` for a
    loss; ``(accuracy, -loss)`` for an accuracy, so that of two epochs with the same
    accuracy (frequent on a small validation split) the one with the lower loss wins."""
    if monitor.endswith("_acc"):
        return row[monitor], -row[f"{part}_loss"]
    return -row[monitor], 0.0


def _is_int(value) -> bool:
    """An ``int`` that is not a ``bool`` (JSON ``true`` loads as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value, lo: float = -float("inf")) -> bool:
    """A finite ``int`` or ``float`` (not a ``bool``) that is at least ``lo``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value) and value >= lo
    except OverflowError:                      # an int too large for a float
        return False


def _state_problem(state: dict, cfg: Config, n_train: int | None) -> str | None:
    """What is wrong with the values of a ``train_state`` holding every key of
    :data:`_STATE_KEYS`, measured against what :func:`train` writes; None when nothing is.

    Only types and ranges (and how the values fit together) are checked: a state that
    passes resumes without a traceback, not necessarily to the weights of an uninterrupted run.
    """
    epoch, rows_done, loss_sum, correct = (state[k] for k in ("epoch", "rows_done", "loss_sum", "correct"))
    if not _is_int(epoch) or epoch < 0:
        return f"epoch must be an integer >= 0, got {quote(epoch)}"
    if not _is_int(rows_done) or rows_done < 0:
        return f"rows_done must be an integer >= 0, got {quote(rows_done)}"
    if n_train is not None and rows_done >= n_train:
        return f"rows_done must be less than the {n_train} training images, got {rows_done}"
    if not _is_number(loss_sum, 0):
        return f"loss_sum must be a finite number >= 0, got {quote(loss_sum)}"
    if not _is_int(correct) or not 0 <= correct <= rows_done:
        return f"correct must be an integer in 0..{rows_done} (rows_done), got {quote(correct)}"
    if rows_done == 0 and loss_sum != 0:
        return f"loss_sum must be 0 when rows_done is 0, got {quote(loss_sum)}"
    for key in ("epoch_rng", "rng"):
        try:   # the generator train() seeds; setting its state checks the value thoroughly
            np.random.default_rng(0).bit_generator.state = state[key]
        except (TypeError, ValueError, KeyError, OverflowError):
            return f"{key} must be a state of NumPy's default generator (PCG64), got {quote(state[key])}"

    rows, has_val = state["rows"], cfg.data.val_fraction > 0
    if not isinstance(rows, list) or len(rows) != epoch:
        return f"rows must be a list of {epoch} metrics rows (one per epoch done), got {quote(rows)}"
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != set(METRIC_COLUMNS):
            return (f"rows[{i}] must be a metrics row with the keys {', '.join(METRIC_COLUMNS)}, "
                    f"got {quote(row)}")
        if not _is_int(row["epoch"]) or row["epoch"] != i + 1:
            return f"rows[{i}].epoch must be {i + 1}, got {quote(row['epoch'])}"
        for key in METRIC_COLUMNS[1:]:
            value = row[key]
            if key.startswith("val_") and not has_val:
                if value != "":
                    return f"rows[{i}].{key} must be '' (the run has no validation split), got {quote(value)}"
            elif not _is_number(value, 0) or (key.endswith("_acc") and value > 1):
                return (f"rows[{i}].{key} must be a finite number "
                        f"{'in [0, 1]' if key.endswith('_acc') else '>= 0'}, got {quote(value)}")

    best_score, best_epoch, stale = state["best_score"], state["best_epoch"], state["stale"]
    if not (isinstance(best_score, list) and len(best_score) == 2 and all(
            _is_number(v) or (isinstance(v, float) and v == -float("inf")) for v in best_score)):
        return f"best_score must be a list of two numbers (finite or -Infinity), got {quote(best_score)}"
    if not _is_int(best_epoch) or not min(epoch, 1) <= best_epoch <= epoch:    # epoch 1 beats -inf
        wanted = f"an integer in 1..{epoch} (an epoch done)" if epoch else "0 (no epoch is done)"
        return f"best_epoch must be {wanted}, got {quote(best_epoch)}"
    if not _is_int(stale) or not 0 <= stale <= epoch - best_epoch:
        return (f"stale must be an integer in 0..{epoch - best_epoch} (epochs since best_epoch), "
                f"got {quote(stale)}")
    if not _is_number(state["lr"]) or state["lr"] <= 0:
        return f"lr must be a finite number > 0, got {quote(state['lr'])}"
    if not _is_int(state["t"]) or state["t"] < 0:
        return f"t must be an integer >= 0, got {quote(state['t'])}"
    return None


def check_resumable(ckpt: Checkpoint, cfg: Config, n_train: int | None = None) -> dict:
    """The training state of ``ckpt`` (a ``last.npz``) when its run can be continued.

    Every value of the state is checked for the type and range :func:`train` writes
    (see :func:`_state_problem`); ``n_train``, the number of training images when known,
    also bounds ``rows_done`` (the rows done of an interrupted epoch).

    Raises:
        UserError: naming the checkpoint: it has no training state (e.g. a ``best.npz``),
            its state lacks a key (an older softmax), a value is damaged (``its training
            state is damaged: KEY must be ..., got VALUE``), or its run already finished
            (all epochs, or stopped early).
    """
    state = ckpt.meta.get("train_state")
    if not isinstance(state, dict):
        raise UserError(f"{ckpt.path}: no training state to resume from; resume from the run's last.npz")
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:   # e.g. a last.npz from before the lr schedules ("lr")
        raise UserError(f"{ckpt.path}: its training state lacks {', '.join(missing)} (written by an older "
                        f"softmax?); it cannot be resumed: start a new run from its config.yaml")
    problem = _state_problem(state, cfg, n_train)
    if problem is not None:
        raise UserError(f"{ckpt.path}: its training state is damaged: {problem}")
    es = cfg.train.early_stopping
    if state["epoch"] >= cfg.train.epochs or (es is not None and state["stale"] >= es.patience):
        how = "stopped early at" if state["epoch"] < cfg.train.epochs else "trained all"
        raise UserError(f"{ckpt.path}: this run already finished ({how} epoch {state['epoch']} "
                        f"of {cfg.train.epochs})")
    return state


def _restore(ckpt: Checkpoint, optimizer: Optimizer, rng: np.random.Generator, sizes: list[int],
             cfg: Config, run_dir: Path, n_train: int) -> tuple[dict, list[np.ndarray] | None]:
    """The loop state, optimiser state, RNG state and best weights saved in ``ckpt``
    (a run of ``n_train`` training images).

    Raises:
        UserError: naming the checkpoint: no training state, a damaged one (see
            :func:`check_resumable`), a finished run, or a run directory whose ``best.npz``
            no longer matches.
    """
    state = check_resumable(ckpt, cfg, n_train)
    where = ckpt.path
    if ckpt.model.sizes != sizes:
        raise UserError(f"{where}: the model is {ckpt.model.sizes}, its config's data gives {sizes}")
    try:
        optimizer.load_state(state["t"], ckpt.optimizer_state)
        rng.bit_generator.state = state["epoch_rng"] if state["rows_done"] else state["rng"]
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{where}: unusable training state: {exc}") from None
    best_params = None
    if state["best_epoch"]:
        best = load_checkpoint(run_dir / "best.npz")
        if best.meta.get("epoch") != state["best_epoch"]:
            raise UserError(f"{run_dir / 'best.npz'}: holds epoch {best.meta.get('epoch')}, "
                            f"the run's best was epoch {state['best_epoch']}")
        best_params = best.model.params
    return {k: state[k] for k in _STATE_KEYS if k not in ("t", "rng")}, best_params


def _epoch_line(row: dict, epochs: int) -> str:
    text = (f"epoch {row['epoch']:>3}/{epochs}  train_loss {row['train_loss']:.4f}  "
            f"train_acc {row['train_acc']:.4f}")
    if row["val_loss"] != "":
        text += f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}"
    return text + f"  ({row['epoch_time_s']:.2f}s)"
