"""Hostile data files: bombs read under a memory cap, paths that are not regular files,
permissions, and content kept out of messages when ``quote_data`` hides it.

The bombs run the real ``softmax train`` in a subprocess whose address space is capped with
``resource.setrlimit`` (1 GiB: each bomb inflates to 2 GB or declares 300 MB to 1 GB, so a
reader that inflated or allocated it would fail or be killed); ``os.wait4`` gives that one
process's peak resident memory. Time is not asserted here (``benchmarks/hostile_data.py``
prints it against the same command on a missing file).
"""

from __future__ import annotations

import gzip
import io
import os
import socket
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import SOFTMAX, assert_user_error, run_softmax
from softmax_cli.config import DataConfig, config_from_dict
from softmax_cli.data import load_dataset
from softmax_cli.errors import UserError

CAP = 1 << 30              # address space of the capped process
PEAK_LIMIT_MB = 300        # issue 19: each bomb refused below this peak RSS


def gzip_of_repeats(block: bytes, times: int) -> bytes:
    """A gzip file that inflates to ``block * times``: one member per block (a valid multi-member
    gzip file, each member with its own CRC), built without inflating anything."""
    return gzip.compress(block, 9, mtime=0) * times


def npz_bomb(path: Path, declared_mb: int) -> None:
    """An .npz whose ``x`` member is ``declared_mb`` MB of zeros, deflated to about 0.1%."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            n = declared_mb * 2**20 // 784
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False,
                                                          "shape": (n, 28, 28)})
            zeros = bytes(1 << 20)
            for _ in range(declared_mb):
                member.write(zeros)
        buf = io.BytesIO()
        np.save(buf, np.zeros(10, np.uint8))
        archive.writestr("y.npy", buf.getvalue())


def idx_header(code: int, *shape: int) -> bytes:
    return bytes([0, 0, code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)


def bomb(kind: str, folder: Path) -> tuple[str, tuple[str, ...]]:
    """Write bomb ``kind`` into ``folder``; return its data config and the message's fragments."""
    if kind == "csv_gz_of_zero_bytes":        # 2 MB inflating to 2 GB of "0", no line end
        (folder / "train.csv.gz").write_bytes(gzip_of_repeats(b"0" * (1 << 20), 2048))
        return "source: csv, train: train.csv.gz", ("train.csv.gz", "refused as a decompression bomb")
    if kind == "csv_gz_of_rows":              # 5 MB inflating to 2.7 GB of valid rows "0,0,0,0,0"
        (folder / "train.csv.gz").write_bytes(gzip_of_repeats(b"0,0,0,0,0\n" * (1 << 17), 2048))
        return ("source: csv, train: train.csv.gz, label_column: first",
                ("train.csv.gz", "inflates to more than 256 times its compressed size", "decompression bomb"))
    if kind == "idx_gz_declaring_1_gb":       # a valid header for 1.3 million images, then zeros
        (folder / "train-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_header(0x08, 1_300_000, 28, 28), mtime=0) + gzip_of_repeats(bytes(1 << 20), 1000))
        (folder / "train-labels-idx1-ubyte").write_bytes(idx_header(0x08, 1) + b"\0")
        return "source: idx, root: .", ("train-images-idx3-ubyte.gz", "asks for 1,019,200,000 bytes",
                                        "more than this gzip file may inflate to")
    npz_bomb(folder / "d.npz", 300)
    return "source: npz, train: d.npz", ("d.npz", "array 'x'", "the header declares (401240, 28, 28)",
                                         "more than the file holds")


# Runs one command with its address space capped and prints its exit code, peak resident
# memory and stderr. A child's peak RSS counts from its parent's resident memory at fork (the
# copied address space's high-water mark survives exec), so this small launcher forks the
# command, not the test process, which may hold MNIST by then.
LAUNCHER = """
import json, os, resource, subprocess, sys
cap = int(sys.argv[1])
def limit():
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, preexec_fn=limit)
err = proc.stderr.read().decode()
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024, err]))
"""


def run_capped(args: list[str], cwd: Path) -> tuple[int, str, float]:
    """Run ``softmax ARGS`` with its address space capped at :data:`CAP`; return the exit code,
    stderr and the process's peak resident memory in MB (``os.wait4``)."""
    import json
    import sys

    out = subprocess.run([sys.executable, "-c", LAUNCHER, str(CAP), SOFTMAX, *args], cwd=cwd, check=True,
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    code, peak_mb, stderr = json.loads(out.stdout)
    return code, stderr, peak_mb


@pytest.mark.parametrize("kind", ["csv_gz_of_zero_bytes", "csv_gz_of_rows", "idx_gz_declaring_1_gb",
                                  "npz_declaring_300_mb"])
def test_a_bomb_is_refused_early_in_one_line_under_a_memory_cap(tmp_path, kind):
    data, fragments = bomb(kind, tmp_path)
    (tmp_path / "cfg.yaml").write_text(f"data: {{{data}}}\ntrain: {{epochs: 1}}\n")
    code, stderr, peak_mb = run_capped(["train", "cfg.yaml", "--quiet"], tmp_path)
    assert_user_error(subprocess.CompletedProcess([], code, "", stderr), *fragments)
    assert peak_mb < PEAK_LIMIT_MB, f"peak resident memory {peak_mb:.0f} MB"


# --------------------------------------------------------------- not regular files
def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def make_socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()                # the socket file stays
    return path


SPECIAL = {"fifo": (make_fifo, "a FIFO"), "socket": (make_socket, "a socket")}


@pytest.mark.parametrize("special", SPECIAL)
@pytest.mark.parametrize("layout", ["csv", "idx", "npz", "npy", "folder"])
def test_a_fifo_or_socket_is_refused_as_not_a_regular_file(tmp_path, layout, special):
    make, kind = SPECIAL[special]
    if layout == "csv":
        make(tmp_path / "train.csv")
        config, name = "source: csv, train: train.csv", "train.csv"
    elif layout == "idx":
        (tmp_path / "m").mkdir()
        make(tmp_path / "m" / "train-images-idx3-ubyte")
        (tmp_path / "m" / "train-labels-idx1-ubyte").write_bytes(idx_header(0x08, 1) + b"\0")
        config, name = "source: idx, root: m", "train-images-idx3-ubyte"
    elif layout == "npz":
        make(tmp_path / "d.npz")
        config, name = "source: npz, train: d.npz", "d.npz"
    elif layout == "npy":
        np.save(tmp_path / "x.npy", np.zeros((2, 2, 2)))
        make(tmp_path / "y.npy")
        config, name = "source: npz, train_images: x.npy, train_labels: y.npy", "y.npy"
    else:                                     # found in the walk of a class folder
        from PIL import Image

        for cls in ("a", "b"):
            (tmp_path / "imgs" / cls).mkdir(parents=True)
            pixels = np.full((8, 8), 255, np.uint8)
            pixels[1:7, 3:5] = 0                  # a stroke: an image with ink
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / "1.png")
        make(tmp_path / "imgs" / "b" / "2.png")
        config, name = "source: folder, root: imgs", "imgs/b/2.png"
    (tmp_path / "cfg.yaml").write_text(f"data: {{{config}}}\ntrain: {{epochs: 1}}\n")
    proc = run_softmax("train", "cfg.yaml", "--quiet", cwd=tmp_path, timeout=60)      # a hang times out
    assert_user_error(proc, name, f"not a regular file ({kind})")


def test_a_device_named_by_a_named_sources_root_is_refused(tmp_path):
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "train-images-idx3-ubyte").symlink_to("/dev/zero")
    (tmp_path / "copy" / "train-labels-idx1-ubyte").symlink_to("/dev/zero")
    (tmp_path / "cfg.yaml").write_text("data: {source: mnist, root: copy}\n")
    proc = run_softmax("train", "cfg.yaml", "--quiet", cwd=tmp_path, timeout=60)
    assert_user_error(proc, "train-images-idx3-ubyte: not a regular file (a device)")


