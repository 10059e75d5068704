"""Train/validation/test splits, their fingerprints, and the input preprocessing fitted on the
training split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import UserError, quote, quote_data
from .dataset import Dataset

if TYPE_CHECKING:          # annotations only: `softmax predict` never loads the config module
    from ..config import DataConfig


SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Splits:
    """Raw-pixel splits: float32 features (n, d) and int64 labels (n,) for each part.

    ``X_val``/``y_val`` are None when ``val_fraction`` is 0. ``rows_*`` are the int64 row
    indices (n,) each part was taken from: rows of the source's training data for ``train``
    and ``val``; for ``test``, rows of the source's own test data when it has some, else of
    its training data. None when the splits were made from arrays of unknown origin.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: Optional[np.ndarray]
    y_val: Optional[np.ndarray]
    X_test: np.ndarray
    y_test: np.ndarray
    rows_train: Optional[np.ndarray] = None
    rows_val: Optional[np.ndarray] = None
    rows_test: Optional[np.ndarray] = None

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of ``train``, ``val`` or ``test`` (``(None, None)`` for a missing ``val``)."""
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")

    def fingerprint(self, name: str) -> dict | None:
        """The fingerprint of part ``name`` (see :func:`fingerprint`); None for a missing ``val``."""
        X, y = self.part(name)
        if X is None:
            return None
        rows = getattr(self, f"rows_{name}")
        return fingerprint(X, y, np.arange(len(y)) if rows is None else rows)

    def fingerprints(self) -> dict:
        """``{"train": ..., "val": ... or None, "test": ...}``, what a checkpoint records as
        ``metadata["splits"]``."""
        return {name: self.fingerprint(name) for name in SPLIT_NAMES}


def fingerprint(X: np.ndarray, y: np.ndarray, rows: np.ndarray) -> dict:
    """What identifies one split: ``{"rows": n, "indices_sha256": ..., "data_sha256": ...}``.

    ``indices_sha256`` is the SHA-256 (hex) of the row indices ``rows`` (n,) as little-endian
    int64; ``data_sha256`` the SHA-256 of the features ``X`` (n, d) as little-endian float32,
    row-major, followed by the labels ``y`` (n,) as little-endian int64: the data as read,
    before preprocessing. A changed file (an edited value, a row added or removed) or a
    changed splitting routine gives another fingerprint.
    """
    data = hashlib.sha256(np.ascontiguousarray(X, dtype="<f4").data)
    data.update(np.ascontiguousarray(y, dtype="<i8").data)
    return {"rows": int(len(y)),
            "indices_sha256": hashlib.sha256(np.ascontiguousarray(rows, dtype="<i8").data).hexdigest(),
            "data_sha256": data.hexdigest()}


def fingerprint_change(recorded, now: dict) -> str | None:
    """How fingerprint ``now`` differs from ``recorded`` (as a checkpoint holds it), in words;
    None when they are the same."""
    if not isinstance(recorded, dict):
        return f"no readable fingerprint was recorded (got {recorded!r:.40})"
    if recorded.get("rows") != now["rows"]:
        return f"{recorded.get('rows')!r:.20} rows when the model was trained, {now['rows']} now"
    if recorded.get("indices_sha256") != now["indices_sha256"]:
        return "other rows were drawn (the SHA-256 of the row indices differs)"
    if recorded.get("data_sha256") != now["data_sha256"]:
        return "the same rows hold other values (the SHA-256 of the data differs)"
    return None


def make_splits(ds: Dataset, cfg: DataConfig, seed: int) -> Splits:
    """Split ``ds`` into train, validation and test, stratified by class and seeded.

    The test split is the source's own when it has one, else ``cfg.test_fraction`` of the
    data. The validation split is ``cfg.val_fraction`` of what remains for training. Both
    use scikit-learn's ``train_test_split(stratify=...)`` with ``random_state=seed``, so the
    same config gives the same split on every run (eval relies on it).

    Raises:
        UserError: a class with too few examples to stratify, or a fraction that leaves a
            split empty; its ``key`` names the fraction (``data.val_fraction``).
    """
    from sklearn.model_selection import train_test_split

    if ds.X_test is None or cfg.val_fraction > 0:
        _check_stratifiable(ds)

    def split(arrays: tuple, y, key: str, fraction: float):
        try:
            return train_test_split(*arrays, test_size=fraction, stratify=y, random_state=seed)
        except ValueError as exc:
            raise UserError(f"{ds.description}: cannot split the data by {key} {fraction!r} "
                            f"({quote(str(exc))[1:-1]})", key=key) from None

    rows = np.arange(len(ds.y))       # split along with the data: which rows each part holds
    if ds.X_test is not None:
        X, y, X_test, y_test, rows_test = ds.X, ds.y, ds.X_test, ds.y_test, np.arange(len(ds.y_test))
    else:
        X, X_test, y, y_test, rows, rows_test = split((ds.X, ds.y, rows), ds.y, "data.test_fraction",
                                                      cfg.test_fraction)
    X_val = y_val = rows_val = None
    if cfg.val_fraction > 0:
        X, X_val, y, y_val, rows, rows_val = split((X, y, rows), y, "data.val_fraction", cfg.val_fraction)
    return Splits(X, y, X_val, y_val, X_test, y_test, rows, rows_val, rows_test)


def _check_stratifiable(ds: Dataset) -> None:
    """Refuse classes of a single example (a stratified split needs two of each), naming a
    few of them: the message stays one short line however many classes there are."""
    counts = np.bincount(ds.y, minlength=len(ds.classes))
    single = np.flatnonzero(counts == 1)
    if single.size:
        names = ", ".join(quote_data(ds.classes[i]) for i in single[:5])
        more = f" and {single.size - 5} more" if single.size > 5 else ""
        raise UserError(f"{ds.description}: cannot split the data: {single.size} of {len(ds.classes)} "
                        f"classes have only 1 member ({names}{more}); a stratified split needs at "
                        f"least 2 examples of each class")


def _mean_and_std(X: np.ndarray, rows: int = 4096) -> tuple[float, float]:
    """Mean and (population) standard deviation of all of ``X``'s values, in float64.

    ``X.std(dtype=np.float64)`` makes a float64 copy of ``X`` (``x - mean``): 340 MiB for
    MNIST's training images, more than the images themselves. The same two passes run here
    ``rows`` rows at a time.
    """
    mean = float(X.mean(dtype=np.float64))
    squares = 0.0
    for i in range(0, len(X), rows):
        centred = X[i:i + rows].astype(np.float64) - mean
        squares += float((centred * centred).sum())
    return mean, float(np.sqrt(squares / X.size)) if X.size else 0.0


@dataclass
class Preprocessor:
    """``x' = (x - offset) / scale``, per feature; fitted on the training split only.

    Attributes:
        offset, scale: float32 (d,) arrays.
        pixel_max: value of full ink in the raw data (digits 16, MNIST 255): images given to
            ``predict`` are mapped to ``[0, pixel_max]`` before this transform.
        normalize: how it was fitted: ``global`` (one mean and standard deviation over all
            pixels, as the usual MNIST normalisation), ``per_feature`` (scikit-learn's
            ``StandardScaler``) or ``none`` (divide by ``pixel_max``).
    """

    offset: np.ndarray
    scale: np.ndarray
    pixel_max: float
    normalize: str

    @classmethod
    def fit(cls, X: np.ndarray, pixel_max: float, normalize: str = "global") -> "Preprocessor":
        """Fit on the training features ``X`` float32 (n, d) in raw pixel units."""
        d = X.shape[1]
        if normalize == "per_feature":
            from sklearn.preprocessing import StandardScaler

            scaler = StandardScaler().fit(X)
            offset, scale = scaler.mean_, scaler.scale_  # scale_ is 1 for constant features
        elif normalize == "global":
            mean, std = _mean_and_std(X)
            offset = np.full(d, mean)
            scale = np.full(d, std if std > 0 else 1.0)
        elif normalize == "none":
            offset, scale = np.zeros(d), np.full(d, pixel_max)
        else:
            raise ValueError(f"unknown normalize mode {normalize!r}")
        return cls(offset.astype(np.float32), scale.astype(np.float32), float(pixel_max), normalize)

    def transform(self, X: np.ndarray, dtype=np.float32, inplace: bool = False) -> np.ndarray:
        """Return ``(X - offset) / scale`` as a new ``dtype`` array of the same shape (n, d),
        or, with ``inplace``, written over ``X`` (which must then be a float array of ``dtype``)."""
        if inplace:
            X -= self.offset.astype(X.dtype)
            X /= self.scale.astype(X.dtype)
            return X
        out = np.asarray(X, dtype=dtype) - self.offset.astype(dtype)
        out /= self.scale.astype(dtype)
        return out
