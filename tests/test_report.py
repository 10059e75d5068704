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
    assert digits_run["curves"] == f"{digits_run['run_dir']}/curves.png"     # named in the summary
    open_png(digits_run["cwd"] / digits_run["curves"], (1000, 400))


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
    from softmax_cli.engine.callbacks import CurvesWriter

    path = tmp_path / "curves.png"
    writer = CurvesWriter(path, "val_loss", every_s=3600)
    writer.update([], 0, force=True)                         # no epoch yet: nothing to draw
    assert not path.exists()
    writer.update(ROWS[:1], 1)                               # within every_s of the start: not drawn
    assert not path.exists()
    CurvesWriter(path, "val_loss", every_s=0).update(ROWS[:1], 1)   # when due: drawn
    assert path.exists()
    path.unlink()
    writer.update(ROWS[:2], 2)                               # still within every_s: not drawn
    assert not path.exists()
    writer.update(ROWS[:2], 2, force=True)                   # the end of training: always
    open_png(path, (1000, 400))
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_run_without_validation_split_draws_its_training_curves(tmp_path):
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--set", "data.val_fraction=0", "--set", "train.epochs=2",
                       "--set", "train.early_stopping=null", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    open_png(tmp_path / "runs" / "digits" / "curves.png", (1000, 400))


