"""`softmax predict`'s outputs with names that are not UTF-8, and a CSV file that cannot be
written whole: no traceback, the names kept byte for byte, no partial file left."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, SOFTMAX, run_softmax

BAD_NAME = b"bad\xffname.png"                  # 0xff is never UTF-8: Python sees 'bad\udcffname.png'


def tiny_checkpoint(path: Path, classes: list[str]) -> Path:
    """A small untrained 28x28 (mnist-style) checkpoint with these class names."""
    from softmax_cli.checkpoint import save_checkpoint
    from softmax_cli.data import Preprocessor
    from softmax_cli.nn import MLP

    save_checkpoint(path, MLP([784, 8, len(classes)], rng=np.random.default_rng(0)),
                    Preprocessor(np.zeros(784), np.ones(784), 255.0, "global"),
                    {"classes": classes, "image_shape": [28, 28], "image_style": "mnist",
                     "config": {}, "epoch": 1, "metrics": {}})
    return path


@pytest.fixture
def bad_image(tmp_path) -> str:
    """A copy of a sample PNG in tmp_path named b'bad\\xffname.png', as Python names it."""
    target = os.path.join(os.fsencode(tmp_path), BAD_NAME)
    try:
        shutil.copyfile(SAMPLES / "digits-3.png", target)
    except (OSError, UnicodeError) as exc:           # e.g. a file system that takes UTF-8 names only
        pytest.skip(f"this file system refuses a file name that is not UTF-8: {exc}")
    return os.fsdecode(BAD_NAME)


# classes as an image-folder model trained on folders named b'c0\xff', b'c1\xff', ... has them
CLASSES = [os.fsdecode(f"c{i}".encode() + b"\xff") for i in range(10)]


def test_the_csv_holds_non_utf8_file_and_class_names_byte_for_byte(tmp_path, bad_image):
    model = tiny_checkpoint(tmp_path / "m.npz", CLASSES)
    proc = run_softmax("predict", "-c", model, bad_image, "-k", "2", "--output", "w.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "wrote 1 prediction to w.csv"
    assert sorted(p.name for p in tmp_path.glob("w*")) == ["w.csv"]
    with open(tmp_path / "w.csv", encoding="utf-8", errors="surrogateescape", newline="") as f:
        [row] = list(csv.DictReader(f))
    assert os.fsencode(row["path"]) == BAD_NAME                     # names the very file
    assert (tmp_path / row["path"]).is_file()
    for key in ("class", "top1_class", "top2_class"):
        assert row[key] in CLASSES and os.fsencode(row[key]).endswith(b"\xff"), (key, row)
    assert BAD_NAME in (tmp_path / "w.csv").read_bytes()


def test_the_table_and_json_lines_print_non_utf8_names_on_a_strict_stdout(tmp_path, bad_image, monkeypatch):
    # a UTF-8 stdout that refuses surrogates, as Python's is in a usual UTF-8 locale (en_US.UTF-8)
    monkeypatch.setenv("PYTHONIOENCODING", "utf-8:strict")
    model = tiny_checkpoint(tmp_path / "m.npz", CLASSES)
    table = run_softmax("predict", "-c", model, bad_image, "-k", "2", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert table.stderr == ""
    named, head, line = table.stdout.splitlines()
    assert named == f"checkpoint  {model}"
    assert head.split() == ["path", "class", "probability", "top", "2"]
    path, label, _, top1, _, top2, _ = line.split()
    assert path == r"bad\xffname.png"                               # the byte, escaped for reading
    assert label == top1 and label in [rf"c{i}\xff" for i in range(10)] and top2.endswith(r"\xff")

    lines = run_softmax("predict", "-c", model, bad_image, "-k", "2", "--jsonl", cwd=tmp_path)
    assert lines.returncode == 0, lines.stderr
    got = json.loads(lines.stdout)
    assert os.fsencode(got["path"]) == BAD_NAME                     # \udcff: round-trips to the bytes
    assert got["class"] in CLASSES and len(got["top_k"]) == 2
    assert all(c["class"] in CLASSES for c in got["top_k"])


def test_a_csv_that_cannot_be_written_whole_leaves_no_file(tmp_path):
    # a real write failure: the kernel refuses to grow any file past 30 bytes (EFBIG, as a full
    # disk refuses with ENOSPC); the CSV's header alone is longer
    resource = pytest.importorskip("resource")
    model = tiny_checkpoint(tmp_path / "m.npz", [str(c) for c in range(10)])
    args = [SOFTMAX, "predict", "-c", str(model), str(SAMPLES / "digits-3.png"), "--output", "w.csv"]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (30, 30)))
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]   # no w.csv, whole or partial
    assert proc.stderr.strip() == ("softmax: error: w.csv: cannot write it (File too large); "
                                   "the partial file was removed")
    # so the name is still free: the next run writes w.csv, not w-2.csv
    again = run_softmax("predict", "-c", model, SAMPLES / "digits-3.png", "--output", "w.csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip() == "wrote 1 prediction to w.csv"
    assert len((tmp_path / "w.csv").read_text().splitlines()) == 2
