"""Image files to model input: the digit normalisation a model's training data went through.

MNIST (LeCun et al. 1998, http://yann.lecun.com/exdb/mnist/): each digit was size-normalised to
fit a 20x20 box keeping its aspect ratio, anti-aliased, then centred by its centre of mass in a
28x28 field. scikit-learn's digits (UCI optdigits): digits were scaled to fill a 32x32 bitmap
and the ink counted in 4x4 blocks, giving 8x8 images on a 0-16 scale. :data:`STYLES` records
both recipes; :func:`image_to_input` applies one to an arbitrary image file. Training from a
folder of images (``data.source: folder``) and ``softmax predict`` both go through
:func:`image_to_input`, so a model sees at predict time exactly what it was trained on.
:func:`find_files` turns command-line arguments (files, folders, glob patterns) into files.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UserError
from ..files import open_regular
from .ink import ink_map

# fit: fraction of the frame the ink's bounding box is scaled to fit (keeping aspect ratio);
# center: "mass" (centre of mass to the frame's centre) or "box" (bounding box centred);
# supersample: draw at this multiple of the size, then average blocks down (area averaging).
STYLES = {
    "mnist": {"fit": 20 / 28, "center": "mass", "supersample": 1},
    "uci_digits": {"fit": 1.0, "center": "box", "supersample": 4},
}
INK_THRESHOLD = 0.1  # ink level (0-1) that counts towards the bounding box


def style_for(source: str) -> str:
    """The normalisation style for a data source: ``uci_digits`` for digits, else ``mnist``."""
    return "uci_digits" if source == "digits" else "mnist"


def _walked(path: str) -> bool:
    """Whether a name found in a folder walk is taken: anything but a folder (or a link to
    one) and a broken link. A FIFO, socket or device is taken, to be refused as "not a
    regular file" when read; so is a name that cannot be looked at (permission denied), to
    be reported as such rather than skipped."""
    try:
        return not stat.S_ISDIR(os.stat(path).st_mode)
    except PermissionError:
        return True
    except OSError:
        return False


def files_in(folder: str | Path) -> list[Path]:
    """Every file below ``folder``, recursively, in sorted order (each folder's files by name,
    then its sub-folders by name). Hidden files and folders (names starting with ``.``) are
    skipped; symbolic links to folders are not followed (no cycles), links to files are kept,
    broken links skipped. FIFOs, sockets and devices are kept, so that reading them is
    refused (:func:`load_grayscale`) instead of their being skipped unseen.

    Returns:
        Paths that start with ``folder`` as given.

    Raises:
        UserError: ``folder`` or a folder below it cannot be listed (permission denied),
            naming it: an unreadable folder is not taken for an empty one.
    """
    def unreadable(exc: OSError) -> None:
        raise UserError(f"{exc.filename}: cannot list this folder ({exc.strerror or exc})")

    found = []
    for top, dirs, names in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(top, n) for n in sorted(names) if not n.startswith(".")
                  and _walked(os.path.join(top, n))]
    return found


def _lookup(arg: str) -> bool:
    """Whether ``arg`` exists (a link, even a broken one, does).

    Raises:
        UserError: it cannot be known: a folder on the way may not be searched (permission
            denied), or the name is too long or loops.
    """
    try:
        os.lstat(arg)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError:
        raise UserError(f"{arg}: permission denied (a folder on its way cannot be searched)") from None
    except OSError as exc:
        raise UserError(f"{arg}: {exc.strerror or exc}") from None


def find_files(args: list[str]) -> list[Path | UserError]:
    """The files named by command-line arguments, in the order given.

    An argument that exists is taken as it is: a file, or a folder searched recursively
    (:func:`files_in`). One that does not exist is expanded as a glob pattern with the
    standard library (``glob.glob(arg, recursive=True)``: ``*``, ``?``, ``[...]`` and
    ``**`` for any depth; hidden names only when the pattern spells the dot); a folder it
    matches is searched too. Which files are images is decided later, by their content
    (and a FIFO, socket or device is refused then, see :func:`load_grayscale`).

    Returns:
        The files found, with a :class:`UserError` in the place of each argument that gave
        none (a missing path, a pattern without matches, a folder without files, a path
        behind a folder that may not be searched), so that problems can be reported in the
        order of the arguments.
    """
    found: list[Path | UserError] = []
    for arg in map(str, args):
        try:
            exists = _lookup(arg)
        except UserError as exc:
            found.append(exc)
            continue
        if exists:
            matches = [arg]
        else:
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                magic = any(c in arg for c in "*?[")
                found.append(UserError(f"{arg}: no file matches this pattern" if magic
                                       else f"{arg}: file not found"))
                continue
        try:
            files = [f for match in matches for f in (files_in(match) if os.path.isdir(match) else [Path(match)])]
        except UserError as exc:           # a folder that cannot be listed
            found.append(exc)
            continue
        found += files or [UserError(f"{arg}: folder holds no files")]
    return found


def load_grayscale(path: str | Path | BinaryIO) -> np.ndarray:
    """Open an image file and return its luminance, float32 (h, w) in [0, 1].

    ``path`` may also be a binary file object (the server's uploads, held in memory): its
    ``str()`` names it in messages.

    The format is told by the file's content, not its name: anything Pillow decodes (PNG,
    JPEG, BMP, GIF, TIFF, WebP, ...; the first frame of an animation). EXIF orientation is
    applied; transparency (alpha or a palette's transparent colour) is composited on white,
    as a viewer shows it; 16-bit, 32-bit and float grayscale images are scaled from their
    own minimum and maximum. Pillow's decompression-bomb guard is kept, and strictly: an
    image of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (89 million by default) is
    refused before it is decoded, where Pillow itself would only warn below twice that.

    Raises:
        UserError: the file is missing, unreadable (permission denied), not a regular file
            (a FIFO, socket or device: refused before it is read, it could block), not an
            image Pillow can decode, or larger than the decompression-bomb limit.
    """
    in_memory = hasattr(path, "read")
    path = path if in_memory else Path(path)
    opened = contextlib.nullcontext(path) if in_memory else open_regular(path, "file", "an image file")
    try:
        with warnings.catch_warnings(), opened as f:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as img:
                img = ImageOps.exif_transpose(img)
                if img.mode in ("I", "F") or img.mode.startswith("I;16"):
                    # 16-bit, 32-bit and float grayscale: convert("L") would clip them to 0-255,
                    # so stretch the image's own range to [0, 1] (ink_map stretches contrast anyway)
                    gray = np.asarray(img, dtype=np.float32)
                    low, high = float(gray.min()), float(gray.max())
                    return (gray - low) / (high - low) if high > low else np.zeros_like(gray)
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    rgba = img.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    img = Image.alpha_composite(white, rgba)
                gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path}: image too large: more than {Image.MAX_IMAGE_PIXELS} pixels, Pillow's "
                        f"decompression bomb limit (refused before decoding)") from None
    except (OSError, ValueError, EOFError, SyntaxError, struct.error) as exc:
        raise UserError(f"{path}: cannot decode image ({exc})") from None
    return gray


def normalize_digit(ink: np.ndarray, shape: tuple[int, int], style: str = "mnist") -> np.ndarray:
    """Crop, size-normalise and centre a digit as the training data was (see :data:`STYLES`).

    Args:
        ink: float32 (h, w) in [0, 1], 0 = background.
        shape: ``(height, width)`` of the model's input images.
        style: a key of :data:`STYLES`.

    Returns:
        float32 ``shape`` array in [0, 1].

    Raises:
        ValueError: no pixel reaches :data:`INK_THRESHOLD`.
    """
    spec = STYLES[style]
    rows = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    if rows.size == 0:
        raise ValueError("no ink found")
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    ss = spec["supersample"]
    H, W = shape[0] * ss, shape[1] * ss
    box_h, box_w = H * spec["fit"], W * spec["fit"]
    scale = min(box_h / crop.shape[0], box_w / crop.shape[1])
    new_h = max(1, min(H, round(crop.shape[0] * scale)))
    new_w = max(1, min(W, round(crop.shape[1] * scale)))
    glyph = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32)).resize((new_w, new_h), Image.Resampling.LANCZOS)
    glyph_arr = np.clip(np.asarray(glyph, dtype=np.float32), 0.0, 1.0)

    if spec["center"] == "mass" and glyph_arr.sum() > 0:
        total = glyph_arr.sum()
        cy = (glyph_arr.sum(axis=1) * np.arange(new_h)).sum() / total
        cx = (glyph_arr.sum(axis=0) * np.arange(new_w)).sum() / total
        # MNIST puts the centre of mass at pixel (14, 14) of 28x28, i.e. at (H/2, W/2)
        top, left = round(H / 2 - cy), round(W / 2 - cx)
    else:
        top, left = (H - new_h) // 2, (W - new_w) // 2
    canvas = Image.new("F", (W, H), 0.0)
    canvas.paste(Image.fromarray(glyph_arr), (left, top))
    if ss > 1:
        canvas = canvas.resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.clip(np.asarray(canvas, dtype=np.float32), 0.0, 1.0)


def image_to_input(path: str | Path, shape: tuple[int, int], pixel_max: float,
                   style: str = "mnist") -> np.ndarray:
    """Read an image file and map it to one raw model input row.

    Grayscale (alpha on white, :func:`load_grayscale`); find the ink as a photo or scan
    needs it (:func:`~softmax_cli.data.ink.ink_map`: polarity from the histogram, uneven
    lighting flattened, Otsu's threshold, only the digit's connected components, grey levels
    kept); normalise the digit as the training data was (:func:`normalize_digit`); scale to
    ``[0, pixel_max]``.

    Returns:
        float32 (height * width,) in the training data's raw pixel units.

    Raises:
        UserError: unreadable or non-image file, or an image with no ink (naming the file).
    """
    gray = load_grayscale(path)
    try:
        digit = normalize_digit(ink_map(gray), shape, style)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    return (digit * pixel_max).reshape(-1)
