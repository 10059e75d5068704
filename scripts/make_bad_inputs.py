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


# ================================================================ data formats and readers
# Cases of helper "data" (issues 16, 18, 19): CSV layouts (delimiters, one-hot labels, pixel
# ranges), .npz/.npy arrays, named data sets' local copies, and hostile reader input.
def npz_bytes(**arrays) -> bytes:
    """An .npz archive of ``arrays`` with fixed zip time stamps (np.savez stamps the time of
    writing), so that the corpus is the same bytes on every run."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=True)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buf.getvalue()


def npy_bytes(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=True)
    return buf.getvalue()


def idx_header(code: int, *shape: int) -> bytes:
    import struct

    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def data_config(data: str) -> str:
    return f"data: {{{data}}}\ntrain: {{epochs: 1}}\n"


ROWS = "0,200,0,180,0\n1,0,210,0,190\n" * 4          # label first, 2x2 pixels
X4 = np.tile(np.array([[200, 0, 180, 0], [0, 210, 0, 190]], np.uint8), (4, 1)).reshape(8, 2, 2)
Y4 = np.tile([0, 1], 4)

DATA_CASES = [
    # name, files, data config (inside data: {...}), fragments
    ("csv-onehot_too_few_columns", {"train.csv": ROWS},
     "source: csv, train: train.csv, label_column: onehot_last, image_shape: [2, 2]",
     ("train.csv", "rows of 5 columns leave 1 for a one-hot label", "at least 2")),
    ("csv-onehot_not_onehot", {"s.data": "1 0 0.5 0.5 0.5 0.5\n0 1 0.5 0.5 0.5 0.5\n1 1 0.5 0.5 0.5 0.5\n"},
     "source: csv, train: s.data, label_column: onehot_first, image_shape: [2, 2], pixel_max: 1",
     ("s.data", "line 3: the 2 label columns (data.label_column onehot_first) are not one-hot", "[1, 1]")),
    ("csv-onehot_without_image_shape", {"s.data": "1 0 0.5 0.5 0.5 0.5\n"},
     "source: csv, train: s.data, label_column: onehot_last",
     ("cfg.yaml", "data.label_column: onehot_last needs data.image_shape")),
    ("csv-pixel_outside_range", {"u.tsv": "0\t-1\t1\t0.5\t1\n1\t-1\t1.5\t0\t0\n"},
     "source: csv, train: u.tsv, label_column: first, pixel_range: [-1, 1]",
     ("u.tsv", "line 2, column 3: pixel value 1.5 outside [-1, 1] (data.pixel_range)")),
    ("csv-pixel_range_reversed", {"u.tsv": "0\t1\n"}, "source: csv, train: u.tsv, pixel_range: [1, -1]",
     ("cfg.yaml", "data.pixel_range: expected [background, full ink]", "the first below the second")),
    ("csv-pixel_range_and_pixel_max", {"u.tsv": "0\t1\n"},
     "source: csv, train: u.tsv, pixel_range: [0, 1], pixel_max: 1",
     ("cfg.yaml", "give data.pixel_range or data.pixel_max, not both")),
    ("csv-delimiter_unknown", {"t.csv": ROWS}, "source: csv, train: t.csv, delimiter: pipe",
     ("cfg.yaml", "data.delimiter", "comma, semicolon, tab, whitespace", "'pipe'")),
    ("csv-delimiter_cannot_tell", {"t.csv": "1,2;3\n4;5,6\n7\t8\n"}, "source: csv, train: t.csv, label_column: first",
     ("t.csv", "cannot tell the delimiter", "set data.delimiter")),
    ("csv-cell_over_131072_characters",
     {"t.csv.gz": gzip.compress(("0,1,2,3,4\n1,2," + "7" * 131073 + ",3,4\n").encode(), mtime=0)},
     "source: csv, train: t.csv.gz, label_column: first",
     ("t.csv.gz", "line 2, column 3: a cell of more than", "expected a number")),
    ("csv-quoted_cell_not_a_number", {"t.csv": '0,1,2,3,4\n1,"1,5",2,3,4\n'},
     "source: csv, train: t.csv, label_column: first",
     ("t.csv", "line 2, column 2: expected a number, got '1,5'")),
    ("csv-underscore_number", {"t.csv": "0,1,2,3,4\n1,1,2,3,4\n1,1_0,2,3,4\n"},
     "source: csv, train: t.csv, label_column: first",
     ("t.csv", "line 3, column 2: expected a number, got '1_0'")),
    ("csv-one_class_per_row", {"t.csv": "".join(f"{i},1,2,3,4\n" for i in range(2000))},
     "source: csv, train: t.csv, label_column: first",
     ("t.csv", "cannot split the data: 2000 of 2000 classes have only 1 member",
      "'0', '1', '2', '3', '4' and 1995 more")),
    ("csv-device", {}, "source: csv, train: /dev/zero", ("/dev/zero: not a regular file (a device)",)),
    ("csv-tilde_unknown_user", {}, "source: csv, train: ~nosuchuser/a.csv",
     ("cfg.yaml", "data.train", "cannot expand '~nosuchuser', no such user's home directory")),
    ("idx-header_65_dimensions", {"mnist/train-images-idx3-ubyte": idx_header(0x08, *[1] * 65) + b"\0",
                                  "mnist/train-labels-idx1-ubyte": idx_header(0x08, 1) + b"\0"},
     "source: idx, root: mnist", ("train-images-idx3-ubyte", "declares 65 dimensions", "at most 4")),
    ("idx-gzip_declares_more_than_it_can_hold", {
        "mnist/train-images-idx3-ubyte.gz": gzip.compress(idx_header(0x08, 100000, 100, 100) + bytes(100), mtime=0),
        "mnist/train-labels-idx1-ubyte": idx_header(0x08, 1) + b"\0"},
     "source: idx, root: mnist", ("train-images-idx3-ubyte.gz", "asks for 1,000,000,000 bytes",
                                  "more than this gzip file may inflate to")),
    ("idx-named_source_label_out_of_range", {
        "copy/train-images-idx3-ubyte": idx_header(0x08, 4, 2, 2) + bytes(range(16)),
        "copy/train-labels-idx1-ubyte": idx_header(0x08, 4) + bytes([1, 2, 12, 1])},
     "source: mnist, root: copy", ("train-labels-idx1-ubyte", "label 2 is 12", "not one of the data set's 10 classes")),
    ("npz-not_an_archive", {"d.npz": "hello, I am text\n"}, "source: npz, train: d.npz",
     ("d.npz", "not a readable .npz archive")),
    ("npz-arrays_missing", {"d.npz": npz_bytes(a=X4, b=Y4)}, "source: npz, train: d.npz",
     ("d.npz", "no array named 'x'", "'a', 'b'", "data.arrays")),
    ("npz-named_arrays_missing", {"d.npz": npz_bytes(x=X4, y=Y4)}, "source: npz, train: d.npz, arrays: [imgs, labels]",
     ("d.npz", "no array named 'imgs'")),
    ("npz-arrays_count", {"d.npz": npz_bytes(x=X4, y=Y4)}, "source: npz, train: d.npz, arrays: [x]",
     ("cfg.yaml", "data.arrays: expected the names of [x, y] or [x_train, y_train, x_test, y_test]")),
    ("npz-object_array", {"d.npz": npz_bytes(x=np.array([{"a": 1}] * 8, dtype=object), y=Y4)},
     "source: npz, train: d.npz", ("d.npz", "array 'x'", "not numbers", "pickle, which is never loaded")),
    ("npz-label_count", {"d.npz": npz_bytes(x=X4, y=Y4[:7])}, "source: npz, train: d.npz",
     ("d.npz", "array 'y'", "7 labels for 8 images")),
    ("npz-pixel_outside_range", {"d.npz": npz_bytes(x=np.where(X4 > 0, 1.0, 0.0).astype(np.float32) * 2, y=Y4)},
     "source: npz, train: d.npz, pixel_range: [0, 1]",
     ("d.npz", "array 'x'", "image 0, pixel 0: value 2 outside [0, 1] (data.pixel_range)")),
    ("npz-onehot_not_onehot", {"d.npz": npz_bytes(x=X4, y=np.array([[1, 0], [1, 1]] * 4))},
     "source: npz, train: d.npz", ("d.npz", "array 'y'", "row 1 is not a one-hot label", "[1, 1]")),
    ("npz-images_shape", {"d.npz": npz_bytes(x=np.zeros((8, 2, 2, 3), np.uint8), y=Y4)},
     "source: npz, train: d.npz", ("d.npz", "images of shape (8, 2, 2, 3)", "(n, height, width)")),
    ("npz-single_npy_as_train", {"x.npy": npy_bytes(X4)}, "source: npz, train: x.npy",
     ("x.npy", "a single .npy array, not an .npz archive", "data.train_images")),
    ("npz-npy_header_declares_more", {"x.npy": npy_bytes(X4)[:-20] + b"", "y.npy": npy_bytes(Y4)},
     "source: npz, train_images: x.npy, train_labels: y.npy", ("x.npy", "more than the file holds")),
    ("npz-npy_not_npy", {"x.npy": "just text\n", "y.npy": npy_bytes(Y4)},
     "source: npz, train_images: x.npy, train_labels: y.npy", ("x.npy", "not a readable .npy array")),
    ("npz-one_class", {"d.npz": npz_bytes(x=X4, y=np.ones(8, np.uint8))}, "source: npz, train: d.npz",
     ("d.npz", "every training label is 1", "at least two classes")),
    ("npz-test_shape_differs", {"d.npz": npz_bytes(x_train=X4, y_train=Y4, x_test=np.zeros((2, 3, 3), np.uint8),
                                                   y_test=np.array([0, 1]))},
     "source: npz, train: d.npz", ("d.npz", "test images are (3, 3), training images (2, 2)")),
    ("npz-train_and_npy_files", {"d.npz": npz_bytes(x=X4, y=Y4)},
     "source: npz, train: d.npz, train_images: x.npy, train_labels: y.npy",
     ("cfg.yaml", "give data.train (an .npz archive) or the .npy files", "not both")),
]


def data_reader_cases(out: Path) -> None:
    """Write :data:`DATA_CASES`: ``softmax train cfg.yaml`` must fail with one line each."""
    for name, files, data, expect in DATA_CASES:
        write_case(out, name, {**files, "cfg.yaml": data_config(data)}, ["train", "cfg.yaml", "--quiet"], expect)


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
        data_reader_cases(out)
    finally:
        shutil.rmtree(tmp)
    print(f"{sum(1 for _ in out.glob('*/case.yaml'))} cases in {out}")


if __name__ == "__main__":
    main()
