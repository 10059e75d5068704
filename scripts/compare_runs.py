"""Do two revisions train the same run, bit for bit? Train one config with each and compare.

    python scripts/compare_runs.py main HEAD                       # configs/digits.yaml, whole
    python scripts/compare_runs.py main . --set train.epochs=5     # '.': the working tree as it is

Each revision (anything ``git archive`` takes, or ``.`` for this checkout's files) is exported
to a temporary directory and runs ``softmax train CONFIG --quiet`` from there, in this Python
environment, with the same BLAS thread count (``--threads``). Then ``metrics.csv`` is compared
row by row without its ``epoch_time_s`` column, and every array of ``best.npz`` and
``last.npz`` (weights, preprocessing, optimiser state; not the metadata, which records the
package version and the time column) with ``numpy.array_equal``. Prints one line per file and
exits 0 when everything is the same, 1 when anything differs.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUN = "from softmax_cli.cli import main; import sys; sys.argv[0] = 'softmax'; main()"


def export(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` (``.``: the working tree's files) copied into ``dest``."""
    dest.mkdir(parents=True)
    if rev == ".":
        for name in ("softmax_cli", "configs"):
            subprocess.run(["cp", "-r", str(ROOT / name), str(dest)], check=True)
        return dest
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "softmax_cli", "configs"],
                             check=True, capture_output=True).stdout
    with tempfile.TemporaryFile() as f:
        f.write(archive)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(dest, filter="data")
    return dest


def train(tree: Path, config: Path, overrides: list[str], threads: int | None, out: Path) -> Path:
    """Run ``softmax train`` of ``tree`` in ``out``; return the run directory."""
    args = [sys.executable, "-c", RUN, "train", str(config), "--quiet", "--set", "name=run"]
    args += [a for item in overrides for a in ("--set", item)]
    if threads:
        args += ["--threads", str(threads)]
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=out, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{tree}: softmax train failed ({proc.returncode}):\n{proc.stderr}")
    print(f"trained with {tree.name} in {time.perf_counter() - start:.0f} s", flush=True)
    return out / "runs" / "run"


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(f)]


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != "metadata"}


def compare(a: Path, b: Path) -> bool:
    """Print one line per compared file; True when all are the same."""
    same = True
    rows_a, rows_b = metrics(a), metrics(b)
    diff = [i + 1 for i, (x, y) in enumerate(zip(rows_a, rows_b)) if x != y]
    ok = rows_a == rows_b
    print(f"metrics.csv  {'same' if ok else 'DIFFERENT'}: {len(rows_a)} and {len(rows_b)} rows"
          + ("" if ok else f", first differing epoch {diff[0] if diff else min(len(rows_a), len(rows_b)) + 1}")
          + " (epoch_time_s not compared)")
    same &= ok
    for name in ("best.npz", "last.npz"):
        x, y = arrays(a / name), arrays(b / name)
        differ = sorted(k for k in x.keys() | y.keys() if k not in x or k not in y or
                        x[k].dtype != y[k].dtype or not np.array_equal(x[k], y[k]))
        print(f"{name:<12} {'same' if not differ else 'DIFFERENT'}: {len(x)} arrays"
              + (f", differing: {', '.join(differ)}" if differ else ", bit for bit"))
        same &= not differ
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "digits.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads for both (default: all cores)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs in this new directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep if args.keep is not None else Path(tmp)
        runs = []
        for label, rev in (("a", args.rev_a), ("b", args.rev_b)):
            tree = export(rev, work / f"tree-{label}")
            runs.append(train(tree, args.config.resolve(), args.overrides, args.threads, work / f"out-{label}"))
        print(f"{args.config.name}: {args.rev_a} against {args.rev_b}")
        same = compare(*runs)
    print("the same run, bit for bit" if same else "the runs differ")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
