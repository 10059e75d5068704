"""Every common digit-data file: delimited text (comma, semicolon, tab, whitespace; one-hot
labels; pixel ranges other than [0, pixel_max]) and NumPy arrays (.npz as Keras' mnist.npz
stores MNIST, .npy pairs), read right and trained on through the real ``softmax`` command.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, run_softmax
from softmax_cli.checkpoint import load_checkpoint
from softmax_cli.config import config_from_dict
from softmax_cli.data import load_dataset, read_pixel_rows
from softmax_cli.errors import UserError

RNG = np.random.default_rng(0)
N = 60
LABELS = np.arange(N) % 3
SEMEION_PIXELS = (RNG.random((N, 256)) < 0.2).astype(np.float64)
SEMEION_PIXELS[np.arange(N)[:, None], LABELS[:, None] * 5 + np.arange(5)] = 1.0   # a class-wise stroke
USPS_PIXELS = np.round(RNG.uniform(-1, 1, (N, 256)), 4)
SEMICOLON_PIXELS = RNG.integers(0, 256, (N, 16))
KERAS = {"x_train": RNG.integers(0, 256, (N, 8, 8), dtype=np.uint8), "y_train": LABELS.astype(np.uint8),
         "x_test": RNG.integers(0, 256, (12, 8, 8), dtype=np.uint8), "y_test": (np.arange(12) % 3).astype(np.uint8)}


def semeion(folder: Path) -> dict:
    """UCI Semeion's layout: 256 pixels (0/1, written 0.0000/1.0000) then a 10-column one-hot
    label, separated by single spaces, each line ending in a space."""
    onehot = np.eye(10, dtype=int)[LABELS]
    lines = [" ".join(f"{v:.4f}" for v in x) + " " + " ".join(map(str, o)) + " \n"
             for x, o in zip(SEMEION_PIXELS, onehot)]
    (folder / "semeion.data").write_text("".join(lines))
    return {"source": "csv", "train": "semeion.data", "label_column": "onehot_last", "image_shape": [16, 16],
            "pixel_max": 1}


def usps(folder: Path) -> dict:
    """USPS as often shared: the label first, then 256 pixels in [-1, 1], tab-separated, gzipped."""
    lines = [f"{y}\t" + "\t".join(f"{v:g}" for v in x) + "\n" for y, x in zip(LABELS, USPS_PIXELS)]
    (folder / "usps.tsv.gz").write_bytes(gzip.compress("".join(lines).encode()))
    return {"source": "csv", "train": "usps.tsv.gz", "label_column": "first", "pixel_range": [-1, 1]}


def semicolon(folder: Path) -> dict:
    """A spreadsheet's export: semicolons, a header, Windows line ends."""
    head = "digit;" + ";".join(f"px{i}" for i in range(16))
    rows = [f"{y};" + ";".join(map(str, x)) for y, x in zip(LABELS, SEMICOLON_PIXELS)]
    (folder / "export.csv").write_bytes("\r\n".join([head, *rows, ""]).encode())
    return {"source": "csv", "train": "export.csv", "label_column": "digit"}


def keras_npz(folder: Path) -> dict:
    np.savez_compressed(folder / "mnist.npz", **KERAS)
    return {"source": "npz", "train": "mnist.npz"}


def npy_pair(folder: Path) -> dict:
    np.save(folder / "x.npy", KERAS["x_train"].reshape(N, 64).astype(np.float32) / 255)
    np.save(folder / "y.npy", np.eye(3)[LABELS])                  # one-hot labels
    return {"source": "npz", "train_images": "x.npy", "train_labels": "y.npy", "pixel_range": [0, 1]}


