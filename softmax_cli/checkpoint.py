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
import re
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:        # Windows: no advisory locks; stale temporary files are kept
    fcntl = None

from . import __version__
from .data.images import STYLES
from .data.prepare import Preprocessor
from .errors import UserError, quote
from .files import open_regular
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

        return softmax(self.logits(X, batch_size), self.temperature)


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it.

    On any error the temporary file is removed and ``path`` is left as it was. The file
    gets the permissions of one made by ``open`` (``0o666`` less the umask), not the
    owner-only ones of ``tempfile.mkstemp``. The temporary file (``.NAME.*.tmp``) is locked
    (``flock``) while it is written; after a successful save, the temporary files of
    ``path`` that no process holds a lock on and that are older than a second (left by a
    process killed while saving, ``kill -9``) are removed (:func:`remove_stale_temporaries`).

    Raises:
        OSError: naming ``path``: the temporary file cannot be created, written or renamed
            (disk full, permission denied); whatever else ``write`` raises.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_EX)      # "being written": see remove_stale_temporaries
            write(f)
            f.flush()
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
    remove_stale_temporaries(path)


STALE_AFTER_S = 1.0   # a temporary file younger than this may be one another process has just made


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the ``.NAME.*.tmp`` files :func:`atomic_write` left beside ``path`` when its
    process was killed while saving: those no process holds a lock on (``flock``; one being
    written is locked) and not modified for :data:`STALE_AFTER_S` seconds. Errors (a file
    already gone, no permission) are ignored: this is tidying, never a reason to fail.

    Returns:
        The files removed.
    """
    import glob
    import time

    removed = []
    for name in glob.glob(os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.*.tmp")):
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or time.time() - info.st_mtime < STALE_AFTER_S:
                continue
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # BlockingIOError: being written
            os.unlink(name)
            removed.append(Path(name))
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


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


# bounds on what a checkpoint may declare, checked before anything is inflated
MAX_METADATA_CHARS = 4 * 2**20     # the metadata JSON: a few kB for a model, ~100 kB with 5,000 classes
MAX_METADATA_DEPTH = 64            # nesting of the metadata JSON (a config is 3 levels deep)
_DEFLATE_MAX_RATIO = 1032          # deflate (RFC 1951) never expands a stored byte more than this
_NPY_MAX_HEADER = 10_000           # bytes of a .npy header (NumPy's own default limit)
_OPT_NAME = re.compile(r"opt_[A-Za-z_]+?(\d+)")


@dataclass
class _Member:
    """One ``.npy`` member of the archive as its header declares it (nothing inflated yet)."""

    info: zipfile.ZipInfo
    shape: tuple
    dtype: np.dtype


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.0f} {unit}"
        n /= 1024
    return ""  # unreachable


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, bad) -> _Member:
    """Shape and dtype of a ``.npy`` member from its header alone, checked against what the
    archive says the member holds (so that its data cannot be larger than the file allows)."""
    name = info.filename[:-4]
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise bad(f"{name} is compressed with method {info.compress_type}; a checkpoint's members "
                  f"are stored or deflated")
    with zf.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member, max_header_size=_NPY_MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member, max_header_size=_NPY_MAX_HEADER)
        else:
            raise bad(f"{name} is a .npy array of format version {version}, not 1.0 or 2.0")
        header_size = member.tell()
    if dtype.hasobject:
        raise bad("it holds pickled object arrays, which are never loaded")
    declared = math.prod(shape) * dtype.itemsize
    if header_size + declared != info.file_size:
        raise bad(f"{name}: its header declares a {'x'.join(map(str, shape)) or 'scalar'} {dtype} array "
                  f"({_human(declared)}), the archive member holds {_human(max(info.file_size - header_size, 0))}")
    limit = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED else _DEFLATE_MAX_RATIO) + 1024
    if info.file_size > limit:
        raise bad(f"{name}: declares {_human(info.file_size)} inflated from {_human(info.compress_size)}, "
                  f"more than deflate can hold")
    return _Member(info, tuple(shape), dtype)


def _read_array(zf: zipfile.ZipFile, member: _Member) -> np.ndarray:
    with zf.open(member.info) as f:
        return np.lib.format.read_array(f, allow_pickle=False, max_header_size=_NPY_MAX_HEADER)


def _depth(value, limit: int) -> int:
    """The nesting depth of JSON data (lists and dicts), counting at most to ``limit + 1``."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [v for x in level if isinstance(x, (list, dict))
                 for v in (x.values() if isinstance(x, dict) else x)]
        level = [v for v in level if isinstance(v, (list, dict))]
    return depth


