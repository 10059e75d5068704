"""MNIST (from $SOFTMAX_MNIST_DIR, see conftest): the IDX reader, training and eval, predict on PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageFilter

from conftest import MNIST, MNIST_MISSING, run_softmax
from softmax_cli.data import read_idx

pytestmark = pytest.mark.skipif(not MNIST.is_dir(), reason=MNIST_MISSING)


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
    """One MNIST digit (28x28 uint8, ink 255 on 0) as users bring them: scanned, photographed,
    drawn in a paint program. Saved as PNG, except ``jpeg_q50`` (see :func:`_save_style`)."""
    a = ink.astype(np.float32)[..., None] / 255

    def painted(ink_rgb, paper_rgb, size: int) -> Image.Image:
        rgb = (1 - a) * np.array(paper_rgb, np.float32) + a * np.array(ink_rgb, np.float32)
        return Image.fromarray(rgb.round().astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)

    white = Image.fromarray(255 - ink)                                  # dark ink on white, 28x28 gray
    big = white.resize((84, 84), Image.Resampling.BICUBIC)              # a 3x larger canvas
    page = Image.new("L", (252, 189), 255)
    page.paste(big, (24, 90))                                           # off-centre on a larger page
    rgba = Image.new("RGBA", (84, 84), (0, 0, 0, 0))                    # black ink as alpha, RGBA
    rgba.putalpha(Image.fromarray(ink).resize((84, 84), Image.Resampling.BICUBIC))
    return {"white": white, "white_3x": big, "blue_ink_rgb": painted((30, 60, 200), (255, 255, 255), 84),
            "red_ink_on_cream_rgb": painted((190, 20, 20), (250, 243, 215), 56), "black_ink_rgba": rgba,
            "offcentre": page, "thick_strokes": big.filter(ImageFilter.MinFilter(5)),   # a marker pen
            "jpeg_q50": painted((40, 40, 40), (235, 235, 225), 84)}


def _save_style(style: str, img: Image.Image, stem: Path) -> Path:
    """Save one rendering of :func:`_styles` as ``stem.png`` (``stem.jpg`` at quality 50 for JPEG)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    path = stem.with_suffix(".jpg" if style.startswith("jpeg") else ".png")
    img.save(path, quality=50) if style.startswith("jpeg") else img.save(path)
    return path


