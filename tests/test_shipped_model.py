"""The pretrained MNIST model shipped in the package (issue 16): small, accurate, portable, and
what `softmax predict` uses with no --checkpoint, before any training."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import MNIST, MNIST_MISSING, REPO, SAMPLES, run_softmax
from softmax_cli.checkpoint import load_checkpoint
from softmax_cli.models import SHIPPED, CheckpointChoice, resolve_checkpoint, shipped_path

MAX_BYTES = 2_000_000


def _strings(value):
    """Every string in nested JSON data."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _mnist_test_accuracy(path) -> float:
    from softmax_cli.data import read_idx

    ckpt = load_checkpoint(path)
    images, labels = read_idx(MNIST / "t10k-images-idx3-ubyte.gz"), read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    predicted = ckpt.predict_proba(images.reshape(len(images), -1).astype(np.float32)).argmax(axis=1)
    return float(np.mean(np.array(ckpt.classes)[predicted] == labels.astype(str)))


def test_the_shipped_model_is_small_and_names_no_path_of_the_machine_that_built_it():
    path = shipped_path("mnist")
    assert path.stat().st_size <= MAX_BYTES
    ckpt = load_checkpoint(path)
    assert ckpt.classes == [str(d) for d in range(10)] and ckpt.image_shape == (28, 28)
    assert ckpt.meta["image_style"] == "mnist" and ckpt.model.dtype == np.float32   # float16 read as float32
    with np.load(path) as npz:
        assert {npz[f"W{i}"].dtype for i in range(ckpt.model.n_layers)} == {np.dtype(np.float16)}
    found = [s for s in _strings(ckpt.meta) if os.path.isabs(s) or "/work/" in s or "/tmp/" in s]
    assert found == []
    data = ckpt.meta["config"]["data"]
    assert data["source"] == "mnist" and data["root"] is None         # by name: downloaded where it is used
    assert "splits" not in ckpt.meta             # trained on a local copy, maybe not the official files' bytes
    assert 0.5 < ckpt.temperature < 2 and ckpt.meta["calibration"]["fitted_on"] == "val"
    shipped = ckpt.meta["shipped"]
    assert shipped["weights_stored_as"] == "float16" and shipped["test_acc"] >= 0.99
    assert (REPO / shipped["built_by"]).is_file() and (REPO / shipped["config"]).is_file()


@pytest.mark.skipif(not MNIST.is_dir(), reason=MNIST_MISSING)
def test_the_shipped_file_reaches_99_percent_on_the_mnist_test_set():
    accuracy = _mnist_test_accuracy(shipped_path("mnist"))
    assert accuracy >= 0.99
    assert accuracy == load_checkpoint(shipped_path("mnist")).meta["shipped"]["test_acc"]   # measured on this file


def test_predict_reads_the_sample_digits_right_with_no_training(tmp_path):
    # issue 16's "done when": a fresh folder, no runs/, no -c
    files = sorted(SAMPLES.glob("mnist-*.png"))
    proc = run_softmax("predict", *files, "--jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ("using the shipped model mnist (handwritten digits 0-9, trained on MNIST); "
                           "-c FILE for another\n")
    preds = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [p["class"] for p in preds] == [f.stem.split("-")[1] for f in files]
    assert list(tmp_path.iterdir()) == []                      # nothing written, no runs/ made


def test_the_shipped_models_are_package_data():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["softmax_cli.models"]
    for name in SHIPPED:
        assert any(fnmatch.fnmatch(shipped_path(name).name, p) for p in patterns), name
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "!softmax_cli/models/*.npz" in ignored               # tracked despite "*.npz"


def test_a_checkpoint_value_is_a_shipped_name_or_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = resolve_checkpoint(None)
    assert (default.name, default.shipped, default.path) == ("mnist", True, shipped_path("mnist"))
    assert resolve_checkpoint("mnist") == default
    (tmp_path / "m.npz").write_bytes(b"")
    assert resolve_checkpoint("m.npz") == CheckpointChoice(Path("m.npz"), "m.npz", shipped=False)
    assert resolve_checkpoint("./m.npz").name == "./m.npz"                # named as given


def _load_script():
    spec = importlib.util.spec_from_file_location("train_shipped_model", REPO / "scripts" / "train_shipped_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not MNIST.is_dir(), reason=MNIST_MISSING)
def test_the_build_script_stores_float16_measures_the_stored_file_and_drops_paths(tmp_path):
    # a small stand-in for the shipped model: the script's config, one epoch of a narrow net
    proc = run_softmax("train", REPO / "configs" / "mnist-shipped.yaml", "--set", f"data.root={MNIST}",
                       "--set", "model.hidden=[32]", "--set", "train.epochs=1", "--set", "train.augment=null",
                       "--quiet", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    run_dir = tmp_path / summary["run_dir"]
    with np.load(run_dir / "best.npz") as npz:
        assert str(MNIST.resolve()) in str(npz["metadata"])   # a run records its resolved data path
    accuracy, size = _load_script().package(run_dir / "best.npz", MNIST, tmp_path / "m.npz")
    ckpt = load_checkpoint(tmp_path / "m.npz")
    assert size == (tmp_path / "m.npz").stat().st_size
    with np.load(tmp_path / "m.npz") as npz:
        assert {npz[n].dtype for n in ("W0", "b0", "W1", "b1")} == {np.dtype(np.float16)}
    assert accuracy == ckpt.meta["shipped"]["test_acc"] == ckpt.meta["metrics"]["test_acc"]
    assert accuracy == _mnist_test_accuracy(tmp_path / "m.npz")          # the stored file's own figure
    assert ckpt.meta["shipped"]["float32_test_acc"] == summary["test_acc"]
    assert abs(accuracy - summary["test_acc"]) < 0.002    # float16 weights: at most a few answers change
    assert [s for s in _strings(ckpt.meta) if os.path.isabs(s)] == []
    assert ckpt.meta["data"] == "MNIST (data.source: mnist)" and ckpt.meta["config"]["data"]["root"] is None
    assert ckpt.meta["config"]["data"]["source"] == "mnist" and "splits" not in ckpt.meta
    # the calibration temperature is fitted on the stored weights, on the run's validation split
    assert ckpt.meta["calibration"]["temperature"] == ckpt.temperature != 1.0
    assert ckpt.meta["calibration"]["val_nll_after"] <= ckpt.meta["calibration"]["val_nll_before"]
