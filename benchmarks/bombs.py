"""Peak memory and time to refuse the hostile files of issue 19, against the same command on
a good file of the same kind, measured in the same run.

    python benchmarks/bombs.py            # about half a minute on 2 cores

Each row runs the real ``softmax`` command once on a bomb and once on its peer (a good
file: the checkpoint the bomb was made from, a small config refused for an unknown key),
in a temporary directory, and prints each one's exit code, peak resident memory (the
child's ``ru_maxrss``, read by a small wrapper process that starts it) and wall time from start to exit, and the ratios
bomb / peer. The bombs:

| row | file | what it would take unchecked |
| --- | --- | --- |
| npz-declares | a 9 kB ``.npz`` whose ``W0.npy`` header declares 500000 x 512000 float32 | 954 GiB |
| npz-inflates | a 1 MB ``.npz`` whose deflated ``W0.npy`` inflates to 16384 x 16384 float32 | 1 GiB (1.3 GB seen) |
| yaml-50mb | a 50 MB YAML config (one list of 25 million numbers) | 8.4 GB, 6 min 40 s seen |

The targets are issue 19's: each refused with exit 2, under 300 MB and within 2 s. (The
third bomb of the issue, a ``.csv.gz`` inflating to 2 GB, belongs to the data readers.)
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MiB = 2**20
SOFTMAX = shutil.which("softmax") or str(Path(sys.executable).parent / "softmax")


def npy_header(shape: tuple) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def good_checkpoint(path: Path) -> Path:
    from softmax_cli.checkpoint import save_checkpoint
    from softmax_cli.data.prepare import Preprocessor
    from softmax_cli.nn import MLP

    save_checkpoint(path, MLP([4, 3, 2], rng=np.random.default_rng(0)),
                    Preprocessor(np.zeros(4), np.ones(4), 255.0, "global"),
                    {"classes": ["a", "b"], "image_shape": [2, 2], "image_style": "mnist",
                     "config": {"data": {"source": "digits"}}})
    return path


def with_w0(good: Path, out: Path, write) -> Path:
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename != "W0.npy":
                dst.writestr(info, src.read(info))
        write(dst)
    return out


def declares(zf: zipfile.ZipFile) -> None:
    zf.writestr("W0.npy", npy_header((500_000, 512_000)) + bytes(8000))


def inflates(zf: zipfile.ZipFile) -> None:
    info = zipfile.ZipInfo("W0.npy")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as f:
        f.write(npy_header((16384, 16384)))
        for _ in range(1024):
            f.write(bytes(MiB))


# run from a small Python process: a child forked from this one (which holds the bombs'
# bytes) would count this process's pages in its own peak
_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
seconds = time.perf_counter() - start
line = (p.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
print(json.dumps([p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds, line]))
"""


def measure(args: list[str], cwd: Path) -> tuple[int, float, float, str]:
    """``(exit code, peak RSS in MiB, seconds, last stderr line)`` of ``softmax ARGS``."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, SOFTMAX, *args], cwd=cwd, capture_output=True,
                         text=True, check=True)
    code, peak, seconds, line = json.loads(out.stdout)
    return code, peak, seconds, line


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        good = good_checkpoint(cwd / "good.npz")
        with_w0(good, cwd / "declares.npz", declares)
        with_w0(good, cwd / "inflates.npz", inflates)
        (cwd / "big.yaml").write_text("model: {hidden: [" + "1, " * (25 * MiB) + "1]}\n")
        (cwd / "small.yaml").write_text("modle: {hidden: [8]}\n")
        rows = [("npz-declares", ["inspect", "declares.npz"], ["inspect", "good.npz"]),
                ("npz-inflates", ["inspect", "inflates.npz"], ["inspect", "good.npz"]),
                ("npz-inflates (eval)", ["eval", "inflates.npz"], ["eval", "good.npz"]),
                ("yaml-50mb", ["train", "big.yaml"], ["train", "small.yaml"])]
        print(f"{'row':<20} {'file size':>10}  {'exit':>4} {'peak MiB':>8} {'seconds':>8}   "
              f"{'peer peak MiB':>13} {'peer s':>7}   {'ratio mem':>9} {'ratio s':>7}")
        for name, bomb, peer in rows:
            size = (cwd / bomb[1]).stat().st_size
            code, peak, seconds, line = measure(bomb, cwd)
            _, peer_peak, peer_seconds, _ = measure(peer, cwd)
            print(f"{name:<20} {size:>10,}  {code:>4} {peak:>8.1f} {seconds:>8.2f}   {peer_peak:>12.1f} "
                  f"{peer_seconds:>7.2f}   {peak / peer_peak:>8.2f} {seconds / peer_seconds:>7.2f}")
            print(f"{'':<20} {line[:150]}")


if __name__ == "__main__":
    main()