# ------------------------------------------------------------------------- eval --report
def test_eval_report_writes_pictures_csv_and_a_markdown_summary(digits_run, tmp_path):
    report = tmp_path / "reports" / "digits"                 # two levels missing: created
    proc = run_softmax("eval", digits_run["best_checkpoint"], "--report", report, "--json", cwd=digits_run["cwd"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["report"] == str(report / "report.md") and "report.md" in proc.stderr
    assert sorted(p.name for p in report.iterdir()) == ["confusion_matrix.png", "errors.png", "per_class.csv",
                                                        "reliability.png", "report.md"]
    cm = np.array(result["confusion_matrix"])
    n_wrong = int(cm.sum() - np.trace(cm))
    assert n_wrong > 0                                       # the digits model makes a few mistakes

    open_png(report / "confusion_matrix.png", (1200, 560))
    shown = min(24, n_wrong)                                 # six 160-pixel tiles a row, 60 for the title
    cols, rows = min(6, shown), -(-shown // 6)
    open_png(report / "errors.png", (160 * cols, 160 * rows + 60))

    # per_class.csv: the precision and recall of the confusion matrix, the support its row sums
    with open(report / "per_class.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["class", "precision", "recall", "f1", "support"]
    assert [r["class"] for r in table] == [str(c) for c in range(10)]
    for c, r in enumerate(table):
        assert int(r["support"]) == cm[c].sum()
        assert float(r["recall"]) == pytest.approx(cm[c, c] / cm[c].sum())
        assert float(r["precision"]) == pytest.approx(cm[c, c] / cm[:, c].sum())

    text = (report / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert sorted(set(links)) == ["confusion_matrix.png", "errors.png", "per_class.csv", "reliability.png"]
    assert all((report / link).is_file() for link in links)  # relative to the report itself
    for fact in (digits_run["best_checkpoint"], "| split | test |", "| images | 360 |",
                 f"| accuracy | {result['accuracy']:.4f}", f"| loss | {result['loss']:.4f}",
                 f"| ECE | {result['ece']:.4f}", f"| temperature | {result['temperature']:.3f} |"):
        assert fact in text, fact
    rows = re.findall(r"^\| ([\d.]+) \| ([\d.]+) \| ([\d.-]+) \| (\d+) \|$", text, re.M)
    assert [(float(t), float(c), int(n)) for t, c, _, n in rows] == [
        (r["threshold"], round(r["coverage"], 4), r["answered"]) for r in result["reject_report"]]
    assert rows[0][2] == f"{result['accuracy']:.4f}"       # threshold 0 answers every image


def test_eval_report_never_overwrites_a_report(digits_run, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "errors.png").write_bytes(b"mine")
    proc = run_softmax("eval", digits_run["best_checkpoint"], "--report", report, cwd=tmp_path)
    assert_user_error(proc, str(report), "already holds errors.png", "never overwritten")
    assert proc.stdout == "" and (report / "errors.png").read_bytes() == b"mine"
    assert sorted(p.name for p in report.iterdir()) == ["errors.png"]

    (tmp_path / "file").write_text("x")
    assert_user_error(run_softmax("eval", digits_run["best_checkpoint"], "--report", tmp_path / "file", cwd=tmp_path),
                      "file: --report: exists and is not a directory")


def test_the_most_confident_mistakes_come_first():
    from softmax_cli.report import most_confident_mistakes

    y_true = np.array([0, 1, 2, 0, 1, 2])
    y_pred = np.array([1, 1, 0, 2, 0, 2])                    # rows 0, 2, 3, 4 are wrong
    proba = np.array([[0.4, 0.6, 0.0], [0, 1, 0], [0.9, 0, 0.1], [0.2, 0, 0.8], [0.6, 0.4, 0], [0, 0, 1]])
    assert most_confident_mistakes(y_true, y_pred, proba, 10).tolist() == [2, 3, 0, 4]
    assert most_confident_mistakes(y_true, y_pred, proba, 2).tolist() == [2, 3]
    assert most_confident_mistakes(y_true, y_true, proba, 10).tolist() == []


def test_a_split_without_mistakes_still_gets_its_errors_picture(tmp_path):
    from softmax_cli.report import plot_errors

    y = np.array([0, 1])
    n = plot_errors(tmp_path / "errors.png", np.zeros((2, 8, 8)), y, y, np.eye(2), ["a", "b"])
    assert n == 0
    open_png(tmp_path / "errors.png", (600, 200))


# --------------------------------------------------------------------------------- inspect
def test_inspect_prints_what_is_inside_a_checkpoint(digits_run):
    cwd, best = digits_run["cwd"], digits_run["best_checkpoint"]
    with np.load(best) as npz:
        n_params = sum(npz[k].size for k in npz.files if k[0] in "Wb" and k[1:].isdigit())
    proc = run_softmax("inspect", best, cwd=cwd)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = {line[:18].strip(): line[18:] for line in proc.stdout.splitlines()}
    assert lines["architecture"].startswith("MLP 64-512-10: 1 hidden layer (relu)")
    assert lines["parameters"] == f"{n_params:,}" == "38,410"
    assert lines["layer 1"].startswith("W0 64x512 + b0 512 = 33,280")
    assert lines["classes"] == "10: 0 1 2 3 4 5 6 7 8 9"
    assert lines["input"] == "8x8 images (uci_digits style)"
    assert lines["data"].startswith("scikit-learn digits (8x8, 1797 images); source digits")
    assert lines["preprocessing"].startswith("normalize global, pixel_max 16: x' = (x - ")
    assert lines["training config"].startswith("epochs 150, batch_size 32")
    assert lines["optimizer"].startswith("name adam, lr 0.001")
    assert lines["epoch"] == f"{digits_run['best_epoch']} (the best by val_acc)"
    assert f"test_acc {digits_run['test_acc']:.4f}" in lines["metrics"]
    assert f"val_loss {digits_run['val_loss']:.4f}" in lines["metrics"]
    assert "training state" not in lines

    info = json.loads(run_softmax("inspect", best, "--json", cwd=cwd).stdout)
    assert info["model"]["parameters"] == n_params and info["model"]["sizes"] == [64, 512, 10]
    assert info["metrics"]["test_acc"] == digits_run["test_acc"] and info["epoch"] == digits_run["best_epoch"]
    assert info["config"]["train"]["epochs"] == 150 and info["training_state"] is None

    last = json.loads(run_softmax("inspect", digits_run["last_checkpoint"], "--json", cwd=cwd).stdout)
    assert last["training_state"]["epochs_done"] == last["epoch"] == digits_run["epochs_run"]
    assert last["training_state"]["best_epoch"] == digits_run["best_epoch"]
    assert last["training_state"]["finished"] is True


def _check_weight_tiles(png, W: np.ndarray, units: list[int], cols: int, scale: int) -> None:
    """Tile ``t`` of the mosaic (row by row, ``cols`` a row) shows unit ``units[t]`` of ``W``:
    8 x 8 weights, each a ``scale`` x ``scale`` block, one grey pixel row between tiles, the
    mosaic's corner at (20, 50); a clearly positive weight is red, a negative one blue."""
    rows = -(-len(units) // cols)
    side_w, side_h = cols * 9 - 1, rows * 9 - 1
    pixels = open_png(png, (side_w * scale + 40, side_h * scale + 70))
    checked = 0
    for t, j in enumerate(units):
        r, c = divmod(t, cols)
        tile = W[:, j].reshape(8, 8) / np.abs(W[:, j]).max()
        for i, k in zip(*np.nonzero(np.abs(tile) > 0.3)):
            red, _, blue = pixels[50 + (9 * r + i) * scale + scale // 2, 20 + (9 * c + k) * scale + scale // 2]
            assert (red > blue) == (tile[i, k] > 0), (j, i, k)
            checked += 1
    assert checked > 2 * len(units)


def test_inspect_draws_the_64_units_of_largest_norm_legibly(digits_run, tmp_path):
    out = tmp_path / "w0.png"
    proc = run_softmax("inspect", digits_run["best_checkpoint"], "--weights", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "64 of 512 first-layer units (largest norms)" in proc.stderr
    with np.load(digits_run["best_checkpoint"]) as npz:
        W = npz["W0"]
    largest = np.argsort(-np.linalg.norm(W.astype(np.float64), axis=0), kind="stable")[:64]
    # 8 x 8 tiles: the mosaic is 71 weights wide, each weight 900 // 71 = 12 pixels
    _check_weight_tiles(out, W, list(largest), cols=8, scale=12)


def test_inspect_max_units_draws_every_unit(digits_run, tmp_path):
    out = tmp_path / "w0.png"
    proc = run_softmax("inspect", digits_run["best_checkpoint"], "--weights", out, "--max-units", "512",
                       cwd=tmp_path)
    assert proc.returncode == 0 and "512 first-layer units as 8x8" in proc.stderr, proc.stderr
    with np.load(digits_run["best_checkpoint"]) as npz:
        W = npz["W0"]
    order = np.argsort(-np.linalg.norm(W.astype(np.float64), axis=0), kind="stable")
    # 23 x 23 tiles, 206 weights wide: 900 // 206 = 4 pixels a weight
    _check_weight_tiles(out, W, list(order), cols=23, scale=4)


def test_inspect_refuses_a_non_checkpoint_as_eval_does(tmp_path):
    (tmp_path / "notes.npz").write_text("not an archive")
    np.save(tmp_path / "one.npy", np.zeros(3))
    for bad in ("notes.npz", "one.npy", "missing.npz"):
        inspected = run_softmax("inspect", bad, cwd=tmp_path)
        assert_user_error(inspected, bad)
        assert inspected.stderr == run_softmax("eval", bad, cwd=tmp_path).stderr
        assert inspected.stdout == ""


def test_inspect_weights_refuses_a_bad_file_name(digits_run, tmp_path):
    best = digits_run["best_checkpoint"]
    assert_user_error(run_softmax("inspect", best, "--weights", "w.jpg", cwd=tmp_path),
                      "w.jpg: --weights: expected a file name ending in .png")
    assert_user_error(run_softmax("inspect", best, "--weights", "no/such/w.png", cwd=tmp_path),
                      "no/such/w.png: --weights: the directory no/such does not exist")
    (tmp_path / "w.png").write_bytes(b"mine")
    assert_user_error(run_softmax("inspect", best, "--weights", "w.png", cwd=tmp_path),
                      "w.png: --weights: already exists")
    assert (tmp_path / "w.png").read_bytes() == b"mine"


def test_inspect_shows_a_checkpoint_with_little_metadata(tmp_path):
    from softmax_cli.checkpoint import save_checkpoint
    from softmax_cli.data import Preprocessor
    from softmax_cli.nn import MLP

    pre = Preprocessor(np.zeros(4, np.float32), np.ones(4, np.float32), 255.0, "none")
    save_checkpoint(tmp_path / "bare.npz", MLP([4, 3], rng=np.random.default_rng(0)), pre,
                    {"classes": ["a", "b", "c"], "image_shape": [2, 2], "image_style": "mnist", "config": {}})
    proc = run_softmax("inspect", "bare.npz", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "MLP 4-3: no hidden layer (softmax regression)" in proc.stdout
    assert "parameters        15\n" in proc.stdout
    assert "metrics           (not recorded)" in proc.stdout


# ------------------------------------------------------- what each picture shows, not only that it is one
# A PNG that is the right size and not blank could still show the wrong numbers: these tests
# keep each figure as it is saved and read back the data its artists draw.
@pytest.fixture
def drawn(monkeypatch) -> dict:
    """``{file name: matplotlib figure}`` of every picture saved while the test runs (each is
    still written, by the real ``_save``)."""
    import softmax_cli.report as report

    figures, real = {}, report._save

    def keep(fig, path):
        figures[Path(path).name] = fig
        real(fig, path)

    monkeypatch.setattr(report, "_save", keep)
    return figures


def test_the_curves_plot_each_metric_of_each_split_and_mark_the_best_epoch(tmp_path, drawn):
    from softmax_cli.report import plot_curves

    plot_curves(tmp_path / "curves.png", ROWS, 3, "val_loss")
    open_png(tmp_path / "curves.png", (1000, 400))
    loss, acc = drawn["curves.png"].axes
    for ax, what in ((loss, "loss"), (acc, "acc")):
        train, val, ring = ax.lines[:3]
        np.testing.assert_array_equal(train.get_xdata(), range(1, 9))
        np.testing.assert_allclose(train.get_ydata(), [r[f"train_{what}"] for r in ROWS])
        np.testing.assert_allclose(val.get_ydata(), [r[f"val_{what}"] for r in ROWS])
        assert (list(ring.get_xdata()), list(ring.get_ydata())) == ([3], [ROWS[2][f"val_{what}"]])
        assert list(ax.lines[3].get_xdata()) == [3, 3]                   # the best epoch's dashed line
    assert loss.get_yscale() == "log" and acc.get_yscale() == "linear"


def _evaluation(rng, n=40, k=3):
    """An evaluation of ``n`` 8x8 images of ``k`` classes as ``softmax eval`` makes it, with a
    calibration temperature (so the reliability diagram has both series)."""
    from types import SimpleNamespace

    from softmax_cli.metrics import class_report, reject_report
    from softmax_cli.nn import softmax

    logits = rng.normal(0, 2, (n, k))
    y_true = rng.integers(0, k, n)
    proba = softmax(logits, 2.0)
    y_pred = proba.argmax(axis=1)
    ev = SimpleNamespace(y_true=y_true, y_pred=y_pred, proba=proba, logits=logits, temperature=2.0,
                         loss=1.0, accuracy=float(np.mean(y_true == y_pred)), ece=0.1,
                         images=rng.uniform(0, 1, (n, 8, 8)))
    return ev, class_report(ev, [str(c) for c in range(k)]), reject_report(ev)


def test_the_report_pictures_show_the_evaluations_numbers(tmp_path, drawn):
    from sklearn.metrics import confusion_matrix

    from softmax_cli.calibration import reliability_bins
    from softmax_cli.nn import softmax
    from softmax_cli.report import most_confident_mistakes, write_report

    ev, report, rejects = _evaluation(np.random.default_rng(5))
    write_report(tmp_path / "r", ev, classes=["0", "1", "2"], report=report, rejects=rejects,
                 checkpoint="m.npz", data="test data", split="test")

    counts, fractions = (ax.images[0].get_array() for ax in drawn["confusion_matrix.png"].axes)
    np.testing.assert_array_equal(counts, confusion_matrix(ev.y_true, ev.y_pred))   # rows: true class
    np.testing.assert_allclose(fractions, confusion_matrix(ev.y_true, ev.y_pred, normalize="true"))

    picked = most_confident_mistakes(ev.y_true, ev.y_pred, ev.proba, 24)
    tiles = [ax for ax in drawn["errors.png"].axes if ax.images]
    assert len(tiles) == len(picked) > 0
    for ax, i in zip(tiles, picked):
        np.testing.assert_array_equal(ax.images[0].get_array(), ev.images[i])
        assert ax.get_title() == f"true {ev.y_true[i]}\npred {ev.y_pred[i]} ({ev.proba[i, ev.y_pred[i]]:.2f})"

    top, bottom = drawn["reliability.png"].axes
    for series, bins in enumerate((reliability_bins(softmax(ev.logits), ev.y_true),   # before T
                                   reliability_bins(ev.proba, ev.y_true))):          # with T
        used = bins.count > 0
        heights = [[bar.get_height() for bar in container] for ax in (top, bottom)
                   for container in [ax.containers[series]]]
        np.testing.assert_allclose(heights[0], bins.accuracy[used])
        np.testing.assert_array_equal(heights[1], bins.count[used])
    open_png(tmp_path / "r" / "reliability.png", (800, 700))
