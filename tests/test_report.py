"""Pictures out: training curves, the eval report (confusion matrix, worst mistakes, per-class
CSV, report.md) and ``softmax inspect``, through the real ``softmax`` command where it matters."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, assert_user_error, run_softmax


def open_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The RGB pixels of the PNG ``path``, after checking its size (width, height) and that
    it is not blank (one flat colour has a pixel standard deviation of 0)."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG", path
        assert im.size == size, (path, im.size)
        pixels = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 10, f"{path} looks blank (pixel standard deviation {pixels.std():.2f})"
    return pixels


ROWS = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 1 - 0.5 / e, "val_loss": 2.2 / e + 0.01 * e,
         "val_acc": 0.9 - 0.4 / e, "lr": 0.001, "epoch_time_s": 0.1} for e in range(1, 9)]


# ------------------------------------------------------------------------------ curves.png
def test_training_writes_its_curves(digits_run):
    open_png(digits_run["cwd"] / digits_run["run_dir"] / "curves.png", (1000, 400))


def test_the_curves_mark_the_best_epoch(tmp_path):
    from softmax_cli.report import plot_curves

    pictures = {}
    for best in (0, 3, 6):
        plot_curves(tmp_path / f"best{best}.png", ROWS, best, "val_loss")
        pictures[best] = open_png(tmp_path / f"best{best}.png", (1000, 400))
    assert not np.array_equal(pictures[0], pictures[3])      # a marked epoch is drawn
    assert not np.array_equal(pictures[3], pictures[6])      # ... where it is
    with pytest.raises(ValueError, match="no epochs"):
        plot_curves(tmp_path / "none.png", [], 0)
    assert not (tmp_path / "none.png").exists()


def test_the_curves_are_redrawn_when_due_and_always_when_forced(tmp_path):
    from softmax_cli.training import CurvesWriter

    path = tmp_path / "curves.png"
    writer = CurvesWriter(path, "val_loss", every_s=3600)
    writer.update([], 0, force=True)                         # no epoch yet: nothing to draw
    assert not path.exists()
    writer.update(ROWS[:1], 1)                               # the first epoch is drawn at once
    assert path.exists()
    path.unlink()
    writer.update(ROWS[:2], 2)                               # within every_s: not redrawn
    assert not path.exists()
    writer.update(ROWS[:2], 2, force=True)                   # the end of training: always
    open_png(path, (1000, 400))
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_run_without_validation_split_draws_its_training_curves(tmp_path):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--set", "data.val_fraction=0", "--set", "train.epochs=2",
                       "--set", "train.early_stopping=null", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    open_png(tmp_path / "runs" / "digits" / "curves.png", (1000, 400))