# --------------------------------------------------------------------- permissions
@pytest.mark.parametrize("where", ["open", "stat"])
def test_permission_problems_are_named_as_such(tmp_path, monkeypatch, where):
    # tests run as root here, where chmod 000 does not stop reading: the refusal the kernel
    # would give is simulated where the reader asks for it
    import softmax_cli.data.files as files

    (tmp_path / "train.csv").write_text("0,1,2,3,4\n1,4,3,2,1\n" * 5)
    real = getattr(os, where)

    def refuse(path, *args, **kwargs):
        if Path(path).name == "train.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(files.os, where, refuse)
    with pytest.raises(UserError, match=r"train\.csv: permission denied"):
        load_dataset(DataConfig(source="csv", train=str(tmp_path / "train.csv"), label_column="first"))


# ------------------------------------------------------------------ bounded messages
def test_a_one_class_per_row_file_gets_a_short_line(tmp_path):
    (tmp_path / "t.csv").write_text("".join(f"{i},1,2,3,4\n" for i in range(20000)))
    (tmp_path / "cfg.yaml").write_text("data: {source: csv, train: t.csv, label_column: first}\n")
    proc = run_softmax("train", "cfg.yaml", "--quiet", cwd=tmp_path)
    assert_user_error(proc, "20000 of 20000 classes have only 1 member", "and 19995 more")
    assert len(proc.stderr) < 400


