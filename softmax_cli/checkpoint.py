"""Checkpoints: one ``.npz`` holding a model, its preprocessing and its metadata, no pickle.

Arrays: ``W0, b0, W1, b1, ...`` (the MLP's parameters), ``input_offset`` and ``input_scale``
(the :class:`~softmax_cli.data.Preprocessor`), and ``metadata``: a 0-d unicode array holding
one JSON object (format, package version, layer sizes, activation, dtype, class names, image
shape, preprocessing, the resolved config, metrics). Files are written to a temporary file in
the same directory and renamed, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .data.images import STYLES
from .data.prepare import Preprocessor
from .errors import UserError, quote
from .nn import MLP

FORMAT = "softmax-checkpoint"
FORMAT_VERSION = 1

# the permissions a new file gets from open(): 0o666 less the umask (read once, here, while
# the process has one thread: os.umask can only be read by setting it)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model, the preprocessing and the metadata dict."""

    model: MLP
    preprocessor: Preprocessor
    meta: dict
    path: Path
    optimizer_state: dict = field(default_factory=dict)   # ``opt_*`` arrays, without the prefix

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.meta["image_shape"])

    @property
    def temperature(self) -> float:
        """The calibration temperature ``T`` the probabilities use, ``softmax(logits / T)``
        (temperature scaling, Guo et al. 2017, "On calibration of modern neural networks");
        1.0 when the checkpoint holds none (``metadata["calibration"]["temperature"]``)."""
        calibration = self.meta.get("calibration")
        if isinstance(calibration, dict) and "temperature" in calibration:
            return float(calibration["temperature"])
        return 1.0

    def logits(self, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Uncalibrated logits (n, K), the model's dtype, of raw input rows ``X`` (n, d) in
        the training data's pixel units (0..pixel_max): the checkpoint's preprocessing,
        then the network.

        Raises:
            ValueError: ``X`` is not (n, d) with the model's number of features.
        """
        return self.model.logits(self.preprocessor.transform(np.asarray(X), self.model.dtype), batch_size)

    def predict_proba(self, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Class probabilities (n, K), rows summing to 1, of raw input rows ``X`` (n, d):
        ``softmax(logits / T)`` with the checkpoint's :attr:`temperature`. The one place
        where a checkpoint's probabilities are made (predict, eval, export and serve).

        Raises:
            ValueError: as :meth:`logits`.
        """
        from .nn import softmax

        Z = self.logits(X, batch_size)
        T = self.temperature
        return softmax(Z if T == 1.0 else Z / Z.dtype.type(T))


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it.

    On any error the temporary file is removed and ``path`` is left as it was. The file
    gets the permissions of one made by ``open`` (``0o666`` less the umask), not the
    owner-only ones of ``tempfile.mkstemp``.

    Raises:
        OSError: naming ``path``: the temporary file cannot be created, written or renamed
            (disk full, permission denied); whatever else ``write`` raises.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        kept = "; the previous file is unchanged" if path.exists() else ""
        raise OSError(exc.errno, f"cannot write it ({exc.strerror or exc}){kept}", str(path)) from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, model: MLP, preprocessor: Preprocessor, meta: dict,
                    optimizer_state: dict[str, np.ndarray] | None = None) -> None:
    """Write ``model``, ``preprocessor`` and ``meta`` (JSON-serialisable) to ``path`` atomically.

    ``optimizer_state`` (``last.npz`` of a training run) is stored as arrays named ``opt_<key>``;
    with ``meta["train_state"]`` it is what ``softmax train --resume`` continues from.

    The format fields (``format``, ``format_version``, ``package_version``) and the model's
    architecture (``sizes``, ``activation``, ``dtype``) and preprocessing are added to
    ``meta`` here; the caller gives classes, image shape, image style, config and metrics.

    Raises:
        OSError: the file cannot be written; an earlier file at ``path`` is left intact.
    """
    meta = dict(meta)
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, package_version=__version__,
                model={"sizes": model.sizes, "activation": model.activation, "dtype": model.dtype.name},
                preprocessing={"pixel_max": preprocessor.pixel_max, "normalize": preprocessor.normalize})
    arrays = {f"{kind}{i // 2}": p for i, (kind, p) in enumerate(zip("Wb" * model.n_layers, model.params))}
    arrays.update(input_offset=preprocessor.offset, input_scale=preprocessor.scale,
                  metadata=np.array(json.dumps(meta)))
    arrays.update({f"opt_{key}": a for key, a in (optimizer_state or {}).items()})
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`, with ``allow_pickle=False``.

    Raises:
        UserError: the file is missing, not an ``.npz`` archive (or a damaged one), holds
            object (pickled) arrays or members that are not ``.npy`` arrays, lacks the
            metadata or parameters, has inconsistent shapes, parameters or preprocessing
            that are not finite floats, a preprocessing scale or ``pixel_max`` not above 0.
    """
    path = Path(path)

    def bad(why: str) -> UserError:
        return UserError(f"{path}: not a softmax checkpoint ({why})")

    if not path.exists():
        raise UserError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a .npz checkpoint")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic == b"\x93NUMPY":
            raise bad("a single .npy array, not an .npz archive")
        if magic[:4] != b"PK\x03\x04":
            raise bad("not a readable .npz archive")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except UserError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise bad("it holds pickled object arrays, which are never loaded") from None
        raise bad(str(exc)) from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError, zlib.error) as exc:
        raise bad(f"not a readable .npz archive: {exc}") from None
    not_arrays = [name for name, a in arrays.items() if not isinstance(a, np.ndarray)]
    if not_arrays:   # np.load gives the raw bytes of a member not named *.npy
        raise bad(f"{', '.join(not_arrays)} not stored as .npy arrays")

    if "metadata" not in arrays or arrays["metadata"].dtype.kind != "U" or arrays["metadata"].ndim != 0:
        raise bad("no metadata string")
    try:
        meta = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError as exc:
        raise bad(f"metadata is not JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad("metadata has no 'format: softmax-checkpoint'")
    if not isinstance(meta.get("format_version"), int) or isinstance(meta["format_version"], bool):
        raise bad(f"format_version {meta.get('format_version')!r} is not an integer")
    if meta["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format version {meta.get('format_version')!r} is newer "
                        f"than this softmax ({__version__}) reads ({FORMAT_VERSION}); upgrade softmax")
    missing = [key for key in ("model", "preprocessing", "classes", "image_shape", "image_style", "config")
               if key not in meta]
    if missing:
        raise bad(f"metadata lacks {', '.join(missing)}")
    try:
        sizes, activation, dtype = (meta["model"][k] for k in ("sizes", "activation", "dtype"))
        if not (isinstance(sizes, list) and len(sizes) >= 2
                and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes)):
            raise bad(f"model sizes must be a list of two or more positive integers, got {quote(sizes)}")
        n_layers = len(sizes) - 1
        params = [arrays[f"{kind}{l}"] for l in range(n_layers) for kind in "Wb"]
        pixel_max = meta["preprocessing"]["pixel_max"]
        if isinstance(pixel_max, bool) or not isinstance(pixel_max, (int, float)) or not (
                math.isfinite(pixel_max) and pixel_max > 0):
            raise bad(f"preprocessing pixel_max must be a number > 0, got {quote(pixel_max)}")
        pre = Preprocessor(arrays["input_offset"], arrays["input_scale"], float(pixel_max),
                           meta["preprocessing"]["normalize"])
    except KeyError as exc:
        raise bad(f"missing {exc}") from None
    except (TypeError, OverflowError) as exc:
        raise bad(f"metadata 'model' or 'preprocessing' is malformed ({exc})") from None
    if not all(p.dtype.kind == "f" and np.isfinite(p).all() for p in params):
        raise bad("parameters must be arrays of finite floats")
    try:
        model = MLP(sizes, activation, dtype=dtype, params=params)
    except (ValueError, TypeError) as exc:
        raise bad(str(exc)) from None
    d, classes, shape = sizes[0], meta["classes"], meta["image_shape"]
    if pre.offset.shape != (d,) or pre.scale.shape != (d,) or not all(
            a.dtype.kind == "f" and np.isfinite(a).all() for a in (pre.offset, pre.scale)) or not (
            pre.scale > 0).all():
        raise bad(f"input_offset and input_scale must be finite floats of shape ({d},) like W0's "
                  f"inputs, the scale above 0")
    if not isinstance(meta["image_style"], str) or meta["image_style"] not in STYLES:
        raise bad(f"unknown image_style {quote(meta['image_style'])}; known: {', '.join(STYLES)}")
    if not (isinstance(classes, list) and len(classes) == sizes[-1] and all(isinstance(c, str) for c in classes)):
        raise bad(f"metadata 'classes' must be {sizes[-1]} class names, one per output")
    if not (isinstance(shape, list) and len(shape) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
            and shape[0] * shape[1] == d):
        raise bad(f"metadata 'image_shape' must be [height, width] with height * width = {d}")
    opt_state = {name[4:]: a for name, a in arrays.items() if name.startswith("opt_")}
    return Checkpoint(model=model, preprocessor=pre, meta=meta, path=path, optimizer_state=opt_state)


def describe_checkpoint(ckpt: Checkpoint) -> dict:
    """What is inside a checkpoint, as JSON-serialisable data (``softmax inspect``).

    Metadata a checkpoint lacks (an older or hand-made file) comes back as None.

    Returns:
        ``{"checkpoint", "format", "format_version", "package_version",
        "model": {"sizes", "activation", "dtype", "parameters" (int, all arrays),
        "layers": [{"weights": "W0", "shape": [n_in, n_out], "parameters", "activation"}, ...]},
        "classes", "image_shape", "image_style", "data" (a description of the training data),
        "preprocessing": {"normalize", "pixel_max", "offset": [min, max], "scale": [min, max]},
        "seed", "config" (the resolved training config), "epoch", "metrics" (of that epoch; a
        final ``best.npz`` adds ``test_loss`` and ``test_acc``), "training_state"}``;
        ``training_state`` (``last.npz`` only, else None) holds ``epochs_done``,
        ``epochs``, ``rows_done`` (of an interrupted epoch), ``best_epoch`` and ``finished``.
    """
    meta, model, pre = ckpt.meta, ckpt.model, ckpt.preprocessor
    config = meta["config"] if isinstance(meta.get("config"), dict) else {}
    train_cfg = config.get("train") if isinstance(config.get("train"), dict) else {}
    layers = []
    for l, (W, b) in enumerate(zip(model.params[::2], model.params[1::2])):
        layers.append({"weights": f"W{l}", "shape": list(W.shape), "parameters": int(W.size + b.size),
                       "activation": model.activation if l < model.n_layers - 1 else "softmax"})
    state = meta.get("train_state")
    training_state = None
    if isinstance(state, dict):
        es = train_cfg.get("early_stopping")
        epochs_done, epochs = state.get("epoch"), train_cfg.get("epochs")
        finished = None
        if isinstance(epochs_done, int) and isinstance(epochs, int):
            stopped = isinstance(es, dict) and isinstance(state.get("stale"), int) and \
                state["stale"] >= es.get("patience", float("inf"))
            finished = bool(epochs_done >= epochs or stopped)
        training_state = {"epochs_done": epochs_done, "epochs": epochs, "rows_done": state.get("rows_done"),
                          "best_epoch": state.get("best_epoch"), "finished": finished}
    return {
        "checkpoint": str(ckpt.path), "format": meta.get("format"), "format_version": meta.get("format_version"),
        "package_version": meta.get("package_version"),
        "model": {"sizes": model.sizes, "activation": model.activation, "dtype": model.dtype.name,
                  "parameters": int(sum(p.size for p in model.params)), "layers": layers},
        "classes": ckpt.classes, "image_shape": list(ckpt.image_shape), "image_style": meta.get("image_style"),
        "data": meta.get("data"),
        "preprocessing": {"normalize": pre.normalize, "pixel_max": pre.pixel_max,
                          "offset": [float(pre.offset.min()), float(pre.offset.max())],
                          "scale": [float(pre.scale.min()), float(pre.scale.max())]},
        "seed": config.get("seed"), "config": config, "epoch": meta.get("epoch"),
        "metrics": meta.get("metrics") if isinstance(meta.get("metrics"), dict) else None,
        "training_state": training_state,
    }
