"""Write the pictures of docs/pictures.md (docs/images/*.png) through the softmax command.

    python scripts/make_doc_images.py [--run runs/digits] [--out docs/images]

Without ``--run`` it trains configs/digits.yaml in a temporary directory first (minutes on a
busy two-core machine). Then ``softmax eval RUN/best.npz --report`` draws the pictures, and
the three PNGs the page shows are copied to ``--out``, re-encoded with Pillow's ``optimize``
(the same pixels, smaller files).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def softmax(*args: str, cwd: Path) -> None:
    """Run the installed ``softmax`` command; stop on a failure."""
    subprocess.run(["softmax", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="an existing run directory of configs/digits.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = args.run.resolve() if args.run else None
        if run is None:
            softmax("train", str(ROOT / "configs" / "digits.yaml"), "--quiet", cwd=tmp)
            run = tmp / "runs" / "digits"
        softmax("eval", str(run / "best.npz"), "--report", str(tmp / "report"), cwd=tmp)
        args.out.mkdir(parents=True, exist_ok=True)
        drawn = {"curves.png": run / "curves.png", "confusion_matrix.png": tmp / "report" / "confusion_matrix.png",
                 "errors.png": tmp / "report" / "errors.png"}
        for name, source in drawn.items():
            with Image.open(source) as image:
                image.save(args.out / name, optimize=True)
    print(f"wrote {', '.join(drawn)} to {args.out}")


if __name__ == "__main__":
    main()
