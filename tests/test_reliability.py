"""No work lost: interrupt and resume bit for bit, same seed same result, failed saves."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CONFIGS, assert_user_error, run_softmax

# long enough to be interrupted mid-way (batches of 4), with the shipped config's dropout,
# augmentation and cosine schedule, whose random draws and lr must resume exactly too
LONG = ("--set", "train.batch_size=4", "--set", "train.epochs=8", "--set", "train.early_stopping=null",
        "--set", "model.hidden=[32]", "--quiet")


def metrics(run_dir: Path) -> list[dict]:
    """metrics.csv without the time column."""
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != "metadata"}


def assert_same_run(a: Path, b: Path) -> None:
    assert metrics(a) == metrics(b)
    for name in ("best.npz", "last.npz"):
        x, y = arrays(a / name), arrays(b / name)
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"{name}:{key}")


# The real command with a callback of its own added to the run's (tests only): it sends
# itself a signal at the end of an epoch, or waits after a batch of an epoch for a signal
# from outside, so that where the signal lands is known, never left to timing.
#   python -c HOOKED at-epoch-end EPOCH SIGNAL train ...   signal at the end of epoch EPOCH
#   python -c HOOKED mid-epoch EPOCH ROWS:MARKER train ... after ROWS rows of epoch EPOCH,
#                                                           touch MARKER and wait for a signal
HOOKED = """
import os, signal, sys, time
from pathlib import Path
from softmax_cli.engine.callbacks import Callback
from softmax_cli.engine.loop import Trainer

mode, epoch, arg = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class AtEpochEnd(Callback):
    def on_epoch_end(self, state, metrics):          # after the run's own (files written)
        if state.epoch == epoch:
            os.kill(os.getpid(), signal.Signals[arg])

class WaitMidEpoch(Callback):
    def on_batch_end(self, state, rows_done, loss_sum):
        rows, marker = arg.split(":", 1)
        if state.epoch + 1 == epoch and rows_done == int(rows):
            arrived = []
            for sig in (signal.SIGINT, signal.SIGTERM):   # the run's handlers, and note the arrival
                handler = signal.getsignal(sig)
                signal.signal(sig, lambda n, f, h=handler: (arrived.append(n), h(n, f)))
            Path(marker).touch()
            deadline = time.monotonic() + 120
            while not arrived and time.monotonic() < deadline:
                time.sleep(0.01)