def _read_metadata(zf: zipfile.ZipFile, members: dict[str, _Member], bad) -> dict:
    """The metadata JSON object, its size and nesting bounded before it is parsed."""
    member = members.get("metadata")
    if member is None or member.dtype.kind != "U" or member.shape != ():
        raise bad("no metadata string")
    if member.dtype.itemsize // 4 > MAX_METADATA_CHARS:
        raise bad(f"metadata of {member.dtype.itemsize // 4} characters, more than the "
                  f"{MAX_METADATA_CHARS} a checkpoint's can hold")
    text = str(_read_array(zf, member))
    try:
        meta = json.loads(text)
    except RecursionError:
        raise bad("metadata is nested too deeply to read") from None
    except ValueError as exc:        # JSONDecodeError, or an integer of more than 4300 digits
        what = "is not JSON" if isinstance(exc, json.JSONDecodeError) else "holds a number too long to read"
        raise bad(f"metadata {what}: {quote(str(exc))[1:-1]}") from None
    if _depth(meta, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise bad(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
    return meta


def _check_format(meta, path: Path, bad) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad("metadata has no 'format: softmax-checkpoint'")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise bad(f"format_version {quote(version)} is not an integer")
    if version < 1:
        raise bad(f"format_version {quote(version)} is no version of the format (versions start at 1)")
    if version > FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format version {quote(version)} is newer "
                        f"than this softmax ({__version__}) reads ({FORMAT_VERSION}); upgrade softmax")
    missing = [key for key in ("model", "preprocessing", "classes", "image_shape", "image_style", "config")
               if key not in meta]
    if missing:
        raise bad(f"metadata lacks {', '.join(missing)}")


def _expected_shapes(meta: dict, members: dict[str, _Member], bad) -> dict[str, tuple]:
    """The shape of every array the metadata's layer sizes call for (parameters, preprocessing,
    optimiser state), checked against the members' headers before any is inflated."""
    try:
        sizes = meta["model"]["sizes"]
    except (KeyError, TypeError) as exc:
        raise bad(f"missing {exc}" if isinstance(exc, KeyError) else "metadata 'model' is malformed") from None
    if not (isinstance(sizes, list) and len(sizes) >= 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes)):
        raise bad(f"model sizes must be a list of two or more positive integers, got {quote(sizes)}")
    params = [shape for l in range(len(sizes) - 1) for shape in ((sizes[l], sizes[l + 1]), (sizes[l + 1],))]
    expected = {f"{kind}{i // 2}": shape for i, (kind, shape) in enumerate(zip("Wb" * len(params), params))}
    expected.update(input_offset=(sizes[0],), input_scale=(sizes[0],))
    for name in members:
        match = _OPT_NAME.fullmatch(name)
        if match:
            i = int(match.group(1))
            if i >= len(params):
                raise bad(f"{name}: optimizer state for parameter {i}, the model has {len(params)}")
            expected[name] = (math.prod(params[i]),)      # the optimiser keeps one flat array per parameter
    for name, shape in expected.items():
        if name not in members:
            if name.startswith(("W", "b")):
                raise bad(f"missing {name!r}")
            continue
        member = members[name]
        if member.shape != shape:
            raise bad(f"{name} shape {member.shape} and the metadata's layer sizes {quote(sizes)} do not "
                      f"match (expected {shape})")
        if member.dtype.kind != "f":
            raise bad("parameters must be arrays of finite floats" if name[0] in "Wb" else
                      f"{name} must be an array of floats, got {member.dtype}")
    return expected


