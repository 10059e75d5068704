"""Calibration: how well predicted probabilities match how often the answers are right, and
temperature scaling, which makes them match better without changing a single answer.

A model is calibrated when, of the answers given with confidence ``p``, a fraction ``p`` is
right. Label smoothing, dropout and early stopping all move a network away from that.
Measured here (Guo et al. 2017, "On calibration of modern neural networks", section 2):

- the reliability bins: the confidences ``max_k p_ik`` split into ``M`` equal-width bins
  ``B_1 .. B_M`` of [0, 1] (the binning of scikit-learn's
  ``calibration_curve(strategy="uniform")``: bin ``m`` holds ``((m-1)/M, m/M]``, the first
  also 0); per bin, the count ``|B_m|``, the mean confidence ``conf(B_m)`` and the accuracy
  ``acc(B_m)``;
- the expected calibration error ``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` (eq. 3;
  Naeini et al. 2015), with ``M = 15`` as in Guo et al.'s experiments;
- the negative log-likelihood ``NLL = -(1/n) sum_i ln p_{i, y_i}``: the cross-entropy of the
  true labels, computed from the logits through log-softmax (:func:`~softmax_cli.nn.cross_entropy`).

Temperature scaling (Guo et al. 2017, section 4.2) divides every logit vector by one scalar
``T > 0`` before the softmax, ``p_i = softmax(z_i / T)``, with ``T`` chosen to minimise the
NLL on the validation split. Dividing by a positive number keeps the order of the logits, so
the predicted class, and with it the accuracy, is unchanged by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .nn import cross_entropy

N_BINS = 15                    # Guo et al. 2017, section 5 ("M = 15 bins")
T_BOUNDS = (0.05, 20.0)        # the search range of T; a minimum at either end is no minimum (kept T = 1)


@dataclass
class ReliabilityBins:
    """Per-bin figures of a reliability diagram: ``M`` equal-width confidence bins of [0, 1].

    Attributes:
        edges: float64 (M + 1,) bin edges, ``0, 1/M, ..., 1``.
        count: int64 (M,) answers whose confidence falls in each bin.
        confidence: float64 (M,) mean confidence per bin (NaN for an empty bin).
        accuracy: float64 (M,) fraction right per bin, in [0, 1] (NaN for an empty bin).
    """

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """``sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` over the non-empty bins, in [0, 1]."""
        used = self.count > 0
        n = self.count.sum()
        return float(np.sum(self.count[used] / n * np.abs(self.accuracy[used] - self.confidence[used])))


def reliability_bins(proba: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> ReliabilityBins:
    """Bin each answer by its confidence (its highest class probability).

    Args:
        proba: (n, K) class probabilities, rows summing to 1, any float dtype; n >= 1.
        y: (n,) int true class indices in ``[0, K)``.
        n_bins: M, the number of equal-width bins of [0, 1].

    Raises:
        ValueError: ``proba`` is not 2-D, is empty, or does not match ``y``; ``n_bins`` < 1.
    """
    proba, y = np.asarray(proba), np.asarray(y)
    if proba.ndim != 2 or len(proba) == 0 or y.shape != proba.shape[:1] or n_bins < 1:
        raise ValueError(f"need (n, K) probabilities with n >= 1 and (n,) labels, and n_bins >= 1; "
                         f"got {proba.shape}, {y.shape}, {n_bins}")
    confidence = proba.max(axis=1).astype(np.float64)
    right = (proba.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")   # calibration_curve's rule
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):             # empty bins: NaN
        mean_confidence = np.bincount(which, confidence, minlength=n_bins) / count
        accuracy = np.bincount(which, right, minlength=n_bins) / count
    return ReliabilityBins(edges, count, mean_confidence, accuracy)


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> float:
    """The ECE of probabilities ``proba`` (n, K) against labels ``y`` (n,), in [0, 1]
    (0: calibrated); see :func:`reliability_bins` for the shapes and errors."""
    return reliability_bins(proba, y, n_bins).ece


def negative_log_likelihood(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """``-(1/n) sum_i ln softmax(z_i / T)_{y_i}`` (nats) of logits (n, K) and labels (n,),
    through log-softmax, so finite for any finite logits."""
    Z = np.asarray(logits, dtype=np.float64)
    return cross_entropy(Z / temperature if temperature != 1.0 else Z, np.asarray(y))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature ``T`` in :data:`T_BOUNDS` that minimises the NLL of ``softmax(z / T)``
    on held-out logits (n, K) and labels (n,) (Guo et al. 2017, section 4.2).

    The NLL is convex in ``1 / T`` (a log-sum-exp of linear functions minus a linear
    function), so a bounded scalar search (``scipy.optimize.minimize_scalar``, Brent's method
    on ``ln T``) finds the minimum to about 1e-5 in ``ln T``.

    Raises:
        ValueError: no rows, or logits and labels of different lengths.
    """
    from scipy.optimize import minimize_scalar

    Z, y = np.asarray(logits, dtype=np.float64), np.asarray(y)
    if Z.ndim != 2 or len(Z) == 0 or y.shape != Z.shape[:1]:
        raise ValueError(f"need (n, K) logits with n >= 1 and (n,) labels, got {Z.shape} and {y.shape}")
    lo, hi = np.log(T_BOUNDS)
    result = minimize_scalar(lambda log_t: cross_entropy(Z / np.exp(log_t), y), bounds=(lo, hi),
                             method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


def calibration_record(val_logits: np.ndarray, y_val: np.ndarray, test_logits: np.ndarray | None = None,
                       y_test: np.ndarray | None = None) -> dict:
    """Fit the temperature on the validation logits (:func:`fit_temperature`) and measure what
    it does: what a checkpoint stores as ``metadata["calibration"]``.

    Args:
        val_logits, y_val: (n, K) logits and (n,) int labels of the validation split, n >= 1.
        test_logits, y_test: the same of the test split, or None.

    Returns:
        ``{"method": "temperature", "temperature": T, "fitted_on": "val", "val_nll_before",
        "val_nll_after", "val_ece_before", "val_ece_after"}``, and the same four ``test_*``
        figures when test logits are given (NLL in nats, ECE in [0, 1]; plain floats). When the
        validation NLL has no minimum inside :data:`T_BOUNDS` (the fitted ``T`` at a bound, as
        when no validation image is misclassified and the NLL falls as ``T -> 0``), ``T`` is
        kept at 1 and ``"note"`` says why.
    """
    from .nn import softmax

    T = fit_temperature(val_logits, y_val)
    record = {"method": "temperature", "temperature": T, "fitted_on": "val"}
    if min(abs(np.log(T) - np.log(bound)) for bound in T_BOUNDS) < 1e-3:
        # e.g. no validation image misclassified: the NLL falls all the way to T -> 0, and a
        # T at the end of the search would make every later mistake a confident one
        record.update(temperature=1.0, note=f"not fitted: the validation NLL has no minimum for T in "
                                            f"[{T_BOUNDS[0]}, {T_BOUNDS[1]}] (its best was {T:.3g})")
        T = 1.0
    for part, Z, y in (("val", val_logits, y_val), ("test", test_logits, y_test)):
        if Z is None or not len(Z):
            continue
        for when, t in (("before", 1.0), ("after", T)):
            record[f"{part}_nll_{when}"] = negative_log_likelihood(Z, y, t)
            record[f"{part}_ece_{when}"] = expected_calibration_error(softmax(Z, t), y)
    return record
