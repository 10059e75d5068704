"""Property tests: arbitrary bytes and arbitrary YAML thrown at every loader.

Each loader must either return a valid result or raise :class:`UserError` (a clean one-line
message for the CLI); any other exception would reach the user as a traceback. A result is
checked too (its type, shapes and dtypes): a loader that returned garbage would pass otherwise.
Each example's file lives in a temporary folder removed after it (the module checks none is left).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmax_cli.checkpoint import load_checkpoint
from softmax_cli.config import Config, DataConfig, config_from_dict, load_config
from softmax_cli.data.dataset import Dataset
from softmax_cli.data.idx import IDX_DTYPES
from softmax_cli.data.images import image_to_input
from softmax_cli.data.sources import load_csv, read_idx
from softmax_cli.errors import UserError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# bytes, and bytes that start like the real thing so the parsers get past their first check
IDX_HEADS = [b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02", b"\x00\x00\x08\x01", b""]
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
blobs = st.one_of(st.binary(max_size=300),
                  st.tuples(st.sampled_from(IDX_HEADS), st.binary(max_size=64)).map(lambda t: t[0] + t[1]),
                  st.binary(max_size=200).map(lambda b: PNG_HEAD + b),
                  st.binary(max_size=200).map(lambda b: b"PK\x03\x04" + b),
                  st.binary(max_size=100).map(gzip.compress))


def outcome(fn, *args, check=None):
    """'ok' (after ``check(result)``, which asserts what a valid result is) or 'user error';
    anything else propagates and fails the test."""
    try:
        result = fn(*args)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return "user error"
    assert check is not None, f"{fn.__name__} returned {result!r} where an error was expected"
    check(result)
    return "ok"


ROOT: list[Path] = []     # this module's folder for the examples' files (fixture below)


@pytest.fixture(scope="module", autouse=True)
def examples_folder(tmp_path_factory):
    """Every example writes under one folder; after the module, each must have removed its own."""
    ROOT.append(tmp_path_factory.mktemp("fuzz"))
    yield
    assert list(ROOT.pop().iterdir()) == [], "a fuzz example left its temporary folder behind"


@contextlib.contextmanager
def in_file(data: bytes, name: str):
    """``data`` as the file ``name`` in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(dir=ROOT[-1]) as folder:
        (Path(folder) / name).write_bytes(data)
        yield Path(folder) / name


def check_idx(data: bytes):
    """A checker of read_idx's result for the file ``data``: the header's shape and the stored
    values, in the header's type but native byte order."""
    try:
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (EOFError, OSError, zlib.error):          # a gzip stream that does not decompress
        def refuse(array):
            pytest.fail(f"read_idx read {len(data)} bytes that gzip cannot decompress")
        return refuse

    def check(array):
        ndim, stored = raw[3], np.dtype(IDX_DTYPES[raw[2]])
        assert isinstance(array, np.ndarray) and array.dtype.isnative
        assert array.dtype == stored.newbyteorder("=")
        assert array.shape == struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        np.testing.assert_array_equal(array.ravel(), np.frombuffer(raw[4 + 4 * ndim:], stored))
    return check


def check_input_row(row):
    """image_to_input's row: float32 (784,), finite, in [0, 255], with some ink."""
    assert isinstance(row, np.ndarray) and row.dtype == np.float32 and row.shape == (784,)
    assert np.isfinite(row).all() and row.min() >= 0 and 0 < row.max() <= 255


def check_config(cfg):
    assert isinstance(cfg, Config) and isinstance(cfg.data, DataConfig)


def check_csv_dataset(ds):
    """load_csv's Dataset: float32 (n, d) pixels in [0, pixel_max], int64 (n,) labels into
    the classes, an image shape of d pixels."""
    assert isinstance(ds, Dataset)
    n, d = ds.X.shape
    assert ds.X.dtype == np.float32 and ds.y.dtype == np.int64 and ds.y.shape == (n,) and n > 0
    assert ds.image_shape[0] * ds.image_shape[1] == d
    assert np.isfinite(ds.X).all() and ds.X.min() >= 0 and ds.X.max() <= ds.pixel_max
    assert ds.y.min() >= 0 and ds.y.max() < len(ds.classes) and len(ds.classes) >= 1


@FUZZ
@given(blobs)
def test_read_idx_on_arbitrary_bytes(data):
    with in_file(data, "x-idx3-ubyte") as path:
        outcome(read_idx, path, check=check_idx(data))


