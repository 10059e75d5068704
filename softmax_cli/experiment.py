"""The set-up that training, evaluation and the gradient check share: a config's data, split
the same way every time, its network's layer sizes, and a checkpoint scored on one split.

Nothing here trains: ``softmax eval`` and ``softmax gradcheck`` start here, not in the
training engine (:mod:`softmax_cli.engine`).
"""

from __future__ import annotations

import numpy as np

from .checkpoint import Checkpoint
from .config import Config
from .data import Preprocessor, Splits, load_dataset, make_splits
from .data.prepare import fingerprint_change
from .data.sources import Dataset
from .errors import UserError, quote_data
from .metrics import Evaluation, evaluate_logits
from .nn import MLP


def prepare_data(cfg: Config) -> tuple[Dataset, Splits]:
    """Load the config's dataset and split it (the same split for train and eval).

    The splits hold copies of every row, so the returned dataset's ``X`` and ``y`` are
    emptied (0 rows, the same number of features): keeping both would double the memory
    (for MNIST, 180 MiB more).

    Raises:
        UserError: the data cannot be read or split (see :func:`~softmax_cli.data.load_dataset`).
    """
    ds = load_dataset(cfg.data)
    splits = make_splits(ds, cfg.data, cfg.seed)
    ds.X, ds.y = np.empty((0, ds.X.shape[1]), ds.X.dtype), np.empty(0, ds.y.dtype)
    return ds, splits


def layer_sizes(cfg: Config, ds: Dataset) -> list[int]:
    """``[n_features, *hidden, n_classes]`` of the config's network on dataset ``ds``."""
    return [ds.X.shape[1], *cfg.model.hidden, len(ds.classes)]


def check_split(ckpt: Checkpoint, splits: Splits, split: str) -> None:
    """Refuse to score ``ckpt`` on a ``split`` other than the one it recorded at training.

    A checkpoint records each split's fingerprint (``metadata["splits"]``: row count and the
    SHA-256 of the row indices and of the data; see :func:`~softmax_cli.data.prepare.fingerprint`).
    A checkpoint written before fingerprints were recorded is not checked.

    Raises:
        UserError: naming the checkpoint, the split and what differs (the row count, the rows
            drawn, or their values): the data file was edited, or the splitting changed.
    """
    recorded = ckpt.meta.get("splits")
    if not isinstance(recorded, dict) or split not in recorded:
        return
    change = fingerprint_change(recorded[split], splits.fingerprint(split))
    if change is not None:
        raise UserError(f"{ckpt.path}: the {split} split is not the one recorded when the model was "
                        f"trained: {change} (has the data changed?); to evaluate on this data on "
                        f"purpose, give its config with --data")


def evaluate_checkpoint(ckpt: Checkpoint, cfg: Config, split: str, origin: str,
                        keep_images: bool = False, check: bool = True) -> Evaluation:
    """Evaluate a checkpoint on one split (``train``, ``val`` or ``test``) of ``cfg``'s data.

    The data's classes are matched to the checkpoint's by name, so a data set holding only
    some of the classes (say the digits 3 and 5) is scored against the right outputs.
    ``keep_images`` also returns the split's images (``Evaluation.images``: float32
    (n, h, w), the raw pixels divided by the data's ``pixel_max``), e.g. to draw them.
    ``check`` (the checkpoint's own data) refuses a split that is not the one recorded at
    training (:func:`check_split`); other data (``softmax eval --data``) is not checked.

    Raises:
        UserError: naming ``origin``: no validation split, a feature count the model does not
            take, or a class the model does not know; naming the checkpoint: the split changed
            since training; or the data cannot be loaded.
    """
    ds, splits = prepare_data(cfg)
    X, y = splits.part(split)
    if X is None:
        raise UserError(f"{origin}: there is no validation split (data.val_fraction is 0)")
    if check:
        check_split(ckpt, splits, split)
    if X.shape[1] != ckpt.model.sizes[0]:
        raise UserError(f"{origin}: the data has {X.shape[1]} features per image, "
                        f"the model expects {ckpt.model.sizes[0]}")
    unknown = [c for c in ds.classes if c not in ckpt.classes]
    if unknown:
        raise UserError(f"{origin}: class {quote_data(unknown[0])} of the data is not one the model "
                        f"knows ({', '.join(ckpt.classes)})")
    to_model = np.array([ckpt.classes.index(c) for c in ds.classes], dtype=np.int64)
    ev = evaluate_logits(ckpt.logits(X), to_model[y], ckpt.temperature, calibration=True)
    if keep_images:
        ev.images = (X / np.float32(ds.pixel_max)).astype(np.float32, copy=False).reshape(-1, *ds.image_shape)
    return ev


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
