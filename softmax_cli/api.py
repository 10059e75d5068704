"""The Python API: :class:`SoftmaxClassifier` (a scikit-learn estimator), :func:`train` and :func:`load`.

All three run what the command line runs: the same config schema, training engine
(:mod:`softmax_cli.engine`), compiled kernels and checkpoint format. See ``docs/api.md``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from typing import Any, Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import Config, apply_overrides, config_from_dict, load_config, parse_overrides
from .data import Preprocessor, Splits
from .data.sources import Dataset
from .engine import Callback, TrainResult
from .engine import train as run_engine
from .engine.rundir import checkpoint_metadata
from .engine.step import StepSettings, compact_pixels, train_epoch
from .errors import UserError
from .experiment import prepare_data
from .nn import MLP
from .optim import make_optimizer

__all__ = ["Callback", "Model", "SoftmaxClassifier", "TrainResult", "load", "train"]


# ------------------------------------------------------------------------ train() and load()
def train(config: str | os.PathLike | dict | Config, overrides: Sequence[str] = (), *,
          callbacks: Iterable[Callback] = (), progress: bool = False, log=None) -> TrainResult:
    """Train as ``softmax train CONFIG --set ...`` does, and return the run's result.

    Args:
        config: a YAML config file, the same as a dict, or a :class:`~softmax_cli.config.Config`.
        overrides: ``KEY.SUB=VALUE`` strings, as ``--set`` takes them (not with a Config).
        callbacks: :class:`~softmax_cli.engine.callbacks.Callback` objects, called after
            each epoch with its metrics; one may stop the run (``request_stop``).
        progress: show a progress bar per epoch on stderr.
        log: called with a line naming the run directory, then a line per epoch (e.g. ``print``).

    Returns:
        A :class:`~softmax_cli.engine.TrainResult`: ``run_dir``, ``best_epoch``, ``best``
        (that epoch's metrics), ``test_acc``, ``test_loss``, ``history``, ``model``, ...

    Raises:
        UserError: a bad config, or data that cannot be read (the CLI's one-line messages).
        TrainingInterrupted: SIGINT or SIGTERM in the main thread; ``last.npz`` was saved.
        FloatingPointError: the loss became NaN or infinite.
    """
    if isinstance(config, Config):
        if overrides:
            raise ValueError("overrides: give them with a config file or dict, not a Config")
        cfg = config
    elif isinstance(config, dict):
        cfg = config_from_dict(apply_overrides(config, parse_overrides(list(overrides))), origin="config")
    else:
        cfg = load_config(config, list(overrides))
    return run_engine(cfg, prepare_data(cfg), callbacks=callbacks, progress=progress, log=log)


class Model:
    """A trained model read from a checkpoint: class probabilities of raw rows, images or
    image files, through the checkpoint's own preprocessing.

    Attributes:
        checkpoint: the :class:`~softmax_cli.checkpoint.Checkpoint`.
        classes: class names, one per output.
        image_shape: ``(height, width)`` of the images the model takes.
    """

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self.classes = list(checkpoint.classes)
        self.image_shape = checkpoint.image_shape

    def __repr__(self) -> str:
        sizes = "-".join(map(str, self.checkpoint.model.sizes))
        return f"Model({str(self.checkpoint.path)!r}, MLP {sizes}, classes {self.classes})"

    def rows(self, images_or_rows) -> np.ndarray:
        """The model's raw input rows (n, d) float32 of what :meth:`predict_proba` takes.

        Raises:
            ValueError: an array of another shape; UserError: an image file that cannot be used.
        """
        data = images_or_rows
        if isinstance(data, (str, os.PathLike)) or (isinstance(data, (list, tuple)) and data
                                                    and all(isinstance(p, (str, os.PathLike)) for p in data)):
            from .data.images import image_to_input

            paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
            pre = self.checkpoint.preprocessor
            return np.stack([image_to_input(p, self.image_shape, pre.pixel_max, self.checkpoint.meta["image_style"])
                             for p in paths])
        X = np.asarray(data, dtype=np.float32)
        d = self.checkpoint.model.sizes[0]
        if X.ndim == 2 and X.shape[1] == d:
            return X
        if X.shape == self.image_shape:
            return X.reshape(1, d)
        if X.ndim == 3 and X.shape[1:] == self.image_shape:
            return X.reshape(len(X), d)
        if X.ndim == 1 and X.size == d:
            return X.reshape(1, d)
        h, w = self.image_shape
        raise ValueError(f"expected rows (n, {d}), images (n, {h}, {w}) or one image ({h}, {w}) "
                         f"in pixel units 0..{self.checkpoint.preprocessor.pixel_max:g}, or image files; "
                         f"got an array of shape {X.shape}")

    def predict_proba(self, images_or_rows) -> np.ndarray:
        """Class probabilities (n, K) of the model's dtype, rows summing to 1.

        Args:
            images_or_rows: raw rows (n, d), images (n, h, w) or one image (h, w), in the
                training data's pixel units (0..``pixel_max``); or an image file's path, or a
                list of them (read as ``softmax predict`` reads them).
        """
        return self.checkpoint.predict_proba(self.rows(images_or_rows))

    def predict(self, images_or_rows) -> np.ndarray:
        """The most probable class name of each row or image, an array of str (n,)."""
        return np.asarray(self.classes)[self.predict_proba(images_or_rows).argmax(axis=1)]


def load(checkpoint: str | os.PathLike) -> Model:
    """Read a ``.npz`` checkpoint (``runs/NAME/best.npz``, a saved :class:`SoftmaxClassifier`).

    Raises:
        UserError: the file is missing or not a valid checkpoint (never unpickled).
    """
    return Model(load_checkpoint(checkpoint))


# ----------------------------------------------------------------------- SoftmaxClassifier
# estimator parameter -> config key (the rest of the model and train keys keep their names)
_CONFIG_KEYS = {"random_state": "seed", "validation_fraction": "data.val_fraction",
                "normalize": "data.normalize", "optimizer": "train.optimizer.name"}
_MODEL_KEYS = ("hidden", "activation", "dropout", "input_dropout", "dtype")
_OPTIMIZER_KEYS = ("lr", "momentum", "nesterov", "weight_decay", "beta1", "beta2", "eps")
_TRAIN_KEYS = ("epochs", "batch_size", "schedule", "label_smoothing", "max_norm", "augment", "monitor",
               "early_stopping", "calibration")


class SoftmaxClassifier(ClassifierMixin, BaseEstimator):
    """A multilayer perceptron with a softmax output, trained by ``softmax``'s engine.

    The parameters are the config's ``model`` and ``train`` keys (the config reference), with
    the optimiser's keys flattened (``optimizer`` is its name), plus ``validation_fraction``
    (``data.val_fraction``), ``normalize`` (``data.normalize``), ``random_state`` (``seed``),
    ``pixel_max`` and ``image_shape`` (what an image's pixels are, for augmentation and for
    ``softmax predict`` on a saved model) and ``verbose``. ``fit`` holds out
    ``validation_fraction`` of the rows (stratified) to choose the best epoch by ``monitor``
    and for ``early_stopping``, and keeps that epoch's weights.

    Args:
        hidden: hidden layer widths, ``()`` for softmax regression.
        activation: ``relu``, ``leaky_relu``, ``tanh`` or ``sigmoid``.
        dropout, input_dropout: inverted dropout rates of the hidden layers' outputs and the inputs.
        dtype: ``float32`` or ``float64``.
        epochs, batch_size: passes over the training rows, rows per gradient step.
        optimizer: ``adam``, ``adamw`` or ``sgd``; lr, momentum, nesterov, weight_decay,
            beta1, beta2, eps: its settings.
        schedule: a learning-rate schedule name (``constant``, ``step``, ``cosine``,
            ``plateau``) or a mapping of ``train.schedule`` keys.
        label_smoothing, max_norm: as in the config.
        augment: a mapping of ``train.augment`` keys (needs ``image_shape``), or None.
        monitor: ``val_loss`` or ``val_acc``: what chooses the best epoch.
        early_stopping: None, a patience (int), or a mapping ``{patience, min_delta}``.
        calibration: ``temperature`` (fit one temperature on the validation rows after
            training: :meth:`predict_proba` gives ``softmax(logits / T)``; no prediction
            changes) or None.
        validation_fraction: in [0, 1); 0 trains on every row (monitoring the training metrics).
        normalize: ``global``, ``per_feature`` or ``none`` (divide by ``pixel_max``).
        pixel_max: the value of full ink of image pixels.
        image_shape: ``(height, width)`` of image rows; default ``(1, n_features)``.
        random_state: None, an int or a ``numpy.random.RandomState``: the seed of the run.
        verbose: print a line per epoch on stderr.

    Attributes:
        classes_: the class labels (n_classes,), sorted.
        n_features_in_: features seen by fit; ``feature_names_in_`` for a DataFrame.
        checkpoint_: the fitted model as a :class:`~softmax_cli.checkpoint.Checkpoint`
            (weights, preprocessing, metadata), what :meth:`save` writes.
        n_iter_: epochs run; ``best_epoch_``: the epoch whose weights were kept;
        history_: every epoch's metrics (``train_loss``, ``val_acc``, ... per epoch).
    """

    def __init__(self, hidden=(128,), activation="relu", dropout=0.0, input_dropout=0.0, dtype="float32",
                 epochs=30, batch_size=64, optimizer="adam", lr=1e-3, momentum=0.9, nesterov=False,
                 weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8, schedule="constant", label_smoothing=0.0,
                 max_norm=None, augment=None, monitor="val_loss", early_stopping=None, calibration="temperature",
                 validation_fraction=0.1, normalize="global", pixel_max=255.0, image_shape=None, random_state=None,
                 verbose=False):
        self.hidden, self.activation, self.dropout, self.input_dropout = hidden, activation, dropout, input_dropout
        self.dtype, self.epochs, self.batch_size, self.optimizer = dtype, epochs, batch_size, optimizer
        self.lr, self.momentum, self.nesterov, self.weight_decay = lr, momentum, nesterov, weight_decay
        self.beta1, self.beta2, self.eps, self.schedule = beta1, beta2, eps, schedule
        self.label_smoothing, self.max_norm, self.augment, self.monitor = label_smoothing, max_norm, augment, monitor
        self.early_stopping, self.calibration, self.validation_fraction = early_stopping, calibration, validation_fraction
        self.normalize, self.pixel_max, self.image_shape = normalize, pixel_max, image_shape
        self.random_state, self.verbose = random_state, verbose

    # ---------------------------------------------------------------------- fitting
    def fit(self, X, y) -> "SoftmaxClassifier":
        """Train on ``X`` (n_samples, n_features) and class labels ``y`` (n_samples,).

        Raises:
            ValueError: bad parameters (named by their config key), X or y not usable
                (NaN, infinite, sparse, fewer than two classes).
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, y = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least two classes; got 1 class "
                             f"({self.classes_.tolist()[0]!r})")
        cfg = self._config()
        ds = self._dataset(X, cfg)
        splits = self._split(X.astype(cfg.model.dtype), y.astype(np.int64), cfg)
        log = _stderr if self.verbose else None
        result = run_engine(cfg, (ds, splits), write_run=False, progress=False, log=log)
        self._fitted(result.model, result.preprocessor, cfg, ds, splits, result.best_epoch,
                     result.best, result.history, result.calibration)
        self._rng = self._optimizer_state = None     # partial_fit after fit starts a new optimiser
        return self

    def partial_fit(self, X, y, classes=None) -> "SoftmaxClassifier":
        """One epoch over ``X``, ``y`` (no validation split, no early stopping), continuing
        from the current weights and optimiser state; the first call (before any fit) needs
        ``classes``, every class label there will ever be, and fits the preprocessing on ``X``.

        Raises:
            ValueError: no ``classes`` on the first call, other ``classes`` later, a label
                not among them, or another number of features.
        """
        first = not hasattr(self, "checkpoint_")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes: the first call of partial_fit needs every class label")
            if len(np.unique(classes)) < 2:
                raise ValueError(f"classes: at least two classes are needed, got {np.unique(classes).tolist()}")
            self.classes_ = np.unique(classes)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes: {np.unique(classes).tolist()} differ from the first call's "
                             f"{self.classes_.tolist()}")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y: label {unknown[:1].tolist()[0]!r} is not among classes {self.classes_.tolist()}")
        cfg = self._config()
        X = X.astype(cfg.model.dtype)
        if first:
            self._start(X, cfg)
        self._one_epoch(X, np.searchsorted(self.classes_, y).astype(np.int64), cfg)
        return self

    def _start(self, X: np.ndarray, cfg: Config) -> None:
        """The first partial_fit: preprocessing fitted on ``X``, new weights, a generator."""
        rng = np.random.default_rng(cfg.seed)
        ds = self._dataset(X, cfg)
        pre = Preprocessor.fit(X, ds.pixel_max, cfg.data.normalize)
        model = MLP([X.shape[1], *cfg.model.hidden, len(self.classes_)], cfg.model.activation,
                    dtype=cfg.model.dtype, rng=rng)
        empty = np.empty((0, X.shape[1]), X.dtype), np.empty(0, np.int64)
        self._fitted(model, pre, cfg, ds, Splits(*empty, None, None, *empty), 0, {}, [])
        self._rng, self._optimizer_state = rng, None

    def _one_epoch(self, X: np.ndarray, y: np.ndarray, cfg: Config) -> None:
        """An epoch of the engine's steps over ``X`` (raw rows), ``y`` (int64 class indices)."""
        model, pre, tc = self.checkpoint_.model, self.checkpoint_.preprocessor, cfg.train
        if getattr(self, "_rng", None) is None:          # after fit
            self._rng = np.random.default_rng(cfg.seed)
        optimizer = make_optimizer(tc.optimizer.name, model.params, decay=[True, False] * model.n_layers,
                                   **{k: v for k, v in vars(tc.optimizer).items() if k != "name"})
        if self._optimizer_state is not None:
            optimizer.load_state(*self._optimizer_state)
        settings = StepSettings(label_smoothing=tc.label_smoothing, dropout=cfg.model.dropout_rates(),
                                max_norm=tc.max_norm, preprocess=pre, seed=cfg.seed)
        ws = model.workspace(min(tc.batch_size, len(y)), dropout=settings.dropout)
        self.n_iter_ += 1
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            train_epoch(model, optimizer, compact_pixels(X), y, self._rng.permutation(len(y)), ws,
                        settings=settings, epoch=self.n_iter_)
        self._optimizer_state = (optimizer.t, {k: a.copy() for k, a in optimizer.state_arrays().items()})

    # -------------------------------------------------------------------- predicting
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n_samples, n_classes) in the order of ``classes_``, rows
        summing to 1 (:meth:`Checkpoint.predict_proba <softmax_cli.checkpoint.Checkpoint.predict_proba>`)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.checkpoint_.predict_proba(X)

    def predict_log_proba(self, X) -> np.ndarray:
        """Natural logarithms of :meth:`predict_proba` (n_samples, n_classes), ``-inf`` where a
        probability underflows to 0, as scikit-learn's ``MLPClassifier`` gives them: its
        estimator checks require ``predict_log_proba == log(predict_proba)``, infinities included."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class label of each row (n_samples,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    # ---------------------------------------------------------------- saving, loading
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to ``path`` as a ``softmax`` checkpoint (``.npz``, no
        pickle), readable by :meth:`load`, :func:`softmax_cli.load` and the command line
        (``softmax predict -c PATH``, ``softmax inspect PATH``).

        Raises:
            ValueError: a parameter or a class label JSON cannot hold; OSError: not written.
        """
        check_is_fitted(self)
        ckpt = self.checkpoint_
        meta = {**ckpt.meta, "estimator": {"params": _plain(self.get_params()), "classes": _plain(self.classes_.tolist())}}
        try:
            json.dumps(meta["estimator"], allow_nan=True)
        except TypeError as exc:
            raise ValueError(f"cannot save {type(self).__name__}: {exc}") from None
        save_checkpoint(path, ckpt.model, ckpt.preprocessor, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SoftmaxClassifier":
        """A fitted estimator from a checkpoint: one :meth:`save` wrote (its parameters and
        class labels come back), or a training run's (``runs/NAME/best.npz``: parameters from
        its config, class labels its class names).

        Raises:
            UserError: the file is missing or not a valid checkpoint.
        """
        ckpt = load_checkpoint(path)
        saved = ckpt.meta.get("estimator") if isinstance(ckpt.meta.get("estimator"), dict) else {}
        params = saved.get("params") if isinstance(saved.get("params"), dict) else _params_of(ckpt.meta["config"])
        est = cls(**{k: tuple(v) if k in ("hidden", "image_shape") and isinstance(v, list) else v
                     for k, v in params.items() if k in cls._get_param_names()})
        classes = saved.get("classes", ckpt.classes)
        est.classes_ = np.asarray(classes if len(classes) == len(ckpt.classes) else ckpt.classes)
        est.n_features_in_ = ckpt.model.sizes[0]
        est.checkpoint_, est.n_iter_ = ckpt, ckpt.meta.get("epoch", 0)
        est.best_epoch_, est.history_, est._optimizer_state = ckpt.meta.get("epoch", 0), [], None
        return est

    # ---------------------------------------------------------------------- helpers
    def _config(self) -> Config:
        """The parameters as a validated config (the CLI's schema and its checks).

        Raises:
            ValueError: ``SoftmaxClassifier: KEY: expected ..., got VALUE``.
        """
        p = _plain(self.get_params())
        seed = p["random_state"]
        if not isinstance(seed, int):                       # None or a RandomState: draw one
            seed = int(check_random_state(self.random_state).randint(2**32 - 1))
        early = {True: {}, False: None}.get(p["early_stopping"], p["early_stopping"]) \
            if isinstance(p["early_stopping"], bool) else p["early_stopping"]
        raw = {"seed": seed,
               "data": {"val_fraction": p["validation_fraction"], "normalize": p["normalize"]},
               "model": {k: list(p[k]) if k == "hidden" and isinstance(p[k], (list, tuple)) else p[k]
                         for k in _MODEL_KEYS},
               "train": {**{k: p[k] for k in _TRAIN_KEYS},
                         "schedule": {"name": p["schedule"]} if isinstance(p["schedule"], str) else p["schedule"],
                         "early_stopping": {"patience": early} if isinstance(early, int) and not isinstance(early, bool)
                         else early,
                         "optimizer": {"name": p["optimizer"], **{k: p[k] for k in _OPTIMIZER_KEYS}}}}
        try:
            cfg = config_from_dict(raw, origin=type(self).__name__, default_name="estimator")
        except UserError as exc:
            raise ValueError(str(exc)) from None
        if self.augment is not None and self.image_shape is None:
            raise ValueError(f"{type(self).__name__}: augment needs image_shape (height, width)")
        if not (isinstance(self.pixel_max, numbers.Real) and math.isfinite(self.pixel_max) and self.pixel_max > 0):
            raise ValueError(f"{type(self).__name__}: pixel_max: expected a number > 0, got {self.pixel_max!r}")
        return cfg

    def _dataset(self, X: np.ndarray, cfg: Config) -> Dataset:
        """What the engine knows of the data: classes, image shape and pixel scale (no rows)."""
        d = X.shape[1]
        shape = (1, d) if self.image_shape is None else tuple(int(v) for v in self.image_shape)
        if shape[0] * shape[1] != d:
            raise ValueError(f"image_shape: {list(shape)} does not hold {d} features")
        return Dataset(X=np.empty((0, d), X.dtype), y=np.empty(0, np.int64), classes=[str(c) for c in self.classes_],
                       image_shape=shape, pixel_max=float(self.pixel_max),
                       description=f"{type(self).__name__}.fit: {len(X)} rows of {d} features")

    def _split(self, X: np.ndarray, y: np.ndarray, cfg: Config) -> Splits:
        """Training and validation rows as the CLI splits them (stratified, seeded); with
        too few rows of a class to stratify, an unstratified split; with too few rows for
        both parts, no validation split (refused with early stopping)."""
        rows, f = np.arange(len(y)), cfg.data.val_fraction
        empty = np.empty((0, X.shape[1]), X.dtype), np.empty(0, np.int64)
        for stratify in ((y, None) if f > 0 else ()):
            try:
                X_train, X_val, y_train, y_val, r_train, r_val = train_test_split(
                    X, y, rows, test_size=f, stratify=stratify, random_state=cfg.seed)
                return Splits(X_train, y_train, X_val, y_val, *empty, r_train, r_val, rows[:0])
            except ValueError:
                continue
        if cfg.train.early_stopping is not None:
            raise ValueError(f"early_stopping: needs a validation split, and {len(y)} rows cannot be split "
                             f"with validation_fraction {f}")
        cfg.data.val_fraction = 0.0
        return Splits(X, y, None, None, *empty, rows, None, rows[:0])

    def _fitted(self, model: MLP, pre: Preprocessor, cfg: Config, ds: Dataset, splits: Splits,
                best_epoch: int, best: dict, history: list[dict], calibration: dict | None = None) -> None:
        meta = checkpoint_metadata(cfg, ds, splits)
        if calibration is not None:
            meta["calibration"] = calibration
        meta.update(image_style="uci_digits" if ds.image_shape == (8, 8) else "mnist", epoch=best_epoch,
                    metrics={k: "" if v is None else v for k, v in best.items()})
        self.checkpoint_ = Checkpoint(model=model, preprocessor=pre, meta=meta, path=None)
        self.n_iter_, self.best_epoch_, self.history_ = len(history), best_epoch, history


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr)


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars as Python numbers and tuples as lists (what the config
    schema and JSON take)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _params_of(config: dict) -> dict:
    """:class:`SoftmaxClassifier` parameters of a run's config (``metadata["config"]``)."""
    model, tc = config.get("model", {}), config.get("train", {})
    opt, data = tc.get("optimizer", {}), config.get("data", {})
    es = tc.get("early_stopping")
    params = {**{k: model[k] for k in _MODEL_KEYS if k in model}, **{k: tc[k] for k in _TRAIN_KEYS if k in tc},
              **{k: opt[k] for k in _OPTIMIZER_KEYS if k in opt}}
    params.update(optimizer=opt.get("name", "adam"), random_state=config.get("seed"),
                  validation_fraction=data.get("val_fraction", 0.1), normalize=data.get("normalize", "global"),
                  early_stopping=es)
    return params