@FUZZ
@given(blobs)
def test_load_checkpoint_on_arbitrary_bytes(data):
    with in_file(data, "model.npz") as path:
        assert outcome(load_checkpoint, path) == "user error"


@FUZZ
@given(blobs)
def test_image_to_input_on_arbitrary_bytes(data):
    with in_file(data, "img.png") as path:
        outcome(image_to_input, path, (28, 28), 255.0, "mnist", check=check_input_row)


@FUZZ
@given(blobs)
def test_load_config_on_arbitrary_bytes(data):
    with in_file(data, "cfg.yaml") as path:
        outcome(load_config, path, check=check_config)


csv_text = st.lists(st.lists(st.one_of(st.integers(-3, 300).map(str), st.sampled_from(["", "nan", "inf", "x", "1.5"])),
                             min_size=0, max_size=6), max_size=8).map(lambda rows: "\n".join(",".join(r) for r in rows))


@FUZZ
@given(st.one_of(csv_text, st.text(max_size=200)))
def test_load_csv_on_arbitrary_text(text):
    with in_file(text.encode("utf-8", "surrogatepass"), "train.csv") as path:
        outcome(load_csv, DataConfig(source="csv", train=str(path)), check=check_csv_dataset)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
              st.text(max_size=12), st.sampled_from(["digits", "csv", "idx", "relu", "adam", "sgd", "global"])),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.text(max_size=10), st.sampled_from(
                                   ["data", "model", "train", "output", "seed", "name", "source", "hidden",
                                    "epochs", "optimizer", "lr", "batch_size", "early_stopping"])),
                                   children, max_size=5)),
    max_leaves=20)


@FUZZ
@given(yaml_values)
def test_config_from_arbitrary_yaml_documents(doc):
    # through YAML text and back, as a config file would arrive
    text = yaml.safe_dump(doc)
    outcome(config_from_dict, yaml.safe_load(text), "cfg.yaml", check=check_config)


@FUZZ
@given(st.dictionaries(st.sampled_from(["data", "model", "train", "output"]),
                       st.dictionaries(st.sampled_from(["source", "hidden", "activation", "epochs", "batch_size",
                                                        "val_fraction", "dtype", "dir", "optimizer", "normalize"]),
                                       yaml_values, max_size=4), max_size=4))
def test_config_sections_with_arbitrary_values(doc):
    outcome(config_from_dict, doc, "cfg.yaml", check=check_config)


# ============================================================== hardening (issue 19)
yaml_words = st.lists(st.sampled_from(["train:", "epochs:", " ", "\n", "  ", "1", "1:30", "yes", "0x1F", "010",
                                       "1_000", "1e-3", "-", "[", "]", "{", "}", ",", "&a", "*a", "<<:", "!!int",
                                       "'", '"', "#", "~", "null", "."]), max_size=40).map("".join)


@FUZZ
@given(st.one_of(yaml_words, st.text(max_size=200)))
def test_load_config_on_arbitrary_yaml_text(text):
    # the strict loader (YAML 1.2 scalars, duplicate keys refused) answers with a line, never a traceback
    with in_file(text.encode("utf-8", "surrogatepass"), "cfg.yaml") as path:
        outcome(load_config, path, check=check_config)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children,
                                                                                max_size=3)),
    max_leaves=12)
META_KEYS = ["format", "format_version", "model", "preprocessing", "classes", "image_shape", "image_style",
             "config", "epoch", "metrics", "train_state", "calibration"]


@FUZZ
@given(st.dictionaries(st.sampled_from(META_KEYS), json_values, max_size=6), st.integers(0, 3))
def test_load_checkpoint_with_arbitrary_metadata(changes, nesting):
    # a valid checkpoint whose metadata has keys replaced by arbitrary JSON (deep, huge integers)
    with tempfile.TemporaryDirectory(dir=ROOT[-1]) as folder:
        _load_with_metadata(Path(folder), changes, nesting)


def check_checkpoint(ckpt):
    """A checkpoint that loads: its model's parameters are arrays of the sizes it states."""
    sizes = ckpt.model.sizes
    assert [p.shape for p in ckpt.model.params] == [s for i in range(len(sizes) - 1)
                                                     for s in ((sizes[i], sizes[i + 1]), (sizes[i + 1],))]


