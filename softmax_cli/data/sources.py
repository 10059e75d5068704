"""Dataset sources: scikit-learn's digits, CSV files, IDX (MNIST) files and folders of images.

Every source returns a :class:`Dataset` of raw pixel values (no scaling yet): features float32
``(n, d)`` in ``[0, pixel_max]``, labels int64 ``(n,)`` indexing ``classes``, and the image
shape ``(h, w)`` with ``h * w == d``.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import UserError, quote_data
from .images import files_in, image_to_input, style_for

if TYPE_CHECKING:          # annotations only: `softmax predict` never loads the config module
    from ..config import DataConfig


@dataclass
class Dataset:
    """Raw data from one source, before splitting and scaling.

    Attributes:
        X: float32 (n, d) pixel values, 0 = background, ``pixel_max`` = full ink. After
            ``softmax_cli.experiment.prepare_data`` has split them, ``X`` and ``y`` are
            emptied (0 rows): the splits hold the rows.
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


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the source named by ``cfg.source``.

    Raises:
        UserError: a missing or malformed file, naming it and what was wrong, or training
            labels of one class only.
    """
    loaders = {"digits": load_digits, "csv": load_csv, "idx": load_idx, "folder": load_folder}
    return loaders[cfg.source](cfg)


def _need_two_classes(classes: np.ndarray, labels_path: Path) -> None:
    if len(classes) < 2:
        label = quote_data(f"{classes[0]:g}", bare=True)
        raise UserError(f"{labels_path}: every training label is {label}; a classifier "
                        f"needs at least two classes")


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


# ------------------------------------------------------------------------------------ IDX
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
              "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic number.

    Raises:
        UserError: naming ``path``: missing, a directory, unreadable, not a regular file (a
            device such as /dev/zero or a pipe would be read without end), or corrupt gzip.
    """
    if path.exists() and not path.is_file() and not path.is_dir():
        raise UserError(f"{path}: not a regular file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}: corrupt gzip data ({exc})") from None
    return data


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (LeCun's MNIST format), gzip-compressed or raw.

    Format: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, then each dimension as a
    big-endian uint32, then the data in row-major order (http://yann.lecun.com/exdb/mnist/).

    Returns:
        An array of the stored shape, in native byte order.

    Raises:
        UserError: unreadable file, corrupt gzip, wrong magic number, truncated data.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        magic = quote_data(data[:4].hex() or "empty", bare=True)
        raise UserError(f"{path}: not an IDX file (bad magic number {magic})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise UserError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise UserError(f"{path}: IDX data has {len(data) - header} bytes, "
                        f"the header {shape} asks for {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_path(cfg: DataConfig, key: str) -> Path | None:
    explicit = getattr(cfg, key)
    if explicit is not None:
        return Path(explicit)
    if cfg.root is None:
        return None
    root = Path(cfg.root)
    if not root.is_dir():
        raise UserError(f"{root}: data.root is not a directory")
    for name in (_IDX_NAMES[key] + ".gz", _IDX_NAMES[key]):
        if (root / name).exists():
            return root / name
    if key.startswith("test"):
        return None
    raise UserError(f"{root}: no {_IDX_NAMES[key]}(.gz) in data.root")


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
            raise UserError(f"{labels_path}: label {i} is {quote_data(f'{labels[i]:g}', bare=True)}, not an integer")
    return images, labels


def load_idx(cfg: DataConfig) -> Dataset:
    """MNIST-style IDX files: ``data.root`` with the standard names, or explicit paths.

    Pixels are 0-255 ubyte (``pixel_max`` 255); labels become class indices with the sorted
    distinct training labels as class names.
    """
    paths = {key: _idx_path(cfg, key) for key in _IDX_NAMES}
    images, labels = _idx_pair(paths["train_images"], paths["train_labels"])
    test = None
    if paths["test_images"] is not None and paths["test_labels"] is not None:
        test = _idx_pair(paths["test_images"], paths["test_labels"])
        if test[0].shape[1:] != images.shape[1:]:
            raise UserError(f"{paths['test_images']}: test images are {test[0].shape[1:]}, "
                            f"training images {images.shape[1:]}")
    classes, y = np.unique(labels, return_inverse=True)
    _need_two_classes(classes, paths["train_labels"])
    pixel_max = 255.0 if images.dtype == np.uint8 else float(np.nanmax(images))
    X = images.reshape(len(images), -1).astype(np.float32)
    _check_pixels(X, pixel_max, paths["train_images"])
    ds = Dataset(X=X, y=y.astype(np.int64), classes=[str(c) for c in classes],
                 image_shape=tuple(images.shape[1:]), pixel_max=pixel_max,
                 description=f"IDX {paths['train_images'].parent}")
    if test is not None:
        ds.X_test = test[0].reshape(len(test[0]), -1).astype(np.float32)
        _check_pixels(ds.X_test, pixel_max, paths["test_images"])
        ds.y_test = _index_labels(test[1], classes, paths["test_labels"])
    return ds


def _index_labels(labels: np.ndarray, classes: np.ndarray, path: Path) -> np.ndarray:
    """Map raw test labels to indices of the training ``classes``; refuse unknown labels."""
    idx = np.searchsorted(classes, labels)
    idx = np.clip(idx, 0, len(classes) - 1)
    bad = classes[idx] != labels
    if bad.any():
        label = quote_data(labels[bad][0].item(), bare=True)
        raise UserError(f"{path}: label {label} does not occur in the training labels")
    return idx.astype(np.int64)


# ------------------------------------------------------------------------------------ CSV
def _csv_text(path: Path) -> str:
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is accepted and dropped
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    # Windows (CRLF) and old Mac (CR) line ends read as Unix ones, by loadtxt and csv alike
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _csv_problem(text: str, skip: int) -> str:
    """Locate the first malformed cell or row (slow path, only after the fast parse failed)."""
    width = None
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if line_no <= skip or not row:
            continue
        if width is None:
            width = len(row)
        if len(row) != width:
            return f"line {line_no}: {len(row)} columns, expected {width} like the first data row"
        for col, cell in enumerate(row, start=1):
            try:
                float(cell)
            except ValueError:
                return f"line {line_no}, column {col}: expected a number, got {quote_data(cell.strip())}"
    return "malformed CSV"


def _read_csv(path: Path) -> tuple[list[str] | None, np.ndarray]:
    """Header (or None) and the numeric table of one CSV file.

    The fast path is ``numpy.loadtxt``; when it fails, :func:`_csv_problem` re-reads the
    file with the ``csv`` module to name the exact line and column.
    """
    text = _csv_text(path)
    first = next(csv.reader(io.StringIO(text)), None)
    if not first:
        raise UserError(f"{path}: empty CSV file")
    try:
        [float(cell) for cell in first]
        header = None
    except ValueError:
        header = [cell.strip() for cell in first]
    skip = 1 if header else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # "input contained no data": handled below
            table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, skiprows=skip, ndmin=2)
    except ValueError:
        raise UserError(f"{path}: {_csv_problem(text, skip)}") from None
    if table.size == 0:
        raise UserError(f"{path}: no data rows")
    if header is not None and len(header) != table.shape[1]:
        raise UserError(f"{path}: the header has {len(header)} columns, the rows {table.shape[1]}")
    if not np.isfinite(table).all():
        row, col = np.argwhere(~np.isfinite(table))[0]
        raise UserError(f"{path}: line {row + 1 + skip}, column {col + 1}: "
                        f"expected a finite number, got {quote_data(table[row, col], bare=True)}")
    return header, table


def _label_column(header: list[str] | None, n_cols: int, spec: str, path: Path) -> int:
    if spec == "first":
        return 0
    if spec == "last":
        return n_cols - 1
    if header is None:
        raise UserError(f"{path}: no header row, so data.label_column '{spec}' cannot be found; "
                        f"use first or last")
    if spec not in header:
        raise UserError(f"{path}: no column named '{spec}' for data.label_column "
                        f"(columns: {quote_data(', '.join(header[:5]), bare=True)}"
                        f"{', ...' if len(header) > 5 else ''})")
    return header.index(spec)


def _split_csv(path: Path, spec: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    header, table = _read_csv(path)
    col = _label_column(header, table.shape[1], spec, path)
    labels = table[:, col]
    wrong = (labels != np.round(labels)) | (np.abs(labels) > 2**53)   # 2**53: exact in float64
    if wrong.any():
        row = int(np.argmax(wrong))
        label = quote_data(f"{labels[row]:g}", bare=True)
        raise UserError(f"{path}: line {row + 1 + bool(header)}: label {label} is not an integer "
                        f"(of magnitude below 2**53)")
    X = np.delete(table, col, axis=1).astype(np.float32)
    if X.shape[1] == 0:
        raise UserError(f"{path}: no pixel columns besides the label column")
    return X, labels.astype(np.int64), header


def _check_pixels(X: np.ndarray, pixel_max: float, path: Path) -> None:
    """Refuse pixel values that are not finite or lie outside ``[0, pixel_max]``."""
    if not np.isfinite(X).all():
        raise UserError(f"{path}: pixel values must be finite numbers")
    if X.min() < 0 or X.max() > pixel_max or pixel_max <= 0:
        raise UserError(f"{path}: pixel values must lie in [0, {pixel_max:g}] "
                        f"(data.pixel_max), found {quote_data(f'[{X.min():g}, {X.max():g}]', bare=True)}")


def load_csv(cfg: DataConfig) -> Dataset:
    """One row per image: a label column and the pixels in row-major order.

    ``.csv`` or ``.csv.gz``; the header row is detected (a first row that is not all
    numbers); ``data.label_column`` is ``first``, ``last`` or a header name. The image shape
    is ``data.image_shape`` or the square root of the pixel count; ``pixel_max`` is
    ``data.pixel_max`` or 255.
    """
    train_path = Path(cfg.train)
    X, labels, header = _split_csv(train_path, cfg.label_column)
    d = X.shape[1]
    if cfg.image_shape is not None:
        shape = tuple(cfg.image_shape)
        if shape[0] * shape[1] != d:
            raise UserError(f"{train_path}: {d} pixel columns do not fill data.image_shape {list(shape)}")
    else:
        side = math.isqrt(d)
        if side * side != d:
            raise UserError(f"{train_path}: {d} pixel columns is not a square image; "
                            f"set data.image_shape: [height, width]")
        shape = (side, side)
    pixel_max = cfg.pixel_max if cfg.pixel_max is not None else 255.0
    _check_pixels(X, pixel_max, train_path)
    classes, y = np.unique(labels, return_inverse=True)
    _need_two_classes(classes, train_path)
    ds = Dataset(X=X, y=y.astype(np.int64), classes=[str(c) for c in classes], image_shape=shape,
                 pixel_max=float(pixel_max), description=f"CSV {train_path}")
    if cfg.test is not None:
        test_path = Path(cfg.test)
        X_test, test_labels, test_header = _split_csv(test_path, cfg.label_column)
        if X_test.shape[1] != d or (header and test_header and test_header != header):
            raise UserError(f"{test_path}: columns differ from the training file {train_path.name}")
        _check_pixels(X_test, pixel_max, test_path)
        ds.X_test, ds.y_test = X_test, _index_labels(test_labels, classes, test_path)
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
