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


def write_case(out: Path, name: str, files: dict, args: list[str], expect: tuple, code: int = 2,
               setup: dict | None = None) -> None:
    """``setup``: what ``tests/test_corpus.py`` makes in the case folder before the run, which
    git cannot hold (``fifos``: names; ``links``: name -> target; ``modes``: name -> mode,
    then the run is made with permissions applied even for root)."""
    folder = out / name
    folder.mkdir(parents=True)
    for rel, content in files.items():
        tables._write(folder / rel, content)
    spec = {"args": args, "exit": code, "expect": list(expect), **({"setup": setup} if setup else {})}
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


def predict_rows_cases(out: Path, tmp: Path) -> None:
    """``softmax predict`` on data files (rows of pixels for the 4-pixel tiny checkpoint): a
    file it cannot use is reported on one line and skipped, exit code 1, as for images."""
    model = tmp / "rows-model.npz"
    tiny_checkpoint(model)
    predict = ["predict", "-c", "model.npz"]
    cases = {
        "csv-predict_wrong_column_count": ({"t.csv": "1,2,3\n"}, ("t.csv", "rows of 3 columns",
                                                                 "expected 4 pixel values per row")),
        "csv-predict_pixel_outside_range": ({"t.csv": "0,0,0,256\n"}, ("t.csv", "line 1, column 4",
                                                                     "pixel value 256 outside [0, 255]")),
        "csv-predict_non_numeric": ({"t.csv": "p0,p1,p2,p3\n0,x,0,0\n"}, ("t.csv", "line 2, column 2",
                                                                         "expected a number, got 'x'")),
        "csv-predict_empty": ({"t.csv": ""}, ("t.csv", "empty CSV file")),
        "npz-predict_object_array": ({"x.npy": npy_bytes(np.array([{"a": 1}] * 3, dtype=object))},
                                     ("x.npy", "not numbers", "pickle, which is never loaded")),
        "npz-predict_wrong_shape": ({"x.npy": npy_bytes(np.zeros((3, 5), np.uint8))},
                                    ("x.npy", "arrays of shape (3, 5)", "expected (n, 4) pixel rows")),
        "npz-predict_no_array_x": ({"x.npz": npz_bytes(a=np.zeros((2, 4)), b=np.zeros(2))},
                                   ("x.npz", "expected one array, or one named 'x'")),
    }
    for name, (files, expect) in cases.items():
        write_case(out, name, {**files, "model.npz": model.read_bytes()}, predict + list(files), expect, code=1)


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


# ============================================================================ hardening
# Issue 19: bounded memory, untrusted checkpoints, path kinds and permissions, strict YAML,
# tracebacks, accepted-but-wrong metadata. One function per family; all made here.
MiB = 2**20