HIDDEN = "content hidden"


@pytest.mark.parametrize("files, data", [
    pytest.param({"t.csv": "0,1,2,3\ndaemon:*:20228:0,1,2,3\n"}, {"source": "csv", "train": "t.csv",
                                                                  "label_column": "first"}, id="csv_cell"),
    pytest.param({"t.csv": "secret,p0\n0,1\n"}, {"source": "csv", "train": "t.csv", "label_column": "nope"},
                 id="csv_header_names"),
    pytest.param({"t.csv": "0,1\n0.5,2\n"}, {"source": "csv", "train": "t.csv", "label_column": "first"},
                 id="csv_label"),
    pytest.param({"t.csv": "0,1\n1,300\n"}, {"source": "csv", "train": "t.csv", "label_column": "first"},
                 id="csv_pixel"),
    pytest.param({"s.data": "1 1 0.5\n"}, {"source": "csv", "train": "s.data", "label_column": "onehot_first",
                                           "image_shape": [1, 1]}, id="csv_onehot"),
    pytest.param({"m/train-images-idx3-ubyte": b"root:x:0:0:root:/root:/bin/bash\n",
                  "m/train-labels-idx1-ubyte": b"\0"}, {"source": "idx", "root": "m"}, id="idx_magic"),
    pytest.param({"t.csv": "7,1\n7,2\n"}, {"source": "csv", "train": "t.csv", "label_column": "first"},
                 id="one_class"),
])
def test_content_of_a_data_file_reaches_messages_only_through_quote_data(tmp_path, monkeypatch, files, data):
    # quote_data is the one place that may hide file content (for files an untrusted checkpoint
    # names): with it hiding everything, no message shows a byte of the file
    import softmax_cli.data.arrays
    import softmax_cli.data.dataset
    import softmax_cli.data.delimited
    import softmax_cli.data.download
    import softmax_cli.data.idx
    import softmax_cli.data.prepare

    for module in (softmax_cli.data.arrays, softmax_cli.data.dataset, softmax_cli.data.delimited,
                   softmax_cli.data.download, softmax_cli.data.idx, softmax_cli.data.prepare):
        monkeypatch.setattr(module, "quote_data", lambda value: HIDDEN, raising=False)
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content.encode() if isinstance(content, str) else content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as caught:
        load_dataset(config_from_dict({"data": data}).data)
    message = str(caught.value)
    assert HIDDEN in message, message
    for secret in ("daemon", "secret", "0.5", "300", "root", "726f6f74", "7 "):
        assert secret not in message.replace(str(tmp_path), ""), message