def test_predict_agrees_with_the_labels_of_500_test_digits_in_other_styles(mnist_run, mnist_test_set, tmp_path):
    images, labels = mnist_test_set
    pick = np.random.default_rng(0).choice(len(labels), 500, replace=False)
    for i in pick:
        for style, img in _styles(images[i]).items():
            _save_style(style, img, tmp_path / "digits" / style / f"{i}-{labels[i]}")
    # one folder argument, searched recursively; one forward pass over the 4000 files
    proc = run_softmax("predict", "digits", "-c", mnist_run["best_checkpoint"], "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    right: dict[str, list[bool]] = {}
    for p in json.loads(proc.stdout):
        path = Path(p["path"])
        right.setdefault(path.parent.name, []).append(p["class"] == path.stem.split("-")[1])
    accuracy = {style: float(np.mean(hits)) for style, hits in right.items()}
    print("\naccuracy per style on 500 MNIST test digits: "
          + ", ".join(f"{style} {acc:.3f}" for style, acc in accuracy.items()))
    assert sorted(right) == sorted(_styles(images[0])) and {len(h) for h in right.values()} == {500}
    assert accuracy["white"] >= 0.97, accuracy
    assert min(accuracy.values()) >= 0.95, accuracy


def test_predict_tells_formats_by_content_and_applies_exif_orientation(mnist_run, mnist_test_set, tmp_path):
    images, labels = mnist_test_set
    ink = images[0]                                          # a 7
    white = Image.fromarray(255 - ink)
    white.save(tmp_path / "plain.png")
    big = white.resize((96, 96), Image.Resampling.BICUBIC)
    rgba = Image.new("RGBA", (28, 28), (0, 0, 0, 0))
    rgba.putalpha(Image.fromarray(ink))
    exif = Image.Exif()
    exif[0x0112] = 6                                         # orientation: rotate 90 degrees clockwise to view
    files = {  # name (extensions that lie, or none) -> how it is written; all lossless
        "bmp.png": lambda p: white.save(p, "BMP"),
        "gif_palette_transparent.jpg": lambda p: white.convert("P").save(p, "GIF", transparency=255),
        "tiff_16bit": lambda p: Image.fromarray((255 - ink).astype(np.uint16) * 257).save(p, "TIFF"),
        "webp_rgba.bmp": lambda p: rgba.save(p, "WEBP", lossless=True),
        "png_gray_alpha.gif": lambda p: Image.merge("LA", [Image.new("L", (28, 28), 0), Image.fromarray(ink)]).save(p, "PNG"),
        "png_rgba_16bit.tif": lambda p: p.write_bytes(_png16_rgba(ink)),
    }
    (tmp_path / "formats").mkdir()
    for name, write in files.items():
        write(tmp_path / "formats" / name)
    big.save(tmp_path / "jpeg_upright.jpg", quality=95)
    big.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "jpeg_exif.jpg", quality=95, exif=exif)
    big.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "jpeg_sideways.jpg", quality=95)
    proc = run_softmax("predict", "plain.png", "formats", "jpeg_*.jpg", "-c", mnist_run["best_checkpoint"],
                       "--json", "--top-k", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proba = {Path(p["path"]).name: {t["class"]: t["probability"] for t in p["top_k"]}
             for p in json.loads(proc.stdout)}

    def vec(name):
        return np.array([proba[name][str(c)] for c in range(10)])

    assert max(proba["plain.png"], key=proba["plain.png"].get) == str(labels[0])
    assert set(proba) == {"plain.png", *files, "jpeg_upright.jpg", "jpeg_exif.jpg", "jpeg_sideways.jpg"}
    for name in files:                                       # the same pixels, whatever the container
        np.testing.assert_allclose(vec(name), vec("plain.png"), atol=1e-5, err_msg=name)
    np.testing.assert_allclose(vec("jpeg_exif.jpg"), vec("jpeg_upright.jpg"), atol=0.02)
    assert np.abs(vec("jpeg_sideways.jpg") - vec("jpeg_upright.jpg")).max() > 0.5   # the tag matters


def _png16_rgba(ink: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGBA PNG (black ink as alpha), written with the standard library:
    Pillow reads such files but does not write them."""
    import struct
    import zlib

    alpha = ink.astype(">u2") * 257
    px = np.zeros((28, 28, 4), ">u2")
    px[..., 3] = alpha
    raw = b"".join(b"\0" + row.tobytes() for row in px)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 16, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_training_from_an_image_folder_sees_what_predict_sees(mnist_test_set, tmp_path):
    images, labels = mnist_test_set
    names = {3: "three", 5: "five", 8: "eight"}              # class names come from the folder names
    rng = np.random.default_rng(1)
    for digit, name in names.items():
        for j, i in enumerate(rng.choice(np.flatnonzero(labels == digit), 60, replace=False)):
            style, img = list(_styles(images[i]).items())[j % 8]
            part = "train" if j < 45 else "test"
            sub = "batch-2/" if j % 7 == 0 else ""           # class folders are searched recursively
            _save_style(style, img, tmp_path / part / name / f"{sub}{j}-{style}")
    (tmp_path / "train" / "README.txt").write_text("files directly in data.root belong to no class\n")
    (tmp_path / "train" / "three" / ".DS_Store").write_bytes(b"hidden files are skipped")
    (tmp_path / "cfg.yaml").write_text("data: {source: folder, root: train, test: test, val_fraction: 0.2}\n"
                                       "model: {hidden: [64]}\ntrain: {epochs: 30, batch_size: 16}\n")
    proc = run_softmax("train", "cfg.yaml", "--quiet", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["n_test"] == 45 and summary["test_acc"] >= 0.8
    ckpt = tmp_path / summary["best_checkpoint"]
    saved = yaml.safe_load((tmp_path / summary["run_dir"] / "config.yaml").read_text())
    assert saved["data"]["image_shape"] == [28, 28] and saved["data"]["root"] == str(tmp_path / "train")

    proc = run_softmax("eval", ckpt, "--json", "--reject-threshold", "0.9", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ev = json.loads(proc.stdout)
    assert [c["class"] for c in ev["per_class"]] == ["eight", "five", "three"]
    proc = run_softmax("predict", "test", "-c", ckpt, "--json", "--top-k", "3", "--reject-threshold", "0.9",
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    preds = json.loads(proc.stdout)
    assert len(preds) == 45
    truth = [Path(p["path"]).relative_to("test").parts[0] for p in preds]
    # predict's inputs are the ones eval scored (same loader code): same loss, accuracy, coverage
    p_true = [next(t["probability"] for t in p["top_k"] if t["class"] == c) for p, c in zip(preds, truth)]
    assert float(np.mean(-np.log(p_true))) == pytest.approx(ev["loss"], rel=1e-4)
    assert np.mean([p["top_k"][0]["class"] == c for p, c in zip(preds, truth)]) == pytest.approx(ev["accuracy"])
    sure = [(p["class"], c) for p, c in zip(preds, truth) if p["class"] != "unknown"]
    (row,) = ev["reject_report"]
    assert row["answered"] == len(sure) and row["accuracy"] == pytest.approx(np.mean([a == b for a, b in sure]))