hook = {"at-epoch-end": AtEpochEnd, "mid-epoch": WaitMidEpoch}[mode]()
real = Trainer.standard_callbacks
Trainer.standard_callbacks = lambda self, *a, **k: [*real(self, *a, **k), hook]
from softmax_cli.cli import main
sys.argv = ["softmax", *sys.argv[4:]]
main()
"""


def wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, ("training ended before it could be interrupted", proc.communicate())
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.02)


def train_state(checkpoint: Path) -> dict:
    return json.loads(str(np.load(checkpoint)["metadata"]))["train_state"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_run_resumes_to_the_same_weights_and_metrics(tmp_path, sig):
    # the signal comes from outside while epoch 4 waits after its 100th batch (400 rows)
    marker = tmp_path / "waiting"
    proc = subprocess.Popen([sys.executable, "-c", HOOKED, "mid-epoch", "4", f"400:{marker}", "train",
                             str(CONFIGS / "digits.yaml"), *LONG, "--set", "name=cut"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "runs" / "cut"
    wait_for(marker, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"softmax: interrupted: {sig.name} in epoch 4 after 400 of 1293 training images" in stderr
    assert "softmax train --resume" in stderr and "last.npz" in stderr
    state = train_state(run / "last.npz")
    assert (state["epoch"], state["rows_done"]) == (3, 400)           # where it landed: mid-epoch
    assert not list(run.glob(".*.tmp"))
    with Image.open(run / "curves.png") as im:      # drawn on the interrupt, whole
        im.load()
        assert im.size == (1000, 400)

    resumed = run_softmax("train", "--resume", run / "last.npz", "--quiet", "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert Path(json.loads(resumed.stdout)["run_dir"]) == run
    whole = run_softmax("train", CONFIGS / "digits.yaml", *LONG, "--set", "name=whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert len(metrics(run)) == 8
    assert_same_run(run, tmp_path / "runs" / "whole")
    # the resumed run's final curves show all 8 epochs exactly as the uninterrupted run's do
    pictures = [np.asarray(Image.open(r / "curves.png").convert("RGB")) for r in (run, tmp_path / "runs" / "whole")]
    np.testing.assert_array_equal(*pictures)


def test_an_interrupted_run_resumes_its_weight_average_bit_for_bit(tmp_path):
    """train.ema: last.npz keeps the average beside the weights, and an interrupted run's
    best.npz (the average) is what the resumed one compares against."""
    args = [*LONG, "--set", "train.ema=0.99"]
    marker = tmp_path / "waiting"              # the signal lands after 400 rows of epoch 4
    proc = subprocess.Popen([sys.executable, "-c", HOOKED, "mid-epoch", "4", f"400:{marker}", "train",
                             str(CONFIGS / "digits.yaml"), *args, "--set", "name=cut"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "runs" / "cut"
    wait_for(marker, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert (train_state(run / "last.npz")["epoch"], train_state(run / "last.npz")["rows_done"]) == (3, 400)
    saved = arrays(run / "last.npz")
    assert {"opt_ema0", "opt_ema1", "opt_ema2", "opt_ema3"} <= saved.keys()
    assert not np.array_equal(saved["opt_ema0"], saved["W0"].reshape(-1))      # the average, not the weights
    resumed = run_softmax("train", "--resume", run / "last.npz", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    whole = run_softmax("train", CONFIGS / "digits.yaml", *args, "--set", "name=whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert_same_run(run, tmp_path / "runs" / "whole")


def test_same_config_and_seed_give_the_same_checkpoints_and_metrics(tmp_path):
    args = ("train", CONFIGS / "digits.yaml", "--set", "train.epochs=4", "--quiet")
    for name in ("a", "b"):
        assert run_softmax(*args, "--set", f"name={name}", cwd=tmp_path).returncode == 0
    assert_same_run(tmp_path / "runs" / "a", tmp_path / "runs" / "b")
    assert run_softmax(*args, "--set", "name=c", "--set", "seed=1", cwd=tmp_path).returncode == 0
    assert metrics(tmp_path / "runs" / "c") != metrics(tmp_path / "runs" / "a")


def test_resume_refuses_what_it_cannot_continue(digits_run, tmp_path):
    run = digits_run["cwd"] / "runs" / "digits"
    assert_user_error(run_softmax("train", "--resume", run / "last.npz", cwd=tmp_path),
                      "last.npz", "already finished")
    assert_user_error(run_softmax("train", "--resume", run / "best.npz", cwd=tmp_path),
                      "best.npz", "no training state", "last.npz")
    # a last.npz whose training state lacks a key (as one from before the lr schedules lacks "lr")
    with np.load(run / "last.npz", allow_pickle=False) as npz:
        saved = {k: npz[k] for k in npz.files}
    meta = json.loads(str(saved["metadata"]))
    del meta["train_state"]["lr"]
    meta["train_state"]["epoch"] = 1                      # unfinished, so only the missing key is wrong
    saved["metadata"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old-last.npz", **saved)
    assert_user_error(run_softmax("train", "--resume", tmp_path / "old-last.npz", cwd=tmp_path),
                      "old-last.npz", "training state lacks lr", "cannot be resumed")
    assert_user_error(run_softmax("train", CONFIGS / "digits.yaml", "--resume", run / "last.npz", cwd=tmp_path),
                      "--resume", "give no CONFIG, --set or --repeat")
    assert_user_error(run_softmax("train", cwd=tmp_path), "give a CONFIG file")
    assert_user_error(run_softmax("train", "--resume", tmp_path / "nope.npz", cwd=tmp_path),
                      "nope.npz", "not found")



def rewrite_metadata(src: Path, dst: Path, change) -> None:
    """Copy the checkpoint ``src`` to ``dst`` with ``change(metadata)`` applied to its JSON."""
    with np.load(src, allow_pickle=False) as npz:
        saved = {k: npz[k] for k in npz.files}
    meta = json.loads(str(saved["metadata"]))
    change(meta)
    saved["metadata"] = np.array(json.dumps(meta))
    np.savez(dst, **saved)


@pytest.fixture(scope="module")
def unfinished_run(tmp_path_factory) -> Path:
    """A run directory whose last.npz can be resumed: 2 epochs trained, its config asking for 4
    (1293 training images, batches of 32, a validation split)."""
    cwd = tmp_path_factory.mktemp("unfinished")
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--set", "train.epochs=2", "--set", "model.hidden=[16]",
                       "--quiet", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    run = cwd / "runs" / "digits"
    rewrite_metadata(run / "last.npz", run / "last.npz", lambda meta: meta["config"]["train"].update(epochs=4))
    return run


def mid_epoch(state: dict, **values) -> None:
    """As if interrupted after the first batch of epoch 3 (then the sums and epoch_rng count)."""
    state.update(rows_done=32, loss_sum=70.0, correct=5)
    state.update(values)


# (what is done to the training state, what the error line must say: the key, then what the
# config's schema machinery says of it, as of a bad config value)
DAMAGED_STATES = {
    "epoch-str": (lambda s: s.update(epoch="x"), "epoch: expected an integer, got 'x'"),
    "epoch-bool": (lambda s: s.update(epoch=True), "epoch: expected an integer, got True"),
    "rows_done-negative": (lambda s: s.update(rows_done=-5), "rows_done: expected a value >= 0, got -5"),
    "rows_done-too-large": (lambda s: s.update(rows_done=10**6),
                            "rows_done: expected a value < 1293 (the training images), got 1000000"),
    "loss_sum-str": (lambda s: mid_epoch(s, loss_sum="x"), "loss_sum: expected a finite number, got 'x'"),
    "correct-above-rows_done": (lambda s: mid_epoch(s, correct=33),
                                "correct: expected a value <= 32 (rows_done), got 33"),
    "epoch_rng-null": (lambda s: mid_epoch(s, epoch_rng=None),
                       "epoch_rng: expected a state of NumPy's default generator (PCG64), got None"),
    "rng-negative": (lambda s: s["rng"]["state"].update(state=-1),
                     "rng: expected a state of NumPy's default generator (PCG64)"),
    "rows-short": (lambda s: s.update(rows=s["rows"][:1]),
                   "rows: expected a list of 2 metrics rows (one per epoch done), got [{'epoch': 1"),
    "rows-key-missing": (lambda s: s["rows"][1].pop("train_loss"), "rows[1]: lacks train_loss; expected the keys"),
    "rows-epoch-order": (lambda s: s["rows"][1].update(epoch=3), "rows[1].epoch: expected 2, got 3"),
    "rows-loss-str": (lambda s: s["rows"][0].update(train_loss="x"),
                      "rows[0].train_loss: expected a finite number, got 'x'"),
    "unknown-key": (lambda s: s.update(bogus=1), "bogus: unknown key; allowed: epoch, rows_done"),
    "best_epoch-beyond": (lambda s: s.update(best_epoch=3), "best_epoch: expected a value in 1..2"),
    "stale-negative": (lambda s: s.update(stale=-1), "stale: expected a value >= 0, got -1"),
    "lr-zero": (lambda s: s.update(lr=0), "lr: expected a value > 0, got 0.0"),
    "t-str": (lambda s: s.update(t="x"), "t: expected an integer, got 'x'"),
}


def run_files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


# through the real command: one refused where the checkpoint is read, one where the data is
THROUGH_THE_CLI = ("epoch-str", "rows_done-too-large")


@pytest.mark.parametrize("damage, message", [DAMAGED_STATES[k] for k in THROUGH_THE_CLI], ids=THROUGH_THE_CLI)
def test_resume_refuses_a_damaged_training_state_and_leaves_the_run_as_it_was(unfinished_run, tmp_path,
                                                                             damage, message):
    run = tmp_path / "runs" / "digits"
    shutil.copytree(unfinished_run, run)
    rewrite_metadata(run / "last.npz", run / "last.npz", lambda meta: damage(meta["train_state"]))
    before = run_files(run)
    proc = run_softmax("train", "--resume", run / "last.npz", "--quiet", cwd=tmp_path)
    assert_user_error(proc, f"{run / 'last.npz'}: its training state is damaged: {message}")
    assert run_files(run) == before            # metrics.csv, last.npz, best.npz, curves.png: unchanged


@pytest.mark.parametrize("damage, message", DAMAGED_STATES.values(), ids=DAMAGED_STATES.keys())
def test_every_damaged_field_is_named(unfinished_run, tmp_path, damage, message):
    # what the command above runs, in this process (a subprocess per case costs seconds):
    # the checkpoint and its config as `softmax train --resume` loads them, then train()
    from softmax_cli.checkpoint import load_checkpoint
    from softmax_cli.config import config_from_dict
    from softmax_cli.errors import UserError
    from softmax_cli.engine import train

    run = tmp_path / "runs" / "digits"
    shutil.copytree(unfinished_run, run)
    rewrite_metadata(run / "last.npz", run / "last.npz", lambda meta: damage(meta["train_state"]))
    before = run_files(run)
    ckpt = load_checkpoint(run / "last.npz")
    with pytest.raises(UserError) as caught:
        train(config_from_dict(ckpt.meta["config"]), resume=ckpt)
    assert str(caught.value).startswith(f"{run / 'last.npz'}: its training state is damaged: {message}")
    assert run_files(run) == before

# A failed save, simulated inside the real command: np.savez raises ENOSPC from the 3rd call on
FAIL_SAVES = """
import errno, sys, numpy as np
import softmax_cli.checkpoint as ck
calls = {"n": 0}
real = np.savez
def savez(*a, **k):
    calls["n"] += 1
    if calls["n"] >= 3:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(*a, **k)