FORMATS = {
    # name: (writer, expected X (n, d) after the shift to 0, pixel_max, image_shape, classes)
    "semeion_whitespace_onehot": (semeion, SEMEION_PIXELS, 1.0, (16, 16), ["0", "1", "2"]),
    "usps_tab_label_first_minus1_to_1": (usps, USPS_PIXELS + 1, 2.0, (16, 16), ["0", "1", "2"]),
    "semicolon_with_header": (semicolon, SEMICOLON_PIXELS, 255.0, (4, 4), ["0", "1", "2"]),
    "keras_npz": (keras_npz, KERAS["x_train"].reshape(N, 64), 255.0, (8, 8), ["0", "1", "2"]),
    "npy_pair_onehot": (npy_pair, KERAS["x_train"].reshape(N, 64) / 255, 1.0, (8, 8), ["0", "1", "2"]),
}


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_reads_right_and_trains_through_the_cli(tmp_path, monkeypatch, name):
    writer, X, pixel_max, shape, classes = FORMATS[name]
    data = writer(tmp_path)
    monkeypatch.chdir(tmp_path)
    ds = load_dataset(config_from_dict({"data": data}).data)
    np.testing.assert_allclose(ds.X, X, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ds.y, LABELS)
    assert ds.X.dtype == np.float32 and ds.pixel_max == pixel_max and ds.image_shape == shape
    assert ds.classes == classes and 0 <= ds.X.min() and ds.X.max() <= pixel_max
    if name == "keras_npz":                                       # the archive's own test split
        np.testing.assert_array_equal(ds.X_test, KERAS["x_test"].reshape(12, 64))
        np.testing.assert_array_equal(ds.y_test, KERAS["y_test"])

    (tmp_path / "cfg.yaml").write_text(json.dumps({"data": data, "model": {"hidden": [8]}, "train": {"epochs": 1}}))
    proc = run_softmax("train", "cfg.yaml", "--quiet", "--json", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["epochs_run"] == 1 and summary["n_test"] > 0
    checkpoint = load_checkpoint(tmp_path / summary["best_checkpoint"])
    assert checkpoint.classes == classes and checkpoint.preprocessor.pixel_max == pixel_max
    if name.startswith("usps"):     # eval reads the data again from the checkpoint's config
        proc = run_softmax("eval", summary["best_checkpoint"], "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["accuracy"] == pytest.approx(summary["test_acc"])


def read(tmp_path: Path, text: str | bytes, **data) -> object:
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_dataset(config_from_dict({"data": {"source": "csv", "train": str(path), "label_column": "first",
                                                   **data}}).data)


ROWS = [[0, 1, 2, 3, 4], [1, 5, 6, 7, 8], [0, 9, 10, 11, 12], [1, 13, 14, 15, 16]]


@pytest.mark.parametrize("text", [
    pytest.param("\n".join(",".join(map(str, r)) for r in ROWS), id="comma"),
    pytest.param("\n".join(";".join(map(str, r)) for r in ROWS), id="semicolon"),
    pytest.param("\n".join("\t".join(map(str, r)) for r in ROWS), id="tab"),
    pytest.param("\n".join("  ".join(f"{v:>3}" for v in r) + "  " for r in ROWS), id="aligned_whitespace"),
    pytest.param("\r\n".join(", ".join(map(str, r)) for r in ROWS) + "\r\n", id="comma_space_crlf"),
    pytest.param("\n".join(",".join(f'"{v}"' for v in r) for r in ROWS), id="quoted_numbers"),
    pytest.param("\n\n".join(",".join(f"{v}.0e0" for v in r) for r in ROWS) + "\n\n", id="blank_lines_exponents"),
])
def test_delimiters_are_sniffed(tmp_path, text):
    ds = read(tmp_path, text)
    np.testing.assert_array_equal(ds.X, np.array(ROWS)[:, 1:])
    assert ds.classes == ["0", "1"] and ds.y.tolist() == [0, 1, 0, 1]


def test_a_forced_delimiter_wins_over_the_sniffer(tmp_path):
    # "1,5" cells would make the sniffer pick the comma; data.delimiter says semicolon
    text = "0;1;2\n1;3,5;4,5\n" * 2
    with pytest.raises(UserError, match=r"line 2, column 2: expected a number, got '3,5'"):
        read(tmp_path, text, delimiter="semicolon", image_shape=[1, 2])


def test_a_header_only_when_the_first_row_is_not_numeric(tmp_path):
    numeric = read(tmp_path, "\n".join(",".join(map(str, r)) for r in ROWS))
    assert len(numeric.y) == 4                                    # the first row is data
    named = read(tmp_path, "y,a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in ROWS), label_column="y")
    assert len(named.y) == 4 and named.X[0].tolist() == [1, 2, 3, 4]


def test_onehot_first_with_a_header_names_the_classes(tmp_path):
    head = "cat,dog,p0,p1,p2,p3\n"
    rows = "1,0,9,8,7,6\n0,1,1,2,3,4\n" * 3
    ds = read(tmp_path, head + rows, label_column="onehot_first", image_shape=[2, 2])
    assert ds.classes == ["cat", "dog"] and ds.y.tolist() == [0, 1] * 3
    np.testing.assert_array_equal(ds.X[:2], [[9, 8, 7, 6], [1, 2, 3, 4]])


def test_a_test_file_is_read_with_the_same_layout(tmp_path):
    (tmp_path / "test.tsv").write_text("2\t-1\t1\t0\t0\n0\t1\t1\t1\t1\n")
    ds = read(tmp_path, "0\t-1\t-1\t-1\t-1\n2\t1\t1\t1\t1\n" * 3, pixel_range=[-1, 1], test=str(tmp_path / "test.tsv"))
    assert ds.classes == ["0", "2"] and ds.y_test.tolist() == [1, 0]
    np.testing.assert_array_equal(ds.X_test, [[0, 2, 1, 1], [2, 2, 2, 2]])


# ----------------------------------------------------------------- rows for predict
def test_read_pixel_rows_reads_a_kaggle_test_csv(tmp_path):
    pixels = RNG.integers(0, 256, (5, 16))
    text = ",".join(f"pixel{i}" for i in range(16)) + "\n" + "\n".join(",".join(map(str, r)) for r in pixels)
    (tmp_path / "test.csv").write_text(text)
    X = read_pixel_rows(tmp_path / "test.csv", 16)
    assert X.dtype == np.float32 and X.shape == (5, 16)
    np.testing.assert_array_equal(X, pixels)


def test_read_pixel_rows_shifts_a_declared_range_to_start_at_zero(tmp_path):
    (tmp_path / "rows.txt").write_text("-1 0 1 0.5\n1 1 -1 -1\n")
    X = read_pixel_rows(tmp_path / "rows.txt", 4, pixel_range=(-1, 1))
    np.testing.assert_array_equal(X, [[0, 1, 2, 1.5], [2, 2, 0, 0]])


@pytest.mark.parametrize("kind", ["npy_rows", "npy_images", "npz_x", "npz_single"])
def test_read_pixel_rows_reads_arrays(tmp_path, kind):
    images = RNG.integers(0, 256, (3, 2, 2)).astype(np.uint8)
    path = tmp_path / ("a.npy" if kind.startswith("npy") else "a.npz")
    if kind == "npy_rows":
        np.save(path, images.reshape(3, 4))
    elif kind == "npy_images":
        np.save(path, images)
    elif kind == "npz_x":
        np.savez(path, x=images, y=np.arange(3))
    else:
        np.savez_compressed(path, anything=images[..., None])
    np.testing.assert_array_equal(read_pixel_rows(path, 4), images.reshape(3, 4))


@pytest.mark.parametrize("content, fragments", [
    pytest.param("7,1,2,3,4\n", ("rows of 5 columns", "expected 4 pixel values per row", "no label column"),
                 id="a_label_column_left_in"),
    pytest.param("1,2,3,300\n", ("line 1, column 4: pixel value 300 outside [0, 255]",), id="out_of_range"),
    pytest.param("1,2,3,4\n1,2,3\n", ("line 2: 3 columns, expected 4",), id="ragged"),
])
def test_read_pixel_rows_refuses_in_one_line(tmp_path, content, fragments):
    (tmp_path / "rows.csv").write_text(content)
    with pytest.raises(UserError) as caught:
        read_pixel_rows(tmp_path / "rows.csv", 4)
    assert all(f in str(caught.value) for f in fragments), str(caught.value)


def test_bad_onehot_rows_are_named_through_the_cli(tmp_path):
    (tmp_path / "s.data").write_text("1 0 0.5 0.5 0.5 0.5\n1 1 0.5 0.5 0.5 0.5\n")
    (tmp_path / "cfg.yaml").write_text("data: {source: csv, train: s.data, label_column: onehot_first, "
                                       "image_shape: [2, 2], pixel_max: 1}\n")
    assert_user_error(run_softmax("train", "cfg.yaml", cwd=tmp_path), "s.data: line 2: the 2 label columns",
                      "not one-hot", "[1, 1]")


def test_a_bad_cell_in_a_long_line_is_quoted_briefly(tmp_path):
    # issue 18: a 1,500-character line pasted whole into the message; now at most 80 characters
    cells = ["0"] * 256
    cells[17] = "x" * 300
    (tmp_path / "t.csv").write_text("1," + ",".join(["0"] * 256) + "\n2," + ",".join(cells) + "\n")
    with pytest.raises(UserError) as caught:
        read(tmp_path, (tmp_path / "t.csv").read_text(), image_shape=[16, 16])
    message = str(caught.value)
    assert "line 2, column 19: expected a number, got 'xxx" in message
    assert len(message.split("got ", 1)[1]) <= 80, message


# ------------------------------------------------------------------------ fuzzing
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])
cells = st.one_of(st.integers(-3, 300).map(str), st.sampled_from(["", "nan", "x", "1.5", '"7"', "1_0", "1e3", " "]))
tables = st.tuples(st.lists(st.lists(cells, min_size=0, max_size=6), max_size=8),
                   st.sampled_from([",", ";", "\t", " ", "  "]), st.sampled_from(["\n", "\r\n", "\r"]))


@FUZZ
@given(tables, st.sampled_from(["first", "last", "onehot_last", "none"]))
def test_the_delimited_reader_on_arbitrary_tables(tmp_path, table, spec):
    from softmax_cli.data.delimited import read_table

    rows, sep, end = table
    path = tmp_path / "f.csv"
    path.write_text(end.join(sep.join(r) for r in rows), newline="")
    try:
        t = read_table(path, spec, pixels=2 if spec in ("onehot_last", "none") else None, pixel_range=(0, 255))
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert t.X.dtype == np.float32 and t.X.shape[1] >= 1 and np.isfinite(t.X).all()
    assert (t.X >= 0).all() and (t.X <= 255).all()


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b),
                 st.binary(max_size=200).map(lambda b: b"\x93NUMPY\x01\x00" + b)))
def test_the_array_readers_on_arbitrary_bytes(tmp_path, data):
    from softmax_cli.data.arrays import NpzArchive, read_npy

    (tmp_path / "a.npz").write_bytes(data)
    for read_one in (lambda p: NpzArchive(p).close(), read_npy, lambda p: read_pixel_rows(p, 4)):
        try:
            read_one(tmp_path / "a.npz")
        except UserError as exc:
            assert str(exc) and "\n" not in str(exc)