def _read_arrays(path: Path, bad) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and the arrays a checkpoint's metadata calls for, every ``.npy`` header
    checked (shape, dtype, size) before any array is inflated: memory stays bounded by what
    the metadata declares, however the archive was made."""
    with open_regular(path, "checkpoint", "a .npz checkpoint") as f:
        magic = f.read(6)
        if magic == b"\x93NUMPY":
            raise bad("a single .npy array, not an .npz archive")
        if magic[:4] != b"PK\x03\x04":
            raise bad("not a readable .npz archive")
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as zf:
                infos = zf.infolist()
                not_arrays = [i.filename for i in infos if not i.filename.endswith(".npy")]
                if not_arrays:     # np.load would give the raw bytes of a member not named *.npy
                    raise bad(f"{', '.join(not_arrays)} not stored as .npy arrays")
                members = {i.filename[:-4]: _read_header(zf, i, bad) for i in infos}
                meta = _read_metadata(zf, members, bad)
                _check_format(meta, path, bad)
                wanted = _expected_shapes(meta, members, bad)
                return meta, {name: _read_array(zf, members[name]) for name in wanted if name in members}
        except UserError:
            raise
        except ValueError as exc:
            if "pickle" in str(exc):
                raise bad("it holds pickled object arrays, which are never loaded") from None
            raise bad(str(exc)) from None
        except (OSError, zipfile.BadZipFile, EOFError, KeyError, zlib.error, RuntimeError,
                NotImplementedError) as exc:
            raise bad(f"not a readable .npz archive: {exc}") from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`, never unpickling anything.

    Memory is bounded by the metadata: the metadata string may hold at most
    :data:`MAX_METADATA_CHARS` characters nested :data:`MAX_METADATA_DEPTH` deep, and every
    array's ``.npy`` header (shape, dtype) must match the metadata's layer sizes and the
    size of its archive member before the array is inflated. A FIFO, socket or device is
    refused before it is read (it could block or never end).

    Raises:
        UserError: the file is missing, unreadable (permission denied), not a regular file,
            not an ``.npz`` archive (or a damaged one), holds object (pickled) arrays or
            members that are not ``.npy`` arrays, lacks the metadata or parameters, has
            arrays other than the metadata declares, parameters or preprocessing that are
            not finite floats, a preprocessing scale or ``pixel_max`` not above 0, metadata
            too large, too deeply nested, of an impossible format version (below 1) or one
            newer than this softmax reads, class names that are not all different, or a
            calibration temperature that is not a finite number > 0.
    """
    path = Path(path)

    def bad(why: str) -> UserError:
        return UserError(f"{path}: not a softmax checkpoint ({why})")

    meta, arrays = _read_arrays(path, bad)
    try:
        sizes, activation, dtype = (meta["model"][k] for k in ("sizes", "activation", "dtype"))
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
    seen: set[str] = set()
    repeated = next((c for c in classes if c in seen or seen.add(c)), None)
    if repeated is not None:
        raise bad(f"metadata 'classes' names {quote(repeated)} more than once; class names must differ")
    if not (isinstance(shape, list) and len(shape) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
            and shape[0] * shape[1] == d):
        raise bad(f"metadata 'image_shape' must be [height, width] with height * width = {d}")
    _check_calibration(meta.get("calibration"), bad)
    opt_state = {name[4:]: a for name, a in arrays.items() if name.startswith("opt_")}
    return Checkpoint(model=model, preprocessor=pre, meta=meta, path=path, optimizer_state=opt_state)


def _check_calibration(calibration, bad) -> None:
    """Refuse (``raise bad(why)``) a ``metadata["calibration"]`` whose temperature could not
    divide logits: it must be absent, or a mapping whose ``temperature`` is a finite number > 0."""
    if calibration is None:
        return
    T = calibration.get("temperature") if isinstance(calibration, dict) else None
    if isinstance(T, bool) or not isinstance(T, (int, float)) or not (math.isfinite(T) and T > 0):
        raise bad(f"metadata 'calibration' must hold a temperature that is a finite number > 0, "
                  f"got {quote(calibration)}")


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
        from .engine.state import run_finished      # the engine's one rule (light: no kernels)

        es = train_cfg.get("early_stopping")
        epochs_done, epochs, stale = state.get("epoch"), train_cfg.get("epochs"), state.get("stale")
        patience = es.get("patience") if isinstance(es, dict) else None
        finished = None
        if isinstance(epochs_done, int) and isinstance(epochs, int):
            finished = run_finished(epochs_done, stale if isinstance(stale, int) else 0, epochs,
                                    patience if isinstance(patience, int) else None)
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
