"""Degraded renderings of MNIST digits, as phones and scanners give them (tests/test_photos.py).

Each style takes one MNIST test digit (28x28 uint8, ink 255 on 0) and a random generator and
draws it as a photo or scan would show it: the digit's ink is a reflectance on paper
(``paper * (1 - a) + ink * a`` for ink coverage ``a``), multiplied by the light falling on
the page, plus sensor noise, then quantised to 8 bits. Every style draws its own random
placement, size, contrast and direction, so a style is a family of images, not one.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage


def _coverage(ink: np.ndarray, size: int) -> np.ndarray:
    """The digit's ink coverage (size, size) in [0, 1], drawn larger by bicubic resampling."""
    img = Image.fromarray(ink).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def _page(ink: np.ndarray, rng: np.random.Generator, canvas: tuple[int, int] = (128, 128),
          scale: tuple[float, float] = (3.0, 3.6)) -> tuple[np.ndarray, tuple[int, int]]:
    """Ink coverage (h, w) of the digit drawn ``scale`` times larger at a random place of the
    canvas (fully inside it), and the digit's top-left corner."""
    h, w = canvas
    size = int(28 * rng.uniform(*scale))
    top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    a = np.zeros(canvas, np.float32)
    a[top:top + size, left:left + size] = _coverage(ink, size)
    return a, (top, left)


def _photo(reflectance: np.ndarray, light: np.ndarray | float, noise: float,
           rng: np.random.Generator) -> Image.Image:
    """What the camera records: reflectance times light, plus Gaussian noise, in 8 bits."""
    value = reflectance * light + rng.normal(0.0, noise, reflectance.shape)
    return Image.fromarray(np.clip(np.round(value * 255), 0, 255).astype(np.uint8))


def _ramp(shape: tuple[int, int], angle: float) -> np.ndarray:
    """A linear ramp over the frame, 0 at one side and 1 at the other, along ``angle`` radians."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    t = rows * np.sin(angle) + cols * np.cos(angle)
    return (t - t.min()) / (t.max() - t.min())


def dim_grey_paper(ink, rng):
    """Grey paper in a dim room: paper at 0.40-0.55, the ink only 0.2-0.3 darker."""
    a, _ = _page(ink, rng)
    paper = rng.uniform(0.40, 0.55)
    return _photo(paper - rng.uniform(0.2, 0.3) * a, 1.0, 0.01, rng)


def lighting_gradient(ink, rng):
    """Light falling off across the page, from full to 25-45 % in a random direction."""
    a, _ = _page(ink, rng)
    light = 1.0 - (1.0 - rng.uniform(0.25, 0.45)) * _ramp(a.shape, rng.uniform(0, 2 * np.pi))
    return _photo(0.92 * (1 - a) + 0.12 * a, light, 0.01, rng)


def shadow_band(ink, rng):
    """The shadow of a phone or a hand: a band 40-60 % of the frame wide, in a random
    direction through the digit, with a soft edge, where the light drops to 40-60 %."""
    a, (top, left) = _page(ink, rng)
    t = _ramp(a.shape, rng.uniform(0, np.pi))
    centre = t[min(top + 50, a.shape[0] - 1), min(left + 50, a.shape[1] - 1)] + rng.uniform(-0.2, 0.2)
    width = rng.uniform(0.4, 0.6) / 2
    inside = (np.abs(t - centre) < width).astype(np.float32)
    soft = ndimage.gaussian_filter(inside, 2)
    light = 1.0 - (1.0 - rng.uniform(0.4, 0.6)) * soft
    return _photo(0.92 * (1 - a) + 0.12 * a, light, 0.01, rng)


def pencil_grey(ink, rng):
    """A pencil: grey strokes (reflectance 0.50-0.65) on white paper, slightly grainy."""
    a, _ = _page(ink, rng)
    return _photo(0.95 * (1 - a) + rng.uniform(0.50, 0.65) * a, 1.0, 0.02, rng)


def paper_texture_noise(ink, rng):
    """Recycled paper under a noisy sensor: blotchy texture (smoothed noise, +-0.08) and
    per-pixel noise (standard deviation 0.04)."""
    a, _ = _page(ink, rng)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, a.shape).astype(np.float32), 3)
    texture *= 0.08 / max(1e-6, float(np.abs(texture).max()))
    paper = 0.85 + texture
    return _photo(paper * (1 - a) + 0.15 * a, 1.0, 0.04, rng)


def page_border(ink, rng):
    """The page does not fill the frame: a dark table (0.08-0.2) beyond the page's edge along
    one or two sides, the edge slightly tilted, 8-16 % of the frame from the side; the digit
    lies on the page, clear of the edge."""
    h = w = 150
    size = int(28 * rng.uniform(2.6, 3.0))
    a = np.zeros((h, w), np.float32)
    top, left = rng.integers(30, h - 30 - size + 1, 2)
    a[top:top + size, left:left + size] = _coverage(ink, size)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    table = np.zeros(a.shape, bool)
    for side in rng.choice(4, size=rng.integers(1, 3), replace=False):
        depth, tilt = rng.uniform(0.08, 0.16) * h, rng.uniform(-0.05, 0.05)
        along, across = (cols, rows) if side in (0, 1) else (rows, cols)
        distance = across if side in (0, 2) else (h - 1 - across)
        table |= distance < depth + tilt * (along - h / 2)
    reflectance = np.where(table, rng.uniform(0.08, 0.2), 0.9 * (1 - a) + 0.12 * a)
    return _photo(reflectance, 1.0, 0.015, rng)


def low_res_phone_crop(ink, rng):
    """A small crop of a phone photo: the digit 16-22 pixels tall in a 24-30 pixel frame,
    slightly blurred, grey-white paper, JPEG-compressed (saved as .jpg at quality 60-75)."""
    side = int(rng.integers(24, 31))
    size = int(rng.integers(16, min(22, side - 2) + 1))
    a = np.zeros((side, side), np.float32)
    top, left = rng.integers(0, side - size + 1, 2)
    a[top:top + size, left:left + size] = _coverage(ink, size)
    img = _photo((0.85 * (1 - a) + 0.15 * a), rng.uniform(0.8, 1.0), 0.02, rng)
    return img.filter(ImageFilter.GaussianBlur(0.5))


STYLES = {f.__name__: f for f in (dim_grey_paper, lighting_gradient, shadow_band, pencil_grey,
                                  paper_texture_noise, page_border, low_res_phone_crop)}
JPEG = {"low_res_phone_crop"}     # saved as JPEG; the others as PNG


def save(style: str, img: Image.Image, stem, rng: np.random.Generator):
    """Save a rendering as ``stem.png`` (``stem.jpg``, quality 60-75, for :data:`JPEG` styles)."""
    if style in JPEG:
        path = stem.with_suffix(".jpg")
        img.save(path, quality=int(rng.integers(60, 76)))
    else:
        path = stem.with_suffix(".png")
        img.save(path)
    return path
