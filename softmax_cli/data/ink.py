"""Where the ink is: a photo or scan of a digit to an ink map, 0 on the paper, 1 at full ink.

Photos and scans are not MNIST: the paper is grey or unevenly lit, a shadow or the page's edge
lies in the frame, a pencil stroke is only a little darker than the paper, and specks of dirt or
texture sit around the digit. :func:`ink_map` handles these in five steps, each a standard
method from a well-kept library:

1. **Working size.** An image larger than :data:`WORK_SIDE` pixels on its longer side is
   reduced by area averaging (Pillow's ``Image.reduce``): the model's input is 28x28 anyway.
2. **Polarity from the histogram** (:func:`ink_is_dark`): the large-scale lighting is taken
   out (a Gaussian filter, ``scipy.ndimage.gaussian_filter``, ``sigma`` a sixth of the shorter
   side), and the ink is on the side whose tail of the histogram lies farther from the
   background level (the median): dark ink on light paper, or light ink on a dark ground.
3. **Uneven lighting flattened** (:func:`flatten`): the background is estimated by a
   grey-level morphology filter (``scipy.ndimage.grey_closing`` for dark ink,
   ``grey_opening`` for light ink: the "rolling ball" of Sternberg 1983, "Biomedical image
   processing") with a square wider than any stroke but narrower than the lighting's changes,
   and subtracted (a top-hat). The filter follows a gradient, a shadow or a page edge wider
   than the square, steps included, and removes every stroke. For dark ink the difference is
   divided by the paper's brightness there, since light multiplies the paper's reflectance:
   a stroke in a shadow is then as strong as one in full light; where the paper is darker
   than :data:`LIGHT_FLOOR` of the brightest (a table beyond the page) nothing is read. The
   square is first a third of the shorter side, then three stroke widths once the strokes
   are found (a second pass).
4. **Ink separated from paper** by Otsu's threshold (Otsu 1979, "A threshold selection method
   from gray-level histograms"; ``skimage.filters.threshold_otsu``) on the flattened image.
5. **Only the digit** (:func:`digit_mask`): connected components of the thresholded ink
   (``scipy.ndimage.label``, 8-connected). The paper's edge (a component lying along a side of
   the frame with next to none of its ink in the frame's middle), specks (components with
   under :data:`SPECK_FRACTION` of the digit's ink), marks away from the digit and bits cut
   by the frame (a shadow's corner) are dropped.

The result keeps grey levels: the flattened image with the paper's level at 0 and the typical
stroke level (the 90th percentile of the kept ink) at 1, clipped, and zero beyond a margin
around the kept strokes (anti-aliased stroke edges stay). The bounding box of the digit is
then taken on it (:func:`~softmax_cli.data.images.normalize_digit`).

SciPy and scikit-image are imported inside the functions that use them, so that importing
this module (``softmax predict``'s start-up) stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORK_SIDE = 1024           # longer side, in pixels, above which an image is reduced first
POLARITY_SIDE = 256        # longer side of the image the polarity is decided on
POLARITY_TAIL = 0.5        # percent of the pixels at each end of the histogram that make a tail
MIN_CONTRAST = 0.05        # least difference of ink and paper, on a 0-1 luminance scale
SPECK_FRACTION = 0.02      # a component with less ink than this share of the digit's is a speck
BORDER_WEIGHT = 0.5        # a component touching the frame counts with this share of its ink
EDGE_CONTACT = 0.25        # a component along this share of a frame side may be the page's edge...
CENTRE_SHARE = 0.05        # ...when less than this share of its ink lies in the frame's central half
NEAR = 0.5                 # kept pieces lie within this share of the kept box's size from it
LIGHT_FLOOR = 0.2          # paper darker than this share of the brightest is no paper (a table)
NO_INK = "no ink found: the image is blank or has almost no contrast"
NOT_FINITE = "the image holds pixels that are not finite numbers (NaN or infinity)"


def working_size(gray: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """``gray`` (h, w) float32, reduced by an integer factor with area averaging (Pillow's
    ``Image.reduce``) when its longer side exceeds ``side`` pixels; else unchanged."""
    factor = -(-max(gray.shape) // side)          # ceil
    if factor <= 1:
        return gray
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(gray, np.float32)).reduce(factor), np.float32)


def ink_is_dark(gray: np.ndarray) -> bool:
    """Whether the ink is darker than the background (dark ink on paper), from the histogram.

    The image is reduced to at most :data:`POLARITY_SIDE` pixels (area averaging), and the
    large-scale lighting (a Gaussian filter, ``sigma`` a sixth of the shorter side) is
    subtracted first, so that a lighting gradient widens neither tail. The background level
    is the median of what is left; the ink lies on the side whose tail (the
    :data:`POLARITY_TAIL` percentile at either end) is farther from it. A tie is dark ink.

    Args:
        gray: float32 (h, w) luminance in [0, 1].
    """
    from scipy import ndimage

    gray = working_size(gray, POLARITY_SIDE)
    sigma = max(1.0, min(gray.shape) / 6)
    detail = gray - ndimage.gaussian_filter(gray, sigma, mode="nearest", truncate=2.0)
    low, middle, high = np.percentile(detail, [POLARITY_TAIL, 50, 100 - POLARITY_TAIL])
    return bool(middle - low >= high - middle)


def flatten(gray: np.ndarray, dark: bool, size: int) -> np.ndarray:
    """Luminance (h, w) in [0, 1] under uneven light -> ink above the local background,
    float32 (h, w), 0 or above.

    The background is a grey-level morphology filter with a ``size`` x ``size`` square
    (``scipy.ndimage``), which removes every stroke narrower than the square and keeps the
    rest, lighting changes and steps wider than the square included. Dark ink: the paper's
    brightness ``P`` is the closing of ``gray`` (a dilation then an erosion), and the ink is
    ``(P - gray) / P``, the ink's share of the light the paper reflects there (light
    multiplies reflectance, so a stroke in a shadow is as strong as one in full light).
    Where ``P`` is below :data:`LIGHT_FLOOR` of its maximum there is no paper to read (a
    table beyond the page, a black shadow): the ink is 0 there, rather than noise divided by
    next to nothing. Light ink on a dark ground: the background is the opening, subtracted
    (a white top-hat).
    """
    from scipy import ndimage

    if dark:
        paper = ndimage.grey_closing(gray, size=(size, size), mode="nearest")
        seen = paper >= LIGHT_FLOOR * float(paper.max())
        ink = np.divide(paper - gray, paper, out=np.zeros(gray.shape, np.float32), where=seen)
        return np.maximum(ink, 0, out=ink)
    background = ndimage.grey_opening(gray, size=(size, size), mode="nearest")
    return np.maximum(gray - background, 0, dtype=np.float32)


@dataclass
class Component:
    """One 8-connected component of the thresholded ink.

    Attributes:
        label: its number in the label image (1, 2, ...).
        ink: the sum of the flattened ink over its pixels.
        box: its bounding box ``(top, left, bottom, right)``, inclusive, in pixels.
        contact: the largest share of a frame side's length it lies along (0: inside).
        centre: the share of its ink in the frame's central half (the middle half of the
            rows and of the columns).
    """

    label: int
    ink: float
    box: tuple[int, int, int, int]
    contact: float
    centre: float

    def gap(self, box: tuple[int, int, int, int]) -> int:
        """Pixels between its bounding box and ``box`` (0 when they overlap or touch)."""
        (t, l, b, r), (ot, ol, ob, orr) = self.box, box
        return max(ot - b, t - ob, ol - r, l - orr, 0)

    @property
    def page_edge(self) -> bool:
        """Lies along a side of the frame (over :data:`EDGE_CONTACT` of its length) and
        (almost) all of it near the sides: under :data:`CENTRE_SHARE` of its ink in the
        frame's central half. The page's edge or the table beyond it; a digit that fills the
        frame touches the sides too, but has its strokes across the middle."""
        return self.contact >= EDGE_CONTACT and self.centre < CENTRE_SHARE


def components(mask: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, list[Component]]:
    """The 8-connected components of ``mask`` (h, w) bool (``scipy.ndimage.label``): the label
    image (h, w) int32 and a :class:`Component` for each, its ink summed from ``weight``."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return labels, []
    index = np.arange(1, n + 1)
    h, w = mask.shape
    ink = ndimage.sum_labels(weight, labels, index)
    middle = np.zeros_like(weight)
    middle[h // 4:h - h // 4, w // 4:w - w // 4] = weight[h // 4:h - h // 4, w // 4:w - w // 4]
    centre = ndimage.sum_labels(middle, labels, index) / np.maximum(ink, 1e-12)
    contact = np.zeros(n)
    for line, length in ((labels[0], w), (labels[-1], w), (labels[:, 0], h), (labels[:, -1], h)):
        contact = np.maximum(contact, np.bincount(line, minlength=n + 1)[1:] / length)
    return labels, [Component(i + 1, float(ink[i]), (rows.start, cols.start, rows.stop - 1, cols.stop - 1),
                              float(contact[i]), float(centre[i]))
                    for i, (rows, cols) in enumerate(ndimage.find_objects(labels))]


def digit_mask(mask: np.ndarray, weight: np.ndarray, min_reach: float = 0.0) -> np.ndarray:
    """The pixels of ``mask`` (h, w) bool that belong to the digit, as a bool (h, w) array.

    Of the connected components (:func:`components`), the page's edge is dropped
    (:attr:`Component.page_edge`). The digit is the one with the most ink (sum of
    ``weight``) of the rest, one touching the frame counting :data:`BORDER_WEIGHT` of its
    ink (a tight crop's digit may touch it, but so do the corners of shadows). Other
    components are kept when they do not touch the frame, hold at least
    :data:`SPECK_FRACTION` of the digit's ink and lie within :data:`NEAR` times the larger
    side of the box of what is kept so far (at least ``min_reach`` pixels), which grows with
    each piece kept (a digit written in two strokes, a broken pencil line, a faint digit
    that thresholds into fragments). All False when nothing is left.
    """
    labels, found = components(mask, weight)
    candidates = [c for c in found if not c.page_edge]
    if not candidates:
        return np.zeros_like(mask)
    main = max(candidates, key=lambda c: c.ink * (BORDER_WEIGHT if c.contact > 0 else 1.0))
    keep = np.zeros(len(found) + 1, bool)
    keep[main.label] = True
    box = main.box
    others = [c for c in candidates if c.contact == 0 and c.ink >= SPECK_FRACTION * main.ink and c is not main]
    grown = True
    while grown:                       # a piece near a kept piece is kept: the box grows with it
        grown = False
        reach = max(min_reach, NEAR * max(box[2] - box[0] + 1, box[3] - box[1] + 1))
        for c in others:
            if not keep[c.label] and c.gap(box) <= reach:
                keep[c.label] = grown = True
                box = (min(box[0], c.box[0]), min(box[1], c.box[1]), max(box[2], c.box[2]), max(box[3], c.box[3]))
    return keep[labels]


def stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width in pixels of a bool (h, w) mask: four times the mean Euclidean
    distance of its pixels to the background (``scipy.ndimage.distance_transform_edt``),
    which is exact for a long strip of any width."""
    from scipy import ndimage

    if not mask.any():
        return 0.0
    return 4.0 * float(ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1][mask].mean())


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Turn luminance (h, w) in [0, 1] into ink in [0, 1]: 0 paper, 1 a full stroke.

    The steps of the module's description: working size, polarity, lighting flattened,
    Otsu's threshold, the digit's connected components. The background filter's square is
    first a third of the shorter side; once the digit's strokes are found, the lighting is
    flattened again with a square of three stroke widths (at least 3 pixels, at most that
    third), so that a shadow or page edge wider than that is background, not ink. Grey levels
    are kept (see the module's description); the result may be smaller than ``gray``
    (working size).

    Returns:
        float32 (h', w') with h', w' at most :data:`WORK_SIDE`.

    Raises:
        ValueError: no ink (:data:`NO_INK`): a uniform image, or ink and paper differing by
            less than :data:`MIN_CONTRAST`; pixels that are not finite (:data:`NOT_FINITE`, a
            float TIFF's NaN).
    """
    gray = np.asarray(gray, np.float32)
    if not np.isfinite(gray).all():
        raise ValueError(NOT_FINITE)
    gray = working_size(gray)
    if float(gray.max() - gray.min()) < MIN_CONTRAST:
        raise ValueError(NO_INK)
    dark = ink_is_dark(gray)
    largest = max(3, min(gray.shape) // 3)
    flat, kept = _separate(gray, dark, largest)
    if kept.any():
        width = stroke_width(kept)
        size = int(np.clip(round(3 * width), 3, largest))
        flat, kept = _separate(gray, dark, size, min_reach=2 * width)
    if not kept.any():
        raise ValueError(NO_INK)
    paper = float(np.median(flat[~kept])) if not kept.all() else 0.0
    level = float(np.percentile(flat[kept], 90))
    if level - paper < MIN_CONTRAST:
        raise ValueError(NO_INK)
    out = np.clip((flat - paper) / (level - paper), 0.0, 1.0)
    return out * _near(kept, max(1, round(stroke_width(kept) / 3)))


def _separate(gray: np.ndarray, dark: bool, size: int, min_reach: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Flatten with a ``size`` square, threshold with Otsu, keep the digit's components
    (:func:`digit_mask`, pieces within ``min_reach`` pixels at least): (flattened float32
    (h, w), digit bool (h, w))."""
    from skimage.filters import threshold_otsu

    flat = flatten(gray, dark, size)
    if float(flat.max()) <= 0.0:
        return flat, np.zeros(flat.shape, bool)
    return flat, digit_mask(flat > threshold_otsu(flat), flat, min_reach)


def _near(mask: np.ndarray, margin: int) -> np.ndarray:
    """1.0 on ``mask`` and within ``margin`` pixels of it (a square dilation), else 0.0."""
    from scipy import ndimage

    return ndimage.maximum_filter(mask.astype(np.float32), size=2 * margin + 1, mode="constant")