def _npy_header(shape: tuple, descr: str = "<f4") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _with_member(good: Path, name: str, write) -> bytes:
    """The bytes of ``good`` with the zip member ``name`` written by ``write(zipfile, name)``."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            if info.filename != name:
                dst.writestr(info, src.read(info))
        write(dst, name)
    return buf.getvalue()


def _zeros_member(shape: tuple):
    def write(zf, name):
        import zipfile

        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            f.write(_npy_header(shape))
            left = int(np.prod(shape)) * 4
            while left > 0:
                f.write(bytes(min(left, MiB)))
                left -= MiB
    return write


def _lying_sizes(good: Path, shape: tuple) -> bytes:
    """``good`` whose deflated W0 member declares a ``shape`` float32 array in its ``.npy``
    header and, consistently, in the zip headers, though it holds a few bytes: more than
    deflate can inflate them to."""
    import struct
    import zipfile

    header = _npy_header(shape)
    declared = len(header) + int(np.prod(shape)) * 4
    assert declared < 0xFFFFFFFF

    def write(zf, name):
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, header + bytes(64))

    raw = bytearray(_with_member(good, "W0.npy", write))
    # the uncompressed size in the local header (offset 22) and the central directory (24)
    for sig, name_len_at, name_at, size_at in ((b"PK\x03\x04", 26, 30, 22), (b"PK\x01\x02", 28, 46, 24)):
        start = 0
        while (at := raw.find(sig, start)) >= 0:
            n = struct.unpack_from("<H", raw, at + name_len_at)[0]
            if raw[at + name_at:at + name_at + n] == b"W0.npy":
                struct.pack_into("<I", raw, at + size_at, declared)
            start = at + 4
    return bytes(raw)


def memory_cases(out: Path, tmp: Path, good: Path) -> None:
    import zipfile

    huge = (500_000, 512_000)                           # 954 GiB of float32
    lying = _with_member(good, "W0.npy",    # ZipInfo: dated 1980 as NumPy's members, so the bytes never change
                         lambda zf, name: zf.writestr(zipfile.ZipInfo(name), _npy_header(huge) + bytes(8000)))
    metadata_bomb = tmp / "meta.npz"
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez_compressed(metadata_bomb, **{**arrays, "metadata": np.array(" " * (4 * MiB + 1))})
    cases = {
        "declares_954_gib_w0": (lying, ("model.npz", "not a softmax checkpoint", "W0", "954 GiB",
                                        "the archive member holds 8 KiB")),
        "deflate_cannot_hold": (_lying_sizes(good, (2**15, 2**14)),
                                ("model.npz", "not a softmax checkpoint", "W0", "more than deflate can hold")),
        "inflates_64_mib_w0": (_with_member(good, "W0.npy", _zeros_member((4096, 4096))),
                               ("model.npz", "W0 shape (4096, 4096)", "do not match", "expected (4, 3)")),
        "metadata_too_large": (metadata_bomb.read_bytes(), ("model.npz", "metadata of 4194305 characters")),
    }
    for name, (content, expect) in cases.items():
        write_case(out, f"checkpoint-{name}", {"model.npz": content}, ["inspect", "model.npz"], expect)
    big = "# comment\n" * (MiB // 10 + 1) + "data: {source: digits}\n"
    write_case(out, "config-larger_than_1_mib", {"cfg.yaml": big},
               ["train", "cfg.yaml"], ("cfg.yaml", "larger than 1 MiB", "too large for a config file"))
    write_case(out, "config-repeat_beyond_bound", {"cfg.yaml": tables.BASE},
               ["train", "cfg.yaml", "--repeat", "99999999999999999999999"], ("--repeat: at most 1000 runs",))


def untrusted_cases(out: Path, tmp: Path) -> None:
    """Checkpoints whose saved config names files: their content never shows (relative
    paths are resolved where eval runs, the case folder)."""
    cases = {
        "names_a_secret_csv": ({"source": "csv", "train": "shadow", "label_column": "first"},
                               {"shadow": "0,1,2,3\nroot,$6$SECRETHASH,19000,0\n"},
                               ("shadow: line 2, column 1: expected a number, got <content not shown: the file was "
                                "named by checkpoint model.npz, which may come from anyone>",)),
        "names_a_secret_csv_header": ({"source": "csv", "train": "shadow"}, {"shadow": "root:$6$SECRETHASH\n1\n"},
                                      ("shadow", "no column named 'label'", "(columns: <content not shown",)),
        "names_a_secret_idx": ({"source": "idx", "root": "mnist"},
                               {"mnist/train-images-idx3-ubyte": "SECRET", "mnist/train-labels-idx1-ubyte": "x"},
                               ("train-images-idx3-ubyte", "bad magic number <content not shown",)),
        "names_the_folder_etc": ({"source": "folder", "root": "/etc"}, {},
                                 ("model.npz", "/etc (data.root)", "inside the system folder /etc", "--data CONFIG")),
    }
    for name, (data, files, expect) in cases.items():
        model = tmp / f"{name}.npz"
        tiny_checkpoint(model, config={"data": data})
        write_case(out, f"checkpoint-{name}", {**files, "model.npz": model.read_bytes()}, ["eval", "model.npz"], expect)


def path_kind_cases(out: Path, tmp: Path, good: Path) -> None:
    """FIFOs, devices and permissions: made at replay time (``setup``), never blocking."""
    model = {"model.npz": good.read_bytes()}
    png = tmp / "ok.png"
    pixels = np.zeros((28, 28), np.uint8)
    pixels[4:24, 12:16] = 255
    Image.fromarray(pixels).save(png)
    fifo = {"fifos": ["model.npz"]}
    not_regular = ("model.npz", "not a regular file, expected a .npz checkpoint")
    denied = ("model.npz", "permission denied (cannot read this checkpoint)")
    for command, args in (("eval", ["eval", "model.npz"]), ("inspect", ["inspect", "model.npz"]),
                          ("predict", ["predict", "-c", "model.npz", "x.png"]),
                          ("resume", ["train", "--resume", "model.npz"])):
        write_case(out, f"checkpoint-fifo_{command}", {}, args, not_regular, setup=fifo)
        write_case(out, f"checkpoint-mode_000_{command}", model, args, denied, setup={"modes": {"model.npz": 0}})
    write_case(out, "checkpoint-in_unsearchable_folder", {"models/model.npz": good.read_bytes()},
               ["eval", "models/model.npz"], ("models/model.npz", "permission denied"), setup={"modes": {"models": 0}})
    write_case(out, "checkpoint-link_to_dev_zero", {}, ["inspect", "model.npz"], not_regular,
               setup={"links": {"model.npz": "/dev/zero"}})
    write_case(out, "checkpoint-data_config_mode_000", {**model, "data.yaml": tables.BASE},
               ["eval", "model.npz", "--data", "data.yaml"], ("data.yaml", "permission denied"),
               setup={"modes": {"data.yaml": 0}})
    predict = ["predict", "-c", "model.npz"]
    image_not_regular = "not a regular file, expected an image file"
    for name, args, setup, expect in (
            ("fifo", ["img.png"], {"fifos": ["img.png"]}, ("img.png", image_not_regular)),
            ("fifo_matched_by_glob", ["scans/*.png"], {"fifos": ["scans/a.png"]}, ("scans/a.png", image_not_regular)),
            ("fifo_in_folder", ["scans"], {"fifos": ["scans/a.png"]}, ("scans/a.png", image_not_regular)),
            ("link_to_dev_zero", ["img.png"], {"links": {"img.png": "/dev/zero"}}, ("img.png", image_not_regular)),
            ("mode_000", ["img.png"], {"modes": {"img.png": 0}},
             ("img.png", "permission denied (cannot read this file)")),
            ("in_unsearchable_folder", ["scans/img.png"], {"modes": {"scans": 0}},
             ("scans/img.png", "permission denied (a folder on its way cannot be searched)"))):
        files = {**model, "scans/.keep": b""}
        if name in ("mode_000", "in_unsearchable_folder"):
            files[args[0]] = png.read_bytes()
        write_case(out, f"image-{name}", files, predict + args, expect, code=1, setup=setup)
    for command in ("train", "gradcheck"):
        write_case(out, f"config-mode_000_{command}", {"cfg.yaml": tables.BASE}, [command, "cfg.yaml"],
                   ("cfg.yaml", "permission denied (cannot read this config file)"), setup={"modes": {"cfg.yaml": 0}})
    write_case(out, "config-in_unsearchable_folder", {"conf/cfg.yaml": tables.BASE}, ["train", "conf/cfg.yaml"],
               ("conf/cfg.yaml", "permission denied"), setup={"modes": {"conf": 0}})
    write_case(out, "config-fifo", {}, ["train", "cfg.yaml"], ("cfg.yaml", "not a regular file"),
               setup={"fifos": ["cfg.yaml"]})


STRICT_YAML_CASES = [
    # id, config text, extra args, fragments
    ("duplicate_key", "train: {epochs: 1}\nmodel: {hidden: [8]}\ntrain: {epochs: 2}\n", (),
     ("cfg.yaml: line 3, column 1: duplicate key 'train' (first given at line 1, column 1)",)),
    ("duplicate_nested_key", "train:\n  epochs: 1\n  batch_size: 8\n  epochs: 2\n", (),
     ("cfg.yaml: line 4, column 3: duplicate key 'epochs' (first given at line 2, column 3)",)),
    ("base_60_number", "train: {optimizer: {lr: 1:30}}\n", (),
     ("cfg.yaml", "train.optimizer.lr", "expected a finite number, got '1:30'")),
    ("yes_is_no_boolean", "train: {optimizer: {nesterov: yes}}\n", (),
     ("train.optimizer.nesterov", "expected true or false, got 'yes'")),
    ("underscore_in_number", "train: {batch_size: 1_000}\n", (),
     ("train.batch_size", "expected an integer, got '1_000'")),
    ("integer_of_5000_digits", "train: {epochs: " + "9" * 5000 + "}\n", (),
     ("cfg.yaml", "line 1, column 17", "cannot read the integer")),
    ("set_empty_section", tables.BASE, ("--set", "train="),
     ("--set train=: an empty value is null, and train takes a section, not null",)),
    ("set_null_number", tables.BASE, ("--set", "train.epochs=null"),
     ("--set train.epochs=null: an empty value is null, and train.epochs takes an integer, not null",)),
    ("set_unknown_section_blamed", tables.BASE, ("--set", "trian.epochs=3"),
     ("--set trian.epochs=3: trian: unknown key (did you mean 'train'?)",)),
    ("set_val_fraction_blamed", tables.BASE, ("--set", "data.val_fraction=0.9999999"),
     ("--set data.val_fraction=0.9999999: ", "cannot split the data by data.val_fraction 0.9999999")),
    ("set_duplicate_key_in_value", tables.BASE, ("--set", "train={epochs: 1, epochs: 2}"),
     ("--set train={epochs: 1, epochs: 2}", "not valid YAML", "duplicate key 'epochs'")),
    # tracebacks before: ZeroDivisionError, ValueError in scipy's Gaussian
    ("elastic_sigma_tiny", "train: {augment: {elastic_alpha: 8, elastic_sigma: 1.0e-300}}\n", (),
     ("cfg.yaml", "train.augment.elastic_sigma", ">= 0.01 and <= 100", "1e-300")),
    ("elastic_sigma_huge", "train: {augment: {elastic_alpha: 8, elastic_sigma: 1.0e+300}}\n", (),
     ("cfg.yaml", "train.augment.elastic_sigma", "<= 100", "1e+300")),
    ("elastic_alpha_huge", "train: {augment: {elastic_alpha: 1.0e+300}}\n", (),
     ("cfg.yaml", "train.augment.elastic_alpha", "<= 1000")),
]


def metadata_cases(out: Path, tmp: Path, good: Path) -> None:
    """Metadata that broke the loader (tracebacks) or was accepted though impossible."""
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta_text = str(arrays["metadata"])

    def with_metadata(text: str) -> bytes:
        np.savez_compressed(tmp / "m.npz", **{**arrays, "metadata": np.array(text)})
        return (tmp / "m.npz").read_bytes()

    def changed(**changes) -> bytes:
        return with_metadata(json.dumps({**json.loads(meta_text), **changes}))

    cases = {
        "metadata_nested_100000_deep": (with_metadata(meta_text[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
                                        ("model.npz", "metadata is nested too deeply to read")),
        "metadata_nested_100_deep": (with_metadata(meta_text[:-1] + ', "x": ' + "[" * 100 + "]" * 100 + "}"),
                                     ("model.npz", "metadata is nested more than 64 levels deep")),
        "metadata_5000_digit_integer": (with_metadata(meta_text[:-1] + ', "epoch": ' + "7" * 5000 + "}"),
                                        ("model.npz", "metadata holds a number too long to read")),
        "duplicate_class_names": (changed(classes=["1", "1"]), ("model.npz", "names '1' more than once")),
        "format_version_negative": (changed(format_version=-1),
                                    ("model.npz", "format_version -1 is no version of the format")),
        "format_version_zero": (changed(format_version=0), ("model.npz", "format_version 0 is no version")),
        "format_version_huge": (changed(format_version=10**30), ("model.npz", "format version 1000000000000000000")),
        "opt_state_beyond_parameters": (np.savez(tmp / "o.npz", **{**arrays, "opt_m7": np.zeros(3, np.float32)})
                                        or (tmp / "o.npz").read_bytes(),
                                        ("model.npz", "opt_m7: optimizer state for parameter 7, the model has 4")),
        "w0_integer_dtype": (np.savez(tmp / "i.npz", **{**arrays, "W0": arrays["W0"].astype(np.int32)})
                             or (tmp / "i.npz").read_bytes(),
                             ("model.npz", "parameters must be arrays of finite floats")),
    }
    for name, (content, expect) in cases.items():
        write_case(out, f"checkpoint-{name}", {"model.npz": content}, ["inspect", "model.npz"], expect)


def hardening_cases(out: Path, tmp: Path) -> None:
    good = tmp / "hardening-good.npz"
    tiny_checkpoint(good)
    memory_cases(out, tmp, good)
    untrusted_cases(out, tmp)
    path_kind_cases(out, tmp, good)
    for name, config, args, expect in STRICT_YAML_CASES:
        write_case(out, f"config-{name}", {"cfg.yaml": config}, ["train", "cfg.yaml", "--quiet", *args], expect)
    metadata_cases(out, tmp, good)


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
        hardening_cases(out, tmp)
        data_reader_cases(out)
        predict_rows_cases(out, tmp)
    finally:
        shutil.rmtree(tmp)
    print(f"{sum(1 for _ in out.glob('*/case.yaml'))} cases in {out}")


if __name__ == "__main__":
    main()
