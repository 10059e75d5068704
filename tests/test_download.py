"""Data sets by name (``data.source: mnist | fashion-mnist | kmnist``): downloaded with pooch from
an HTTP server this test starts on 127.0.0.1, verified by SHA-256, cached.

The server plays a mirror (``$SOFTMAX_DATA_URL``) holding ``<name>/<file>``: ``mnist/`` is the
test copy of MNIST (``$SOFTMAX_MNIST_DIR``, whose bytes differ from the published files, with
its own ``SHA256SUMS``), ``fashion-mnist/`` the published Fashion-MNIST files, rebuilt from
Debian's copy, and no ``SHA256SUMS``: those are checked against the built-in checksums.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, MNIST, MNIST_MISSING, assert_user_error, run_softmax
from softmax_cli.config import config_from_dict
from softmax_cli.data import load_dataset, read_idx
from softmax_cli.data.download import FILES, SOURCES
from softmax_cli.errors import UserError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason=MNIST_MISSING)


class Server:
    """A static file server on 127.0.0.1 that records the paths asked for.

    Paths under ``/cut/`` send the headers of the whole file but only half its bytes, then
    close the connection: an interrupted download.
    """

    def __init__(self, root: Path):
        self.root, self.requests = root, []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                if self.path.startswith("/cut/"):
                    data = (root / self.path[len("/cut/"):]).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def asked(self, name: str) -> int:
        return sum(path.endswith("/" + name) for path in self.requests)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """The server, with ``mnist/`` (the test copy and its SHA256SUMS) and set as the mirror."""
    root = tmp_path / "www"
    root.mkdir()
    if MNIST.is_dir():
        shutil.copytree(MNIST, root / "mnist")
    server = Server(root)
    monkeypatch.setenv("SOFTMAX_DATA_URL", server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    yield server
    server.close()


def named(source: str, cache: Path, **data) -> object:
    return config_from_dict({"data": {"source": source, "cache_dir": str(cache), **data}}).data


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_mnist
def test_first_use_downloads_and_verifies_and_the_second_reads_the_cache(tmp_path, mirror, capsys):
    cache = tmp_path / "cache"
    ds = load_dataset(named("mnist", cache))
    assert all(mirror.asked(f) == 1 for f in FILES.values()) and mirror.asked("SHA256SUMS") == 1
    assert "downloaded MNIST" in capsys.readouterr().err
    for name in FILES.values():
        assert sha256(cache / name) == sha256(MNIST / name)
    assert ds.X.shape == (60000, 784) and ds.X_test.shape == (10000, 784) and ds.classes == list("0123456789")
    labels = read_idx(MNIST / "train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(ds.y, labels)

    asked = len(mirror.requests)
    again = load_dataset(named("mnist", cache))
    assert len(mirror.requests) == asked, "the second use must not ask the server (not even for SHA256SUMS)"
    np.testing.assert_array_equal(again.X_test, ds.X_test)
    assert capsys.readouterr().err == ""


@needs_mnist
def test_a_corrupted_cached_file_is_refused_and_fetched_again(tmp_path, mirror):
    cache = tmp_path / "cache"
    load_dataset(named("mnist", cache))
    damaged = cache / "train-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-100] + bytes(100))       # same size, other bytes
    ds = load_dataset(named("mnist", cache))
    assert mirror.asked("train-labels-idx1-ubyte.gz") == 2 and mirror.asked("train-images-idx3-ubyte.gz") == 1
    assert sha256(damaged) == sha256(MNIST / "train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(ds.y, read_idx(MNIST / "train-labels-idx1-ubyte.gz"))


@needs_mnist
def test_a_corrupt_download_is_refused_in_one_line_and_nothing_is_kept(tmp_path, mirror):
    served = mirror.root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    served.chmod(0o644)
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF
    served.write_bytes(bytes(data))
    proc = run_softmax("train", CONFIGS / "mnist.yaml", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                       cwd=tmp_path)
    assert_user_error(proc, f"{mirror.url}/mnist/t10k-labels-idx1-ubyte.gz: download failed: its SHA-256",
                      "is not the expected e41c74e484045d39...", "nothing was kept", "data.root")
    assert not (tmp_path / "cache" / "t10k-labels-idx1-ubyte.gz").exists()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if "SHA256SUMS" not in p.name) == [
        "t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


@needs_mnist
def test_an_interrupted_download_leaves_nothing_behind(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("SOFTMAX_DATA_URL", mirror.url + "/cut")
    cache = tmp_path / "cache"
    (cache).mkdir()
    shutil.copy(MNIST / "SHA256SUMS", tmp_path / "sums")
    with pytest.raises(UserError, match=r"/cut/mnist/train-images-idx3-ubyte\.gz: download failed: "):
        load_dataset(named("mnist", cache, sha256sums=str(tmp_path / "sums")))
    assert list(cache.iterdir()) == [], "a partial download must never land in the cache"
    monkeypatch.setenv("SOFTMAX_DATA_URL", mirror.url)
    assert load_dataset(named("mnist", cache)).X.shape == (60000, 784)


def test_a_404_is_one_clear_line(tmp_path, mirror):
    proc = run_softmax("train", CONFIGS / "mnist.yaml", "--set", "data.source=kmnist",
                       "--set", f"data.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert_user_error(proc, f"{mirror.url}/kmnist/train-images-idx3-ubyte.gz: download failed: HTTP 404",
                      "to place the files by hand", str(tmp_path / "cache"), "set data.root")
    assert proc.stdout == "" and not (tmp_path / "runs").exists()


def test_offline_is_one_clear_line(tmp_path, mirror, monkeypatch):
    url = mirror.url
    mirror.close()                       # nothing listens there any more
    proc = run_softmax("train", CONFIGS / "mnist.yaml", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                       cwd=tmp_path)
    assert_user_error(proc, f"{url}/mnist/SHA256SUMS: download failed: cannot connect")


@needs_mnist
def test_a_local_checksum_list_is_trusted_over_the_mirrors(tmp_path, mirror):
    sums = (MNIST / "SHA256SUMS").read_text().replace("51fc562b", "00000000")   # train labels
    (tmp_path / "pinned").write_text(sums)
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte\.gz: download failed: .* not the expected "
                                        r"00000000"):
        load_dataset(named("mnist", tmp_path / "cache", sha256sums=str(tmp_path / "pinned")))
    assert mirror.asked("SHA256SUMS") == 0


@needs_mnist
def test_the_published_sources_are_checked_against_the_built_in_checksums_only(tmp_path, mirror, monkeypatch):
    # the published location made to serve the test copy (other bytes) and a SHA256SUMS that
    # lists them: without a mirror set, that list is never asked for and the files are refused
    from dataclasses import replace

    import softmax_cli.data.download as download

    monkeypatch.delenv("SOFTMAX_DATA_URL")
    monkeypatch.setitem(download.SOURCES, "mnist", replace(SOURCES["mnist"], urls=(mirror.url + "/mnist/",)))
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\.gz: download failed: its SHA-256 "
                                        r"35b8096325f99d89\.\.\. is not the expected 440fcabf73cc546f"):
        load_dataset(named("mnist", tmp_path / "cache"))
    assert mirror.asked("SHA256SUMS") == 0 and list((tmp_path / "cache").iterdir()) == []


def published_fashion_mnist(folder: Path) -> None:
    """Fashion-MNIST's published ``.gz`` files, rebuilt from Debian's copy: Debian repacked the
    same deflate streams under a gzip header without the file name and with its own time stamp;
    putting back the original header (name, and the time stamps found for them: 2017-08-31
    10:50:06 and 10:50:27 UTC) gives the published bytes."""
    stamps = {"train-images-idx3-ubyte": 1504176606, "train-labels-idx1-ubyte": 1504176606,
              "t10k-images-idx3-ubyte": 1504176627, "t10k-labels-idx1-ubyte": 1504176627}
    folder.mkdir(parents=True)
    for name, stamp in stamps.items():
        raw = (DEBIAN_FASHION / f"{name}.gz").read_bytes()
        assert raw[:4] == b"\x1f\x8b\x08\x00", "Debian's header has no file name"
        header = b"\x1f\x8b\x08\x08" + struct.pack("<I", stamp) + b"\x00\x03" + name.encode() + b"\x00"
        (folder / f"{name}.gz").write_bytes(header + raw[10:])
        assert gzip.decompress(header + raw[10:]) == gzip.decompress(raw)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason=f"Fashion-MNIST not installed at {DEBIAN_FASHION} "
                                                        f"(Debian package dataset-fashion-mnist)")
def test_the_built_in_fashion_mnist_checksums_are_those_of_the_published_files(tmp_path, mirror):
    published_fashion_mnist(mirror.root / "fashion-mnist")      # and no SHA256SUMS beside them
    for name, digest in SOURCES["fashion-mnist"].sha256.items():
        assert sha256(mirror.root / "fashion-mnist" / name) == digest
    ds = load_dataset(named("fashion-mnist", tmp_path / "cache"))
    assert mirror.asked("SHA256SUMS") == 1 and all(mirror.asked(f) == 1 for f in FILES.values())
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and ds.X.shape == (60000, 784)
    local = load_dataset(config_from_dict({"data": {"source": "fashion-mnist", "root": str(DEBIAN_FASHION)}}).data)
    np.testing.assert_array_equal(local.X_test, ds.X_test)


@needs_mnist
def test_softmax_train_configs_mnist_downloads_from_the_server_and_trains(tmp_path, mirror):
    cache = tmp_path / "cache"
    proc = run_softmax("train", CONFIGS / "mnist.yaml", "--set", f"data.cache_dir={cache}",
                       "--set", "train.epochs=1", "--set", "model.hidden=[32]", "--set", "train.schedule={}",
                       "--quiet", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["n_test"] == 10000 and summary["test_acc"] > 0.9
    assert sorted(p.name for p in cache.glob("*.gz")) == sorted(FILES.values())
    # the run's checkpoint names the source, so eval finds the same data in the cache
    proc = run_softmax("eval", tmp_path / summary["best_checkpoint"], "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accuracy"] == pytest.approx(summary["test_acc"])
