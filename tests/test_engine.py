"""The engine's parts: the training state, the monitor, the callbacks, a run without files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import CONFIGS
from softmax_cli.config import TrainConfig, config_from_dict, load_config
from softmax_cli.engine import Callback, EpochMetrics, Monitor, TrainState, run_finished, train
from softmax_cli.errors import UserError


def row(epoch, val_loss, val_acc, train_loss=1.0):
    return EpochMetrics(epoch, train_loss, 0.5, val_loss, val_acc, 0.001, 0.1)


def test_the_state_goes_through_json_and_back_unchanged():
    rng = np.random.default_rng(3)
    rng.random()
    state = TrainState(epoch=2, rows_done=64, loss_sum=70.5, correct=40, epoch_rng=rng.bit_generator.state,
                       rows=[row(1, 0.9, 0.7), EpochMetrics(2, 0.8, 0.75, None, None, 0.002, 0.2)],
                       best_epoch=1, stale=1, lr=0.002, t=80, rng=rng.bit_generator.state)
    saved = state.to_json()
    assert saved["rows"][1]["val_loss"] == ""                  # as metrics.csv's empty cell
    assert TrainState.from_json(saved) == state
    with pytest.raises(UserError, match=r"^rows\[0\].train_acc: expected a value >= 0 and <= 1, got 1.5$"):
        TrainState.from_json({**saved, "rows": [{**saved["rows"][0], "train_acc": 1.5}, saved["rows"][1]]})
    with pytest.raises(UserError, match=r"^rows\[1\].val_loss: expected a number, got None$"):
        TrainState.from_json(saved).check(has_val=True)


def test_one_rule_says_when_a_run_is_finished():
    assert run_finished(30, 0, 30, None) and not run_finished(29, 100, 30, None)
    assert run_finished(5, 3, 30, 3) and not run_finished(5, 2, 30, 3)
    state = TrainState(epoch=4, stale=2, best_epoch=2)
    tc = TrainConfig(epochs=10)
    assert not state.finished(tc)
    assert state.finished(config_from_dict({"train": {"epochs": 10, "early_stopping": {"patience": 2}}}).train)


def test_the_monitor_keeps_the_best_epoch_and_counts_the_epochs_since():
    monitor = Monitor("val_acc", min_delta=0.0, patience=None)
    state = TrainState()
    params = [np.zeros(2)]
    history = [(0.9, 0.80), (0.8, 0.80), (0.7, 0.80), (0.95, 0.90), (0.5, 0.85)]
    improved = []
    for epoch, (loss, acc) in enumerate(history, start=1):
        state.rows.append(row(epoch, loss, acc))
        params[0][:] = epoch
        improved.append(monitor.update(state, params))
    # epoch 2 and 3 tie epoch 1 on accuracy and win on loss; epoch 5 has a lower accuracy
    assert improved == [True, True, True, True, False]
    assert state.best_epoch == 4 and state.stale == 1 and monitor.best_params[0][0] == 4
    by_loss, state = Monitor("val_loss", min_delta=0.15), TrainState()
    for epoch, (loss, acc) in enumerate(history, start=1):
        state.rows.append(row(epoch, loss, acc))
        by_loss.update(state, params)
    # 0.8 and 0.7 are not 0.15 below 0.9; 0.5 is 0.4 below it
    assert state.best_epoch == 5 and state.stale == 0
    assert Monitor.for_run(TrainConfig(monitor="val_acc"), has_val=False).metric == "train_acc"


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_start(self, state):
        self.calls.append(("start", state.epoch))

    def on_epoch_start(self, state):
        self.calls.append(("epoch", state.epoch + 1))

    def on_batch_end(self, state, rows_done, loss_sum):
        assert 0 < rows_done <= 1293 and math.isfinite(loss_sum)
        if not self.calls[-1][0] == "batch":
            self.calls.append(("batch", 0))
        self.calls[-1] = ("batch", self.calls[-1][1] + 1)

    def on_epoch_end(self, state, metrics):
        assert state.rows[-1].as_dict() == metrics and state.epoch == metrics["epoch"]
        self.calls.append(("end", metrics["epoch"]))

    def on_train_end(self, state, result):
        self.calls.append(("done", result.outcome))


def test_a_run_without_files_calls_every_hook_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(CONFIGS / "digits.yaml", ["train.epochs=2", "model.hidden=[8]", "train.batch_size=256"])
    recorder = Recorder()
    result = train(cfg, callbacks=[recorder], write_run=False)
    batches = -(-1293 // 256)
    assert recorder.calls == [("start", 0), ("epoch", 1), ("batch", batches), ("end", 1),
                              ("epoch", 2), ("batch", batches), ("end", 2), ("done", "finished")]
    assert result.run_dir is None and result.outcome == "finished" and result.epochs_run == 2
    assert 0 < result.test_acc <= 1 and result.model is not None
    assert list(tmp_path.iterdir()) == []                    # nothing written
