"""``softmax predict``: image files and rows of pixels (a data file: CSV, ``.npy``, ``.npz``) to
classes, and the outputs (an aligned table, one JSON document or JSON lines, a CSV file that
never overwrites another, a Kaggle submission, and the model inputs as pictures).

Light on purpose: NumPy, Pillow and the standard library at import (no scikit-learn, numba or
tqdm); SciPy and scikit-image only once an image is read (:mod:`softmax_cli.data.ink`), and
the data-file readers (:mod:`softmax_cli.data.sources`) only once a data file is given.

Every input gets one :class:`Prediction`, in the order of the arguments: an answer, or the
error that kept its file from being read (:func:`answer`). Every output of the command names
the checkpoint used. ``softmax serve`` answers through :func:`classify` and :func:`rank`.

File and class names are kept as Python holds what the file system gave: a byte of a name
that is not UTF-8 (a Linux file name may hold any bytes) is a surrogate escape, U+DC80 plus
the byte (``os.fsdecode``). The CSV file gets the original bytes back (:func:`write_csv`),
JSON writes the escape as ``\\udcXX`` (:meth:`Prediction.to_json`) and the table shows
``\\xXX`` (:func:`display_name`), so that no output fails on such a name.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

import numpy as np

from .checkpoint import Checkpoint
from .csvout import csv_text
from .data.images import find_files, image_to_input
from .errors import UserError, printable, quote
from .metrics import answered

UNKNOWN = "unknown"   # the answer below --reject-threshold
INPUT_PNG_SIDE = 224  # --save-inputs draws each model input about this many pixels wide
PREDICT_BATCH = 8192  # rows a forward pass takes at most (a data file may hold many)
#: names of data files, read as rows of pixels rather than as images (see :func:`is_data_file`)
DATA_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".npy", ".npz")
KAGGLE_COLUMNS = ["ImageId", "Label"]   # Kaggle's digit-recognizer submission format


@dataclass
class Input:
    """One input of ``softmax predict``: a file found for an argument, read or not.

    Attributes:
        path: the file as found (see :func:`~softmax_cli.data.images.find_files`), or the
            argument itself when it named no file.
        row: the model input, float32 (height * width,) in the checkpoint's raw pixel units
            (0..pixel_max); None when the file could not be used.
        error: why it could not be used (the :class:`UserError`), else None.
        index: for a row of a data file, its position among the file's rows, from 1 (the
            header not counted); None for an image file.
    """

    path: str
    row: np.ndarray | None = None
    error: UserError | None = None
    index: int | None = None


@dataclass
class Prediction:
    """One input's answer, or its error.

    Attributes:
        path: the file as found (see :func:`~softmax_cli.data.images.find_files`), or what
            names the input (an argument that named no file, a server's upload).
        label: the most probable class name, or :data:`UNKNOWN` when its probability is
            below the reject threshold; None for an input that could not be read.
        probability: the highest class probability, in [0, 1] (also when rejected); None for
            an input that could not be read.
        top: the ``k`` most probable ``(class name, probability)``, most probable first.
        error: what was wrong with the input (the message without the path), else None.
        row: for a row of a data file, its position among the file's rows, from 1
            (:attr:`Input.index`); None for an image.
    """

    path: str
    label: str | None = None
    probability: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    row: int | None = None

    def to_json(self) -> dict:
        """``{"path", "class", "probability", "top_k": [{"class", "probability"}, ...]}``;
        ``class`` and ``probability`` are null and ``top_k`` empty for an input that could
        not be read.

        The names are as Python holds them: ``json.dumps`` (ASCII by default) writes a
        surrogate escape of a non-UTF-8 byte as ``\\udcXX`` (0xff: ``\\udcff``), which
        ``json.loads`` reads back and ``os.fsencode`` turns into the file name's bytes.
        """
        return {"path": self.path, "class": self.label, "probability": self.probability,
                "top_k": [{"class": c, "probability": p} for c, p in self.top]}

    def to_record(self, checkpoint: str) -> dict:
        """What ``softmax predict --json`` and ``--jsonl`` print for it: :meth:`to_json` with
        ``"row"`` (a data file's row, from 1; null for an image), ``"checkpoint"`` (as the user
        named it) and ``"error"`` (null when it was answered)."""
        return {**self.to_json(), "row": self.row, "checkpoint": checkpoint, "error": self.error}


def _without_path(exc: UserError, path: str) -> str:
    """The message of ``exc`` without the ``path: `` it starts with (the CSV's error column
    sits beside the path column)."""
    prefix = f"{UserError(path)}: "
    text = str(exc)
    return text[len(prefix):] if text.startswith(prefix) else text


def load_inputs(ckpt: Checkpoint, files: Sequence[Path | BinaryIO | UserError],
                on_error: Callable[[UserError], None] = lambda exc: None,
                names: Sequence[str] | None = None) -> list[Input]:
    """The model input of each file, in order.

    Each file is mapped to the model's input by
    :func:`~softmax_cli.data.images.image_to_input` with the checkpoint's image shape, pixel
    scale and normalisation style (what ``data.source: folder`` training uses too).

    Args:
        ckpt: a loaded checkpoint.
        files: image files or binary file objects (a server's uploads), any format Pillow
            reads (told by content, not name); a :class:`UserError` among them (see
            :func:`~softmax_cli.data.images.find_files`) stands for an input that named no file.
        on_error: called in order with the :class:`UserError` of each input that cannot be
            used (no file, unreadable, not an image, too large, no ink), as it is met.
        names: what names each input (:attr:`Input.path`); default ``str()`` of the file.

    Returns:
        One :class:`Input` per file.
    """
    inputs = []
    for i, found in enumerate(files):
        path = names[i] if names is not None else str(found)
        try:
            if isinstance(found, UserError):
                raise found
            inputs.append(Input(path, row=image_to_input(found, ckpt.image_shape, ckpt.preprocessor.pixel_max,
                                                         ckpt.meta["image_style"])))
        except UserError as exc:
            on_error(exc)
            inputs.append(Input(path, error=exc))
    return inputs


def is_data_file(path: Path | str) -> bool:
    """Whether ``softmax predict`` reads ``path`` as rows of pixels (a data file) rather than
    as an image: its name ends in one of :data:`DATA_SUFFIXES` (any case)."""
    return str(path).lower().endswith(DATA_SUFFIXES)


def pixel_range(ckpt: Checkpoint) -> tuple[tuple[float, float], str]:
    """The pixel values of background and full ink in the checkpoint's training data, and the
    name of what set them, for data files given to ``softmax predict``: the saved config's
    ``data.pixel_range`` when it has one (e.g. ``[-1, 1]`` for USPS), else ``[0, pixel_max]``.

    Returns:
        ``((low, high), key)``; ``high - low`` is the checkpoint's ``pixel_max``.

    Raises:
        UserError: the saved ``data.pixel_range`` is not two finite numbers whose difference
            is the checkpoint's ``pixel_max`` (a hand-edited checkpoint).
    """
    pixel_max = ckpt.preprocessor.pixel_max
    config = ckpt.meta.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    given = data.get("pixel_range") if isinstance(data, dict) else None
    if given is None:
        return (0.0, float(pixel_max)), "the model's pixel range"
    ok = (isinstance(given, list) and len(given) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in given))
    if not ok or not math.isclose(given[1] - given[0], pixel_max, rel_tol=1e-6):
        raise UserError(f"{ckpt.path}: metadata config data.pixel_range must be [background, full ink] with "
                        f"full ink - background = pixel_max {pixel_max:g}, got {quote(given)}")
    return (float(given[0]), float(given[1])), "the model's data.pixel_range"


def read_rows(ckpt: Checkpoint, path: Path, pixels: tuple[tuple[float, float], str]) -> list[Input]:
    """The rows of a data file as model inputs, one :class:`Input` each (``index`` from 1),
    in file order: :func:`softmax_cli.data.read_pixel_rows` (imported here, so that predicting
    images never loads the data-file readers) with the checkpoint's input size and ``pixels``,
    the pixel range and its name (:func:`pixel_range`): a CSV file (delimiter sniffed, a
    header when the first row is not numeric, no label column), an ``.npy`` array or an
    ``.npz`` holding one array (or ``x``, ``x_test``), never unpickled. The rows are float32
    ``(n, d)``, shifted to start at 0 (the checkpoint's raw pixel units).

    Raises:
        UserError: the file cannot be read, a row has another number of values than the
            model's inputs, a value is not a number or lies outside the pixel range.
    """
    from .data.sources import read_pixel_rows

    X = read_pixel_rows(path, ckpt.model.sizes[0], pixels[0], range_key=pixels[1])
    return [Input(str(path), row=x, index=i) for i, x in enumerate(X, 1)]


def read_inputs(ckpt: Checkpoint, args: Sequence[str],
                on_error: Callable[[UserError], None] = lambda exc: None) -> list[Input]:
    """The model inputs for command-line arguments (files, folders, glob patterns), in order:
    each argument expanded by :func:`~softmax_cli.data.images.find_files`; each data file
    (:func:`is_data_file`) read as rows by :func:`read_rows`, each other file as an image by
    :func:`load_inputs` (``on_error`` as there).

    Returns:
        One :class:`Input` per image file and per row of a data file, and one per argument
        that gave none or data file that could not be read (named by it).

    Raises:
        UserError: a data file is given and the checkpoint's pixel range is malformed
            (:func:`pixel_range`): a bad checkpoint stops everything.
    """
    inputs = []
    for arg in args:
        found = find_files([arg])
        names = [arg if isinstance(f, UserError) else str(f) for f in found]
        for f, name in zip(found, names):
            if isinstance(f, Path) and is_data_file(f):
                pixels = pixel_range(ckpt)
                try:
                    inputs += read_rows(ckpt, f, pixels)
                except UserError as exc:
                    on_error(exc)
                    inputs.append(Input(name, error=exc))
            else:
                inputs += load_inputs(ckpt, [f], on_error, [name])
    return inputs


def answer(ckpt: Checkpoint, inputs: Sequence[Input], top_k: int = 1, threshold: float = 0.0) -> list[Prediction]:
    """Answer every input: the readable ones with one forward pass over all of them
    (:func:`rank`), the others with their error.

    Returns:
        One :class:`Prediction` per input, in order; an input that could not be read gets
        one holding its error (the message without its path).
    """
    readable = [x for x in inputs if x.row is not None]
    ranked = iter(rank(ckpt, [x.path for x in readable], np.stack([x.row for x in readable]), top_k, threshold)
                  if readable else [])
    preds = [next(ranked) if x.row is not None else Prediction(x.path, error=_without_path(x.error, x.path))
             for x in inputs]
    for p, x in zip(preds, inputs):
        p.row = x.index
    return preds


def classify(ckpt: Checkpoint, files: Sequence[Path | BinaryIO | UserError], top_k: int = 1, threshold: float = 0.0,
             on_error: Callable[[UserError], None] = lambda exc: None) -> list[Prediction]:
    """Classify image files with one forward pass over all of them (:func:`load_inputs`,
    :func:`answer`).

    Args:
        ckpt: a loaded checkpoint.
        files: as :func:`load_inputs`.
        top_k: how many classes each answer lists (at most the number of classes).
        threshold: below this highest probability the answer is :data:`UNKNOWN` (0: never).
        on_error: called with the :class:`UserError` of each file that cannot be used
            (unreadable, not an image, too large, no ink); that file is skipped.

    Returns:
        One :class:`Prediction` per usable file, in the order of ``files``.
    """
    return [p for p in answer(ckpt, load_inputs(ckpt, files, on_error), top_k, threshold) if p.error is None]


def rank(ckpt: Checkpoint, names: Sequence[str], X: np.ndarray, top_k: int = 1,
         threshold: float = 0.0) -> list[Prediction]:
    """Answer raw input rows ``X`` (n, d) in 0..pixel_max with one forward pass
    (:meth:`Checkpoint.predict_proba`; a pass per :data:`PREDICT_BATCH` rows beyond that): the
    ``top_k`` classes of each, most probable first, :data:`UNKNOWN` below ``threshold``;
    ``names[i]`` names row ``i`` (``Prediction.path``).

    Raises:
        ValueError: ``X`` is not (n, d) with the model's number of features.
    """
    proba = ckpt.predict_proba(X, batch_size=min(max(1, len(X)), PREDICT_BATCH))
    sure = answered(proba, threshold)
    k = min(top_k, proba.shape[1])
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    out = []
    for name, row, idx, ok in zip(names, proba, order, sure):
        top = [(ckpt.classes[i], float(row[i])) for i in idx]
        out.append(Prediction(name, top[0][0] if ok else UNKNOWN, top[0][1], top))
    return out


def input_png_names(inputs: Sequence[Input]) -> list[str | None]:
    """The file name :func:`save_inputs` gives each input: ``<position>-<file name>.png``
    (position from 1, zero-padded to the same width; the name's last part without its
    extension, at most 100 characters), None for an input that could not be read."""
    width = len(str(len(inputs)))
    return [None if x.row is None else f"{i:0{width}d}-{Path(x.path).stem[:100]}.png"
            for i, x in enumerate(inputs, 1)]


def check_inputs_folder(folder: Path) -> None:
    """Refuse a ``--save-inputs`` folder before any work: it must be new (its parent
    existing) or empty, so that no file is ever overwritten.

    Raises:
        UserError: ``folder`` is a file or a folder holding anything, or its parent folder
            does not exist.
    """
    if folder.is_dir():
        if any(folder.iterdir()):
            raise UserError(f"{folder}: --save-inputs: the folder is not empty; give a new or empty folder")
    elif folder.exists() or folder.is_symlink():
        raise UserError(f"{folder}: --save-inputs is not a folder; give a new or empty folder")
    elif not folder.absolute().parent.is_dir():
        raise UserError(f"{folder}: --save-inputs: the folder {folder.absolute().parent} does not exist")


def save_inputs(folder: Path, inputs: Sequence[Input], shape: tuple[int, int], pixel_max: float) -> int:
    """Write each readable input's model input as a grayscale PNG in ``folder`` (created if
    missing; see :func:`check_inputs_folder`), named by :func:`input_png_names`: the row
    reshaped to ``shape``, 0 black and ``pixel_max`` white (ink is bright, as the model sees
    it), enlarged by an integer factor to about :data:`INPUT_PNG_SIDE` pixels with
    nearest-neighbour resampling, so that each input pixel is a visible square. Each file is
    created exclusively (``open(mode="xb")``): none is ever overwritten.

    Returns:
        The number of files written.

    Raises:
        OSError: the folder or a file cannot be created or written (a file of that name
            appeared meanwhile: ``FileExistsError``).
    """
    from PIL import Image

    folder.mkdir(exist_ok=True)
    factor = max(1, INPUT_PNG_SIDE // max(shape))
    written = 0
    for x, name in zip(inputs, input_png_names(inputs)):
        if name is None:
            continue
        pixels = np.clip(np.round(x.row.reshape(shape) * (255.0 / pixel_max)), 0, 255).astype(np.uint8)
        img = Image.fromarray(pixels).resize((shape[1] * factor, shape[0] * factor), Image.Resampling.NEAREST)
        f = open(folder / name, "xb")                  # never overwrites
        try:
            with f:
                img.save(f, format="PNG")
        except BaseException:
            with contextlib.suppress(OSError):
                (folder / name).unlink()                 # no partial file
            raise
        written += 1
    return written


def file_bytes(text: str) -> bytes:
    """The bytes a name stands for: UTF-8, each surrogate escape U+DC80..U+DCFF (a byte of a
    file name that is not UTF-8, see ``os.fsdecode``) turned back into its byte.

    Any other lone surrogate, which no file system gives (only a hand-edited checkpoint's
    class names could hold one), comes out as a backslash escape (``\\ud800``), so this
    never fails.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def display_name(text: str) -> str:
    """``text`` as the table prints it: printable, on one line, encodable in UTF-8.

    A byte of a file name that is not UTF-8 is shown as ``\\xXX`` (``bad\\xffname.png``);
    any other character that is not printable (a newline, a terminal escape, a lone
    surrogate) as its Python escape (``\\n``, ``\\x1b``, ``\\ud800``). A backslash in the
    name itself is left as it is, so the escapes are for reading, not for parsing: the CSV
    file (:func:`write_csv`) holds the exact bytes.
    """
    return printable(text)    # the one rule for text shown on a terminal


def format_table(preds: Sequence[Prediction], checkpoint: str) -> str:
    """The answers as an aligned text table under a line naming ``checkpoint``: path, (with a
    data file among the inputs) row, class, probability, and with top-k > 1 a column of the
    k most probable classes, ``class (probability)`` each. Inputs that could not be read are
    left out (their errors go to stderr).

    Paths and class names are passed through :func:`display_name`, so the table holds no
    surrogate and prints on any UTF-8 stream, also one whose errors are strict.
    """
    preds = [p for p in preds if p.error is None]
    k = max((len(p.top) for p in preds), default=1)
    rows = any(p.row is not None for p in preds)
    head = ["path"] + (["row"] if rows else []) + ["class", "probability"] + ([f"top {k}"] if k > 1 else [])
    right = {"row", "probability"}                      # numbers align right
    body = [[display_name(p.path)] + (["" if p.row is None else str(p.row)] if rows else [])
            + [display_name(p.label), f"{p.probability:.4f}"]
            + (["  ".join(f"{display_name(c)} ({q:.4f})" for c, q in p.top)] if k > 1 else []) for p in preds]
    aligned = len(head) - (k > 1)                      # the top-k column is last and not padded
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(aligned)]

    def line(cells: list[str]) -> str:
        padded = [f"{c:>{w}}" if h in right else f"{c:<{w}}" for c, w, h in zip(cells, widths, head)]
        return "  ".join(padded + cells[aligned:])

    return "\n".join([f"checkpoint  {display_name(checkpoint)}"] + [line(r) for r in [head, *body]])


def csv_columns(k: int, rows: bool = False) -> list[str]:
    """``path, class, probability, top1_class, top1_probability, ..., top{k}_probability,
    checkpoint, error``; with ``rows`` (a data file among the inputs) ``row`` after ``path``."""
    return (["path"] + (["row"] if rows else []) + ["class", "probability"]
            + [f"top{r}_{what}" for r in range(1, k + 1) for what in ("class", "probability")]
            + ["checkpoint", "error"])


def csv_row(p: Prediction, k: int, checkpoint: str, rows: bool = False) -> list:
    """One CSV row of :func:`csv_columns`: an input that could not be read has empty class,
    probability and top-k cells and its message in ``error``; one that could, an empty
    ``error``; with ``rows``, the data file's row (empty for an image)."""
    top = [v for c, q in p.top for v in (_csv_text(c), q)]
    top += [None] * (2 * k - len(top))
    return ([_csv_text(p.path)] + ([p.row] if rows else [])
            + [None if p.label is None else _csv_text(p.label), p.probability] + top
            + [_csv_text(checkpoint), None if p.error is None else _csv_text(p.error)])


def check_output(path: Path, option: str = "--output", example: str = "preds.csv") -> None:
    """Refuse an output file (``option``) that can never be written, before any work is done.

    Raises:
        UserError: ``path`` is an existing folder, or its folder does not exist.
    """
    if path.is_dir():
        raise UserError(f"{path}: {option} is a folder; give a file name such as {path / example}")
    if not path.absolute().parent.is_dir():
        raise UserError(f"{path}: {option}: the folder {path.absolute().parent} does not exist")


def _csv_text(text: str) -> str:
    """``text`` as :func:`write_csv` can encode it with ``surrogateescape``: unchanged, unless
    it holds a lone surrogate no file system gives (see :func:`file_bytes`)."""
    return file_bytes(text).decode("utf-8", "surrogateescape")


def write_csv(path: Path, preds: Sequence[Prediction], checkpoint: str) -> Path:
    """Write the predictions to a new CSV file (:func:`csv_columns`), one row per input in
    order, those that could not be read included (:func:`csv_row`), through the one CSV
    writer, :func:`softmax_cli.csvout.csv_text`: a path or class name beginning with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return gets a ``'`` in front, so that no
    spreadsheet runs it as a formula (read such a path back without its first ``'``).

    The file is UTF-8, except that paths and class names are written as the bytes the file
    system gave (:func:`file_bytes`): a name that is not UTF-8 is kept byte for byte, so the
    path column names the very file (read it back with ``encoding="utf-8",
    errors="surrogateescape"`` and ``os.fsencode``).

    An existing file is never overwritten (:func:`write_new_file`): when ``path`` exists the
    next free name of ``NAME-2.csv``, ``NAME-3.csv``, ... is used. A failure leaves no
    partial file and keeps the name free.

    Returns:
        The path written.

    Raises:
        OSError: the file cannot be created or written (naming it); nothing is left of it.
        UserError: ``path`` and ``NAME-2`` ... ``NAME-99999`` all exist.
    """
    k = max((len(p.top) for p in preds), default=0) or 1
    with_rows = any(p.row is not None for p in preds)
    rows = (csv_row(p, k, checkpoint, with_rows) for p in preds)
    data = csv_text(csv_columns(k, with_rows), rows).encode("utf-8", "surrogateescape")   # spreadsheet-safe cells
    return write_new_file(path, data, "--output")


def kaggle_text(preds: Sequence[Prediction]) -> str:
    """A Kaggle digit-recognizer submission: the header ``ImageId,Label``, then one line per
    prediction in order, ``ImageId`` counting from 1 and ``Label`` the predicted class name
    (https://www.kaggle.com/competitions/digit-recognizer, "Evaluation"), written by the one
    CSV writer (:func:`softmax_cli.csvout.csv_text`).

    Raises:
        ValueError: a prediction without an answer (an input that could not be read).
    """
    if any(p.label is None for p in preds):
        raise ValueError("a submission needs an answer for every row")
    return csv_text(KAGGLE_COLUMNS, ([i, p.label] for i, p in enumerate(preds, 1)))


def check_kaggle(args: Sequence[str]) -> None:
    """Refuse, before any work, ``--format kaggle`` for what is not one data file's rows: its
    ``ImageId`` numbers the rows of one CSV, ``.npy`` or ``.npz`` file (Kaggle's ``test.csv``).

    Raises:
        UserError: more than one argument, or one that names an image, a folder or a pattern.
    """
    if len(args) != 1:
        raise UserError(f"--format kaggle numbers the rows of one data file (ImageId 1, 2, ...); got "
                        f"{len(args)} arguments")
    if not is_data_file(args[0]) or Path(args[0]).is_dir():
        raise UserError(f"{args[0]}: --format kaggle numbers the rows of a data file (ImageId 1, 2, ...): "
                        f"give a .csv, .tsv, .npy or .npz file, not images")


def write_new_file(path: Path, data: bytes, option: str) -> Path:
    """Write ``data`` to a new file: ``path``, or when it exists the next free name of
    ``NAME-2.EXT``, ``NAME-3.EXT``, ..., created exclusively (``open(mode="xb")``); a file that
    cannot be written whole is removed (see :func:`write_csv`). The one place of the rule that
    an output file never overwrites another (``predict --output``, ``export -o``).

    Returns:
        The path written.

    Raises:
        OSError: the file cannot be created or written (naming it); nothing is left of it.
        UserError: ``path`` and ``NAME-2`` ... ``NAME-99999`` all exist (naming ``option``).
    """
    for i in range(1, 100_000):
        target = path if i == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")
        try:
            f = open(target, "xb")
        except FileExistsError:
            continue
        try:
            with f:
                f.write(data)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                target.unlink()
            if isinstance(exc, OSError):
                raise OSError(exc.errno, f"cannot write it ({exc.strerror or exc}); the partial file "
                                         f"was removed", str(target)) from exc
            raise
        return target
    raise UserError(f"{path}: no free file name for {option}")
