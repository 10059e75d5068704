"""Photos and scans (issue 18): the image path finds the ink whatever the paper and light, and
the shipped model reads degraded renderings of MNIST test digits through `softmax predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import photo_styles
from conftest import MNIST, MNIST_MISSING, SAMPLES, run_softmax
from softmax_cli.data.images import image_to_input, normalize_digit
from softmax_cli.data.ink import digit_mask, flatten, ink_is_dark, ink_map

PER_STYLE = 250          # digits per style: one error is 0.4 points


def _digit(height: int = 40, width: int = 30, stroke: int = 5) -> np.ndarray:
    """Ink coverage (height, width) in [0, 1] of a hand-drawn-like "0": an ellipse ring, with
    anti-aliased edges (grey levels) so that the ring is not binary."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.hypot((rows - (height - 1) / 2) / (height / 2 - stroke), (cols - (width - 1) / 2) / (width / 2 - stroke))
    distance = np.abs(r - 1) * min(height, width) / 2            # about the distance to the ring's middle
    return np.clip(stroke / 2 - distance + 0.5, 0, 1).astype(np.float32)


def _on_paper(ink: np.ndarray, shape=(120, 100), at=(40, 35), paper=0.9, ink_level=0.1) -> np.ndarray:
    """Luminance: ``ink`` drawn at ``at`` on paper of brightness ``paper`` with ink ``ink_level``."""
    a = np.zeros(shape, np.float32)
    a[at[0]:at[0] + ink.shape[0], at[1]:at[1] + ink.shape[1]] = ink
    return (paper * (1 - a) + ink_level * a).astype(np.float32)


# ------------------------------------------------------------------------ the steps, one by one
@pytest.mark.parametrize("paper, ink_level", [(0.45, 0.2), (0.9, 0.1), (0.35, 0.05)])
def test_dark_ink_is_found_on_paper_of_any_brightness(paper, ink_level):
    # a fixed 0.5 on the border's median (the earlier rule) took grey paper at 0.45 or 0.35
    # for a dark ground and its darker ink for none
    gray = _on_paper(_digit(), paper=paper, ink_level=ink_level)
    assert ink_is_dark(gray)
    assert not ink_is_dark(1 - gray)                          # the same digit, light on dark


def test_polarity_holds_under_a_lighting_gradient():
    gray = _on_paper(_digit())
    light = np.linspace(1.0, 0.3, gray.shape[1], dtype=np.float32)[None, :]     # darker to the right
    assert ink_is_dark(gray * light)
    assert not ink_is_dark(1 - gray * light)


def test_flattening_takes_out_the_light_and_keeps_the_stroke_strength():
    ring = _digit()
    gray = _on_paper(ring, at=(40, 10)) * np.linspace(1.0, 0.4, 100, dtype=np.float32)[None, :]
    gray[:, 60:] = _on_paper(ring, at=(40, 65))[:, 60:] * 0.4          # the same ring in a shadow
    flat = flatten(gray, dark=True, size=15)
    assert flat[:30].max() < 0.02 and flat[90:].max() < 0.02          # the paper is 0, gradient or not
    left, right = flat[40:80, 10:40], flat[40:80, 65:95]
    # light multiplies reflectance: the stroke in the shadow is as strong as the one in light
    assert left.max() == pytest.approx(8 / 9, abs=0.03) and right.max() == pytest.approx(8 / 9, abs=0.03)


def test_no_ink_is_read_where_there_is_no_paper():
    # a black table beyond the page, noisy: its noise divided by its brightness is no ink
    gray = _on_paper(_digit(), shape=(120, 130), at=(40, 60))
    gray[:, :40] = 0.1
    gray += np.random.default_rng(0).normal(0, 0.015, gray.shape).astype(np.float32)
    flat = flatten(gray, dark=True, size=15)
    assert (flat[:, :35] == 0).all()
    assert flat[40:80, 60:90].max() > 0.8                      # the digit is still there


@pytest.mark.parametrize("sides", ["left", "left and top"])
def test_the_page_edge_and_specks_are_not_ink_but_a_second_stroke_is(sides):
    mask = np.zeros((100, 100), bool)
    mask[:, :20] = True                                       # the table beyond the page's edge,
    if sides == "left and top":                               # with 12 times the digit's ink
        mask[:20, :] = True
    mask[30:70, 40:46] = True                                 # the digit's main stroke
    mask[30:34, 48:60] = True                                 # a second stroke, not touching it
    mask[5, 90] = mask[95, 60] = True                         # specks
    mask[80:82, 45:47] = True                                 # a speck near the digit
    kept = digit_mask(mask, mask.astype(np.float32))
    expected = np.zeros_like(mask)
    expected[30:70, 40:46] = expected[30:34, 48:60] = True
    np.testing.assert_array_equal(kept, expected)


def test_a_digit_that_fills_the_frame_is_kept_though_it_touches_the_sides():
    mask = np.zeros((20, 20), bool)
    mask[:, 8:13] = True                                      # a "1" from top to bottom
    mask[:6, 13:] = True                                      # its flag along the top
    np.testing.assert_array_equal(digit_mask(mask, mask.astype(np.float32)), mask)


