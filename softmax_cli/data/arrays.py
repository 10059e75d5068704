"""NumPy arrays as data: ``.npz`` archives and ``.npy`` files (``data.source: npz``).

An ``.npz`` holds the images and labels as named arrays: ``x`` and ``y``, or, the way Keras'
``mnist.npz`` stores MNIST, ``x_train``, ``y_train``, ``x_test`` and ``y_test``
(``data.arrays`` names others). Two ``.npy`` files hold one array each
(``data.train_images`` and ``data.train_labels``, optionally the test pair).

Nothing is unpickled (object arrays are refused), and every array's ``.npy`` header (shape,
dtype) is read and checked before its data: the declared size must fit in what the member
may hold (its size in the archive's directory, within :data:`~softmax_cli.data.files.MAX_INFLATION`
times its compressed size) before memory is set aside for it.
"""

from __future__ import annotations

import math
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from ..errors import UserError, quote_data
from .dataset import (Dataset, image_shape_for, index_labels, labels_to_classes, number, plain,
                      pixel_range_of, range_name)
from .files import MAX_INFLATION, MIN_INFLATED_LIMIT, open_regular

if TYPE_CHECKING:          # annotations only: `softmax predict` never loads the config module
    from ..config import DataConfig

NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"
MAX_ARRAY_DIMS = 4        # images (n, h, w, 1) at most
KERAS_NAMES = ("x_train", "y_train", "x_test", "y_test")
PLAIN_NAMES = ("x", "y")


def _header(stream: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from a ``.npy`` header, checked: numbers only."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, zipfile.BadZipFile, struct.error,
            NotImplementedError, RuntimeError) as exc:
        raise UserError(f"{where}: not a readable .npy array ({quote_data(str(exc))})") from None
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields is not None:
        raise UserError(f"{where}: arrays of {dtype} are not numbers (object arrays would need pickle, "
                        f"which is never loaded)")
    if len(shape) > MAX_ARRAY_DIMS:
        raise UserError(f"{where}: an array of {len(shape)} dimensions; expected at most {MAX_ARRAY_DIMS}")
    return shape, fortran, dtype


def _read_data(stream: BinaryIO, shape, fortran: bool, dtype: np.dtype, room: int, where: str) -> np.ndarray:
    """The array's data, read into one array once its declared size is known to fit ``room``."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > room:
        raise UserError(f"{where}: the header declares {shape} {dtype} ({nbytes:,} bytes), more than the "
                        f"file holds ({max(room, 0):,} bytes)")
    out = np.empty(shape[::-1] if fortran else shape, dtype)
    view, got = memoryview(out.reshape(-1).view(np.uint8)), 0
    try:
        while got < nbytes and (n := stream.readinto(view[got:])):
            got += n
    except (OSError, EOFError, zipfile.BadZipFile, struct.error, NotImplementedError, RuntimeError) as exc:
        raise UserError(f"{where}: cannot read the array's data ({quote_data(str(exc))})") from None
    if got < nbytes:
        raise UserError(f"{where}: truncated: {got:,} of the {nbytes:,} bytes its header declares")
    return out.T if fortran else out


def read_npy(path: str | Path) -> np.ndarray:
    """One array from an ``.npy`` file (no pickle; header checked before the data is read).

    Raises:
        UserError: not a regular file, not an ``.npy`` array, not numbers, truncated.
    """
    path = Path(path)
    with open_regular(path) as f:
        size = f.seek(0, 2)
        f.seek(0)
        shape, fortran, dtype = _header(f, str(path))
        return _read_data(f, shape, fortran, dtype, size - f.tell(), str(path))


class NpzArchive:
    """An ``.npz`` archive whose arrays are read one at a time, each checked first.

    Raises (on opening):
        UserError: not a regular file, or not a zip archive.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = open_regular(self.path)
        try:
            head = self._file.read(6)
            self._file.seek(0)
            if head == NPY_MAGIC:
                raise UserError(f"{self.path}: a single .npy array, not an .npz archive; give the image "
                                f"and label arrays as data.train_images and data.train_labels")
            self._zip = zipfile.ZipFile(self._file)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error,
                NotImplementedError, RuntimeError) as exc:
            self._file.close()
            raise UserError(f"{self.path}: not a readable .npz archive ({quote_data(str(exc))})") from None
        except BaseException:
            self._file.close()
            raise
        self.names = [i.filename[:-4] for i in self._zip.infolist() if i.filename.endswith(".npy")]

    def array(self, name: str) -> np.ndarray:
        """The array ``name`` (member ``name.npy``)."""
        info = self._zip.getinfo(f"{name}.npy")
        where = f"{self.path}: array {quote_data(name)}"
        room = min(info.file_size, max(MIN_INFLATED_LIMIT, MAX_INFLATION * info.compress_size))
        try:
            member = self._zip.open(info)
        except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
            raise UserError(f"{where}: cannot read it ({quote_data(str(exc))})") from None
        with member:
            shape, fortran, dtype = _header(member, where)
            return _read_data(member, shape, fortran, dtype, room - member.tell(), where)

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def __enter__(self) -> "NpzArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _names(archive: NpzArchive, given: list[str] | None) -> tuple[str, ...]:
    """The names of the (x, y[, x_test, y_test]) arrays to read from ``archive``."""
    if given is not None:
        wanted = tuple(given)
    elif all(n in archive.names for n in KERAS_NAMES[:2]):
        wanted = tuple(n for n in KERAS_NAMES if n in archive.names)
        wanted = wanted if len(wanted) == 4 else KERAS_NAMES[:2]
    else:
        wanted = PLAIN_NAMES
    missing = [n for n in wanted if n not in archive.names]
    if missing:
        held = ", ".join(quote_data(n) for n in archive.names[:8]) or "none"
        raise UserError(f"{archive.path}: no array named {quote_data(missing[0])} (the archive holds: {held}); "
                        f"name the image and label arrays with data.arrays: [x, y] or "
                        f"[x_train, y_train, x_test, y_test]")
    return wanted


