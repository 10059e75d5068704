"""Pictures and report files: training curves, confusion matrices, worst mistakes, weights.

Everything is drawn with matplotlib on its Agg backend (no display needed), and matplotlib
is imported inside the functions that draw, so ``softmax --help``, ``softmax predict`` and
importing this module stay light. Every file goes through
:func:`~softmax_cli.checkpoint.atomic_write`: a reader, or an interrupted run, never sees
half a picture. Per-class figures come from scikit-learn; the CSV from :mod:`softmax_cli.csvout`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .csvout import csv_bytes, dict_rows_text
from .errors import UserError, printable

DPI = 100
#: the files ``softmax eval --report DIR`` writes into ``DIR``
REPORT_FILES = ("report.md", "confusion_matrix.png", "errors.png", "reliability.png", "per_class.csv")
PER_CLASS_COLUMNS = ["class", "precision", "recall", "f1", "support"]
WEIGHT_UNITS = 64   # units ``softmax inspect --weights`` draws by default (--max-units)


def _pyplot():
    """matplotlib's pyplot on the Agg backend (imported here, on first use only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _md(text: str) -> str:
    """``text`` safe inside a Markdown table cell: printable on one line, ``|`` escaped."""
    return printable(str(text)).replace("|", "\\|")


def _label(text: str) -> str:
    """A class name as matplotlib draws it: printable, and ``$`` shown, not starting mathtext
    (a class named ``$\\frac$`` would otherwise fail to draw)."""
    return printable(str(text)).replace("$", r"\$")


def _save(fig, path: Path) -> None:
    """Write ``fig`` as a PNG to ``path`` atomically and free it.

    Raises:
        OSError: naming ``path``: it cannot be written; an earlier file there is intact.
    """
    from .checkpoint import atomic_write

    try:
        atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=DPI))
    finally:
        _pyplot().close(fig)


