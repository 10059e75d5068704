"""Calibration: reliability bins and ECE against scikit-learn's binning, temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from softmax_cli.calibration import (expected_calibration_error, fit_temperature, negative_log_likelihood,
                                     reliability_bins)
from softmax_cli.nn import softmax


def test_bins_match_scikit_learns_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    proba = softmax(rng.normal(0, 3, size=(500, 4)))
    y = rng.integers(0, 4, 500)
    bins = reliability_bins(proba, y, n_bins=15)
    right = proba.argmax(1) == y
    prob_true, prob_pred = calibration_curve(right, proba.max(1), n_bins=15, strategy="uniform")
    used = bins.count > 0
    np.testing.assert_allclose(bins.accuracy[used], prob_true, rtol=1e-12)
    np.testing.assert_allclose(bins.confidence[used], prob_pred, rtol=1e-12)
    assert bins.count.sum() == 500 and len(bins.edges) == 16


def test_ece_by_hand_on_a_small_example():
    # confidences 0.9, 0.9 (one right) and 0.6 (right): bins (0.8667, 0.9333] and (0.5333, 0.6]
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])
    y = np.array([0, 0, 0])
    # bin of 0.9: conf 0.9, acc 0.5, weight 2/3; bin of 0.6: conf 0.6, acc 1, weight 1/3
    assert expected_calibration_error(proba, y) == pytest.approx(2 / 3 * 0.4 + 1 / 3 * 0.4)


def test_a_calibrated_model_has_near_zero_ece_and_an_overconfident_one_does_not():
    rng = np.random.default_rng(1)
    n, K = 20000, 5
    logits = rng.normal(0, 2, size=(n, K))
    proba = softmax(logits)
    y = np.array([rng.choice(K, p=p) for p in proba])      # labels drawn from the model itself
    assert expected_calibration_error(proba, y) < 0.02
    assert expected_calibration_error(softmax(3 * logits), y) > 0.1


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(2)
    n, K, T = 20000, 10, 2.5
    logits = rng.normal(0, 4, size=(n, K))
    y = np.array([rng.choice(K, p=p) for p in softmax(logits / T)])
    fitted = fit_temperature(logits, y)
    assert fitted == pytest.approx(T, rel=0.05)
    nll = negative_log_likelihood(logits, y, fitted)
    assert nll < negative_log_likelihood(logits, y) and nll <= negative_log_likelihood(logits, y, T) + 1e-9
    assert nll < negative_log_likelihood(logits, y, fitted * 1.1)
    assert nll < negative_log_likelihood(logits, y, fitted / 1.1)


def test_temperature_never_changes_the_predicted_class():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 5, size=(1000, 10))
    for T in (0.1, 0.7, 3.0, 19.0):
        assert np.array_equal(softmax(logits / T).argmax(1), logits.argmax(1))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        reliability_bins(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((3, 2)), np.zeros(4, int))