def _images(x: np.ndarray, cfg: DataConfig, where: str) -> tuple[np.ndarray, tuple[int, int]]:
    """float32 (n, d) pixel rows and the image shape, from x of shape (n, h, w[, 1]) or (n, d)."""
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    if x.ndim == 3:
        shape = image_shape_for(x.shape[1] * x.shape[2], cfg.image_shape or x.shape[1:], Path(where))
    elif x.ndim == 2:
        shape = image_shape_for(x.shape[1], cfg.image_shape, Path(where))
    else:
        raise UserError(f"{where}: images of shape {x.shape}; expected (n, height, width), "
                        f"(n, height, width, 1) or (n, pixels)")
    if len(x) == 0 or 0 in shape:
        raise UserError(f"{where}: no images (shape {x.shape})")
    return x.reshape(len(x), -1).astype(np.float32), shape


def _labels(y: np.ndarray, n: int, where: str) -> tuple[np.ndarray, list[str] | None]:
    """Labels (n,) from y of shape (n,), (n, 1) or one-hot (n, k); one-hot gives class names."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if len(y) != n:
        raise UserError(f"{where}: {len(y)} labels for {n} images")
    if y.ndim == 2 and y.shape[1] >= 2:
        ok = ((y == 0) | (y == 1)).all(axis=1) & (y.sum(axis=1) == 1)
        if not ok.all():
            i = int(np.argmin(ok))
            raise UserError(f"{where}: row {i} is not a one-hot label (one 1, the others 0): "
                            f"{quote_data([plain(v) for v in y[i]])}")
        return np.argmax(y, axis=1).astype(np.int64), [str(i) for i in range(y.shape[1])]
    if y.ndim != 1:
        raise UserError(f"{where}: labels of shape {y.shape}; expected (n,) or one-hot (n, classes)")
    if y.dtype.kind == "f":
        wrong = ~np.isfinite(y) | (y != np.round(y)) | (np.abs(y) > 2**53)
        if wrong.any():
            i = int(np.argmax(wrong))
            raise UserError(f"{where}: label {i} is {number(y[i])}, not an integer")
    return y.astype(np.int64), None


def _shifted(X: np.ndarray, cfg: DataConfig, where: str) -> np.ndarray:
    """``X - low`` after checking every pixel lies in the declared range."""
    low, high = pixel_range_of(cfg)
    if not np.isfinite(X).all():
        i = int(np.argmax(~np.isfinite(X).all(axis=1)))
        raise UserError(f"{where}: image {i}: pixel values must be finite numbers")
    bad = (X < low) | (X > high)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise UserError(f"{where}: image {i}, pixel {j}: value {number(X[i, j])} outside [{low:g}, {high:g}] "
                        f"({range_name(cfg)})")
    if low:
        X -= np.float32(low)
    return X


def _pair(x: np.ndarray, y: np.ndarray, cfg: DataConfig, x_where: str, y_where: str):
    X, shape = _images(x, cfg, x_where)
    labels, names = _labels(y, len(X), y_where)
    return _shifted(X, cfg, x_where), labels, names, shape


def load_npz(cfg: DataConfig) -> Dataset:
    """Images and labels from an ``.npz`` archive (``data.train``, ``data.test``) or from
    ``.npy`` files (``data.train_images``/``train_labels``, ``test_images``/``test_labels``).

    Pixels lie in ``data.pixel_range`` (default ``[0, data.pixel_max]``, 255 when unset).
    Labels: integers (n,), or one-hot (n, classes).

    Raises:
        UserError: a missing, unreadable or malformed file or array, naming it and what was
            wrong; arrays that do not match; training labels of one class only.
    """
    low, high = pixel_range_of(cfg)
    test = None
    if cfg.train is not None:
        origin = test_origin = Path(cfg.train)
        with NpzArchive(origin) as archive:
            names = _names(archive, cfg.arrays)
            train = _archive_pair(archive, names[:2], cfg)
            if len(names) == 4 and cfg.test is None:
                test = _archive_pair(archive, names[2:], cfg)
    else:
        origin = Path(cfg.train_labels)
        train = _pair(read_npy(cfg.train_images), read_npy(cfg.train_labels), cfg, cfg.train_images,
                      cfg.train_labels)
        if cfg.test_images is not None:
            test_origin = Path(cfg.test_labels)
            test = _pair(read_npy(cfg.test_images), read_npy(cfg.test_labels), cfg, cfg.test_images,
                         cfg.test_labels)
    if cfg.test is not None:
        test_origin = Path(cfg.test)
        with NpzArchive(test_origin) as archive:
            given = cfg.arrays[2:] if cfg.arrays and len(cfg.arrays) == 4 else None
            names = _names(archive, given or (["x_test", "y_test"] if "x_test" in archive.names else None))
            test = _archive_pair(archive, names[:2], cfg)
    X, labels, label_names, shape = train
    classes, y, class_names = labels_to_classes(labels, origin, label_names)
    ds = Dataset(X=X, y=y, classes=class_names, image_shape=shape, pixel_max=high - low,
                 description=f"arrays {origin}")
    if test is not None:
        if test[3] != shape:
            raise UserError(f"{test_origin}: test images are {test[3]}, training images {shape}")
        ds.X_test, ds.y_test = test[0], index_labels(test[1], classes, test_origin)
    return ds


def _archive_pair(archive: NpzArchive, names, cfg: DataConfig):
    where = [f"{archive.path}: array {quote_data(n)}" for n in names]
    return _pair(archive.array(names[0]), archive.array(names[1]), cfg, where[0], where[1])


def read_array_rows(path: str | Path, n_features: int, pixel_range: tuple[float, float],
                    range_key: str = "data.pixel_range") -> np.ndarray:
    """Label-less pixel rows from an ``.npy`` file or an ``.npz`` holding one array (or ``x``,
    or ``x_test``): shape (n, n_features) or (n, h, w[, 1]) with ``h * w == n_features``.

    Returns:
        float32 (n, n_features): each value minus ``pixel_range[0]``.

    Raises:
        UserError: unreadable, not numbers, the wrong number of pixels, or a pixel outside
            ``pixel_range`` (naming ``range_key``).
    """
    path = Path(path)
    with open_regular(path) as f:
        magic = f.read(6)
    if magic == NPY_MAGIC or (magic[:4] != ZIP_MAGIC and path.suffix.lower() == ".npy"):
        x, where = read_npy(path), str(path)
    else:
        with NpzArchive(path) as archive:
            name = next((n for n in ("x", "x_test") if n in archive.names),
                        archive.names[0] if len(archive.names) == 1 else None)
            if name is None:
                raise UserError(f"{path}: expected one array, or one named 'x' or 'x_test' "
                                f"(the archive holds {len(archive.names)})")
            x, where = archive.array(name), f"{path}: array {quote_data(name)}"
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    if x.ndim not in (2, 3) or math.prod(x.shape[1:]) != n_features:
        raise UserError(f"{where}: arrays of shape {x.shape}; expected (n, {n_features}) pixel rows, "
                        f"or (n, height, width) images of {n_features} pixels")
    X = x.reshape(len(x), -1).astype(np.float32)
    low, high = pixel_range
    bad = ~np.isfinite(X) | (X < low) | (X > high)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise UserError(f"{where}: row {i}, pixel {j}: value {number(X[i, j])} outside [{low:g}, {high:g}] "
                        f"({range_key})")
    if low:
        X -= np.float32(low)
    return X
