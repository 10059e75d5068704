"""Write the bad-input corpus ``tests/bad_inputs/``: one folder per case.

    python scripts/make_bad_inputs.py        # rewrites tests/bad_inputs/ (commit the result)

``tests/test_corpus.py`` also runs it into a temporary folder and checks that the committed
corpus is what it writes, so a table edited without rerunning it fails the tests.

Each case folder holds the bad file(s), the config that reads them where one is needed, and
``case.yaml``: the ``softmax`` arguments to run in that folder, the exit code and the message
fragments the one ``softmax: error:`` line must hold. ``tests/test_corpus.py`` replays them.
The config, CSV, IDX and image-folder cases are the tables of ``tests/test_bad_inputs.py``;
checkpoints and images are built here.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_bad_inputs as tables  # noqa: E402
from softmax_cli.checkpoint import save_checkpoint  # noqa: E402
from softmax_cli.data.prepare import Preprocessor  # noqa: E402
from softmax_cli.nn import MLP  # noqa: E402

OUT = ROOT / "tests" / "bad_inputs"


def write_case(out: Path, name: str, files: dict, args: list[str], expect: tuple, code: int = 2) -> None:
    folder = out / name
    folder.mkdir(parents=True)
    for rel, content in files.items():
        tables._write(folder / rel, content)
    spec = {"args": args, "exit": code, "expect": list(expect)}
    (folder / "case.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def tiny_checkpoint(path: Path, **meta_changes) -> None:
    """A valid 4-pixel (2x2), 2-class checkpoint, with ``meta_changes`` applied."""
    model = MLP([4, 3, 2], rng=np.random.default_rng(0))
    pre = Preprocessor(np.zeros(4), np.ones(4), 255.0, "global")
    meta = {"classes": ["a", "b"], "image_shape": [2, 2], "image_style": "mnist",
            "config": {"data": {"source": "digits"}}, "epoch": 1, "metrics": {}}
    save_checkpoint(path, model, pre, meta)
    if meta_changes:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        stored = json.loads(str(arrays["metadata"]))
        stored.update(meta_changes)
        arrays["metadata"] = np.array(json.dumps(stored))
        np.savez(path, **arrays)


def checkpoint_cases(out: Path, tmp: Path) -> None:
    good = tmp / "good.npz"
    tiny_checkpoint(good)
    raw = good.read_bytes()
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}

    def npz_bytes(**changes) -> bytes:
        out = tmp / "x.npz"
        np.savez(out, **{k: v for k, v in {**arrays, **changes}.items() if v is not None})
        return out.read_bytes()

    future = tmp / "future.npz"
    tiny_checkpoint(future, format_version=99)
    pickled = tmp / "pickled.npz"
    np.savez(pickled, **{**arrays, "W0": np.array([{"evil": 1}], dtype=object)})
    cases = {
        "not_a_zip": (b"hello, I am text\n", ("model.npz", "not a softmax checkpoint")),
        "zero_bytes": (b"", ("model.npz", "not a softmax checkpoint")),
        "truncated": (raw[: len(raw) // 2], ("model.npz", "not a softmax checkpoint")),
        "npy_not_npz": (b"\x93NUMPY" + raw[6:200], ("model.npz", "single .npy array")),
        "missing_W1": (npz_bytes(W1=None), ("model.npz", "not a softmax checkpoint", "W1")),
        "no_metadata": (npz_bytes(metadata=None), ("model.npz", "no metadata")),
        "shapes_do_not_chain": (npz_bytes(W1=np.zeros((5, 2), np.float32)), ("model.npz", "do not match")),
        "future_version": (future.read_bytes(), ("model.npz", "format version 99", "upgrade softmax")),
        "pickled_object_array": (pickled.read_bytes(), ("model.npz", "pickled", "never loaded")),
    }
    for name, (content, expect) in cases.items():
        write_case(out, f"checkpoint-{name}", {"model.npz": content}, ["eval", "model.npz"], expect)


def image_cases(out: Path, tmp: Path) -> None:
    """``softmax predict`` cases: a file it cannot use is reported on one line and skipped,
    and the exit code is 1 (a failure while running; the other files would be printed)."""
    model = tmp / "model.npz"
    tiny_checkpoint(model)
    png = tmp / "ok.png"
    pixels = np.zeros((28, 28), np.uint8)
    pixels[4:24, 12:16] = 255
    Image.fromarray(pixels).save(png)
    bomb = tmp / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)          # 400 megapixels in a few kilobytes
    warn = tmp / "warn.png"
    Image.new("1", (10000, 9000)).save(warn)           # 90 megapixels: Pillow alone only warns
    predict = ["predict", "-c", "model.npz"]
    cases = {
        "zero_bytes": ({"img.png": b""}, ["img.png"], ("img.png", "not an image file")),
        "text_named_png": ({"img.png": b"this is not a PNG\n"}, ["img.png"], ("img.png", "not an image file")),
        "truncated_png": ({"img.png": png.read_bytes()[:-30]}, ["img.png"], ("img.png", "cannot decode image")),
        "gzip_named_png": ({"img.png": gzip.compress(b"not an image", mtime=0)}, ["img.png"], ("img.png", "not an image file")),
        "decompression_bomb": ({"img.png": bomb.read_bytes()}, ["img.png"],
                               ("img.png", "image too large", "decompression bomb")),
        "decompression_bomb_warning_size": ({"img.png": warn.read_bytes()}, ["img.png"],
                                            ("img.png", "image too large: more than 89478485 pixels")),
        "missing": ({}, ["img.png"], ("img.png", "file not found")),
        "glob_without_match": ({"img.png": png.read_bytes()}, ["scans/*.png"],
                               ("scans/*.png", "no file matches this pattern")),
        "folder_without_files": ({"scans/.DS_Store": b"x"}, ["scans"], ("scans", "folder holds no files")),
    }
    for name, (files, args, expect) in cases.items():
        write_case(out, f"image-{name}", {**files, "model.npz": model.read_bytes()}, predict + args, expect, code=1)


def main(out: Path = OUT) -> None:
    """Write every case into ``out`` (emptied first)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name, config, args, expect in tables.CONFIG_CASES:
        write_case(out, f"config-{name}", {"cfg.yaml": config}, ["train", "cfg.yaml", "--quiet", *args], expect)
    for name, files, extra, expect in tables.CSV_CASES:
        train = next((n for n in files if n.startswith("train.") and n.endswith(("csv", "gz"))), "train.csv")
        write_case(out, f"csv-{name}", {**files, "cfg.yaml": tables.csv_config(train, extra)},
                   ["train", "cfg.yaml", "--quiet"], expect)
    for name, files, expect in tables.IDX_CASES:
        write_case(out, f"idx-{name}", {**files, "cfg.yaml": "data: {source: idx, root: mnist}\ntrain: {epochs: 1}\n"},
                   ["train", "cfg.yaml", "--quiet"], expect)
    for name, files, extra, expect in tables.FOLDER_CASES:
        write_case(out, f"folder-{name}", {**files, "cfg.yaml": tables.folder_config(extra)},
                   ["train", "cfg.yaml", "--quiet"], expect)
    tmp = out / ".tmp"
    tmp.mkdir()
    try:
        checkpoint_cases(out, tmp)
        image_cases(out, tmp)
    finally:
        shutil.rmtree(tmp)
    print(f"{sum(1 for _ in out.glob('*/case.yaml'))} cases in {out}")


if __name__ == "__main__":
    main()
