"""``softmax predict``: image files to classes in one forward pass, and the three outputs
(an aligned table, JSON lines, a CSV file that never overwrites another).

Light on purpose: NumPy, Pillow and the standard library only (no scikit-learn, SciPy, numba
or tqdm), so that predicting starts fast.

File and class names are kept as Python holds what the file system gave: a byte of a name
that is not UTF-8 (a Linux file name may hold any bytes) is a surrogate escape, U+DC80 plus
the byte (``os.fsdecode``). The CSV file gets the original bytes back (:func:`write_csv`),
JSON lines write the escape as ``\\udcXX`` (:meth:`Prediction.to_json`) and the table shows
``\\xXX`` (:func:`display_name`), so that no output fails on such a name.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .checkpoint import Checkpoint
from .csvout import csv_text
from .data.images import image_to_input
from .errors import UserError, printable
from .metrics import answered

UNKNOWN = "unknown"   # the answer below --reject-threshold


@dataclass
class Prediction:
    """One image's answer.

    Attributes:
        path: the file as found (see :func:`~softmax_cli.data.images.find_files`).
        label: the most probable class name, or :data:`UNKNOWN` when its probability is
            below the reject threshold.
        probability: the highest class probability, in [0, 1] (also when rejected).
        top: the ``k`` most probable ``(class name, probability)``, most probable first.
    """

    path: str
    label: str
    probability: float
    top: list[tuple[str, float]]

    def to_json(self) -> dict:
        """``{"path", "class", "probability", "top_k": [{"class", "probability"}, ...]}``.

        The names are as Python holds them: ``json.dumps`` (ASCII by default) writes a
        surrogate escape of a non-UTF-8 byte as ``\\udcXX`` (0xff: ``\\udcff``), which
        ``json.loads`` reads back and ``os.fsencode`` turns into the file name's bytes.
        """
        return {"path": self.path, "class": self.label, "probability": self.probability,
                "top_k": [{"class": c, "probability": p} for c, p in self.top]}


def classify(ckpt: Checkpoint, files: Sequence[Path | UserError], top_k: int = 1, threshold: float = 0.0,
             on_error: Callable[[UserError], None] = lambda exc: None) -> list[Prediction]:
    """Classify image files with one forward pass over all of them.

    Each file is mapped to the model's input by
    :func:`~softmax_cli.data.images.image_to_input` with the checkpoint's image shape, pixel
    scale and normalisation style (what ``data.source: folder`` training uses too); the rows
    are stacked into one float array (n, h * w) and go through the network together.

    Args:
        ckpt: a loaded checkpoint.
        files: image files, any format Pillow reads (told by content, not name); a
            :class:`UserError` among them (see :func:`~softmax_cli.data.images.find_files`)
            is passed to ``on_error`` in its turn.
        top_k: how many classes each answer lists (at most the number of classes).
        threshold: below this highest probability the answer is :data:`UNKNOWN` (0: never).
        on_error: called with the :class:`UserError` of each file that cannot be used
            (unreadable, not an image, too large, no ink); that file is skipped.

    Returns:
        One :class:`Prediction` per usable file, in the order of ``files``.
    """
    rows, kept = [], []
    for path in files:
        if isinstance(path, UserError):
            on_error(path)
            continue
        try:
            rows.append(image_to_input(path, ckpt.image_shape, ckpt.preprocessor.pixel_max,
                                       ckpt.meta["image_style"]))
            kept.append(path)
        except UserError as exc:
            on_error(exc)
    if not rows:
        return []
    return rank(ckpt, [str(path) for path in kept], np.stack(rows), top_k, threshold)


def rank(ckpt: Checkpoint, names: Sequence[str], X: np.ndarray, top_k: int = 1,
         threshold: float = 0.0) -> list[Prediction]:
    """Answer raw input rows ``X`` (n, d) in 0..pixel_max with one forward pass
    (:meth:`Checkpoint.predict_proba`): the ``top_k`` classes of each, most probable first,
    :data:`UNKNOWN` below ``threshold``; ``names[i]`` names row ``i`` (``Prediction.path``).

    Raises:
        ValueError: ``X`` is not (n, d) with the model's number of features.
    """
    proba = ckpt.predict_proba(X, batch_size=max(1, len(X)))          # one forward pass
    sure = answered(proba, threshold)
    k = min(top_k, proba.shape[1])
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    out = []
    for name, row, idx, ok in zip(names, proba, order, sure):
        top = [(ckpt.classes[i], float(row[i])) for i in idx]
        out.append(Prediction(name, top[0][0] if ok else UNKNOWN, top[0][1], top))
    return out


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


def format_table(preds: Sequence[Prediction]) -> str:
    """Predictions as an aligned text table: path, class, probability, and with top-k > 1
    a column of the k most probable classes, ``class (probability)`` each.

    Paths and class names are passed through :func:`display_name`, so the table holds no
    surrogate and prints on any UTF-8 stream, also one whose errors are strict.
    """
    k = max(len(p.top) for p in preds)
    head = ["path", "class", "probability"] + ([f"top {k}"] if k > 1 else [])
    body = [[display_name(p.path), display_name(p.label), f"{p.probability:.4f}"]
            + (["  ".join(f"{display_name(c)} ({q:.4f})" for c, q in p.top)] if k > 1 else []) for p in preds]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(3)]

    def line(cells: list[str]) -> str:
        text = f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  {cells[2]:>{widths[2]}}"
        return (text + "  " + cells[3]) if len(cells) > 3 else text

    return "\n".join(line(r) for r in [head, *body])


def csv_columns(k: int) -> list[str]:
    """``path, class, probability, top1_class, top1_probability, ..., top{k}_probability``."""
    return ["path", "class", "probability"] + [f"top{r}_{what}" for r in range(1, k + 1)
                                               for what in ("class", "probability")]


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


def write_csv(path: Path, preds: Sequence[Prediction]) -> Path:
    """Write the predictions to a new CSV file (:func:`csv_columns`) through the one CSV
    writer, :func:`softmax_cli.csvout.csv_text`: a path or class name beginning with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return gets a ``'`` in front, so that no
    spreadsheet runs it as a formula (read such a path back without its first ``'``).

    The file is UTF-8, except that paths and class names are written as the bytes the file
    system gave (:func:`file_bytes`): a name that is not UTF-8 is kept byte for byte, so the
    path column names the very file (read it back with ``encoding="utf-8",
    errors="surrogateescape"`` and ``os.fsencode``).

    An existing file is never overwritten: when ``path`` exists the next free name of
    ``NAME-2.csv``, ``NAME-3.csv``, ... is used, and created exclusively (``open(mode="xb")``),
    so a file that appears meanwhile is not overwritten either. The whole content is made
    before the file is created, and a file that cannot be written whole (disk full, an
    interrupt) is removed, so a failure leaves no partial file and keeps the name free.

    Returns:
        The path written.

    Raises:
        OSError: the file cannot be created or written (naming it); nothing is left of it.
        UserError: ``path`` and ``NAME-2`` ... ``NAME-99999`` all exist.
    """
    k = max(len(p.top) for p in preds)
    rows = ([_csv_text(p.path), _csv_text(p.label), p.probability] + [v for c, q in p.top for v in (_csv_text(c), q)]
            for p in preds)
    data = csv_text(csv_columns(k), rows).encode("utf-8", "surrogateescape")   # spreadsheet-safe cells
    return write_new_file(path, data, "--output")


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
