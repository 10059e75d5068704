"""The data readers against their peers, and hostile files against a plain refusal.

    python benchmarks/data_readers.py          # about a minute on 2 cores

1. Reading MNIST's 60,000 training images as a CSV file (label first, 785 columns; 109 MB,
   and gzipped): ``softmax_cli``'s delimited reader (:func:`softmax_cli.data.delimited.read_table`,
   streamed, chunks parsed by numpy's C parser) against ``numpy.loadtxt`` on the whole file
   (what the reader did before it streamed) and ``pandas.read_csv`` when installed. Each in a
   fresh process: wall time and peak resident memory, medians of three runs.
2. The bombs of issue 19, through ``softmax train`` (the real command, in a fresh process
   started by a small launcher, so that its peak memory is its own): a 2 MB ``.csv.gz`` that
   inflates to 2 GB of ``0`` bytes, a 5 MB one inflating to 2.7 GB of valid rows, an IDX
   ``.gz`` whose header declares 1 GB, an ``.npz`` whose member declares 300 MB; against
   the same command on a missing file (the start-up every refusal pays).

Targets (issue 19): each bomb refused in one line, exit 2, below 300 MB and within 2 s.
The machine is shared: the times are comparable only within one run.
"""

from __future__ import annotations

import gzip
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from softmax_cli.cache import mnist_dir  # noqa: E402
from softmax_cli.data import read_idx  # noqa: E402

SOFTMAX = str(Path(sys.executable).with_name("softmax"))
MEASURE = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read().decode()
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss / 1024, err]))
"""
READERS = {
    "softmax_cli": "from softmax_cli.data.delimited import read_table; t = read_table(sys.argv[1], 'first'); "
                   "n = len(t.X)",
    "numpy.loadtxt (whole file)": "import numpy as np; n = len(np.loadtxt(sys.argv[1], delimiter=',', ndmin=2))",
    "pandas.read_csv": "import pandas as pd; n = len(pd.read_csv(sys.argv[1], header=None))",
}


def measure(cmd: list[str]) -> tuple[int, float, float, str]:
    """Exit code, wall seconds, peak RSS (MiB) and stderr of ``cmd``, started by a launcher."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, check=True)
    return tuple(json.loads(out.stdout))


def mnist_csv(folder: Path) -> tuple[Path, Path]:
    images = read_idx(mnist_dir() / "train-images-idx3-ubyte.gz").reshape(60000, -1)
    labels = read_idx(mnist_dir() / "train-labels-idx1-ubyte.gz")
    table = np.column_stack([labels, images])
    plain = folder / "mnist_train.csv"
    np.savetxt(plain, table, fmt="%d", delimiter=",")
    packed = folder / "mnist_train.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), 6))
    return plain, packed


def readers(folder: Path) -> None:
    plain, packed = mnist_csv(folder)
    print(f"1. MNIST training set as CSV: {plain.stat().st_size / 1e6:.0f} MB, gzipped "
          f"{packed.stat().st_size / 1e6:.0f} MB; medians of 3 runs, each in a fresh process")
    print(f"   {'reader':28} {'file':8} {'time s':>7} {'peak MB':>8} {'time ratio':>10}")
    for path in (plain, packed):
        ours = None
        for name, code in READERS.items():
            if name.startswith("pandas"):
                try:
                    import pandas  # noqa: F401
                except ImportError:
                    print(f"   {name:28} (not installed)")
                    continue
            runs = [measure([sys.executable, "-c", "import sys; " + code, str(path)]) for _ in range(3)]
            if any(r[0] != 0 for r in runs):
                print(f"   {name:28} failed: {runs[0][3].strip()[-200:]}")
                continue
            wall, peak = statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)
            ours = ours or wall
            print(f"   {name:28} {path.suffix:8} {wall:7.2f} {peak:8.0f} {wall / ours:10.2f}")


def bombs(folder: Path) -> None:
    import test_hostile_data as hostile

    print("2. bombs through `softmax train` (under no cap here), against the same command on a missing file")
    (folder / "missing.yaml").write_text("data: {source: csv, train: nope.csv}\n")
    runs = [measure([SOFTMAX, "train", str(folder / "missing.yaml"), "--quiet"]) for _ in range(3)]
    wall, peak = statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)
    print(f"   {'a missing file (baseline)':32} exit {runs[0][0]}  {wall:5.2f} s  {peak:5.0f} MB")
    for kind in ("csv_gz_of_zero_bytes", "csv_gz_of_rows", "idx_gz_declaring_1_gb", "npz_declaring_300_mb"):
        work = folder / kind
        work.mkdir()
        data, _ = hostile.bomb(kind, work)
        size = sum(p.stat().st_size for p in work.iterdir())
        (work / "cfg.yaml").write_text(f"data: {{{data}}}\ntrain: {{epochs: 1}}\n")
        runs = []
        for _ in range(3):
            proc = subprocess.run([sys.executable, "-c", MEASURE, SOFTMAX, "train", "cfg.yaml", "--quiet"],
                                  cwd=work, capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout))
        code, err = runs[0][0], runs[0][3].strip()
        wall, peak = statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)
        print(f"   {kind:32} exit {code}  {wall:5.2f} s  {peak:5.0f} MB  ({size / 1e6:.1f} MB file)  "
              f"{err[len('softmax: error: '):][:110]}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        readers(Path(tmp))
        bombs(Path(tmp))


if __name__ == "__main__":
    main()