# ------------------------------------------------------------------------ training curves
def plot_curves(path: str | Path, rows: list[dict], best_epoch: int, monitor: str = "val_loss",
                train_conditions: tuple[str, ...] = ()) -> None:
    """Draw loss and accuracy per epoch, training and validation, into the PNG ``path``.

    Two panels, 1000 x 400 pixels: the mean cross-entropy (nats, log scale) and the accuracy
    (in [0, 1]) against the epoch; the best epoch is marked by a dashed vertical line and a
    ring on the curves of the monitored split (validation, or training without one).
    The training figures are running means over each epoch's batches, taken with whatever
    made training harder than evaluation (``train_conditions``, e.g. ``("dropout", "label
    smoothing")``): the training curves are then labelled with them and a note under the
    panels says they are not comparable with the validation curves, so a training loss above
    the validation loss is not read as a bug.

    Args:
        rows: the rows of ``metrics.csv`` as written by training, oldest first: dicts with
            ``epoch`` (int, from 1), ``train_loss``, ``train_acc`` and ``val_loss``,
            ``val_acc`` (floats, or ``""`` when the run has no validation split).
        best_epoch: the epoch whose weights are ``best.npz`` (0: none marked).
        monitor: the metric that chose it, e.g. ``val_loss`` or ``val_acc``.
        train_conditions: what was on during training only (dropout, label smoothing,
            augmentation); empty: the training figures are comparable.

    Raises:
        ValueError: ``rows`` is empty.
        OSError: ``path`` cannot be written; an earlier picture there is intact.
    """
    if not rows:
        raise ValueError("no epochs to draw")
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = np.array([r["epoch"] for r in rows])
    has_val = all(r.get("val_loss", "") != "" for r in rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    marker = "o" if len(rows) <= 30 else None
    train_label = f"training (with {', '.join(train_conditions)})" if train_conditions else "training"
    for ax, what, label in ((axes[0], "loss", "loss (cross-entropy, nats)"), (axes[1], "acc", "accuracy")):
        for part, colour in (("train", "tab:blue"), ("val", "tab:orange")):
            if part == "val" and not has_val:
                continue
            values = np.array([float(r[f"{part}_{what}"]) for r in rows])
            ax.plot(epochs, values, color=colour, marker=marker, markersize=3,
                    label=train_label if part == "train" else "validation")
            if best_epoch and part == monitor.split("_")[0]:
                ax.plot([best_epoch], [values[best_epoch - 1]], "o", markersize=11, markerfacecolor="none",
                        markeredgecolor="black", markeredgewidth=1.5)
        if best_epoch:
            ax.axvline(best_epoch, color="black", linestyle="--", linewidth=1,
                       label=f"best epoch {best_epoch} (by {monitor})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right" if what == "loss" else "lower right")
    if all(float(r["train_loss"]) > 0 for r in rows) and (
            not has_val or all(float(r["val_loss"]) > 0 for r in rows)):
        axes[0].set_yscale("log")
    axes[0].set_title("loss per epoch")
    axes[1].set_title("accuracy per epoch")
    if train_conditions and has_val:
        fig.supxlabel(f"training figures: running means over each epoch's batches, with "
                      f"{', '.join(train_conditions)} on; not comparable with the validation figures",
                      fontsize=8, color="0.3")
    _save(fig, Path(path))


# ---------------------------------------------------------------------- reliability diagram
def plot_reliability(path: str | Path, before, after=None, title: str = "") -> None:
    """Draw a reliability diagram (Guo et al. 2017, figure 1) into the PNG ``path``.

    Top: per equal-width confidence bin, the accuracy (bars) against the mean confidence (the
    diagonal is a calibrated model; bars below it are over-confidence), with the expected
    calibration error in the legend; ``after`` (the same answers with the checkpoint's
    temperature) is drawn beside ``before`` when given. Bottom: how many answers fall in
    each bin (log scale). 800 x 700 pixels.

    Args:
        before, after: :class:`~softmax_cli.calibration.ReliabilityBins` of the same bins.
        title: the figure's heading (checkpoint and split).

    Raises:
        OSError: ``path`` cannot be written; an earlier picture there is intact.
    """
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), height_ratios=(3, 1), sharex=True,
                                      layout="constrained")
    edges = before.edges
    width = edges[1] - edges[0]
    shown = [(before, "uncalibrated" if after is not None else "model", "tab:blue")]
    if after is not None:
        shown.append((after, "with temperature scaling", "tab:orange"))
    for i, (bins, label, colour) in enumerate(shown):
        offset = (i - (len(shown) - 1) / 2) * width / len(shown)
        used = bins.count > 0
        top.bar(edges[:-1][used] + width / 2 + offset, bins.accuracy[used], width=width / len(shown),
                color=colour, alpha=0.8, edgecolor="white", label=f"{label}: ECE {bins.ece:.4f}")
        bottom.bar(edges[:-1][used] + width / 2 + offset, bins.count[used], width=width / len(shown),
                   color=colour, alpha=0.8, edgecolor="white")
    top.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="calibrated")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy in the bin")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (highest class probability)")
    bottom.set_ylabel("answers")
    bottom.grid(alpha=0.3)
    top.set_title(title or f"reliability diagram, {len(edges) - 1} bins")
    _save(fig, Path(path))


# ----------------------------------------------------------------------- confusion matrix
def plot_confusion_matrix(path: str | Path, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                          title: str = "") -> None:
    """Draw the confusion matrix twice, as counts and row-normalised, into the PNG ``path``.

    Rows are the true class, columns the predicted one; the row-normalised matrix holds the
    fraction of each true class given each prediction (its diagonal is the per-class
    recall). Both come from ``sklearn.metrics.confusion_matrix`` and are drawn by its
    ``ConfusionMatrixDisplay``; with more than 20 classes the cells are not numbered.
    The picture is 1200 x 560 pixels for up to 10 classes, wider with more.

    Args:
        y_true, y_pred: int64 (n,) class indices into ``classes``.
        classes: the K class names.

    Raises:
        OSError: ``path`` cannot be written.
    """
    plt = _pyplot()
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    labels = np.arange(len(classes))
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    fractions = confusion_matrix(y_true, y_pred, labels=labels, normalize="true")
    side = max(5.6, 0.5 * len(classes) + 0.6)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 0.8, side), layout="constrained")
    numbered = len(classes) <= 20
    for ax, matrix, fmt, name in ((axes[0], counts, "d", "counts"),
                                  (axes[1], fractions, ".2f", "fraction of each true class")):
        ConfusionMatrixDisplay(matrix, display_labels=[_label(c) for c in classes]).plot(
            ax=ax, cmap="Blues", colorbar=False, include_values=numbered, values_format=fmt)
        ax.set_title(name)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    if title:
        fig.suptitle(title)
    _save(fig, Path(path))