def _load_with_metadata(folder: Path, changes: dict, nesting: int) -> None:
    from softmax_cli.checkpoint import save_checkpoint
    from softmax_cli.data.prepare import Preprocessor
    from softmax_cli.nn import MLP

    save_checkpoint(folder / "c.npz", MLP([4, 3, 2], rng=np.random.default_rng(0)),
                    Preprocessor(np.zeros(4), np.ones(4), 255.0, "global"),
                    {"classes": ["a", "b"], "image_shape": [2, 2], "image_style": "mnist", "config": {}})
    with np.load(folder / "c.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = {**json.loads(str(arrays["metadata"])), **changes}
    text = json.dumps(meta)
    if nesting:                                  # far beyond any recursion limit, or just past the bound
        depth = [10**5, 65, 10][nesting - 1]
        text = text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    np.savez(folder / "c.npz", **{**arrays, "metadata": np.array(text)})
    outcome(load_checkpoint, folder / "c.npz", check=check_checkpoint)


@FUZZ
@given(st.lists(st.lists(st.one_of(st.text(max_size=12), st.floats(), st.integers()), max_size=5), max_size=5))
def test_every_csv_cell_reads_back_without_a_formula(rows):
    import csv as csv_module

    from softmax_cli.csvout import FORMULA_START, csv_text

    text = csv_text(["h"], rows)
    back = list(csv_module.reader(io.StringIO(text, newline="")))[1:]
    assert len(back) == len(rows)
    for row, cells in zip(rows, back):
        for value, cell in zip(row, cells):
            if isinstance(value, str):
                assert cell == value or cell == "'" + value
                if cell.startswith(FORMULA_START):       # kept as it is only when it is a plain number
                    float(cell)


@FUZZ
@given(json_values)
def test_json_output_is_always_strict_json(value):
    from softmax_cli.jsonout import dumps

    def refuse(constant):
        raise ValueError(constant)

    json.loads(dumps({"result": value}), parse_constant=refuse)


# ============================================================== well-formed inputs: always "ok"
# (arbitrary bytes are next to never valid, so the checks above rarely see a result: these
# strategies make valid files of every kind, whose results must pass the same checks)
@st.composite
def idx_files(draw) -> bytes:
    """An IDX file of any element type and a shape of 1 to 3 dimensions, raw or gzipped."""
    code = draw(st.sampled_from(sorted(IDX_DTYPES)))
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    size = int(np.prod(shape)) * np.dtype(IDX_DTYPES[code]).itemsize
    data = bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    data += draw(st.binary(min_size=size, max_size=size))
    return gzip.compress(data) if draw(st.booleans()) else data


@FUZZ
@given(idx_files())
def test_read_idx_reads_any_well_formed_file_exactly(data):
    with in_file(data, "x-idx3-ubyte") as path:
        assert outcome(read_idx, path, check=check_idx(data)) == "ok"


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 3), st.lists(st.integers(0, 255), min_size=4, max_size=4)),
                min_size=2, max_size=6))
def test_load_csv_reads_any_well_formed_table(rows):
    rows = [(0, rows[0][1]), (1, rows[1][1]), *rows[2:]]        # a classifier needs two classes
    text = "".join(",".join(map(str, [label, *pixels])) + "\n" for label, pixels in rows)
    with in_file(text.encode(), "train.csv") as path:
        ds = []
        assert outcome(load_csv, DataConfig(source="csv", train=str(path), label_column="first"),
                       check=lambda d: (check_csv_dataset(d), ds.append(d))) == "ok"
    np.testing.assert_array_equal(ds[0].X, [pixels for _, pixels in rows])
    assert [ds[0].classes[i] for i in ds[0].y] == [str(label) for label, _ in rows]


@FUZZ
@given(st.integers(20, 60), st.integers(20, 60), st.integers(120, 255), st.integers(60, 120),
       st.tuples(st.floats(0.2, 0.4), st.floats(0.2, 0.4), st.floats(0.6, 0.8), st.floats(0.6, 0.8)))
def test_image_to_input_maps_any_clear_mark_to_a_row(height, width, paper, contrast, box):
    gray = np.full((height, width), paper, np.uint8)
    top, left, bottom, right = (round(f * n) for f, n in zip(box, (height, width, height, width)))
    stroke = max(2, min(height, width) // 12)
    gray[top:bottom, left:right] = paper - contrast               # a dark outline well inside the frame: a "0"
    gray[top + stroke:bottom - stroke, left + stroke:right - stroke] = paper
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    with in_file(buffer.getvalue(), "img.png") as path:
        assert outcome(image_to_input, path, (28, 28), 255.0, "mnist", check=check_input_row) == "ok"
