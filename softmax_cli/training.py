"""The training loop: seeded shuffling, mini-batches, validation, checkpoints, early stopping.

A run writes into its own directory (see :func:`make_run_dir`): the resolved ``config.yaml``,
``metrics.csv`` (one row per epoch, rewritten atomically after each), ``last.npz`` (after every
epoch) and ``best.npz`` (whenever the monitored loss improves; at the end it is rewritten
with the test metrics added).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .checkpoint import Checkpoint, atomic_write, save_checkpoint
from .config import Config
from .data import Preprocessor, Splits, load_dataset, make_splits
from .data.images import style_for
from .data.sources import Dataset
from .errors import UserError
from .metrics import Evaluation, evaluate
from .nn import MLP, Workspace
from .optim import Optimizer, make_optimizer

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"]


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

    Raises:
        UserError: the data cannot be read or split (see :func:`load_dataset`).
    """
    ds = load_dataset(cfg.data)
    return ds, make_splits(ds, cfg.data, cfg.seed)


def evaluate_checkpoint(ckpt: Checkpoint, cfg: Config, split: str, origin: str) -> Evaluation:
    """Evaluate a checkpoint on one split (``train``, ``val`` or ``test``) of ``cfg``'s data.

    The data's classes are matched to the checkpoint's by name, so a data set holding only
    some of the classes (say the digits 3 and 5) is scored against the right outputs.

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
        raise UserError(f"{origin}: class {unknown[0]!r} of the data is not one the model "
                        f"knows ({', '.join(ckpt.classes)})")
    to_model = np.array([ckpt.classes.index(c) for c in ds.classes], dtype=np.int64)
    return evaluate(ckpt.model, ckpt.preprocessor.transform(X, ckpt.model.dtype), to_model[y])


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
    return sizes, len(y), check_gradients(model, X, y, max_entries=entries, rng=rng)


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


def train_epoch(model: MLP, optimizer: Optimizer, X: np.ndarray, y: np.ndarray,
                order: np.ndarray, ws: Workspace,
                on_batch: Callable[[int, float, int], None] | None = None) -> tuple[float, int]:
    """One epoch of mini-batch training: the batches are consecutive slices of ``order``.

    Each batch's rows are gathered from ``X`` into ``ws.X`` (so the data is never copied
    whole), then one :meth:`MLP.loss_and_grads` and one optimiser step; nothing of the
    batch's size is allocated. The batch size is ``ws.batch_size``.

    Args:
        X: preprocessed inputs (n, n_features) of the model's dtype; y: int64 labels (n,).
        order: int64 row indices (n,), a permutation of ``range(n)``.
        ws: the workspace of ``model`` for the batch size.
        on_batch: called after every batch with (rows seen, sum of losses so far, rows in
            the batch), e.g. to show progress.

    Returns:
        ``(loss_sum, correct)``: the sum over rows of each row's batch loss (nats; divide by
        ``n`` for the epoch's mean) and how many rows were classified right before their step.
    """
    bs = ws.batch_size
    loss_sum, correct = 0.0, 0
    for lo in range(0, len(order), bs):
        batch = order[lo:lo + bs]
        m = len(batch)
        xb = np.take(X, batch, axis=0, out=ws.X[:m], mode="clip")
        yb = np.take(y, batch, out=ws.y[:m], mode="clip")
        loss, grads, hits = model.loss_and_grads(xb, yb, ws)
        optimizer.step(grads)
        loss_sum += loss * m
        correct += hits
        if on_batch is not None:
            on_batch(lo + m, loss_sum, m)
    return loss_sum, correct


def _write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def train(cfg: Config, data: tuple[Dataset, Splits] | None = None, *, progress: bool = False,
          log: Callable[[str], None] = lambda s: None) -> TrainResult:
    """Train the config's MLP and write a new run directory (:func:`make_run_dir`).

    The run directory is created only once the data, the model and the optimiser are built,
    so a bad input leaves no empty run behind.

    Args:
        cfg: a validated config.
        data: ``prepare_data(cfg)`` when the caller has it already.
        progress: show a tqdm bar per epoch on stderr.
        log: receives a line naming the run directory, then one line per epoch.

    Returns:
        A :class:`TrainResult`; the test metrics are those of the best weights.

    Raises:
        UserError: bad data, or the run directory cannot be created.
        FloatingPointError: the training or validation loss became NaN or infinite; the
            checkpoints of the last good epoch stay as they were.
        MemoryError: the network does not fit in memory.
    """
    from tqdm import tqdm

    ds, splits = data if data is not None else prepare_data(cfg)
    dtype = np.dtype(cfg.model.dtype)
    rng = np.random.default_rng(cfg.seed)
    pre = Preprocessor.fit(splits.X_train, ds.pixel_max, cfg.data.normalize)
    X_train = pre.transform(splits.X_train, dtype)
    y_train = splits.y_train
    X_val = pre.transform(splits.X_val, dtype) if splits.X_val is not None else None

    sizes = layer_sizes(cfg, ds)
    model = MLP(sizes, cfg.model.activation, dtype=dtype, rng=rng)
    opt_cfg = cfg.train.optimizer
    optimizer = make_optimizer(opt_cfg.name, model.params, decay=[True, False] * model.n_layers,
                               **{k: v for k, v in vars(opt_cfg).items() if k != "name"})

    run_dir = make_run_dir(cfg.output.dir, cfg.name)
    log(f"writing {run_dir}")
    config_text = yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode()
    atomic_write(run_dir / "config.yaml", lambda f: f.write(config_text))
    meta = {"classes": ds.classes, "image_shape": list(ds.image_shape), "config": cfg.to_dict(),
            "data": ds.description, "image_style": style_for(cfg.data.source)}

    n, bs = len(X_train), cfg.train.batch_size
    ws = model.workspace(min(bs, n))      # every batch reuses these buffers
    es = cfg.train.early_stopping
    monitor = "val_loss" if X_val is not None else "train_loss"
    rows: list[dict] = []
    best_score, best_epoch, best_params, stale = np.inf, 0, None, 0
    stopped_early = False
    for epoch in range(1, cfg.train.epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(n)
        with tqdm(total=n, desc=f"epoch {epoch}/{cfg.train.epochs}", unit="img", unit_scale=True,
                  leave=False, disable=not progress, dynamic_ncols=True, mininterval=0.5) as bar:
            def show(seen: int, loss_sum: float, batch_rows: int) -> None:
                bar.update(batch_rows)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", refresh=False)

            loss_sum, correct = train_epoch(model, optimizer, X_train, y_train, order, ws,
                                            on_batch=show if progress else None)
        row = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n,
               "val_loss": "", "val_acc": "", "lr": optimizer.lr}
        if X_val is not None:
            ev = evaluate(model, X_val, splits.y_val)
            row.update(val_loss=ev.loss, val_acc=ev.accuracy)
        for key in ("train_loss", "val_loss"):
            if row[key] != "" and not np.isfinite(row[key]):
                raise FloatingPointError(f"epoch {epoch}: the {key.replace('_', ' ')} became {row[key]}; "
                                         f"try a lower train.optimizer.lr (checkpoints in {run_dir} "
                                         f"are from the last good epoch)")
        row["epoch_time_s"] = time.perf_counter() - start
        rows.append(row)
        _write_metrics(run_dir / "metrics.csv", rows)

        meta_epoch = {**meta, "epoch": epoch, "metrics": row}
        if row[monitor] < best_score - (es.min_delta if es else 0.0):
            best_score, best_epoch, stale = row[monitor], epoch, 0
            best_params = [p.copy() for p in model.params]
            save_checkpoint(run_dir / "best.npz", model, pre, meta_epoch)
        else:
            stale += 1
        save_checkpoint(run_dir / "last.npz", model, pre, meta_epoch)
        log(_epoch_line(row, cfg.train.epochs))
        if es is not None and stale >= es.patience:
            stopped_early = True
            break

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


def _epoch_line(row: dict, epochs: int) -> str:
    text = (f"epoch {row['epoch']:>3}/{epochs}  train_loss {row['train_loss']:.4f}  "
            f"train_acc {row['train_acc']:.4f}")
    if row["val_loss"] != "":
        text += f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}"
    return text + f"  ({row['epoch_time_s']:.2f}s)"
