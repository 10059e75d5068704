"""The :class:`Dataset` every source returns, and the checks all sources share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import UserError, quote_data


@dataclass
class Dataset:
    """Raw data from one source, before splitting and scaling.

    Attributes:
        X: float32 (n, d) pixel values, 0 = background, ``pixel_max`` = full ink. After
            ``prepare_data`` has split them, ``X`` and ``y`` are emptied (0 rows): the
            splits hold the rows.
        y: int64 (n,) class indices into ``classes``.
        classes: class names, ``classes[i]`` is the name of label ``i``.
        image_shape: ``(height, width)`` of one image, ``height * width == d``.
        pixel_max: the value of full ink (digits 16, MNIST 255).
        X_test, y_test: the source's own test split, or None when it has none.
        description: where the data came from, for messages and checkpoints.
    """

    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    image_shape: tuple[int, int]
    pixel_max: float
    X_test: Optional[np.ndarray] = None
    y_test: Optional[np.ndarray] = None
    description: str = ""


def plain(value) -> int | float:
    """A NumPy number as a Python one, whole numbers as ``int`` (``7``, not ``7.0``)."""
    value = float(value)
    return int(value) if np.isfinite(value) and value == round(value) and abs(value) < 2**53 else value


def number(value) -> str:
    """A number read from a data file, as an error message shows it (through
    :func:`~softmax_cli.errors.quote_data`): whole numbers without ``.0``."""
    return quote_data(plain(value))


def need_two_classes(classes: np.ndarray, labels_path: Path) -> None:
    """Refuse training labels of a single class."""
    if len(classes) < 2:
        raise UserError(f"{labels_path}: every training label is {number(classes[0])}; a classifier "
                        f"needs at least two classes")


def index_labels(labels: np.ndarray, classes: np.ndarray, path: Path) -> np.ndarray:
    """Map raw test labels to indices of the training ``classes``; refuse unknown labels."""
    idx = np.searchsorted(classes, labels)
    idx = np.clip(idx, 0, len(classes) - 1)
    bad = classes[idx] != labels
    if bad.any():
        raise UserError(f"{path}: label {number(labels[bad][0])} does not occur in the training labels")
    return idx.astype(np.int64)


def check_pixels(X: np.ndarray, pixel_max: float, path: Path) -> None:
    """Refuse pixel values that are not finite or lie outside ``[0, pixel_max]``."""
    if not np.isfinite(X).all():
        raise UserError(f"{path}: pixel values must be finite numbers")
    if X.size and (X.min() < 0 or X.max() > pixel_max) or pixel_max <= 0:
        raise UserError(f"{path}: pixel values must lie in [0, {pixel_max:g}] "
                        f"(data.pixel_max), found [{number(X.min())}, {number(X.max())}]")


def image_shape_for(d: int, declared: Sequence[int] | None, path: Path) -> tuple[int, int]:
    """``data.image_shape`` checked against ``d`` pixels, or the square of side ``sqrt(d)``.

    Raises:
        UserError: ``d`` does not fill the declared shape, or is not a square number.
    """
    if declared is not None:
        shape = (int(declared[0]), int(declared[1]))
        if shape[0] * shape[1] != d:
            raise UserError(f"{path}: {d} pixel columns do not fill data.image_shape {list(shape)}")
        return shape
    side = math.isqrt(d)
    if side * side != d:
        raise UserError(f"{path}: {d} pixel columns is not a square image; set data.image_shape: [height, width]")
    return side, side


def pixel_range_of(cfg) -> tuple[float, float]:
    """``(low, high)``: the values of background and full ink in a CSV or array file.

    ``data.pixel_range`` when given, else ``[0, data.pixel_max]`` (255 when unset). The
    loaders shift pixels by ``-low``, so the model sees ``[0, high - low]`` with 0 as
    background, as it does for every other source.
    """
    if cfg.pixel_range is not None:
        return float(cfg.pixel_range[0]), float(cfg.pixel_range[1])
    return 0.0, float(cfg.pixel_max if cfg.pixel_max is not None else 255.0)


def range_name(cfg) -> str:
    """The config key that set the pixel range, for messages."""
    return "data.pixel_range" if cfg is not None and cfg.pixel_range is not None else "data.pixel_max"


def labels_to_classes(labels: np.ndarray, path: Path, names: Sequence[str] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sorted distinct training labels, each label's index among them, and the class names.

    ``names[label]`` names each class when given (one-hot columns, a data set's own
    names), else the label's own value.

    Raises:
        UserError: every label is the same.
    """
    classes, y = np.unique(labels, return_inverse=True)
    need_two_classes(classes, path)
    if names is not None:
        class_names = [str(names[int(c)]) for c in classes]
    else:
        class_names = [str(int(c)) if float(c).is_integer() else str(c) for c in classes]
    return classes, y.astype(np.int64), class_names
