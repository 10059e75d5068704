"""IDX files (LeCun's MNIST format): one array per file, gzip-compressed or raw.

Format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code (0x08 ubyte, 0x09
byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, each
dimension as a big-endian uint32, then the data in row-major order. The reader trusts nothing
in the header: the dimensions it declares are checked against what the file can hold before
memory is set aside for them, and the data is read as a stream into that one array.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import UserError, quote_data
from .dataset import Dataset, check_pixels, index_labels, labels_to_classes, number
from .files import MAX_INFLATION, count_rest, open_data, read_exactly

if TYPE_CHECKING:          # annotations only: `softmax predict` never loads the config module
    from ..config import DataConfig

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
MAX_IDX_DIMS = 4      # images have 3 (n, h, w), labels 1, QMNIST's extended labels 2


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file, gzip-compressed or raw (told by its content, not its name).

    Memory: the one array the header declares, allocated only once the declared size is
    known to fit in the file (raw: its size exactly; gzip: at most what it may inflate to,
    see :mod:`softmax_cli.data.files`).

    Returns:
        An array of the stored shape, in native byte order.

    Raises:
        UserError: unreadable or not a regular file, corrupt gzip, wrong magic number, more
            than :data:`MAX_IDX_DIMS` dimensions, truncated or trailing data.
    """
    path = Path(path)
    with open_data(path) as f:
        head = f.stream.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
            raise UserError(f"{path}: not an IDX file (bad magic number "
                            f"{quote_data(head.hex()) if head else 'empty'})")
        ndim = head[3]
        if ndim > MAX_IDX_DIMS:
            raise UserError(f"{path}: the IDX header declares {ndim} dimensions; a data file has at most "
                            f"{MAX_IDX_DIMS} (images 3, labels 1)")
        dims = f.stream.read(4 * ndim)
        if ndim == 0 or len(dims) < 4 * ndim:
            raise UserError(f"{path}: truncated IDX header")
        shape = struct.unpack(f">{ndim}I", dims)
        dtype = np.dtype(IDX_DTYPES[head[2]])
        expected = math.prod(shape) * dtype.itemsize
        room = f.limit - 4 - 4 * ndim
        if expected > room:
            if not f.compressed:
                raise UserError(f"{path}: IDX data has {room} bytes, the header {shape} asks for {expected}")
            raise UserError(f"{path}: the header {shape} asks for {expected:,} bytes, more than this gzip "
                            f"file may inflate to ({MAX_INFLATION} times its size)")
        data = np.empty(expected, np.uint8)
        got = read_exactly(f, memoryview(data))
        extra = count_rest(f) if got == expected else 0
    if got != expected or extra:
        raise UserError(f"{path}: IDX data has {got + extra} bytes, the header {shape} asks for {expected}")
    return data.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def idx_path(cfg: DataConfig, key: str) -> Path | None:
    """The file of ``key`` (``train_images``, ...): given explicitly, or found in ``data.root``
    under its standard name (``.gz`` or raw); None for a test file that is not there."""
    explicit = getattr(cfg, key, None)
    if explicit is not None:
        return Path(explicit)
    if cfg.root is None:
        return None
    return find_in_root(Path(cfg.root), key)


def find_in_root(root: Path, key: str) -> Path | None:
    """``root/<standard name of key>(.gz)``; None for a missing test file.

    Raises:
        UserError: ``root`` is not a folder, or a training file is missing from it.
    """
    if not root.is_dir():
        raise UserError(f"{root}: data.root is not a directory")
    for name in (IDX_NAMES[key] + ".gz", IDX_NAMES[key]):
        if (root / name).exists():
            return root / name
    if key.startswith("test"):
        return None
    raise UserError(f"{root}: no {IDX_NAMES[key]}(.gz) in data.root")


def _idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise UserError(f"{images_path}: expected images of 3 dimensions (n, h, w), got {images.ndim}")
    if 0 in images.shape[1:]:
        raise UserError(f"{images_path}: images of shape {images.shape[1:]} have no pixels")
    if labels.ndim != 1:
        raise UserError(f"{labels_path}: expected labels of 1 dimension (n,), got {labels.ndim}")
    if len(images) == 0:
        raise UserError(f"{images_path}: no images (the IDX file declares 0)")
    if len(images) != len(labels):
        raise UserError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
    if labels.dtype.kind == "f":         # IDX allows float labels: they must be whole numbers
        wrong = ~np.isfinite(labels) | (labels != np.round(labels))
        if wrong.any():
            i = int(np.argmax(wrong))
            raise UserError(f"{labels_path}: label {i} is {number(labels[i])}, not an integer")
    return images, labels


def _check_named(labels: np.ndarray, names: Sequence[str], path: Path) -> None:
    wrong = (labels < 0) | (labels >= len(names))
    if wrong.any():
        i = int(np.argmax(wrong))
        raise UserError(f"{path}: label {i} is {number(labels[i])}, not one of the data set's "
                        f"{len(names)} classes (0 to {len(names) - 1})")


def load_idx_files(paths: dict[str, Path | None], description: str,
                   names: Sequence[str] | None = None) -> Dataset:
    """A :class:`Dataset` from the IDX files ``paths[key]`` (keys of :data:`IDX_NAMES`; the test
    pair may be None). Labels become class indices; ``names[label]`` names each class when
    given (a data set known by name), else the label's value does."""
    images, labels = _idx_pair(paths["train_images"], paths["train_labels"])
    if names is not None:
        _check_named(labels, names, paths["train_labels"])
    test = None
    if paths["test_images"] is not None and paths["test_labels"] is not None:
        test = _idx_pair(paths["test_images"], paths["test_labels"])
        if test[0].shape[1:] != images.shape[1:]:
            raise UserError(f"{paths['test_images']}: test images are {test[0].shape[1:]}, "
                            f"training images {images.shape[1:]}")
    classes, y, class_names = labels_to_classes(labels, paths["train_labels"], names)
    pixel_max = 255.0 if images.dtype == np.uint8 else float(np.nanmax(images))
    shape = (int(images.shape[1]), int(images.shape[2]))
    X = images.reshape(len(images), -1).astype(np.float32)
    del images
    check_pixels(X, pixel_max, paths["train_images"])
    ds = Dataset(X=X, y=y, classes=class_names, image_shape=shape, pixel_max=pixel_max, description=description)
    if test is not None:
        ds.X_test = test[0].reshape(len(test[0]), -1).astype(np.float32)
        check_pixels(ds.X_test, pixel_max, paths["test_images"])
        ds.y_test = index_labels(test[1], classes, paths["test_labels"])
    return ds


def load_idx(cfg: DataConfig) -> Dataset:
    """MNIST-style IDX files: ``data.root`` with the standard names, or explicit paths.

    Pixels are 0-255 ubyte (``pixel_max`` 255); labels become class indices with the sorted
    distinct training labels as class names.

    Raises:
        UserError: a missing or malformed file, naming it and what was wrong, or training
            labels of one class only.
    """
    paths = {key: idx_path(cfg, key) for key in IDX_NAMES}
    return load_idx_files(paths, f"IDX {paths['train_images'].parent}")
