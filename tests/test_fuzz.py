"""Property tests: arbitrary bytes and arbitrary YAML thrown at every loader.

Each loader must either return a valid result or raise :class:`UserError` (a clean one-line
message for the CLI); any other exception would reach the user as a traceback.
"""

from __future__ import annotations

import gzip
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
