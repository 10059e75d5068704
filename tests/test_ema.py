"""train.ema: the exponential moving average of the weights is the formula's, and it is what is
validated, kept in best.npz and tested."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import CONFIGS, assert_user_error, run_softmax
from softmax_cli.ema import WeightAverage
from softmax_cli.engine.step import StepSettings, train_epoch
from softmax_cli.nn import MLP
from softmax_cli.optim import make_optimizer

SMALL = ("--set", "model.hidden=[16]", "--set", "train.augment=null", "--set", "train.optimizer.lr=0.01",
         "--set", "train.schedule={name: constant}", "--quiet", "--json")


def test_the_average_after_two_steps_is_the_formula():
    rng = np.random.default_rng(0)
    p0, p1, p2 = (rng.normal(size=(3, 4)) for _ in range(3))
    params = [p0.copy()]
    avg = WeightAverage(params, decay=0.9)
    for p in (p1, p2):
        params[0][...] = p
        avg.update(params)
    # θ̄_2 = β² θ_0 + β (1 - β) θ_1 + (1 - β) θ_2
    np.testing.assert_allclose(avg.averaged[0], 0.81 * p0 + 0.09 * p1 + 0.1 * p2, rtol=1e-12)
    assert avg.averaged[0] is not params[0]


def test_training_steps_update_the_average_from_the_stepped_weights():
    """Through the engine's own epoch: after each of two batches the average moves by the
    formula towards the weights the optimiser left."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 3, 8)
    model = MLP([5, 4, 3], "relu", dtype=np.float32, rng=rng)
    initial = [p.copy() for p in model.params]
    opt = make_optimizer("adam", model.params, decay=[True, False] * 2, lr=0.1)
    settings = StepSettings(ema=WeightAverage(model.params, decay=0.75))
    seen = []
    train_epoch(model, opt, X, y, np.arange(8), model.workspace(4), settings=settings,
                on_batch=lambda *_: seen.append([p.copy() for p in model.params]))
    assert len(seen) == 2
    for avg, p0, p1, p2 in zip(settings.ema.averaged, initial, *seen):
        assert not np.allclose(p1, p0) and not np.allclose(p2, p1)      # the weights moved
        np.testing.assert_allclose(avg, 0.75**2 * p0 + 0.75 * 0.25 * p1 + 0.25 * p2, rtol=1e-5, atol=1e-7)


def test_validation_best_npz_and_the_test_use_the_averaged_weights(tmp_path):
    """With a decay so close to 1 that the average stays at the initial weights, the epoch's
    validation accuracy, best.npz and the test accuracy are those of the initial weights,
    while last.npz holds the trained ones."""
    proc = run_softmax("train", CONFIGS / "digits.yaml", *SMALL, "--set", "train.epochs=2",
                       "--set", "train.ema=0.999999999", "--set", "train.calibration=null", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    run = tmp_path / "runs" / "digits"
    with np.load(run / "best.npz") as best, np.load(run / "last.npz") as last:
        initial = MLP([64, 16, 10], "relu", dtype=np.float32, rng=np.random.default_rng(0)).params
        for i, p in enumerate(initial):
            name = f"{'Wb'[i % 2]}{i // 2}"
            np.testing.assert_allclose(best[name], p, rtol=1e-5, atol=1e-6, err_msg=name)
            if name.startswith("W"):
                assert not np.allclose(last[name], p, atol=1e-3), name           # trained
            np.testing.assert_allclose(last[f"opt_ema{i}"], best[name].reshape(-1), rtol=1e-5, atol=1e-6)
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val = run_softmax("eval", run / "best.npz", "--split", "val", "--json", cwd=tmp_path)
    test = run_softmax("eval", run / "best.npz", "--json", cwd=tmp_path)
    assert val.returncode == 0 and test.returncode == 0, val.stderr + test.stderr
    assert float(rows[int(summary["best_epoch"]) - 1]["val_acc"]) == pytest.approx(json.loads(val.stdout)["accuracy"])
    assert summary["test_acc"] == pytest.approx(json.loads(test.stdout)["accuracy"])
    assert float(rows[-1]["train_acc"]) > 0.5 > summary["test_acc"]     # trained weights, initial average


@pytest.mark.parametrize("value, expected", [("1", "expected a value > 0 and < 1, got 1.0"),
                                             ("0", "expected a value > 0 and < 1, got 0.0"),
                                             ("fast", "expected a finite number, got 'fast'")])
def test_a_bad_decay_is_refused(tmp_path, value, expected):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--set", f"train.ema={value}", cwd=tmp_path)
    assert_user_error(proc, "train.ema", expected)
    assert not (tmp_path / "runs").exists()
