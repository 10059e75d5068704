"""Evaluation: loss and accuracy of a model on a split, confusion matrix, per-class report,
and answering only above a probability threshold (``--reject-threshold``).

The loss is the model's own cross-entropy (through log-softmax, as in training); accuracy,
the confusion matrix and precision/recall/F1 come from ``sklearn.metrics``. scikit-learn is
imported inside the functions that use it, so ``softmax predict`` can use :func:`answered`
without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .nn import MLP, cross_entropy, softmax


@dataclass
class Evaluation:
    """Results on one split.

    Attributes:
        loss: mean cross-entropy (nats) of ``proba``: the negative log-likelihood (NLL) of
            the true labels.
        accuracy: fraction of rows classified right, in [0, 1].
        y_true, y_pred: int64 (n,) labels and predictions.
        proba: (n, K) class probabilities, the model's dtype.
        images: float32 (n, h, w) of the evaluated images, ink from 0 to 1, when the caller
            asked to keep them (:func:`~softmax_cli.experiment.evaluate_checkpoint`), else None.
        ece: expected calibration error of ``proba`` (15 bins; :mod:`softmax_cli.calibration`),
            NaN when not measured.
        temperature: ``T`` of ``proba = softmax(logits / T)`` (1: uncalibrated).
        logits: (n, K) the model's logits, before the temperature (when kept).
        uncalibrated_loss: mean cross-entropy (nats) of ``softmax(logits)``, T = 1: the
            ``val_loss`` the training curves and ``metrics.csv`` show; equal to ``loss``
            when the temperature is 1.
    """

    loss: float
    accuracy: float
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray
    images: np.ndarray | None = None
    ece: float = float("nan")
    temperature: float = 1.0
    logits: np.ndarray | None = None
    uncalibrated_loss: float = float("nan")


def evaluate(model: MLP, X: np.ndarray, y: np.ndarray, temperature: float = 1.0,
             calibration: bool = False) -> Evaluation:
    """Evaluate ``model`` on preprocessed inputs ``X`` (n, d) with labels ``y`` int64 (n,),
    its probabilities ``softmax(logits / temperature)``. The predicted class is the largest
    logit whatever the temperature (> 0), so the accuracy does not depend on it.

    ``calibration`` also measures the expected calibration error (``Evaluation.ece``, else
    NaN) and keeps the logits (``Evaluation.logits``).

    Raises:
        ValueError: ``X`` does not have the model's number of features.
    """
    return evaluate_logits(model.logits(X), y, temperature, calibration)


def evaluate_logits(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0,
                    calibration: bool = False) -> Evaluation:
    """:func:`evaluate` of logits (n, K) already computed, e.g. by
    :meth:`Checkpoint.logits <softmax_cli.checkpoint.Checkpoint.logits>`."""
    from sklearn.metrics import accuracy_score

    y_pred = logits.argmax(axis=1)
    uncalibrated = cross_entropy(logits, y)
    loss = uncalibrated if temperature == 1.0 else cross_entropy(logits / logits.dtype.type(temperature), y)
    ev = Evaluation(loss=loss, accuracy=float(accuracy_score(y, y_pred)), y_true=y, y_pred=y_pred,
                    proba=softmax(logits, temperature), temperature=float(temperature),
                    uncalibrated_loss=uncalibrated)
    if calibration and len(y):
        from .calibration import expected_calibration_error

        ev.ece, ev.logits = expected_calibration_error(ev.proba, y), logits
    return ev


def format_confusion_matrix(cm: list[list[int]], classes: list[str]) -> str:
    """The confusion matrix as aligned text, rows the true class, columns the predicted one."""
    width = max(max(len(c) for c in classes), max(len(str(v)) for row in cm for v in row)) + 1
    lines = ["confusion matrix (rows: true class, columns: predicted class)",
             " " * width + " " + "".join(c.rjust(width) for c in classes)]
    lines += [c.rjust(width) + " " + "".join(str(v).rjust(width) for v in row) for c, row in zip(classes, cm)]
    return "\n".join(lines) + "\n"


def class_report(ev: Evaluation, classes: list[str]) -> dict:
    """Confusion matrix and per-class precision, recall, F1 and support (scikit-learn).

    Returns:
        ``{"confusion_matrix": K x K list (rows true class, columns predicted),
        "per_class": [{"class", "precision", "recall", "f1", "support"}, ...],
        "macro_avg": {...}}``; a class never predicted gets precision 0.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = np.arange(len(classes))
    cm = confusion_matrix(ev.y_true, ev.y_pred, labels=labels)
    p, r, f, s = precision_recall_fscore_support(ev.y_true, ev.y_pred, labels=labels, zero_division=0)
    per_class = [{"class": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                  "support": int(s[i])} for i, c in enumerate(classes)]
    macro = {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f.mean()),
             "support": int(s.sum())}
    return {"confusion_matrix": cm.tolist(), "per_class": per_class, "macro_avg": macro}


# ------------------------------------------------------------------------- reject option
REJECT_THRESHOLDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)   # eval's default report rows


def check_threshold(option: str, value: float) -> float:
    """``value`` when it is a probability in [0, 1].

    Raises:
        UserError: naming ``option``: NaN or outside [0, 1].
    """
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{option}: expected a probability in [0, 1], got {value:g}")
    return value


def answered(proba: np.ndarray, threshold: float) -> np.ndarray:
    """Which predictions are answered: the highest class probability is at least ``threshold``.

    The rest are answered ``unknown`` (``softmax predict --reject-threshold``). A threshold
    of 0 answers everything.

    Args:
        proba: (n, K) class probabilities, rows summing to 1.
        threshold: a probability in [0, 1].

    Returns:
        bool (n,).
    """
    return proba.max(axis=1) >= threshold


def reject_report(ev: Evaluation, thresholds=REJECT_THRESHOLDS) -> list[dict]:
    """Coverage and accuracy of the answered part, for each threshold (see :func:`answered`).

    Returns:
        One dict per threshold, in the given order: ``threshold``; ``answered`` (count);
        ``coverage`` (answered fraction, in [0, 1]); ``accuracy`` (fraction right among the
        answered, scikit-learn's ``accuracy_score``; None when nothing is answered).
    """
    from sklearn.metrics import accuracy_score

    rows = []
    for t in thresholds:
        keep = answered(ev.proba, t)
        n = int(keep.sum())
        rows.append({"threshold": float(t), "answered": n, "coverage": n / len(keep) if len(keep) else 0.0,
                     "accuracy": float(accuracy_score(ev.y_true[keep], ev.y_pred[keep])) if n else None})
    return rows


def format_reject_report(rows: list[dict]) -> str:
    """:func:`reject_report` as aligned text, one line per threshold."""
    lines = ["answering only above a probability threshold (the rest: unknown)",
             f"{'threshold':>9}  {'coverage':>8}  {'accuracy':>8}  {'answered':>8}"]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        lines.append(f"{r['threshold']:>9g}  {r['coverage']:>8.4f}  {acc:>8}  {r['answered']:>8}")
    return "\n".join(lines) + "\n"