# ------------------------------------------------------------------------ worst mistakes
def most_confident_mistakes(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, k: int) -> np.ndarray:
    """Indices of at most ``k`` misclassified rows, the most confident first.

    Args:
        y_true, y_pred: int64 (n,) true and predicted class indices.
        proba: (n, K) class probabilities; a row's confidence is ``proba[i, y_pred[i]]``.
        k: how many to return at most (>= 0).

    Returns:
        int64 (m,) row indices, m = min(k, number of mistakes), ordered by decreasing
        confidence in the wrong class (ties: lower index first).
    """
    wrong = np.flatnonzero(y_true != y_pred)
    confidence = proba[wrong, y_pred[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:k].astype(np.int64)


def plot_errors(path: str | Path, images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                proba: np.ndarray, classes: list[str], max_images: int = 24, title: str = "") -> int:
    """Draw the most confidently misclassified images in a grid into the PNG ``path``.

    Each tile is one image (dark ink on white) captioned with its true class, the predicted
    class and the probability the model gave that prediction. Six tiles a row, 1.6 inches
    (160 pixels) a tile; without any mistake, a picture saying so.

    Args:
        images: float (n, h, w) of the evaluated rows, ink from 0 (none) to 1 (full).
        y_true, y_pred: int64 (n,) class indices into ``classes``.
        proba: (n, K) class probabilities.
        max_images: at most this many tiles (>= 1).

    Returns:
        The number of images drawn.

    Raises:
        OSError: ``path`` cannot be written.
    """
    plt = _pyplot()
    pick = most_confident_mistakes(y_true, y_pred, proba, max_images)
    n_wrong = int(np.count_nonzero(y_true != y_pred))
    heading = title or "most confident mistakes"
    if len(pick) == 0:
        fig = plt.figure(figsize=(6, 2))
        fig.text(0.5, 0.5, f"{heading}\n\nno mistakes: all {len(y_true)} images classified right",
                 ha="center", va="center", fontsize=12)
        _save(fig, Path(path))
        return 0
    cols = min(6, len(pick))
    rows = math.ceil(len(pick) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.6), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(pick):]:
        ax.axis("off")
    for ax, i in zip(axes.flat, pick):
        ax.imshow(images[i], cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():      # a thin frame shows the image's extent on white
            spine.set_edgecolor("0.7")
        ax.set_title(f"true {_label(classes[y_true[i]])}\npred {_label(classes[y_pred[i]])} "
                     f"({proba[i, y_pred[i]]:.2f})",
                     fontsize=9)
    fig.suptitle(f"{heading}: {len(pick)} of {n_wrong} mistakes, most confident first")
    _save(fig, Path(path))
    return len(pick)


# ---------------------------------------------------------------------- first-layer weights
def plot_weights(path: str | Path, W: np.ndarray, image_shape: tuple[int, int],
                 max_units: int = WEIGHT_UNITS) -> int:
    """Draw each first-layer unit's incoming weights as an image, tiled, into the PNG ``path``.

    Column ``j`` of ``W`` (the weights from every input pixel to unit ``j``) is reshaped to
    ``image_shape`` (row-major, like the pixels) and shown red where positive, blue where
    negative, each unit scaled to its own largest absolute weight (so the colours compare
    pixels within a unit, not units). The weights act on the preprocessed input. Tiles fill
    a square-ish grid, row by row, with grey one-pixel gaps; each weight is drawn as a block
    of whole pixels (at least 3 x 3), so that the mosaic is about 900 pixels wide or more and
    a 28 x 28 tile at least 84 pixels: a wide layer is not squeezed into specks, only its
    ``max_units`` units with the largest weight norms ``||W[:, j]||`` are drawn, largest first
    (a unit that learned nothing keeps small weights).

    Args:
        W: float (h * w, n_units) first-layer weights ``W0``.
        image_shape: (h, w) of the input images.
        max_units: draw at most this many units (those of largest norm), >= 1.

    Returns:
        The number of units drawn.

    Raises:
        ValueError: ``W`` has not ``h * w`` rows.
        OSError: ``path`` cannot be written.
    """
    h, w = image_shape
    if W.ndim != 2 or W.shape[0] != h * w:
        raise ValueError(f"W has shape {W.shape}, expected ({h * w}, n_units) for {h}x{w} images")
    if max_units < 1:
        raise ValueError(f"max_units must be >= 1, got {max_units}")
    plt = _pyplot()
    n = min(W.shape[1], max_units)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    norms = np.sqrt(np.einsum("ij,ij->j", W, W, dtype=np.float64))
    chosen = np.argsort(-norms, kind="stable")[:n]             # the largest norms, largest first
    tiles = W[:, chosen].T.reshape(n, h, w).astype(np.float64)
    peak = np.abs(tiles).max(axis=(1, 2), keepdims=True)
    tiles = tiles / np.where(peak > 0, peak, 1.0)
    # one mosaic with a one-pixel gap (NaN: drawn in the background colour) between tiles
    mosaic = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for j in range(n):
        r, c = divmod(j, cols)
        mosaic[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tiles[j]
    scale = max(3, 900 // max(mosaic.shape))             # whole screen pixels per weight
    fig = plt.figure(figsize=(mosaic.shape[1] * scale / DPI + 0.4, mosaic.shape[0] * scale / DPI + 0.7))
    ax = fig.add_axes((0.2 / fig.get_figwidth(), 0.2 / fig.get_figheight(),
                       1 - 0.4 / fig.get_figwidth(), 1 - 0.7 / fig.get_figheight()))
    cmap = plt.get_cmap("RdBu_r").copy()
    cmap.set_bad("0.75")                                # the gaps: grey, unlike a zero weight
    ax.imshow(mosaic, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    shown = f"the {n} of largest norm among {W.shape[1]}" if n < W.shape[1] else f"{n}"
    fig.suptitle(f"first-layer weights: {shown} units, {h}x{w} each\n"
                 f"red positive, blue negative, each unit scaled to its own largest |w|", fontsize=9)
    _save(fig, Path(path))
    return n


# --------------------------------------------------------------------------- eval report
def check_report_dir(directory: str | Path) -> Path:
    """``directory`` when a report may be written there (it need not exist yet).

    Raises:
        UserError: naming ``directory``: it is a file, or it already holds one of the
            :data:`REPORT_FILES` (a report is never overwritten).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory}: --report: exists and is not a directory")
    taken = [name for name in REPORT_FILES if (directory / name).exists()]
    if taken:
        raise UserError(f"{directory}: --report: already holds {', '.join(taken)}; a report is never "
                        f"overwritten: choose another directory or remove them")
    return directory


def write_per_class_csv(path: str | Path, per_class: list[dict]) -> None:
    """Write one row per class: ``class, precision, recall, f1, support``, through the one CSV
    writer (:mod:`softmax_cli.csvout`: a class named ``=1+2`` is written ``'=1+2``).

    Args:
        per_class: dicts with those keys, as :func:`~softmax_cli.metrics.class_report`
            returns (figures from scikit-learn; precision, recall, F1 in [0, 1]).

    Raises:
        OSError: ``path`` cannot be written.
    """
    from .checkpoint import atomic_write

    data = csv_bytes(dict_rows_text(PER_CLASS_COLUMNS, per_class))
    atomic_write(Path(path), lambda f: f.write(data))


def write_report(directory: str | Path, ev, *, classes: list[str], report: dict, rejects: list[dict],
                 checkpoint: str, data: str, split: str) -> Path:
    """Write an evaluation report into ``directory``, creating it when missing.

    Files (:data:`REPORT_FILES`): ``confusion_matrix.png`` (:func:`plot_confusion_matrix`),
    ``errors.png`` (:func:`plot_errors`), ``reliability.png`` (:func:`plot_reliability`: the
    model's probabilities, and with a calibrated checkpoint the same before its temperature),
    ``per_class.csv`` (:func:`write_per_class_csv`) and ``report.md``, which states the
    checkpoint, the data and split, the number of images, accuracy, loss and calibration, the
    coverage and accuracy of the answers above each probability threshold, and links the
    other files by relative paths.

    Args:
        ev: the :class:`~softmax_cli.metrics.Evaluation` (with ``images``, float (n, h, w) ink
            0..1, and ``logits``) of ``softmax eval``.
        report: :func:`~softmax_cli.metrics.class_report` of the same predictions.
        rejects: :func:`~softmax_cli.metrics.reject_report` of the same predictions.
        checkpoint, data, split: as the report should name them.

    Returns:
        The path of ``report.md``.

    Raises:
        UserError: ``directory`` is a file, already holds report files, or cannot be created.
        OSError: a file cannot be written.
    """
    from .calibration import reliability_bins
    from .nn import softmax

    y_true, y_pred, loss, accuracy = ev.y_true, ev.y_pred, ev.loss, ev.accuracy
    directory = check_report_dir(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{directory}: --report: cannot create the directory: {exc.strerror or exc}") from None
    what = f"{split} split, {len(y_true)} images"
    plot_confusion_matrix(directory / "confusion_matrix.png", y_true, y_pred, classes,
                          title=f"confusion matrix: {Path(checkpoint).name} on the {what}")
    n_shown = plot_errors(directory / "errors.png", ev.images, y_true, y_pred, ev.proba, classes,
                          title=f"{split} split")
    calibrated = ev.temperature != 1.0
    before = reliability_bins(softmax(ev.logits) if calibrated else ev.proba, y_true)
    after = reliability_bins(ev.proba, y_true) if calibrated else None
    plot_reliability(directory / "reliability.png", before, after,
                     title=f"reliability: {Path(checkpoint).name} on the {what}")
    write_per_class_csv(directory / "per_class.csv", report["per_class"])
    n_wrong = int(np.count_nonzero(y_true != y_pred))
    macro = report["macro_avg"]
    lines = [
        "# Evaluation report", "",
        "| | |", "| --- | --- |",
        f"| checkpoint | `{checkpoint}` |",
        f"| data | {_md(data)} |",
        f"| split | {split} |",
        f"| images | {len(y_true)} |",
        f"| accuracy | {accuracy:.4f} ({len(y_true) - n_wrong} right, {n_wrong} wrong) |",
        f"| loss | {loss:.4f} (mean cross-entropy, the negative log-likelihood, nats) |",
        f"| ECE | {ev.ece:.4f} (expected calibration error, 15 bins) |",
        f"| temperature | {ev.temperature:.3f} |" if calibrated else "| temperature | none (uncalibrated) |",
        f"| macro F1 | {macro['f1']:.4f} |", "",
        "## Confusion matrix", "",
        "Rows: true class; columns: predicted class. Left the counts, right each row as fractions "
        "(the diagonal is the recall).", "",
        "![confusion matrix](confusion_matrix.png)", "",
        "## Most confident mistakes", "",
        f"The {n_shown} misclassified images the model was surest about, with the true class, the "
        "predicted class and the probability it gave that prediction." if n_shown else
        "No image was misclassified.", "",
        "![most confident mistakes](errors.png)", "",
        "## Calibration", "",
        "Of the answers given with confidence p, a calibrated model gets a fraction p right: its "
        "bars reach the diagonal. " + ("Blue: the network's own probabilities; orange: with the "
                                       f"checkpoint's temperature {ev.temperature:.3f}." if calibrated else
                                       "This checkpoint has no calibration temperature."), "",
        "![reliability diagram](reliability.png)", "",
        "## Per class", "",
        "Precision, recall and F1 from scikit-learn; also in [per_class.csv](per_class.csv).", "",
        "| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |",
        *(f"| {_md(c['class'])} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} "
          f"| {c['support']} |" for c in report["per_class"]),
        f"| macro average | {macro['precision']:.4f} | {macro['recall']:.4f} | {macro['f1']:.4f} "
        f"| {macro['support']} |", "",
        "## Answering only above a probability threshold", "",
        "The share of images whose highest probability reaches the threshold (the rest would be "
        "answered `unknown`, as `softmax predict --reject-threshold` does) and the accuracy on them.", "",
        "| threshold | coverage | accuracy | answered |", "| ---: | ---: | ---: | ---: |",
        *(f"| {r['threshold']:g} | {r['coverage']:.4f} | "
          f"{'-' if r['accuracy'] is None else format(r['accuracy'], '.4f')} | {r['answered']} |" for r in rejects),
        "",
    ]
    from .checkpoint import atomic_write

    text = "\n".join(lines).encode()
    atomic_write(directory / "report.md", lambda f: f.write(text))
    return directory / "report.md"
