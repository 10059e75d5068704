"""Dataset sources, one loader per ``data.source``, and the readers ``predict`` shares.

Every source returns a :class:`Dataset` of raw pixel values (no scaling yet): features float32
``(n, d)`` in ``[0, pixel_max]`` (0 the background), labels int64 ``(n,)`` indexing ``classes``,
and the image shape ``(h, w)`` with ``h * w == d``. The formats live in their own modules:
delimited text (:mod:`.delimited`), IDX (:mod:`.idx`), NumPy arrays (:mod:`.arrays`), data
sets downloaded by name (:mod:`.download`); scikit-learn's digits and folders of images here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from .arrays import NPY_MAGIC, ZIP_MAGIC, load_npz, read_array_rows
from .dataset import Dataset, image_shape_for, index_labels, labels_to_classes, pixel_range_of, range_name
from .delimited import read_rows, read_table, same_columns
from .files import check_regular, open_regular
from .idx import load_idx, read_idx
from .images import files_in, image_to_input, style_for

if TYPE_CHECKING:          # annotations only: `softmax predict` never loads the config module
    from ..config import DataConfig

__all__ = ["Dataset", "load_dataset", "load_csv", "load_idx", "load_npz", "load_digits", "load_folder",
           "read_idx", "read_pixel_rows"]


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the source named by ``cfg.source``.

    Raises:
        UserError: a missing or malformed file, naming it and what was wrong, a download
            that fails, or training labels of one class only.
    """
    if cfg.source in ("mnist", "fashion-mnist", "kmnist"):
        from .download import load_named

        return load_named(cfg)
    loaders = {"digits": load_digits, "csv": load_csv, "idx": load_idx, "folder": load_folder, "npz": load_npz}
    return loaders[cfg.source](cfg)


def read_pixel_rows(path: str | Path, n_features: int, pixel_range: tuple[float, float] = (0.0, 255.0),
                    delimiter: str | None = None, range_key: str = "data.pixel_range") -> np.ndarray:
    """Label-less rows of pixels from a data file, for ``softmax predict data.csv``.

    The file's kind is told by its content or name: an ``.npy`` array, an ``.npz`` archive (its
    one array, or ``x``, or ``x_test``; a file named ``.npy`` or ``.npz`` is read as one whatever
    it holds), else delimited text (gzip or not) read with the layout
    rules of ``data.source: csv`` (:mod:`softmax_cli.data.delimited`: the delimiter sniffed
    unless ``delimiter`` (comma, semicolon, tab, whitespace) is given, a header when the
    first row is not numeric) with no label column: every row holds ``n_features`` pixels.

    Args:
        path: the file.
        n_features: pixels per row (the model's input size).
        pixel_range: ``(low, high)`` of the data (a checkpoint's ``data.pixel_range``, else
            ``(0, pixel_max)``); every value must lie in it.
        delimiter: force a delimiter for text files.
        range_key: the config key to name when a value lies outside ``pixel_range``.

    Returns:
        float32 (n, n_features) in ``[0, high - low]`` (each value minus ``low``), rows in
        file order: the raw pixel rows ``Checkpoint.predict_proba`` takes.

    Raises:
        UserError: naming the file and the place: not a regular file, a row of another
            width, a cell that is not a number, a value outside ``pixel_range``.
    """
    with open_regular(path) as f:
        magic = f.read(6)
    if magic == NPY_MAGIC or magic[:4] == ZIP_MAGIC or str(path).lower().endswith((".npy", ".npz")):
        return read_array_rows(path, n_features, pixel_range, range_key)
    return read_rows(path, n_features, pixel_range, delimiter, range_key)


