"""Train/validation/test splits and the input preprocessing fitted on the training split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import UserError, quote, quote_data
from .sources import Dataset

if TYPE_CHECKING:          # annotations only: `softmax predict` never loads the config module
    from ..config import DataConfig


@dataclass
class Splits:
    """Raw-pixel splits: float32 features (n, d) and int64 labels (n,) for each part.

    ``X_val``/``y_val`` are None when ``val_fraction`` is 0.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: Optional[np.ndarray]
    y_val: Optional[np.ndarray]
    X_test: np.ndarray
    y_test: np.ndarray

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of ``train``, ``val`` or ``test`` (``(None, None)`` for a missing ``val``)."""
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")


def make_splits(ds: Dataset, cfg: DataConfig, seed: int) -> Splits:
    """Split ``ds`` into train, validation and test, stratified by class and seeded.

    The test split is the source's own when it has one, else ``cfg.test_fraction`` of the
    data. The validation split is ``cfg.val_fraction`` of what remains for training. Both
    use scikit-learn's ``train_test_split(stratify=...)`` with ``random_state=seed``, so the
    same config gives the same split on every run (eval relies on it).

    Raises:
        UserError: a class with too few examples to stratify.
    """
    from sklearn.model_selection import train_test_split

    if ds.X_test is None or cfg.val_fraction > 0:
        _check_stratifiable(ds)
    try:
        if ds.X_test is not None:
            X, y, X_test, y_test = ds.X, ds.y, ds.X_test, ds.y_test
        else:
            X, X_test, y, y_test = train_test_split(ds.X, ds.y, test_size=cfg.test_fraction,
                                                    stratify=ds.y, random_state=seed)
        X_val = y_val = None
        if cfg.val_fraction > 0:
            X, X_val, y, y_val = train_test_split(X, y, test_size=cfg.val_fraction,
                                                  stratify=y, random_state=seed)
    except ValueError as exc:
        raise UserError(f"{ds.description}: cannot split the data ({quote(str(exc))[1:-1]})") from None
    return Splits(X, y, X_val, y_val, X_test, y_test)


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
