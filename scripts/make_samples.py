"""Write the sample PNGs in data/samples/ from the two test sets.

    python scripts/make_samples.py [--mnist FOLDER] [--out data/samples]   # MNIST: $SOFTMAX_MNIST_DIR, else the download cache

For each class 0-9: ``digits-<c>.png``, the first image of that class in the digits test
split of configs/digits.yaml (seed 0), drawn 8x larger (64x64) as dark ink on white; and
``mnist-<c>.png``, the first MNIST test image of that class, drawn 2x larger (56x56) as dark
ink on white. They are what a user's scan looks like, not what the model saw.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from softmax_cli.cache import mnist_dir
from softmax_cli.config import load_config
from softmax_cli.data.sources import read_idx
from softmax_cli.experiment import prepare_data

ROOT = Path(__file__).resolve().parent.parent


def save_dark_on_white(ink: np.ndarray, scale: int, path: Path) -> None:
    """``ink`` (h, w) in [0, 1] -> grayscale PNG ``scale`` times larger, ink dark on white."""
    img = Image.fromarray(np.round(255 * (1 - ink)).astype(np.uint8))
    img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=None, help="folder of MNIST's IDX files (default: $SOFTMAX_MNIST_DIR, else the download cache)")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "samples")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    _, splits = prepare_data(load_config(ROOT / "configs" / "digits.yaml"))
    mnist = args.mnist or mnist_dir()
    images = read_idx(mnist / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz")
    for c in range(10):
        digit = splits.X_test[np.flatnonzero(splits.y_test == c)[0]].reshape(8, 8) / 16.0
        save_dark_on_white(digit, 8, args.out / f"digits-{c}.png")
        save_dark_on_white(images[np.flatnonzero(labels == c)[0]] / 255.0, 2, args.out / f"mnist-{c}.png")
    print(f"wrote 20 PNGs to {args.out}")


if __name__ == "__main__":
    main()
