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


def test_no_temperature_is_fitted_when_the_validation_nll_has_no_minimum():
    """Every validation image right: the NLL falls as T -> 0, and the search's end (0.05)
    would make the test split's mistakes near-certain. T stays 1 and the record says why."""
    from softmax_cli.calibration import calibration_record

    rng = np.random.default_rng(4)
    val = rng.normal(0, 1, size=(200, 10))
    y_val = val.argmax(1)                                   # no validation mistake
    test = rng.normal(0, 1, size=(200, 10))
    y_test = rng.integers(0, 10, 200)                       # many test mistakes
    assert fit_temperature(val, y_val) == pytest.approx(0.05, rel=1e-3)
    record = calibration_record(val, y_val, test, y_test)
    assert record["temperature"] == 1.0 and "no minimum" in record["note"]
    assert record["test_nll_after"] == record["test_nll_before"]
    y_val[:40] = (y_val[:40] + 1) % 10                      # with mistakes, a minimum inside: fitted
    record = calibration_record(val, y_val)
    assert "note" not in record and 0.05 < record["temperature"] < 20


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


# ------------------------------------------------------------------ in training, eval, predict
def _train(cwd, *sets):
    import json

    from conftest import CONFIGS, run_softmax

    proc = run_softmax("train", CONFIGS / "digits.yaml", "--json", "--quiet", "--set", "train.epochs=4",
                       "--set", "model.hidden=[64]", *[a for s in sets for a in ("--set", s)], cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_temperature_scaling_changes_probabilities_never_answers(tmp_path):
    import json

    from conftest import run_softmax
    from softmax_cli.checkpoint import load_checkpoint

    on = _train(tmp_path, "name=on")
    off = _train(tmp_path, "name=off", "train.calibration=null")
    cal = on["calibration"]
    assert off["calibration"] is None and cal["method"] == "temperature" and cal["fitted_on"] == "val"
    T = cal["temperature"]
    assert T != 1.0 and cal["val_nll_after"] < cal["val_nll_before"]
    assert on["test_acc"] == off["test_acc"]                   # by construction
    a, b = load_checkpoint(tmp_path / on["best_checkpoint"]), load_checkpoint(tmp_path / off["best_checkpoint"])
    assert a.temperature == T and b.temperature == 1.0 and "calibration" not in b.meta
    for Wa, Wb in zip(a.model.params, b.model.params):           # calibration comes after training
        np.testing.assert_array_equal(Wa, Wb)
    ev_on = json.loads(run_softmax("eval", on["best_checkpoint"], "--json", cwd=tmp_path).stdout)
    ev_off = json.loads(run_softmax("eval", off["best_checkpoint"], "--json", cwd=tmp_path).stdout)
    assert ev_on["confusion_matrix"] == ev_off["confusion_matrix"] and ev_on["accuracy"] == ev_off["accuracy"]
    assert ev_on["temperature"] == T and ev_off["temperature"] == 1.0
    assert ev_on["loss"] == pytest.approx(on["test_loss"], rel=1e-5)       # the calibrated NLL both times
    assert ev_on["ece"] == pytest.approx(cal["test_ece_after"], abs=1e-6)
    assert ev_off["ece"] == pytest.approx(cal["test_ece_before"], abs=1e-6)
    assert ev_on["loss"] == pytest.approx(cal["test_nll_after"], rel=1e-5)
    assert ev_off["loss"] == pytest.approx(cal["test_nll_before"], rel=1e-5)

    # predict answers the same class with the calibrated probability, softmax(z / T)
    from conftest import SAMPLES
    from softmax_cli.data.images import image_to_input
    from softmax_cli.nn import softmax

    for ckpt in (a, b):
        out = json.loads(run_softmax("predict", SAMPLES / "digits-3.png", "-c", ckpt.path, "--json",
                                     cwd=tmp_path).stdout)
        answer = out[0] if isinstance(out, list) else out        # --json: one document
        x = image_to_input(SAMPLES / "digits-3.png", ckpt.image_shape, ckpt.preprocessor.pixel_max, "uci_digits")
        expected = softmax(ckpt.logits(x[None]).astype(np.float64), ckpt.temperature)[0]
        assert answer["probability"] == pytest.approx(float(expected.max()), rel=1e-5)
        assert answer["class"] == str(int(expected.argmax()))


def test_eval_text_and_report_show_calibration(digits_run, tmp_path):
    from conftest import run_softmax

    proc = run_softmax("eval", digits_run["best_checkpoint"], "--report", tmp_path / "r", cwd=digits_run["cwd"])
    assert proc.returncode == 0, proc.stderr
    assert "ECE         0." in proc.stdout and "temperature" in proc.stdout
    report = (tmp_path / "r" / "report.md").read_text()
    assert "| ECE |" in report and "![reliability diagram](reliability.png)" in report
    from PIL import Image

    with Image.open(tmp_path / "r" / "reliability.png") as im:
        assert im.size == (800, 700)
        assert np.asarray(im.convert("L")).std() > 10


def test_a_checkpoint_with_an_impossible_temperature_is_refused(digits_run, tmp_path):
    import json

    from conftest import assert_user_error, run_softmax

    with np.load(digits_run["best_checkpoint"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["metadata"]))
    for i, bad in enumerate((0, -1.5, "1.2", None, True)):
        meta["calibration"] = {"method": "temperature", "temperature": bad}
        np.savez(tmp_path / f"bad{i}.npz", **{**arrays, "metadata": np.array(json.dumps(meta))})
        assert_user_error(run_softmax("inspect", f"bad{i}.npz", cwd=tmp_path), f"bad{i}.npz",
                          "not a softmax checkpoint", "temperature that is a finite number > 0")


def test_the_training_conditions_named_on_the_curves():
    from softmax_cli.config import config_from_dict
    from softmax_cli.engine.loop import train_conditions

    assert train_conditions(config_from_dict({})) == ()
    cfg = config_from_dict({"model": {"dropout": [0.0, 0.2], "hidden": [8, 8]}, "train": {"label_smoothing": 0.1,
                                                                                           "augment": {"shift": 1}}})
    assert train_conditions(cfg) == ("dropout", "label smoothing", "augmentation")
    assert train_conditions(config_from_dict({"model": {"input_dropout": 0.1}})) == ("dropout",)
