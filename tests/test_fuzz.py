"""Property tests: arbitrary bytes and arbitrary YAML thrown at every loader.

Each loader must either return a valid result or raise :class:`UserError` (a clean one-line
message for the CLI); any other exception would reach the user as a traceback.
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmax_cli.checkpoint import load_checkpoint
from softmax_cli.config import DataConfig, config_from_dict, load_config
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


def outcome(fn, *args):
    """'ok' or 'user error'; anything else propagates and fails the test."""
    try:
        fn(*args)
        return "ok"
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return "user error"


def in_file(data: bytes, name: str):
    folder = Path(tempfile.mkdtemp())
    (folder / name).write_bytes(data)
    return folder / name


@FUZZ
@given(blobs)
def test_read_idx_on_arbitrary_bytes(data):
    outcome(read_idx, in_file(data, "x-idx3-ubyte"))


@FUZZ
@given(blobs)
def test_load_checkpoint_on_arbitrary_bytes(data):
    assert outcome(load_checkpoint, in_file(data, "model.npz")) == "user error"


@FUZZ
@given(blobs)
def test_image_to_input_on_arbitrary_bytes(data):
    outcome(image_to_input, in_file(data, "img.png"), (28, 28), 255.0, "mnist")


@FUZZ
@given(blobs)
def test_load_config_on_arbitrary_bytes(data):
    outcome(load_config, in_file(data, "cfg.yaml"))


csv_text = st.lists(st.lists(st.one_of(st.integers(-3, 300).map(str), st.sampled_from(["", "nan", "inf", "x", "1.5"])),
                             min_size=0, max_size=6), max_size=8).map(lambda rows: "\n".join(",".join(r) for r in rows))


@FUZZ
@given(st.one_of(csv_text, st.text(max_size=200)))
def test_load_csv_on_arbitrary_text(text):
    path = in_file(text.encode("utf-8", "surrogatepass"), "train.csv")
    result = outcome(load_csv, DataConfig(source="csv", train=str(path)))
    assert result in ("ok", "user error")


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
    outcome(config_from_dict, yaml.safe_load(text), "cfg.yaml")


@FUZZ
@given(st.dictionaries(st.sampled_from(["data", "model", "train", "output"]),
                       st.dictionaries(st.sampled_from(["source", "hidden", "activation", "epochs", "batch_size",
                                                        "val_fraction", "dtype", "dir", "optimizer", "normalize"]),
                                       yaml_values, max_size=4), max_size=4))
def test_config_sections_with_arbitrary_values(doc):
    outcome(config_from_dict, doc, "cfg.yaml")


# ============================================================== hardening (issue 19)
yaml_words = st.lists(st.sampled_from(["train:", "epochs:", " ", "\n", "  ", "1", "1:30", "yes", "0x1F", "010",
                                       "1_000", "1e-3", "-", "[", "]", "{", "}", ",", "&a", "*a", "<<:", "!!int",
                                       "'", '"', "#", "~", "null", "."]), max_size=40).map("".join)


@FUZZ
@given(st.one_of(yaml_words, st.text(max_size=200)))
def test_load_config_on_arbitrary_yaml_text(text):
    # the strict loader (YAML 1.2 scalars, duplicate keys refused) answers with a line, never a traceback
    folder = Path(tempfile.mkdtemp())
    (folder / "cfg.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    outcome(load_config, folder / "cfg.yaml")


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
    from softmax_cli.checkpoint import save_checkpoint
    from softmax_cli.data.prepare import Preprocessor
    from softmax_cli.nn import MLP

    folder = Path(tempfile.mkdtemp())
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
    outcome(load_checkpoint, folder / "c.npz")


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
