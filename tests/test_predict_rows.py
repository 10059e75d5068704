"""``softmax predict`` on data files: rows of pixels in a CSV, ``.npy`` or ``.npz`` file answer a
row each, in order; ``--format kaggle`` writes a Kaggle digit-recognizer submission.

Everything runs through the real ``softmax`` entry point; the expected answers are the
checkpoint's own (``Checkpoint.predict_proba`` on the same rows).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import MNIST, MNIST_MISSING, SAMPLES, assert_user_error, run_softmax
from softmax_cli.checkpoint import load_checkpoint


def pixel_csv(path, X, header=True, delimiter=","):
    """Rows of integer pixels as Kaggle's test.csv has them: ``pixel0, pixel1, ...`` then rows."""
    lines = [delimiter.join(f"pixel{i}" for i in range(X.shape[1]))] if header else []
    lines += [delimiter.join(str(int(v)) for v in row) for row in X]
    path.write_text("\n".join(lines) + "\n")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def labels_of(ckpt, X):
    """The checkpoint's own answers on raw rows X: class names, most probable first."""
    return [ckpt.classes[i] for i in ckpt.predict_proba(X).argmax(axis=1)]


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32), d.target


# ------------------------------------------------------------------ Kaggle submission
def test_a_kaggle_submission_of_mnist_test_rows(tmp_path):
    if not MNIST.is_dir():
        pytest.skip(MNIST_MISSING)
    from softmax_cli.data import read_idx
    from softmax_cli.models import resolve_checkpoint

    n = 300
    X = read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[-n:].reshape(n, -1)    # the last rows: none of
    y = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")[-n:]                    # them first by accident
    pixel_csv(tmp_path / "test.csv", X)
    (tmp_path / "sub.csv").write_text("mine\n")
    proc = run_softmax("predict", "test.csv", "--output", "sub.csv", "--format", "kaggle", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == (f"wrote {n} rows (ImageId,Label) to sub-2.csv "
                                            f"(sub.csv exists and was left as it was)")
    assert (tmp_path / "sub.csv").read_text() == "mine\n"                     # never overwritten
    rows = read_csv(tmp_path / "sub-2.csv")
    assert rows[0] == ["ImageId", "Label"] and len(rows) == n + 1
    assert [int(r[0]) for r in rows[1:]] == list(range(1, n + 1))
    ckpt = load_checkpoint(resolve_checkpoint("mnist").path)
    labels = [r[1] for r in rows[1:]]
    assert labels == labels_of(ckpt, X.astype(np.float32))                    # in input order
    assert np.mean(np.array(labels, dtype=int) == y) >= 0.97
    assert (tmp_path / "sub-2.csv").read_bytes().startswith(b"ImageId,Label\r\n")


@pytest.fixture
def digits_ckpt(digits_run):
    return digits_run["best_checkpoint"], load_checkpoint(digits_run["best_checkpoint"])


def test_kaggle_without_output_prints_the_submission(digits_ckpt, digits, tmp_path):
    path, ckpt = digits_ckpt
    X = digits[0][:7]
    np.save(tmp_path / "x.npy", X.reshape(7, 8, 8))
    proc = run_softmax("predict", "x.npy", "-c", path, "--format", "KAGGLE", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines() == ["ImageId,Label"] + [f"{i},{c}" for i, c in enumerate(labels_of(ckpt, X), 1)]


@pytest.mark.parametrize("args, fragments", [
    pytest.param(["test.csv", str(SAMPLES / "digits-7.png")], ("--format kaggle numbers the rows of one data file",
                                                                 "got 2 arguments"), id="with_an_image"),
    pytest.param([str(SAMPLES / "digits-7.png")], ("digits-7.png: --format kaggle numbers the rows of a data file",
                                                    "not images"), id="an_image"),
    pytest.param([str(SAMPLES)], ("samples: --format kaggle", "give a .csv, .tsv, .npy or .npz file"), id="a_folder"),
    pytest.param(["test.csv", "--json"], ("--format kaggle writes one class per row", "--json/--jsonl"), id="json"),
    pytest.param(["test.csv", "--jsonl"], ("no place for --json/--jsonl",), id="jsonl"),
    pytest.param(["test.csv", "-k", "2"], ("no place for --top-k",), id="top_k"),
    pytest.param(["test.csv", "--reject-threshold", "0.9"], ("no place for --reject-threshold",), id="reject"),
    pytest.param(["t*.csv"], ("the pattern matched 2 files",), id="pattern_of_two_files"),
])
def test_kaggle_refuses_what_is_not_one_data_files_rows(digits_ckpt, digits, tmp_path, args, fragments):
    pixel_csv(tmp_path / "test.csv", digits[0][:3])
    pixel_csv(tmp_path / "train.csv", digits[0][3:5])
    proc = run_softmax("predict", *args, "-c", digits_ckpt[0], "--format", "kaggle", "-o", "sub.csv", cwd=tmp_path)
    assert_user_error(proc, *fragments, code=2)
    assert proc.stdout == "" and not (tmp_path / "sub.csv").exists()


def test_kaggle_writes_nothing_when_the_file_cannot_be_read(digits_ckpt, tmp_path):
    (tmp_path / "test.csv").write_text("pixel0,pixel1\n1,2\n")
    proc = run_softmax("predict", "test.csv", "-c", digits_ckpt[0], "--format", "kaggle", "-o", "sub.csv", cwd=tmp_path)
    assert_user_error(proc, "test.csv: rows of 2 columns; expected 64 pixel values per row", code=1)
    assert proc.stdout == "" and not (tmp_path / "sub.csv").exists()


# ------------------------------------------------------------------ rows in every output
@pytest.mark.parametrize("kind", ["csv_with_header", "tsv_without_header", "semicolon_gz", "npy_images",
                                  "npz_x", "npz_one_array"])
def test_every_row_is_answered_in_order_as_the_checkpoint_answers_it(digits_ckpt, digits, tmp_path, kind):
    import gzip

    path, ckpt = digits_ckpt
    X = digits[0][100:140]
    name = {"csv_with_header": "rows.csv", "tsv_without_header": "rows.tsv", "semicolon_gz": "rows.csv.gz",
            "npy_images": "rows.npy", "npz_x": "rows.npz", "npz_one_array": "rows.npz"}[kind]
    if kind == "csv_with_header":
        pixel_csv(tmp_path / name, X)
    elif kind == "tsv_without_header":
        pixel_csv(tmp_path / name, X, header=False, delimiter="\t")
    elif kind == "semicolon_gz":
        pixel_csv(tmp_path / "plain", X, delimiter=";")
        (tmp_path / name).write_bytes(gzip.compress((tmp_path / "plain").read_bytes()))
    elif kind == "npy_images":
        np.save(tmp_path / name, X.reshape(-1, 8, 8).astype(np.uint8))
    elif kind == "npz_x":
        np.savez_compressed(tmp_path / name, x=X, y=digits[1][100:140])
    else:
        np.savez(tmp_path / name, pixels=X[..., None])
    proc = run_softmax("predict", name, "-c", path, "--json", "-k", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    proba = ckpt.predict_proba(X)
    assert [g["row"] for g in got] == list(range(1, 41)) and {g["path"] for g in got} == {name}
    assert [g["class"] for g in got] == labels_of(ckpt, X)
    np.testing.assert_allclose([g["probability"] for g in got], proba.max(axis=1), rtol=1e-6)
    assert all(len(g["top_k"]) == 3 and g["error"] is None for g in got)
    assert np.mean([int(g["class"]) for g in got] == digits[1][100:140]) >= 0.9


def test_images_and_rows_together_in_the_table_and_the_csv(digits_ckpt, digits, tmp_path):
    path, ckpt = digits_ckpt
    X = digits[0][:3]
    pixel_csv(tmp_path / "test.csv", X)
    seven = SAMPLES / "digits-7.png"
    args = ("predict", seven, "test.csv", "missing.csv", "-c", path)
    proc = run_softmax(*args, cwd=tmp_path)
    assert proc.returncode == 1                                  # missing.csv could not be read
    assert proc.stderr.strip() == "softmax: error: missing.csv: file not found"
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["path", "row", "class", "probability"]
    assert [line.split()[:2] for line in lines[3:]] == [["test.csv", "1"], ["test.csv", "2"], ["test.csv", "3"]]
    assert lines[2].split()[:2] == [str(seven), "7"]             # an image has no row
    assert [line.split()[2] for line in lines[3:]] == labels_of(ckpt, X)

    proc = run_softmax(*args, "-o", "p.csv", cwd=tmp_path)
    assert proc.stderr.splitlines()[-1] == "wrote 4 predictions and 1 error row to p.csv"
    rows = read_csv(tmp_path / "p.csv")
    assert rows[0][:4] == ["path", "row", "class", "probability"]
    assert [r[:3] for r in rows[1:]] == [[str(seven), "", "7"]] + [
        ["test.csv", str(i), c] for i, c in enumerate(labels_of(ckpt, X), 1)] + [["missing.csv", "", ""]]
    assert rows[-1][-1] == "file not found"


def test_a_checkpoints_pixel_range_applies_to_its_rows(tmp_path):
    # a model trained on pixels in [-1, 1] (USPS) reads rows in [-1, 1]: shifted by +1 into
    # its raw units [0, 2] before the preprocessing, as training did
    from softmax_cli.checkpoint import save_checkpoint
    from softmax_cli.data import Preprocessor
    from softmax_cli.nn import MLP

    save_checkpoint(tmp_path / "m.npz", MLP([4, 5, 3], rng=np.random.default_rng(0)),
                    Preprocessor(np.full(4, 0.5), np.full(4, 0.7), 2.0, "global"),
                    {"classes": ["a", "b", "c"], "image_shape": [2, 2], "image_style": "mnist",
                     "config": {"data": {"source": "csv", "pixel_range": [-1, 1]}}, "epoch": 1, "metrics": {}})
    X = np.random.default_rng(1).uniform(-1, 1, (30, 4)).round(3).astype(np.float32)
    (tmp_path / "rows.csv").write_text("\n".join(",".join(map(str, r)) for r in X) + "\n")
    proc = run_softmax("predict", "rows.csv", "-c", "m.npz", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ckpt = load_checkpoint(tmp_path / "m.npz")
    got = json.loads(proc.stdout)
    assert [g["class"] for g in got] == labels_of(ckpt, X + 1)
    np.testing.assert_allclose([g["probability"] for g in got], ckpt.predict_proba(X + 1).max(axis=1), rtol=1e-5)

    (tmp_path / "bad.csv").write_text("0,0.5,1,-1.5\n")
    assert_user_error(run_softmax("predict", "bad.csv", "-c", "m.npz", cwd=tmp_path),
                      "bad.csv: line 1, column 4: pixel value -1.5 outside [-1, 1] (the model's data.pixel_range)",
                      code=1)


# ------------------------------------------------------------------ bad data files
def _object_npy(path):
    np.save(path, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)


BAD_FILES = {
    "wrong_column_count": ("t.csv", lambda p: p.write_text("1,2,3\n"),
                           ("t.csv: rows of 3 columns; expected 64 pixel values per row",)),
    "ragged_row": ("t.csv", lambda p: p.write_text(",".join(["1"] * 64) + "\n" + ",".join(["1"] * 63) + "\n"),
                   ("t.csv: line 2: 63 columns, expected 64",)),
    "pixel_outside_range": ("t.csv", lambda p: p.write_text(",".join(["0"] * 63 + ["17"]) + "\n"),
                            ("t.csv: line 1, column 64: pixel value 17 outside [0, 16] (the model's pixel range)",)),
    "non_numeric_cell": ("t.csv", lambda p: p.write_text(",".join(["0"] * 64) + "\n" + ",".join(["0", "x"] + ["0"] * 62)),
                         ("t.csv: line 2, column 2: expected a number, got 'x'",)),
    "not_finite": ("t.csv", lambda p: p.write_text(",".join(["0"] * 63 + ["nan"]) + "\n"),
                   ("t.csv: line 1, column 64: expected a finite number",)),
    "empty_file": ("t.csv", lambda p: p.write_text(""), ("t.csv: empty CSV file",)),
    "header_only": ("t.csv", lambda p: p.write_text(",".join(f"pixel{i}" for i in range(64)) + "\n"),
                    ("t.csv: no data rows",)),
    "npy_object_array": ("x.npy", _object_npy, ("x.npy: arrays of object are not numbers", "never loaded")),
    "npy_wrong_shape": ("x.npy", lambda p: np.save(p, np.zeros((3, 5))),
                        ("x.npy: arrays of shape (3, 5); expected (n, 64) pixel rows",)),
    "npy_strings": ("x.npy", lambda p: np.save(p, np.array([["1"] * 64])), ("x.npy: arrays of <U1 are not numbers",)),
    "npy_pixel_outside_range": ("x.npy", lambda p: np.save(p, np.full((2, 64), -1.0)),
                                ("x.npy: row 0, pixel 0: value -1 outside [0, 16]",)),
    "npy_truncated": ("x.npy", lambda p: (np.save(p, np.zeros((9, 64))), p.write_bytes(p.read_bytes()[:-100])),
                      ("x.npy: the header declares (9, 64) float64 (4,608 bytes), more than the file holds",)),
    "npz_two_arrays": ("x.npz", lambda p: np.savez(p, a=np.zeros((2, 64)), b=np.zeros((2, 64))),
                       ("x.npz: expected one array, or one named 'x' or 'x_test' (the archive holds 2)",)),
    "npy_not_an_array": ("x.npy", lambda p: p.write_text("1,2\n"), ("x.npy: not a readable .npy array",)),
    "npz_not_an_archive": ("x.npz", lambda p: p.write_text("hello\n"), ("x.npz: not a readable .npz archive",)),
}


@pytest.mark.parametrize("name, make, fragments", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_data_file_is_one_line_and_exit_1(digits_ckpt, tmp_path, name, make, fragments):
    make(tmp_path / name)
    proc = run_softmax("predict", name, "-c", digits_ckpt[0], cwd=tmp_path)
    assert_user_error(proc, *fragments, code=1)
    assert proc.stdout == ""


def test_a_malformed_pixel_range_in_the_checkpoint_stops_everything(tmp_path):
    from softmax_cli.checkpoint import save_checkpoint
    from softmax_cli.data import Preprocessor
    from softmax_cli.nn import MLP

    save_checkpoint(tmp_path / "m.npz", MLP([4, 3], rng=np.random.default_rng(0)),
                    Preprocessor(np.zeros(4), np.ones(4), 2.0, "global"),
                    {"classes": ["a", "b", "c"], "image_shape": [2, 2], "image_style": "mnist",
                     "config": {"data": {"pixel_range": [0, 255]}}, "epoch": 1, "metrics": {}})
    (tmp_path / "rows.csv").write_text("0,1,1,0\n")
    proc = run_softmax("predict", "rows.csv", "-c", "m.npz", cwd=tmp_path)
    assert_user_error(proc, "m.npz: metadata config data.pixel_range must be [background, full ink]",
                      "pixel_max 2, got [0, 255]", code=2)


# ------------------------------------------------------------------ start-up
def test_the_data_file_readers_are_imported_only_for_a_data_file(digits_ckpt, digits, tmp_path):
    pixel_csv(tmp_path / "rows.csv", digits[0][:2])
    heavy = ("('sklearn', 'scipy', 'skimage', 'numba', 'matplotlib', 'tqdm', 'yaml', 'softmax_cli.config', "
             "'pydantic', 'softmax_cli.data.sources', 'softmax_cli.data.delimited', 'softmax_cli.data.arrays')")
    code = ("import atexit, sys; from softmax_cli.cli import main\n"
            f"atexit.register(lambda: print(sorted(m for m in {heavy} if m in sys.modules)))\n"
            "sys.argv = ['softmax', 'predict', '-c'] + sys.argv[1:]\n"
            "main()")
    for arg, imported in ((str(SAMPLES / "digits-7.png"), "['scipy', 'skimage']"),
                          ("rows.csv", "['softmax_cli.data.arrays', 'softmax_cli.data.delimited', "
                                       "'softmax_cli.data.sources']")):
        out = subprocess.run([sys.executable, "-c", code, digits_ckpt[0], arg], capture_output=True, text=True,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[-1] == imported
