"""Bad inputs through the real ``softmax`` command: exit 2, one ``softmax: error:`` line, no traceback.

Every case runs the installed console script in pytest's ``tmp_path`` and checks, with
:func:`conftest.assert_user_error`, the exit code, that stderr is exactly one line starting
``softmax: error: ``, and that the line names the file (and key or place) and the problem.
Failed ``train`` runs must also leave no ``runs/`` directory behind.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CONFIGS, SAMPLES, assert_user_error, run_softmax


def cases(table: list) -> list:
    """Rows ``(id, *values)`` as pytest params with readable ids."""
    return [pytest.param(*row[1:], id=row[0]) for row in table]


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def train_must_fail(cwd: Path, config: str, *fragments: str, args=(), files: dict | None = None):
    """Write ``files`` and ``cfg.yaml`` into ``cwd``, train, expect a one-line error and no run dir."""
    for name, content in (files or {}).items():
        _write(cwd / name, content)
    _write(cwd / "cfg.yaml", config)
    proc = run_softmax("train", "cfg.yaml", "--quiet", *args, cwd=cwd, timeout=120)
    assert_user_error(proc, *fragments)
    assert proc.stdout == ""
    assert not (cwd / "runs").exists(), "a failed run must not create a run directory"


# =============================================================================== config
BASE = "data: {source: digits}\ntrain: {epochs: 1}\n"

CONFIG_CASES = [
    # id, config text, extra args, fragments
    ("yaml_syntax_indent", "data:\n  source: digits\n model: x\n", (),
     ("cfg.yaml", "line 3, column 2", "YAML syntax error")),
    ("yaml_syntax_unclosed", "train:\n  epochs: [1, 2\n", (), ("cfg.yaml", "line 3, column 1", "YAML")),
    ("yaml_tab", "train:\n\tepochs: 1\n", (), ("cfg.yaml", "line 2, column 1", "YAML syntax error")),
    ("top_level_list", "- 1\n- 2\n", (), ("cfg.yaml", "expected a mapping", "got list")),
    ("top_level_scalar", "just words\n", (), ("cfg.yaml", "expected a mapping", "got str")),
    ("unknown_key", "modle: {hidden: [8]}\n", (), ("cfg.yaml", "modle: unknown key", "did you mean 'model'")),
    ("unknown_nested_key", "train:\n  optimizer: {lrr: 0.1}\n", (),
     ("cfg.yaml", "train.optimizer.lrr: unknown key", "did you mean 'lr'")),
    ("epochs_string", "train: {epochs: ten}\n", (), ("cfg.yaml", "train.epochs", "expected an integer", "'ten'")),
    ("epochs_float", "train: {epochs: 2.5}\n", (), ("train.epochs", "expected an integer", "2.5")),
    ("batch_size_bool", "train: {batch_size: true}\n", (), ("train.batch_size", "expected an integer", "True")),
    ("hidden_scalar", "model: {hidden: 5}\n", (), ("cfg.yaml", "model.hidden", "got 5")),
    ("hidden_scalar_wording", "model: {hidden: 5}\n", (), ("expected a list of integers, got 5",)),
    ("hidden_item", "model: {hidden: [16, wide]}\n", (), ("model.hidden[1]", "expected an integer", "'wide'")),
    ("hidden_zero", "model: {hidden: [0]}\n", (), ("model.hidden", "positive")),
    ("nesterov_int", "train: {optimizer: {nesterov: 1}}\n", (), ("train.optimizer.nesterov", "true or false")),
    ("data_not_mapping", "data: digits\n", (), ("cfg.yaml", "data: expected a mapping", "'digits'")),
    ("lr_zero", "train: {optimizer: {lr: 0}}\n", (), ("cfg.yaml", "train.optimizer.lr", "> 0", "got 0")),
    ("lr_negative", "train: {optimizer: {lr: -0.1}}\n", (), ("train.optimizer.lr", "> 0", "-0.1")),
    ("lr_nan", "train: {optimizer: {lr: .nan}}\n", (), ("train.optimizer.lr", "finite number")),
    ("val_fraction", "data: {val_fraction: 1.5}\n", (), ("cfg.yaml", "data.val_fraction", "< 1", "1.5")),
    ("test_fraction_zero", "data: {test_fraction: 0}\n", (), ("data.test_fraction", "> 0")),
    ("batch_size_zero", "train: {batch_size: 0}\n", (), ("cfg.yaml", "train.batch_size", ">= 1", "got 0")),
    ("seed_negative", "seed: -1\n", (), ("seed", ">= 0", "-1")),
    ("activation", "model: {activation: swish}\n", (),
     ("cfg.yaml", "model.activation", "one of relu, tanh, sigmoid, leaky_relu", "'swish'")),
    ("optimizer_name", "train: {optimizer: {name: rmsprop}}\n", (), ("train.optimizer.name", "sgd, adam")),
    ("source", "data: {source: parquet}\n", (), ("data.source", "digits, csv, idx, folder", "'parquet'")),
    ("name_with_slash", "name: a/b\n", (), ("cfg.yaml", "name", "plain directory name")),
    ("root_with_digits", "data: {source: digits, root: data/mnist}\n", (),
     ("cfg.yaml", "data.root", "not used with data.source 'digits'")),
    ("csv_without_train", "data: {source: csv}\n", (), ("cfg.yaml", "data.train", "required", "'csv'")),
    ("csv_with_root", "data: {source: csv, train: a.csv, root: x}\n", (), ("data.root", "not used", "'csv'")),
    ("idx_without_root", "data: {source: idx}\n", (), ("cfg.yaml", "data.root", "required", "'idx'")),
    ("image_shape_1d", "data: {source: csv, train: a.csv, image_shape: [4]}\n", (),
     ("data.image_shape", "[height, width]")),
    ("early_stopping_no_val", "data: {val_fraction: 0}\ntrain: {early_stopping: {patience: 2}}\n", (),
     ("cfg.yaml", "train.early_stopping", "val_fraction")),
    ("patience_zero", "train: {early_stopping: {patience: 0}}\n", (), ("train.early_stopping.patience", ">= 1")),
    ("set_without_equals", BASE, ("--set", "train.epochs"), ("--set train.epochs", "KEY.SUB=VALUE")),
    ("set_empty_key", BASE, ("--set", "=3"), ("--set =3", "KEY.SUB=VALUE")),
    ("set_empty_segment", BASE, ("--set", "train..epochs=3"), ("--set train..epochs=3", "KEY.SUB=VALUE")),
    ("set_through_scalar", BASE, ("--set", "train.epochs.max=3"), ("--set train.epochs.max", "not a mapping")),
    ("set_unknown_key", BASE, ("--set", "trian.epochs=3"), ("trian: unknown key", "did you mean 'train'")),
    ("set_unknown_nested", BASE, ("--set", "train.optimizer.lrr=0.1"),
     ("train.optimizer.lrr: unknown key", "did you mean 'lr'")),
    ("set_bad_yaml", BASE, ("--set", "model.hidden=[8"), ("--set model.hidden=[8", "not valid YAML")),
    ("set_wrong_type", BASE, ("--set", "train.epochs=many"),
     ("--set train.epochs=many: train.epochs: expected an integer, got 'many'",)),
    ("set_out_of_range", BASE, ("--set", "train.optimizer={name: sgd, momentum: 1.5}"),
     ("--set train.optimizer={name: sgd, momentum: 1.5}: train.optimizer.momentum: expected a value >= 0 "
      "and < 1, got 1.5",)),
    ("output_dir_is_file", "data: {source: digits}\noutput: {dir: cfg.yaml}\n", (),
     ("cfg.yaml", "output.dir exists and is not a directory")),
    ("nul_in_name", BASE + 'name: "a\\0b"\n', (), ("cfg.yaml", "name", "without NUL bytes")),
    ("nul_in_path", 'data: {source: csv, train: "\\0a.csv"}\n', (), ("data.train", "without NUL bytes")),
    ("name_too_long", BASE + "name: " + "n" * 300 + "\n", (), ("cfg.yaml", "name: expected a plain directory name of at most 200 bytes")),
    ("misplaced_key", "train: {lr: 0.1}\n", (), ("train.lr: unknown key", "did you mean 'train.optimizer.lr'")),
    ("dropout_one", "model: {hidden: [8], dropout: 1.0}\n", (), ("cfg.yaml", "model.dropout", "< 1", "1.0")),
    ("dropout_per_layer_count", "model: {hidden: [8, 8], dropout: [0.1]}\n", (),
     ("model.dropout", "one rate per hidden layer (2)", "[0.1]")),
    ("dropout_word", "model: {dropout: lots}\n", (), ("model.dropout", "a number or a list of numbers", "'lots'")),
    ("input_dropout_negative", "model: {input_dropout: -0.1}\n", (), ("model.input_dropout", ">= 0")),
    ("label_smoothing_one", "train: {label_smoothing: 1}\n", (), ("cfg.yaml", "train.label_smoothing", "< 1")),
    ("schedule_name", "train: {schedule: {name: linear}}\n", (),
     ("train.schedule.name", "one of constant, step, cosine, plateau", "'linear'")),
    ("schedule_gamma", "train: {schedule: {name: step, gamma: 2}}\n", (), ("train.schedule.gamma", "< 1")),
    ("monitor_name", "train: {monitor: val_f1}\n", (), ("train.monitor", "one of val_loss, val_acc")),
    ("monitor_in_early_stopping", "train: {early_stopping: {monitor: val_acc}}\n", (),
     ("train.early_stopping.monitor: unknown key", "did you mean 'train.monitor'")),
    ("max_norm_zero", "train: {max_norm: 0}\n", (), ("train.max_norm", "> 0")),
    ("augment_rotate", "train: {augment: {rotate: 270}}\n", (), ("train.augment.rotate", "<= 180", "270")),
    ("augment_unknown", "train: {augment: {flip: true}}\n", (), ("train.augment.flip: unknown key", "allowed: shift")),
    ("optimizer_adamx", "train: {optimizer: {name: adamx}}\n", (), ("train.optimizer.name", "sgd, adam, adamw")),
    ("folder_without_root", "data: {source: folder}\n", (),
     ("cfg.yaml", "data.root", "required with data.source 'folder'", "one sub-folder of images per class")),
    ("folder_with_train", "data: {source: folder, root: imgs, train: a.csv}\n", (),
     ("cfg.yaml", "data.train", "not used with data.source 'folder'")),
    ("folder_with_pixel_max", "data: {source: folder, root: imgs, pixel_max: 16}\n", (),
     ("data.pixel_max", "not used with data.source 'folder'")),
    ("folder_image_shape_1d", "data: {source: folder, root: imgs, image_shape: [28]}\n", (),
     ("cfg.yaml", "data.image_shape", "[height, width] of positive integers", "[28]")),
    ("folder_image_shape_zero", "data: {source: folder, root: imgs, image_shape: [28, 0]}\n", (),
     ("data.image_shape", "positive integers", "[28, 0]")),
    ("idx_with_image_shape", "data: {source: idx, root: x, image_shape: [28, 28]}\n", (),
     ("data.image_shape", "not used with data.source 'idx'")),
    # sizes no config should have: refused, not a traceback, and quoted in a line
    ("yaml_nested_too_deep", "{" * 5000 + "\n", (), ("cfg.yaml", "YAML nested too deeply to read")),
    ("set_nested_too_deep", BASE, ("--set", "model.hidden=" + "[" * 3000),
     ("--set model.hidden=...", "nested too deeply to read")),
    ("number_beyond_float", "data: {source: digits}\ntrain: {optimizer: {lr: " + "1" * 400 + "}}\n", (),
     ("cfg.yaml", "train.optimizer.lr", "expected a finite number, got 111111111111111111...1111111111111111111")),
    ("integer_beyond_int64", "data: {source: digits}\ntrain: {epochs: " + "9" * 400 + "}\n", (),
     ("cfg.yaml", "train.epochs", "integer of at most 19 digits, got 999999999999999999...9999999999999999999")),
    ("alias_bomb", "model:\n  hidden:\n  - &a0 [x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 8)), (),
     ("cfg.yaml", "model.hidden[0]: expected an integer, got ['x', 'x', 'x', 'x', 'x', 'x', ...]")),
]


# bad config cases: replayed from tests/bad_inputs/ by test_corpus.py


@pytest.mark.parametrize("command", ["train", "gradcheck"])
@pytest.mark.parametrize("make, fragments", [
    pytest.param(lambda d: d / "data.yaml", ("data.yaml", "config file not found"), id="missing"),
    pytest.param(lambda d: (d / "confdir").mkdir() or d / "confdir", ("confdir", "is a directory"), id="directory"),
    pytest.param(lambda d: _write(d / "bin.yaml", b"\xff\xfe\x00bad"), ("bin.yaml", "cannot read"), id="not_utf8"),
    pytest.param(lambda d: (d / "zero.yaml").symlink_to("/dev/zero") or d / "zero.yaml",
                 ("zero.yaml", "not a regular file"), id="endless_device"),
])
def test_unreadable_config(tmp_path, command, make, fragments):
    proc = run_softmax(command, make(tmp_path).relative_to(tmp_path), cwd=tmp_path, timeout=60)
    assert_user_error(proc, *fragments)
    assert not (tmp_path / "runs").exists()


def test_a_device_as_data_file_is_refused_not_read_without_end(tmp_path):
    (tmp_path / "train.csv").symlink_to("/dev/zero")
    train_must_fail(tmp_path, "data: {source: csv, train: train.csv}\ntrain: {epochs: 1}\n",
                    "/dev/zero: not a regular file")   # data paths are resolved, links followed


# ================================================================================== CSV
HEAD = "label,p0,p1,p2,p3\n"


def csv_config(train: str = "train.csv", extra: str = "") -> str:
    return f"data:\n  source: csv\n  train: {train}\n{extra}train: {{epochs: 2, batch_size: 8}}\n"


def balanced_csv(n: int = 40, newline: str = "\n", bom: bool = False) -> str:
    """``n`` rows of 2x2 images: class 0 inks the left column, class 1 the right one."""
    rows = ["label,p0,p1,p2,p3"] + [("0,200,0,180,0" if i % 2 == 0 else "1,0,210,0,190") for i in range(n)]
    return ("\ufeff" if bom else "") + newline.join(rows) + newline


GOOD = balanced_csv()

CSV_CASES = [
    # id, files, config extra lines, fragments
    ("missing", {}, "", ("train.csv", "file not found")),
    ("directory", {"train.csv/x": "1"}, "", ("train.csv", "is a directory")),
    ("empty", {"train.csv": ""}, "", ("train.csv", "empty CSV file")),
    ("blank_lines", {"train.csv": "\n\n"}, "", ("train.csv", "empty CSV file")),
    ("header_only", {"train.csv": HEAD}, "", ("train.csv", "no data rows")),
    ("non_numeric", {"train.csv": HEAD + "0,1,2,3,4\n1,1,x,3,4\n"}, "", ("train.csv", "'x'", "column 3")),
    ("non_numeric_line", {"train.csv": HEAD + "0,1,2,3,4\n1,1,x,3,4\n"}, "",
     ("line 3, column 3: expected a number, got 'x'",)),
    ("empty_cell", {"train.csv": HEAD + "0,1,,3,4\n"}, "", ("train.csv", "''", "column 3")),
    ("ragged", {"train.csv": HEAD + "0,1,2,3,4\n1,1,3,4\n"}, "",
     ("train.csv", "line 3: 4 columns, expected 5")),
    ("header_width", {"train.csv": "label,p0,p1\n0,1,2,3,4\n"}, "", ("train.csv", "header has 3 columns", "5")),
    ("nan", {"train.csv": HEAD + "0,1,2,3,4\n1,1,nan,3,4\n"}, "",
     ("train.csv", "line 3, column 3", "finite number", "nan")),
    ("inf", {"train.csv": HEAD + "0,1,2,3,1e999\n"}, "", ("train.csv", "line 2, column 5", "finite number")),
    ("label_not_integer", {"train.csv": HEAD + "0,1,2,3,4\n0.5,1,2,3,4\n"}, "",
     ("train.csv", "line 3", "label 0.5 is not an integer")),
    ("label_column_absent", {"train.csv": GOOD}, "  label_column: digit\n",
     ("train.csv", "no column named 'digit'", "label_column", "'label', 'p0'")),
    ("label_column_no_header", {"train.csv": "0,1,2,3,4\n1,4,3,2,1\n"}, "  label_column: label\n",
     ("train.csv", "no header row", "first or last")),
    ("not_square", {"train.csv": "label,p0,p1,p2\n0,1,2,3\n"}, "",
     ("train.csv", "3 pixel columns", "not a square", "data.image_shape")),
    ("label_only", {"train.csv": "label\n1\n2\n"}, "", ("train.csv", "no pixel columns")),
    ("image_shape_mismatch", {"train.csv": GOOD}, "  image_shape: [3, 3]\n",
     ("train.csv", "4 pixel columns", "data.image_shape [3, 3]")),
    ("pixel_above_max", {"train.csv": HEAD + "0,1,2,3,300\n"}, "",
     ("train.csv", "line 2, column 5: pixel value 300 outside [0, 255] (data.pixel_max)")),
    ("pixel_above_custom_max", {"train.csv": HEAD + "0,1,2,3,17\n"}, "  pixel_max: 16\n",
     ("train.csv", "line 2, column 5: pixel value 17 outside [0, 16]")),
    ("pixel_negative", {"train.csv": HEAD + "0,1,2,3,-4\n"}, "", ("train.csv", "pixel value -4 outside [0, 255]")),
    ("test_fewer_columns", {"train.csv": GOOD, "test.csv": "label,p0,p1,p2\n0,1,2,3\n"}, "  test: test.csv\n",
     ("test.csv", "columns differ", "train.csv")),
    ("test_other_header", {"train.csv": GOOD, "test.csv": "label,q0,q1,q2,q3\n0,1,2,3,4\n"},
     "  test: test.csv\n", ("test.csv", "columns differ", "train.csv")),
    ("test_pixels", {"train.csv": GOOD, "test.csv": HEAD + "0,1,2,3,999\n"}, "  test: test.csv\n",
     ("test.csv", "[0, 255]", "999")),
    ("test_unknown_label", {"train.csv": GOOD, "test.csv": HEAD + "7,1,2,3,4\n"}, "  test: test.csv\n",
     ("test.csv", "does not occur in the training labels")),
    ("test_unknown_label_wording", {"train.csv": GOOD, "test.csv": HEAD + "7,1,2,3,4\n"},
     "  test: test.csv\n", ("label 7 does not occur",)),
    ("test_missing", {"train.csv": GOOD}, "  test: nope.csv\n", ("nope.csv", "file not found")),
    ("corrupt_gzip", {"train.csv.gz": b"\x1f\x8b" + np.random.default_rng(0).bytes(64)}, "",
     ("train.csv.gz", "corrupt gzip")),
    ("truncated_gzip", {"train.csv.gz": gzip.compress(GOOD.encode(), mtime=0)[:40]}, "", ("train.csv.gz", "corrupt gzip")),
    ("not_utf8", {"train.csv": b"label,p0\n\xff\xfe,1\n"}, "", ("train.csv", "not a UTF-8 text file")),
    ("singleton_class", {"train.csv": HEAD + "0,1,2,3,4\n" * 10 + "1,4,3,2,1\n"}, "",
     ("train.csv", "cannot split", "only 1 member")),
    ("huge_label", {"train.csv": GOOD + "1e300,1,2,3,4\n"}, "", ("train.csv", "label 1e+300 is not an integer")),
    ("one_class", {"train.csv": HEAD + "7,200,0,180,0\n" * 40}, "",
     ("train.csv", "every training label is 7", "at least two classes")),
]


# bad csv cases: replayed from tests/bad_inputs/ by test_corpus.py


@pytest.mark.parametrize("name, data", [
    pytest.param("train.csv", balanced_csv(newline="\r\n", bom=True).encode(), id="bom_crlf"),
    pytest.param("train.csv.gz", gzip.compress(balanced_csv(newline="\r\n", bom=True).encode()), id="gzip"),
])
def test_valid_csv_trains(tmp_path, name, data):
    _write(tmp_path / name, data)
    _write(tmp_path / "test.csv", balanced_csv(10))
    _write(tmp_path / "cfg.yaml", csv_config(name, "  test: test.csv\n") + "model: {hidden: [4]}\n")
    proc = run_softmax("train", "cfg.yaml", "--quiet", "--json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["epochs_run"] == 2 and summary["n_test"] == 10
    assert (tmp_path / summary["best_checkpoint"]).is_file()


# ================================================================================== IDX
def idx_bytes(arr, dtype_code: int = 0x08) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, dtype_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


_RNG = np.random.default_rng(0)
IMAGES = idx_bytes(_RNG.integers(0, 256, (20, 4, 4)))
LABELS = idx_bytes(np.arange(20) % 2)
TI, TL = "mnist/train-images-idx3-ubyte", "mnist/train-labels-idx1-ubyte"

IDX_CASES = [
    # id, files, fragments
    ("root_missing", {}, ("mnist", "data.root is not a directory")),
    ("root_is_file", {"mnist": b"x"}, ("mnist", "data.root is not a directory")),
    ("root_without_files", {"mnist/readme.txt": "hi"}, ("mnist", "no train-images-idx3-ubyte", "data.root")),
    ("labels_missing", {TI: IMAGES}, ("mnist", "no train-labels-idx1-ubyte")),
    ("wrong_magic", {TI: b"\x12\x34" + IMAGES[2:], TL: LABELS},
     ("train-images-idx3-ubyte", "not an IDX file", "magic number '12340803'")),
    ("empty_file", {TI: b"", TL: LABELS}, ("train-images-idx3-ubyte", "not an IDX file")),
    ("truncated_header", {TI: IMAGES[:10], TL: LABELS}, ("train-images-idx3-ubyte", "truncated IDX header")),
    ("truncated_data", {TI: IMAGES[:-10], TL: LABELS},
     ("train-images-idx3-ubyte", "310 bytes", "(20, 4, 4) asks for 320")),
    ("trailing_data", {TI: IMAGES + b"\0", TL: LABELS}, ("train-images-idx3-ubyte", "321 bytes")),
    ("count_mismatch", {TI: IMAGES, TL: idx_bytes(np.arange(19) % 2)},
     ("train-labels-idx1-ubyte", "19 labels for 20 images")),
    ("images_2d", {TI: idx_bytes(np.zeros((20, 16))), TL: LABELS},
     ("train-images-idx3-ubyte", "3 dimensions", "got 2")),
    ("corrupt_gzip", {TI + ".gz": b"\x1f\x8b" + _RNG.bytes(200), TL: LABELS},
     ("train-images-idx3-ubyte.gz", "corrupt gzip")),
    ("truncated_gzip", {TI + ".gz": gzip.compress(IMAGES, mtime=0)[:-30], TL: LABELS},
     ("train-images-idx3-ubyte.gz", "corrupt gzip")),
    ("test_shape_differs", {TI: IMAGES, TL: LABELS, "mnist/t10k-images-idx3-ubyte": idx_bytes(np.zeros((2, 5, 5))),
                            "mnist/t10k-labels-idx1-ubyte": idx_bytes([0, 1])},
     ("t10k-images-idx3-ubyte", "test images are (5, 5)", "(4, 4)")),
    ("zero_images", {TI: idx_bytes(np.zeros((0, 4, 4))), TL: idx_bytes(np.zeros(0))},
     ("train-images-idx3-ubyte", "no images")),
    ("zero_width", {TI: idx_bytes(np.zeros((20, 4, 0))), TL: LABELS}, ("train-images-idx3-ubyte", "no pixels")),
    ("float_nan", {TI: bytes([0, 0, 0x0D, 3]) + struct.pack(">3I", 20, 2, 2)
                   + np.where(np.arange(80) == 7, np.nan, 0.5).astype(">f4").tobytes(), TL: LABELS},
     ("train-images-idx3-ubyte", "finite")),
    ("one_class", {TI: IMAGES, TL: idx_bytes(np.full(20, 3))},
     ("train-labels-idx1-ubyte", "every training label is 3", "at least two classes")),
    ("float_labels_nan", {TI: IMAGES, TL: bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 20)
                          + np.where(np.arange(20) == 4, np.nan, np.arange(20) % 2).astype(">f4").tobytes()},
     ("train-labels-idx1-ubyte", "label 4 is nan, not an integer")),
    ("float_labels_fraction", {TI: IMAGES, TL: bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 20)
                               + (np.arange(20) % 2 + 0.5).astype(">f4").tobytes()},
     ("train-labels-idx1-ubyte", "label 0 is 0.5, not an integer")),
]


# bad idx cases: replayed from tests/bad_inputs/ by test_corpus.py


def test_idx_explicit_path_missing(tmp_path):
    _write(tmp_path / TI, IMAGES)
    train_must_fail(tmp_path, f"data: {{source: idx, train_images: {TI}, train_labels: nope-idx1}}\n",
                    "nope-idx1", "file not found")


# ============================================================================== folder
def digit_png(ink: bool = True, size: int = 28, fmt: str = "PNG") -> bytes:
    """An image file's bytes: a dark vertical stroke on white (a "1"), or a blank white page."""
    pixels = np.full((size, size), 255, np.uint8)
    if ink:
        pixels[size // 6:-size // 6, size // 2 - 2:size // 2 + 2] = 20
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


ONE = digit_png()


def folder_config(extra: str = "") -> str:
    return f"data:\n  source: folder\n  root: imgs\n{extra}train: {{epochs: 1}}\n"


FOLDER_CASES = [
    # id, files, config extra lines, fragments
    ("root_missing", {}, "", ("imgs", "data.root is not a folder")),
    ("no_class_folders", {"imgs/a.png": ONE, "imgs/.hidden/b.png": ONE}, "",
     ("imgs", "no class folders in data.root", "data.root/<class name>/<image files>")),
    ("one_class", {"imgs/cat/a.png": ONE, "imgs/cat/b.png": ONE}, "",
     ("imgs", "only one class folder ('cat')", "at least two")),
    ("empty_class", {"imgs/cat/a.png": ONE, "imgs/dog/.DS_Store": b"x"}, "",
     ("imgs/dog", "class folder holds no files")),
    ("not_an_image", {"imgs/cat/a.png": ONE, "imgs/dog/b.png": ONE, "imgs/dog/notes.txt": "hello\n"}, "",
     ("imgs/dog/notes.txt", "not an image file Pillow can read")),
    ("blank_image", {"imgs/cat/a.png": ONE, "imgs/dog/sub/blank.jpg": digit_png(ink=False, fmt="JPEG")}, "",
     ("imgs/dog/sub/blank.jpg", "no ink")),
    ("test_missing", {"imgs/cat/a.png": ONE, "imgs/dog/b.png": ONE}, "  test: held-out\n",
     ("held-out", "data.test is not a folder")),
    ("test_unknown_class", {"imgs/cat/a.png": ONE, "imgs/dog/b.png": ONE, "held-out/cow/c.png": ONE},
     "  test: held-out\n", ("held-out/cow", "class 'cow' of data.test is not a class of data.root (cat, dog)")),
]


# bad folder cases: replayed from tests/bad_inputs/ by test_corpus.py


# =========================================================================== checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real digits checkpoint (1 epoch, 16 hidden units) to load and rewrite."""
    cwd = tmp_path_factory.mktemp("ckpt")
    proc = run_softmax("train", CONFIGS / "digits.yaml",
                       "--quiet", "--json", "--set", "train.epochs=1", "--set", "model.hidden=[16]", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd / json.loads(proc.stdout)["best_checkpoint"]


class Unpickled:
    """Creates a directory named by its argument when unpickled: proof that pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _arrays(ckpt: Path) -> tuple[dict, dict]:
    with np.load(ckpt) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays, json.loads(str(arrays["metadata"]))


def _rewrite(**meta_changes):
    """A builder: the good checkpoint with metadata keys replaced."""
    def build(ckpt: Path, out: Path) -> Path:
        arrays, meta = _arrays(ckpt)
        arrays["metadata"] = np.array(json.dumps({**meta, **meta_changes}))
        np.savez(out / "bad.npz", **arrays)
        return out / "bad.npz"
    return build


def _without(key):
    def build(ckpt, out):
        arrays, _ = _arrays(ckpt)
        del arrays[key]
        np.savez(out / "bad.npz", **arrays)
        return out / "bad.npz"
    return build


def _pickled(ckpt, out):
    arrays, _ = _arrays(ckpt)
    arrays["W0"] = np.array([Unpickled(out / "UNPICKLED")], dtype=object)
    np.savez(out / "bad.npz", **arrays)
    return out / "bad.npz"


def _with_arrays(**changes):
    """A builder: the good checkpoint with arrays replaced (a callable gets the old array)."""
    def build(ckpt: Path, out: Path) -> Path:
        arrays, _ = _arrays(ckpt)
        arrays.update({k: v(arrays[k]) if callable(v) else v for k, v in changes.items()})
        np.savez(out / "bad.npz", **arrays)
        return out / "bad.npz"
    return build


def _corrupt_compressed(ckpt, out):
    # deflated members with bytes changed inside W0's data: the inflater fails (zlib.error)
    arrays, _ = _arrays(ckpt)
    np.savez_compressed(out / "bad.npz", **arrays)
    raw = bytearray((out / "bad.npz").read_bytes())
    start = raw.index(b"W0.npy") + len("W0.npy") + 20      # into the deflate stream
    raw[start:start + 8] = bytes(8)
    return _write(out / "bad.npz", bytes(raw))


def _member_not_npy(ckpt, out):
    # a member named "W0" (no .npy): np.load hands back its raw bytes, not an array
    import zipfile

    arrays, _ = _arrays(ckpt)
    np.savez(out / "bad.npz", **{k: v for k, v in arrays.items() if k != "W0"})
    with zipfile.ZipFile(out / "bad.npz", "a") as z:
        z.writestr("W0", b"raw bytes")
    return out / "bad.npz"


CKPT_CASES = [
    # id, builder(good checkpoint, dir) -> path, fragments
    ("missing", lambda c, d: d / "nope.npz", ("nope.npz", "checkpoint not found")),
    ("directory", lambda c, d: (d / "ck.npz").mkdir() or d / "ck.npz", ("ck.npz", "is a directory")),
    ("text_file", lambda c, d: _write(d / "bad.npz", "hello, I am text\n"), ("bad.npz", "not a softmax checkpoint")),
    ("text_file_wording", lambda c, d: _write(d / "bad.npz", "hello, I am text\n"),
     ("bad.npz", "not a readable .npz archive")),
    ("zero_bytes", lambda c, d: _write(d / "bad.npz", b""), ("bad.npz", "not a readable .npz archive")),
    ("truncated_zip", lambda c, d: _write(d / "bad.npz", c.read_bytes()[:400]),
     ("bad.npz", "not a readable .npz archive")),
    ("single_npy", lambda c, d: np.save(d / "bad.npy", np.zeros(3)) or d / "bad.npy",
     ("bad.npy", "not a softmax checkpoint", "single .npy array")),
    ("no_metadata", lambda c, d: np.savez(d / "bad.npz", a=np.random.rand(3, 3), b=np.ones(2)) or d / "bad.npz",
     ("bad.npz", "not a softmax checkpoint", "no metadata")),
    ("pickled_object_array", _pickled, ("bad.npz", "pickle")),
    ("metadata_not_json", lambda c, d: np.savez(d / "bad.npz", metadata=np.array("{oops")) or d / "bad.npz",
     ("bad.npz", "metadata is not JSON")),
    ("wrong_format", _rewrite(format="something-else"), ("bad.npz", "format: softmax-checkpoint")),
    ("newer_version", _rewrite(format_version=999), ("bad.npz", "format version 999", "newer", "upgrade")),
    ("classes_null", _rewrite(classes=None), ("bad.npz", "not a softmax checkpoint", "'classes'")),
    ("missing_weights", _without("W1"), ("bad.npz", "missing 'W1'")),
    ("bad_activation", _rewrite(model={"sizes": [64, 16, 10], "activation": "swish", "dtype": "float32"}),
     ("bad.npz", "swish")),
    ("class_count", _rewrite(classes=["a", "b"]), ("bad.npz", "'classes' must be 10 class names")),
    ("image_style", _rewrite(image_style="foo"), ("bad.npz", "unknown image_style 'foo'")),
    ("pixel_max_text", _rewrite(preprocessing={"pixel_max": "abc", "normalize": "global"}),
     ("bad.npz", "not a softmax checkpoint", "abc")),
    ("integer_dtype", _rewrite(model={"sizes": [64, 16, 10], "activation": "relu", "dtype": "int8"}),
     ("bad.npz", "float32 or float64")),
    ("string_version", _rewrite(format_version="1"), ("bad.npz", "format_version '1' is not an integer")),
    ("corrupt_compressed", _corrupt_compressed, ("bad.npz", "not a readable .npz archive")),
    ("member_not_npy", _member_not_npy, ("bad.npz", "W0 not stored as .npy arrays")),
    ("nan_weight", _with_arrays(W0=lambda w: np.where(np.arange(w.size).reshape(w.shape) == 5, np.nan, w)),
     ("bad.npz", "parameters must be arrays of finite floats")),
    ("zero_scale", _with_arrays(input_scale=lambda s: np.zeros_like(s)), ("bad.npz", "the scale above 0")),
    ("pixel_max_negative", _rewrite(preprocessing={"pixel_max": -5, "normalize": "global"}),
     ("bad.npz", "pixel_max must be a number > 0, got -5")),
    ("image_style_list", _rewrite(image_style=["mnist"]), ("bad.npz", "unknown image_style ['mnist']")),
    ("image_shape_bools", _rewrite(image_shape=[True, 64]), ("bad.npz", "'image_shape' must be [height, width]")),
    ("sizes_fraction", _rewrite(model={"sizes": [64, 16, 10.5], "activation": "relu", "dtype": "float32"}),
     ("bad.npz", "model sizes must be a list of two or more positive integers, got [64, 16, 10.5]")),
]


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize("build, fragments",
                         cases(CKPT_CASES))
def test_bad_checkpoint(tmp_path, checkpoint, command, build, fragments):
    path = build(checkpoint, tmp_path)
    args = ["eval", path] if command == "eval" else ["predict", "--checkpoint", path, SAMPLES / "digits-3.png"]
    proc = run_softmax(*args, cwd=tmp_path, timeout=120)
    assert_user_error(proc, *fragments)
    assert proc.stdout == ""
    assert not (tmp_path / "UNPICKLED").exists(), "an object array was unpickled"


def test_pickled_metadata_is_never_unpickled(tmp_path):
    np.savez(tmp_path / "evil.npz", metadata=np.array([Unpickled(tmp_path / "UNPICKLED")], dtype=object))
    proc = run_softmax("eval", "evil.npz", cwd=tmp_path)
    assert_user_error(proc, "evil.npz", "pickle")
    assert not (tmp_path / "UNPICKLED").exists()


def test_checkpoint_image_shape_checked(tmp_path, checkpoint):
    path = _rewrite(image_shape=[])(checkpoint, tmp_path)
    proc = run_softmax("predict", "-c", path, SAMPLES / "digits-3.png", cwd=tmp_path)
    assert_user_error(proc, "bad.npz", "image_shape")


# ================================================================================= eval
def test_eval_bogus_split(tmp_path, checkpoint):
    assert_user_error(run_softmax("eval", checkpoint, "--split", "bogus", cwd=tmp_path),
                      "--split", "expected test, val or train", "'bogus'")


def test_eval_val_split_absent(tmp_path, checkpoint):
    arrays, meta = _arrays(checkpoint)
    meta["config"]["data"]["val_fraction"] = 0
    meta["config"]["train"]["early_stopping"] = None
    np.savez(tmp_path / "noval.npz", **{**arrays, "metadata": np.array(json.dumps(meta))})
    assert_user_error(run_softmax("eval", "noval.npz", "--split", "val", cwd=tmp_path),
                      "noval.npz", "no validation split")


@pytest.mark.parametrize("files, fragments", [
    pytest.param({}, ("data.yaml", "config file not found"), id="missing"),
    pytest.param({"data.yaml": "model: {activation: swish}\n"}, ("data.yaml", "model.activation"), id="invalid"),
    pytest.param({"data.yaml": csv_config("t.csv"), "t.csv": GOOD}, ("data.yaml", "4 features", "expects 64"),
                 id="feature_mismatch"),
])
def test_eval_bad_data_config(tmp_path, checkpoint, files, fragments):
    for name, content in files.items():
        _write(tmp_path / name, content)
    assert_user_error(run_softmax("eval", checkpoint, "--data", "data.yaml", cwd=tmp_path), *fragments)


# ============================================================================== predict
def _png(color=255, ink=False):
    """A builder: a 28x28 grayscale PNG of one colour, with a noisy stroke when ``ink``."""
    def build(d: Path) -> Path:
        pixels = np.full((28, 28), color, np.uint8)
        if ink:
            pixels[4:24, 12:16] = np.random.default_rng(0).integers(150, 256, (20, 4))
        Image.fromarray(pixels).save(d / "img.png")
        return d / "img.png"
    return build


IMAGE_CASES = [
    ("missing", lambda d: d / "img.png", ("img.png", "file not found")),
    ("zero_bytes", lambda d: _write(d / "img.png", b""), ("img.png", "not an image file")),
    ("text_named_png", lambda d: _write(d / "img.png", "this is not a PNG\n"), ("img.png", "not an image file")),
    ("truncated_png", lambda d: _write(d / "img.png", _png(0, ink=True)(d).read_bytes()[:-60]),
     ("img.png", "cannot decode image", "truncated")),
    ("empty_folder", lambda d: (d / "img.png").mkdir() or d / "img.png", ("img.png", "folder holds no files")),
    ("glob_without_match", lambda d: d / "scan-*.png", ("scan-*.png", "no file matches this pattern")),
    ("blank_white", _png(255), ("img.png", "no ink")),
    ("blank_black", _png(0), ("img.png", "no ink")),
    ("blank_gray", _png(128), ("img.png", "no ink")),
]


@pytest.mark.parametrize("build, fragments",
                         cases(IMAGE_CASES))
def test_bad_image(tmp_path, checkpoint, build, fragments):
    bad = build(tmp_path)
    # a good image on either side: both are still classified and printed, the bad one is
    # reported on one line, and the exit code says that something failed
    good = [SAMPLES / "digits-3.png", SAMPLES / "digits-5.png"]
    proc = run_softmax("predict", "-c", checkpoint, good[0], bad, good[1], cwd=tmp_path)
    assert_user_error(proc, *fragments, code=1)
    rows = proc.stdout.splitlines()
    assert rows[0] == f"checkpoint  {checkpoint}" and rows[1].split() == ["path", "class", "probability"]
    assert [r.split()[0] for r in rows[2:]] == [str(g) for g in good]


@pytest.mark.parametrize("args, fragments", [
    pytest.param(["--reject-threshold", "1.5"], ("--reject-threshold", "a probability in [0, 1]", "got 1.5"),
                 id="threshold_above_one"),
    pytest.param(["--reject-threshold", "nan"], ("--reject-threshold", "got nan"), id="threshold_nan"),
    pytest.param(["--output", "no/such/folder/preds.csv"], ("no/such/folder/preds.csv", "--output",
                                                            "folder", "does not exist"), id="output_folder_missing"),
    pytest.param(["--output", "."], (".", "--output is a folder", "give a file name"), id="output_is_folder"),
])
def test_predict_bad_option(tmp_path, checkpoint, args, fragments):
    proc = run_softmax("predict", "-c", checkpoint, SAMPLES / "digits-3.png", *args, cwd=tmp_path)
    assert_user_error(proc, *fragments)
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []


def test_eval_bad_reject_threshold(tmp_path, checkpoint):
    proc = run_softmax("eval", checkpoint, "--reject-threshold", "0.5", "--reject-threshold", "2", cwd=tmp_path)
    assert_user_error(proc, "--reject-threshold", "a probability in [0, 1]", "got 2")
    assert proc.stdout == ""


def test_reject_threshold_refused_for_a_model_with_a_class_named_unknown(tmp_path, checkpoint):
    classes = [str(c) for c in range(9)] + ["unknown"]
    path = _rewrite(classes=classes)(checkpoint, tmp_path)
    proc = run_softmax("predict", "-c", path, SAMPLES / "digits-3.png", "--reject-threshold", "0.5", cwd=tmp_path)
    assert_user_error(proc, "bad.npz", "--reject-threshold answers 'unknown'", "name of one of this model's classes")
    assert run_softmax("predict", "-c", path, SAMPLES / "digits-3.png", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("args, fragments", [
    pytest.param(["-c", "mnsit"], ("mnsit", "checkpoint not found", "neither a file nor a shipped model: mnist"),
                 id="checkpoint_name_misspelt"),
    pytest.param(["-c", "mnist"], ("mnist", "both a shipped model's name and a file here", "./mnist"),
                 id="checkpoint_name_is_also_a_file"),
    pytest.param(["--json", "--jsonl"], ("--json and --jsonl", "choose one"), id="json_and_jsonl"),
    pytest.param(["--save-inputs", "mnist"], ("mnist", "--save-inputs is not a folder"), id="save_inputs_file"),
    pytest.param(["--save-inputs", "full"], ("full", "--save-inputs", "not empty"), id="save_inputs_not_empty"),
    pytest.param(["--save-inputs", "no/such/dir"], ("no/such/dir", "--save-inputs", "does not exist"),
                 id="save_inputs_parent_missing"),
])
def test_predict_bad_checkpoint_name_or_output_option(tmp_path, args, fragments):
    (tmp_path / "mnist").write_text("a file that happens to be called mnist\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.png").write_bytes(b"kept")
    before = sorted(tmp_path.rglob("*"))
    proc = run_softmax("predict", SAMPLES / "mnist-3.png", *args, cwd=tmp_path)
    assert_user_error(proc, *fragments)
    assert proc.stdout == "" and sorted(tmp_path.rglob("*")) == before