def test_grey_haze_around_the_digit_does_not_widen_the_crop():
    ring = _digit()
    clean = _on_paper(ring)
    rows, cols = np.mgrid[0:120, 0:100]
    haze = 0.12 * np.exp(-((rows - 60) ** 2 + (cols - 50) ** 2) / (2 * 30.0 ** 2))     # a grey smudge
    hazy = (clean - haze).astype(np.float32)
    a, b = normalize_digit(ink_map(clean), (28, 28)), normalize_digit(ink_map(hazy), (28, 28))
    assert np.abs(a - b).max() < 0.1                          # the same crop, the same input
    assert (b > 0.05).sum() == pytest.approx((a > 0.05).sum(), rel=0.05)


def test_the_ink_map_keeps_grey_levels():
    ink = ink_map(_on_paper(_digit(stroke=7)))
    edges = ((ink > 0.1) & (ink < 0.9)).sum()
    assert edges > 0.1 * (ink >= 0.9).sum()                   # anti-aliased edges stay grey, not binary
    assert ink.min() == 0.0 and ink.max() == 1.0


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_a_uniform_image_has_no_ink(value):
    with pytest.raises(ValueError, match="no ink found"):
        ink_map(np.full((40, 40), value, np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_pixels_that_are_not_numbers_are_refused_in_words(bad):
    gray = _on_paper(_digit())
    gray[3, 4] = bad
    with pytest.raises(ValueError, match=r"^the image holds pixels that are not finite numbers \(NaN or infinity\)$"):
        ink_map(gray)


def test_dim_grey_paper_that_was_refused_is_read(tmp_path):
    # issue 18's first case: a legible photo on dim grey paper, once "no ink found"
    Image.fromarray(np.round(255 * _on_paper(_digit(), paper=0.42, ink_level=0.25)).astype(np.uint8)).save(
        tmp_path / "dim.png")
    x = image_to_input(tmp_path / "dim.png", (28, 28), 255.0, "mnist").reshape(28, 28)
    assert x.max() == pytest.approx(255, rel=0.05) and x[:3].max() == 0 and x[-3:].max() == 0   # 20 rows


# --------------------------------------------------------------- what the model saw, as PNGs
def test_save_inputs_writes_the_exact_model_input_of_each_image(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image\n")
    files = {"1-mnist-3.png": SAMPLES / "mnist-3.png", "3-digits-5.png": SAMPLES / "digits-5.png"}
    proc = run_softmax("predict", files["1-mnist-3.png"], "notes.txt", files["3-digits-5.png"],
                       "--save-inputs", "seen", "--jsonl", cwd=tmp_path)
    assert proc.returncode == 1                               # notes.txt is no image: no picture of it
    assert proc.stderr.splitlines()[-1] == "wrote 2 model inputs to seen"
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == sorted(files)
    for name, source in files.items():
        saved = np.asarray(Image.open(tmp_path / "seen" / name))
        assert saved.shape == (224, 224) and saved.dtype == np.uint8       # 28x28, each pixel 8x8
        np.testing.assert_array_equal(saved, np.kron(saved[::8, ::8], np.ones((8, 8), np.uint8)))
        row = image_to_input(source, (28, 28), 255.0, "mnist")           # the shipped model's input
        np.testing.assert_array_equal(saved[::8, ::8], np.round(row).astype(np.uint8).reshape(28, 28))


# --------------------------------------------------------------- degraded photos of MNIST digits
@pytest.fixture(scope="module")
def mnist_test_set():
    if not MNIST.is_dir():
        pytest.skip(MNIST_MISSING)
    from softmax_cli.data import read_idx

    return read_idx(MNIST / "t10k-images-idx3-ubyte.gz"), read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")


@pytest.mark.parametrize("style", list(photo_styles.STYLES))
def test_the_shipped_model_reads_degraded_photos_of_mnist_digits(style, mnist_test_set, tmp_path):
    images, labels = mnist_test_set
    pick = np.random.default_rng(0).choice(len(labels), PER_STYLE, replace=False)
    rng = np.random.default_rng(list(photo_styles.STYLES).index(style) + 1)
    (tmp_path / style).mkdir()
    for i in pick:
        photo_styles.save(style, photo_styles.STYLES[style](images[i], rng), tmp_path / style / f"{i}-{labels[i]}", rng)
    proc = run_softmax("predict", style, "--json", cwd=tmp_path)              # no -c: the shipped model
    assert proc.returncode == 0, proc.stderr
    preds = json.loads(proc.stdout)
    assert len(preds) == PER_STYLE and {p["checkpoint"] for p in preds} == {"mnist"}
    accuracy = float(np.mean([p["class"] == p["path"].rsplit("-", 1)[1].split(".")[0] for p in preds]))
    print(f"\n{style}: {accuracy:.3f} of {PER_STYLE} MNIST test digits")
    assert accuracy >= 0.97, (style, accuracy)
