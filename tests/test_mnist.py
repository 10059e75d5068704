"""MNIST from ../shared/data/mnist: the IDX reader, training and eval, predict on PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import MNIST, run_softmax
from softmax_cli.data import read_idx

pytestmark = pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST not found at {MNIST}")


@pytest.fixture(scope="module")
def mnist_test_set():
    return read_idx(MNIST / "t10k-images-idx3-ubyte.gz"), read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")


def test_idx_reader_matches_the_published_counts(mnist_test_set):
    train_labels = read_idx(MNIST / "train-labels-idx1-ubyte.gz")
    assert train_labels.dtype == np.uint8 and train_labels.shape == (60000,)
    assert train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    images, labels = mnist_test_set
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert images.max() == 255 and images[:, 0, :].max() == 0    # ink on a black background


def test_mnist_training_and_eval_agree(mnist_run):
    assert mnist_run["n_test"] == 10000
    assert mnist_run["test_acc"] >= 0.95
    proc = run_softmax("eval", mnist_run["best_checkpoint"], "--json", cwd=mnist_run["cwd"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accuracy"] == pytest.approx(mnist_run["test_acc"], abs=1e-12)


def _styles(ink: np.ndarray) -> dict[str, Image.Image]:
    """One MNIST digit (28x28 uint8 ink) as a user might save it."""
    dark_on_white = Image.fromarray(255 - ink)
    big = dark_on_white.resize((84, 84), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (120, 90), 255)
    canvas.paste(dark_on_white.resize((50, 50), Image.Resampling.BICUBIC), (10, 30))   # off-centre
    rgba = Image.new("RGBA", (56, 56), (0, 0, 0, 0))                                   # ink as alpha
    rgba.putalpha(Image.fromarray(ink).resize((56, 56), Image.Resampling.BILINEAR))
    blue = Image.merge("RGB", [Image.fromarray(255 - ink // 2)] * 2 + [Image.fromarray(np.full_like(ink, 255))])
    return {"white84": big, "offcentre": canvas, "alpha": rgba, "blue_ink": blue.resize((42, 42))}


def test_predict_classifies_test_digits_drawn_in_other_styles(mnist_run, mnist_test_set, tmp_path):
    images, labels = mnist_test_set
    pick = np.random.default_rng(0).choice(len(labels), 40, replace=False)
    files, truth = {}, []
    for i in pick:
        for style, img in _styles(images[i]).items():
            path = tmp_path / f"{i}-{style}.png"
            img.save(path)
            files.setdefault(style, []).append(path)
        truth.append(str(labels[i]))
    all_files = [f for style in files for f in files[style]]
    proc = run_softmax("predict", *all_files, "-c", mnist_run["best_checkpoint"], "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    predicted = {p["path"]: p["class"] for p in map(json.loads, proc.stdout.splitlines())}
    for style, paths in files.items():
        accuracy = np.mean([predicted[str(p)] == t for p, t in zip(paths, truth)])
        assert accuracy >= 0.9, (style, accuracy)