# --------------------------------------------------------------------------------- digits
def load_digits(cfg: DataConfig | None = None) -> Dataset:
    """scikit-learn's 1,797 8x8 digits (UCI optdigits test set), pixels 0-16, no test split.

    ``cfg`` is unused (the loaders share one signature).
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return Dataset(X=bunch.data.astype(np.float32), y=bunch.target.astype(np.int64),
                   classes=[str(c) for c in bunch.target_names], image_shape=(8, 8),
                   pixel_max=16.0, description="scikit-learn digits (8x8, 1797 images)")


# ------------------------------------------------------------------------------------ CSV
def load_csv(cfg: DataConfig) -> Dataset:
    """One row per image, in a delimited text file: a label column (or one-hot label columns)
    and the pixels in row-major order (see :mod:`softmax_cli.data.delimited` for the layout
    rules: delimiter, header, numbers).

    ``data.label_column``: ``first``, ``last``, a header name, ``onehot_first`` or
    ``onehot_last``. The image shape is ``data.image_shape`` or the square root of the pixel
    count. Pixels lie in ``data.pixel_range`` (default ``[0, data.pixel_max]``, 255 when
    unset) and are shifted to start at 0: ``pixel_max`` is ``high - low``.

    Raises:
        UserError: naming the file, line and column of what was wrong.
    """
    train_path = Path(cfg.train)
    pixels = math.prod(cfg.image_shape) if cfg.image_shape is not None else None
    low, high = pixel_range_of(cfg)
    read = dict(spec=cfg.label_column, pixels=pixels, delimiter=cfg.delimiter, pixel_range=(low, high),
                range_key=range_name(cfg))
    table = read_table(train_path, **read)
    shape = image_shape_for(table.X.shape[1], cfg.image_shape, train_path)
    classes, y, names = labels_to_classes(table.labels, train_path, table.label_names)
    if low:
        table.X -= np.float32(low)
    ds = Dataset(X=table.X, y=y, classes=names, image_shape=shape, pixel_max=high - low,
                 description=f"CSV {train_path}")
    if cfg.test is not None:
        test_path = Path(cfg.test)
        test = read_table(test_path, **read)
        if not same_columns(table, test):
            raise UserError(f"{test_path}: columns differ from the training file {train_path.name}")
        if low:
            test.X -= np.float32(low)
        ds.X_test, ds.y_test = test.X, index_labels(test.labels, classes, test_path)
    return ds


# --------------------------------------------------------------------------------- folder
def _class_folders(root: Path, key: str) -> dict[str, list[Path]]:
    """``{class name: its files}`` for ``root/<class name>/...``, classes in sorted order.

    Every visible sub-folder of ``root`` is a class; its files are found recursively by
    :func:`~softmax_cli.data.images.files_in` (the search ``softmax predict FOLDER`` makes).
    Files directly in ``root`` belong to no class and are left out.

    Raises:
        UserError: ``root`` is not a folder, has no class folders, or a class folder is empty.
    """
    if not root.is_dir():
        raise UserError(f"{root}: {key} is not a folder")
    try:
        names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise UserError(f"{root}: cannot list {key} ({exc.strerror or exc})") from None
    if not names:
        raise UserError(f"{root}: no class folders in {key} (expected {key}/<class name>/<image files>)")
    classes = {}
    for name in names:
        classes[name] = files_in(root / name)
        if not classes[name]:
            raise UserError(f"{root / name}: class folder holds no files")
    return classes


def _read_images(classes: dict[str, list[Path]], shape: tuple[int, int], style: str) -> np.ndarray:
    """Every file of ``classes`` (in order) as one float32 row of ``h * w`` pixels in [0, 255].

    Raises:
        UserError: naming the first file that is not a readable image with ink.
    """
    files = [f for paths in classes.values() for f in paths]
    X = np.empty((len(files), shape[0] * shape[1]), dtype=np.float32)
    for i, path in enumerate(files):
        check_regular(path)              # a FIFO or device found in the walk: named, never opened
        X[i] = image_to_input(path, shape, 255.0, style)
    return X


def load_folder(cfg: DataConfig) -> Dataset:
    """Image files sorted into one folder per class: ``data.root/<class name>/<files>``.

    Class names are the folder names (sorted; any number of classes, at least two). Each
    file goes through :func:`~softmax_cli.data.images.image_to_input`, the function
    ``softmax predict`` uses, so training sees what prediction will: grayscale, inverted
    when the background is light, the digit size-normalised and centred as in MNIST, in a
    ``data.image_shape`` frame (default 28 x 28), pixels 0-255 (``pixel_max`` 255).
    ``data.test`` is an optional second folder of the same layout whose classes are
    training classes.

    Raises:
        UserError: a missing or empty folder, one class only, a test class not in
            training, or a file that is not an image with a digit (naming the file).
    """
    root, shape, style = Path(cfg.root), tuple(cfg.image_shape or (28, 28)), style_for("folder")
    classes = _class_folders(root, "data.root")
    if len(classes) < 2:
        raise UserError(f"{root}: only one class folder ({next(iter(classes))!r}) in data.root; "
                        f"a classifier needs at least two")
    names = list(classes)
    X = _read_images(classes, shape, style)
    y = np.repeat(np.arange(len(names), dtype=np.int64), [len(f) for f in classes.values()])
    ds = Dataset(X=X, y=y, classes=names, image_shape=shape, pixel_max=255.0,
                 description=f"image folder {root} ({len(y)} images, {len(names)} classes)")
    if cfg.test is not None:
        test_root = Path(cfg.test)
        test = _class_folders(test_root, "data.test")
        unknown = [name for name in test if name not in names]
        if unknown:
            raise UserError(f"{test_root / unknown[0]}: class {unknown[0]!r} of data.test is not a "
                            f"class of data.root ({', '.join(names)})")
        ds.X_test = _read_images(test, shape, style)
        ds.y_test = np.repeat(np.array([names.index(n) for n in test], dtype=np.int64),
                              [len(f) for f in test.values()])
    return ds