ck.np.savez = savez
from softmax_cli.cli import main
sys.argv = ["softmax", *sys.argv[1:]]
main()
"""


def test_a_failed_save_keeps_the_previous_checkpoint_and_says_what_failed(tmp_path):
    proc = subprocess.run([sys.executable, "-c", FAIL_SAVES, "train", str(CONFIGS / "digits.yaml"),
                           "--set", "train.epochs=5", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("softmax: error: ") and "No space left on device" in line
    assert ".npz" in line                              # names the file it was writing
    run = tmp_path / "runs" / "digits"
    # epoch 1 wrote best.npz and last.npz; epoch 2's save failed: both epoch-1 files intact
    for name in ("best.npz", "last.npz"):
        meta = json.loads(str(np.load(run / name)["metadata"]))
        assert meta["epoch"] == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert run_softmax("eval", run / "best.npz", cwd=tmp_path).returncode == 0


def test_a_run_diverging_after_good_epochs_keeps_their_checkpoints(tmp_path, monkeypatch):
    # the validation loss of epoch 3 is made NaN: epochs 1-2 stay saved and the message says so
    import softmax_cli.engine.loop as training
    from softmax_cli.checkpoint import load_checkpoint
    from softmax_cli.config import load_config

    real, calls = training.evaluate, []

    def evaluate(model, X, y):
        calls.append(1)
        ev = real(model, X, y)
        if len(calls) == 3:
            ev.loss = float("nan")
        return ev

    monkeypatch.setattr(training, "evaluate", evaluate)
    cfg = load_config(CONFIGS / "digits.yaml", ["train.epochs=5", "model.hidden=[16]", f"output.dir={tmp_path}"])
    with pytest.raises(FloatingPointError) as caught:
        training.train(cfg)
    assert str(caught.value) == (f"epoch 3: the val loss became nan; try a lower train.optimizer.lr "
                                 f"({tmp_path / 'digits' / 'last.npz'} holds epoch 2, the last good one)")
    assert load_checkpoint(tmp_path / "digits" / "last.npz").meta["epoch"] == 2
    assert load_checkpoint(tmp_path / "digits" / "best.npz").meta["epoch"] in (1, 2)
    with open(tmp_path / "digits" / "metrics.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2"]


# ------------------------------------------------------------ an interrupt in the last epoch
# A signal sent by the real command to itself at a chosen moment: the COUNT-th call of
# Optimizer.step (a batch's step) or of MLP.logits (an epoch's validation, then the test)
SIGNAL_AT = """
import os, signal, sys
from softmax_cli.nn import MLP
from softmax_cli.optim import Optimizer
cls, name = {"step": (Optimizer, "step"), "logits": (MLP, "logits")}[sys.argv[1]]
count, calls, real = int(sys.argv[2]), [], getattr(cls, name)
def hooked(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == count:
        os.kill(os.getpid(), signal.SIGINT)
    return real(self, *args, **kwargs)
setattr(cls, name, hooked)
from softmax_cli.cli import main
sys.argv = ["softmax", *sys.argv[3:]]
main()
"""
SHORT = ("--set", "train.epochs=3", "--set", "model.hidden=[16]", "--set", "train.early_stopping=null",
         "--quiet", "--json")
LAST_STEP = 3 * -(-1293 // 32)      # 3 epochs of 1293 training images in batches of 32: 123 steps


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    """The uninterrupted run the interrupted ones must equal."""
    cwd = tmp_path_factory.mktemp("short")
    proc = run_softmax("train", CONFIGS / "digits.yaml", *SHORT, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd / "runs" / "digits"


@pytest.mark.parametrize("hook, count", [("step", LAST_STEP), ("logits", 3), ("logits", 4)],
                         ids=["last-batch", "last-validation", "final-test"])
def test_an_interrupt_after_the_last_batch_lets_the_run_finish(short_run, tmp_path, hook, count):
    # during the last epoch's final batch, its validation or the final test of the best
    # weights: nothing is left to resume, so the run finishes, best.npz with its test metrics
    proc = subprocess.run([sys.executable, "-c", SIGNAL_AT, hook, str(count), "train",
                           str(CONFIGS / "digits.yaml"), *SHORT], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    run = tmp_path / "runs" / "digits"
    summary = json.loads(proc.stdout)
    best = json.loads(str(np.load(run / "best.npz")["metadata"]))
    assert best["metrics"]["test_acc"] == summary["test_acc"] == \
        json.loads(str(np.load(short_run / "best.npz")["metadata"]))["metrics"]["test_acc"]
    assert_same_run(run, short_run)


def test_an_interrupt_before_the_last_batch_resumes_to_the_uninterrupted_run(short_run, tmp_path):
    proc = subprocess.run([sys.executable, "-c", SIGNAL_AT, "step", str(LAST_STEP - 1), "train",
                           str(CONFIGS / "digits.yaml"), *SHORT], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert "softmax: interrupted: SIGINT in epoch 3 after 1280 of 1293 training images" in proc.stderr
    run = tmp_path / "runs" / "digits"
    resumed = run_softmax("train", "--resume", run / "last.npz", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, short_run)


def test_an_interrupt_at_an_epoch_boundary_resumes_to_the_uninterrupted_run(short_run, tmp_path, epoch=2):
    # sent by a callback at the end of an epoch: last.npz holds no partial epoch (rows_done 0,
    # as after a kill -9), so the resumed run must take up the generator where the epoch left it
    proc = subprocess.run([sys.executable, "-c", HOOKED, "at-epoch-end", str(epoch), "SIGTERM", "train",
                           str(CONFIGS / "digits.yaml"), *SHORT], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert f"softmax: interrupted: SIGTERM in epoch {epoch + 1} after 0 of 1293 training images" in proc.stderr
    run = tmp_path / "runs" / "digits"
    state = train_state(run / "last.npz")
    assert (state["epoch"], state["rows_done"]) == (epoch, 0)          # where it landed: the boundary
    assert len(metrics(run)) == epoch
    resumed = run_softmax("train", "--resume", run / "last.npz", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, short_run)


def test_a_last_npz_of_an_older_softmax_resumes(unfinished_run, tmp_path):
    # its training state also holds best_score, which is now derived from the best epoch's row
    run = tmp_path / "runs" / "digits"
    shutil.copytree(unfinished_run, run)
    rewrite_metadata(run / "last.npz", run / "last.npz",
                     lambda meta: meta["train_state"].update(best_score=[0.9, -0.3]))
    proc = run_softmax("train", "--resume", run / "last.npz", "--quiet", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["epochs_run"] == 4


def test_resume_refuses_a_last_npz_without_the_weight_average_its_config_asks_for(unfinished_run, tmp_path):
    # a last.npz whose config asks for train.ema but which holds no average (as one trained without)
    run = tmp_path / "runs" / "digits"
    shutil.copytree(unfinished_run, run)
    rewrite_metadata(run / "last.npz", run / "last.npz", lambda meta: meta["config"]["train"].update(ema=0.99))
    with np.load(run / "last.npz", allow_pickle=False) as npz:
        kept = {k: npz[k] for k in npz.files if not k.startswith("opt_ema")}
    np.savez(run / "last.npz", **kept)
    before = run_files(run)
    proc = run_softmax("train", "--resume", run / "last.npz", "--quiet", cwd=tmp_path)
    assert_user_error(proc, f"{run / 'last.npz'}: unusable training state: weight average 'ema0' missing")
    assert run_files(run) == before
