"""Test accuracy of the shipped configs against scikit-learn's MLPClassifier, on the same split.

    python benchmarks/accuracy.py                      # every row (about 40 minutes on 2 cores)
    python benchmarks/accuracy.py --only digits mnist  # some rows
    python benchmarks/accuracy.py --no-peers           # ours only

Each row trains one shipped config through the real ``softmax train`` command (``--json``,
in a temporary directory) and reads the test accuracy of its best checkpoint; the wall time
is that command's, from start to exit (data loading and the final evaluation included).
The peer is scikit-learn's ``MLPClassifier`` trained on the same split of the same data with
the same preprocessing (``softmax_cli``'s own ``prepare_data`` and ``Preprocessor``, fitted on
the training rows): it gets the training and the validation rows, since it does its own
stopping, and is scored on the same test rows. Its settings are the anchors of issue 3:

| row | config | peer |
| --- | --- | --- |
| digits | ``configs/digits.yaml``, seeds 0-4 (``--repeat 5``), mean | ``MLPClassifier((256,), alpha=1e-3)`` per seed |
| mnist | ``configs/mnist.yaml`` | ``MLPClassifier((256,))``, 30 epochs |
| mnist-augment | ``configs/mnist-augment.yaml`` | the same MLPClassifier figure (it has no augmentation) |
| fashion-mnist | ``configs/fashion-mnist.yaml`` | ``MLPClassifier((256,))``, 30 epochs |

The targets (test accuracy, wall-time budget on 2 cores) are issue 3's: digits >= 0.988 in
30 s per seed, MNIST >= 0.986 in 5 min, MNIST with augmentation >= 0.992 in 20 min,
Fashion-MNIST >= 0.900 in 10 min. MNIST is read from ``$SOFTMAX_MNIST_DIR`` (``--mnist``),
Fashion-MNIST from ``/usr/share/datasets/fashion-mnist`` (Debian ``dataset-fashion-mnist``,
``--fashion``); a row whose data is missing is printed as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from softmax_cli.cache import mnist_dir  # noqa: E402  ($SOFTMAX_MNIST_DIR, else the download cache)

from softmax_cli.config import load_config  # noqa: E402
from softmax_cli.data.prepare import Preprocessor  # noqa: E402
from softmax_cli.experiment import prepare_data  # noqa: E402

SOFTMAX = str(Path(sys.executable).with_name("softmax"))


@dataclass
class Row:
    name: str
    config: str
    target: float
    budget_s: float            # per seed
    data_root: str | None = None
    repeat: int = 1
    peer: dict = field(default_factory=dict)   # MLPClassifier keyword arguments (None: shares a row's)
    peer_from: str | None = None


def rows(mnist: Path, fashion: Path) -> list[Row]:
    return [
        Row("digits", "digits.yaml", 0.988, 30, None, 5, dict(hidden_layer_sizes=(256,), alpha=1e-3, max_iter=500)),
        Row("mnist", "mnist.yaml", 0.986, 300, str(mnist), 1, dict(hidden_layer_sizes=(256,), max_iter=30)),
        Row("mnist-augment", "mnist-augment.yaml", 0.992, 1200, str(mnist), 1, peer_from="mnist"),
        Row("fashion-mnist", "fashion-mnist.yaml", 0.900, 600, str(fashion), 1,
            dict(hidden_layer_sizes=(256,), max_iter=30)),
    ]


def run_ours(row: Row, workdir: Path) -> tuple[list[float], float, list[dict]]:
    """Train the shipped config; return the test accuracy of each seed, the wall time per
    seed (s) and the JSON summaries."""
    cmd = [SOFTMAX, "train", str(ROOT / "configs" / row.config), "--json", "--quiet",
           "--set", f"output.dir={workdir}"]
    if row.data_root:
        cmd += ["--set", f"data.root={row.data_root}"]
    if row.repeat > 1:
        cmd += ["--repeat", str(row.repeat)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{row.name}: softmax train failed ({proc.returncode}): {proc.stderr.strip()}")
    out = json.loads(proc.stdout)
    runs = out["runs"] if row.repeat > 1 else [out]
    return [r["test_acc"] for r in runs], wall / row.repeat, runs


def run_peer(row: Row, seeds: list[int]) -> tuple[list[float], float]:
    """MLPClassifier on each seed's split of the row's config; accuracies and mean wall time."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score
    from sklearn.neural_network import MLPClassifier

    overrides = [f"data.root={row.data_root}"] if row.data_root else []
    accs, times = [], []
    for seed in seeds:
        cfg = load_config(ROOT / "configs" / row.config, overrides + [f"seed={seed}"])
        ds, splits = prepare_data(cfg)
        pre = Preprocessor.fit(splits.X_train, ds.pixel_max, cfg.data.normalize)
        parts = [splits.X_train] + ([splits.X_val] if splits.X_val is not None else [])
        X = pre.transform(np.concatenate(parts))
        y = np.concatenate([splits.y_train] + ([splits.y_val] if splits.y_val is not None else []))
        start = time.perf_counter()
        clf = MLPClassifier(random_state=seed, **row.peer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)   # max_iter is the epoch budget
            clf.fit(X, y)
        accs.append(float(accuracy_score(splits.y_test, clf.predict(pre.transform(splits.X_test)))))
        times.append(time.perf_counter() - start)
    return accs, statistics.mean(times)


def _fmt(accs: list[float]) -> str:
    if len(accs) == 1:
        return f"{accs[0]:.4f}"
    return f"{statistics.mean(accs):.4f} ± {statistics.stdev(accs):.4f}"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="ROW", help="digits, mnist, mnist-augment, fashion-mnist")
    ap.add_argument("--mnist", type=Path, default=mnist_dir())
    ap.add_argument("--fashion", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--no-peers", action="store_true", help="skip MLPClassifier")
    args = ap.parse_args()

    table = rows(args.mnist.resolve(), args.fashion.resolve())
    if args.only:
        unknown = set(args.only) - {r.name for r in table}
        if unknown:
            ap.error(f"unknown row(s) {', '.join(sorted(unknown))}")
        table = [r for r in table if r.name in args.only]
    print(f"# {date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, NumPy {np.__version__}", flush=True)
    lines = ["| data | target | softmax (ours) | wall time per seed (budget) | MLPClassifier | its wall time | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    peers: dict[str, tuple[list[float], float]] = {}
    all_met = True
    with tempfile.TemporaryDirectory() as tmp:
        for row in table:
            if row.data_root and not Path(row.data_root).is_dir():
                lines.append(f"| {row.name} | {row.target} | skipped: no data at {row.data_root} | | | | |")
                print(lines[-1], flush=True)
                continue
            accs, wall, runs = run_ours(row, Path(tmp) / row.name)
            peer_accs, peer_wall = [], float("nan")
            if not args.no_peers:
                if row.peer_from:
                    peer_accs, peer_wall = peers.get(row.peer_from) or run_peer(
                        next(r for r in rows(args.mnist, args.fashion) if r.name == row.peer_from),
                        [r["seed"] for r in runs])
                else:
                    peer_accs, peer_wall = run_peer(row, [r["seed"] for r in runs])
                peers[row.name] = (peer_accs, peer_wall)
            mean = statistics.mean(accs)
            met = mean >= row.target and wall <= row.budget_s
            all_met &= met
            peer = _fmt(peer_accs) if peer_accs else "-"
            peer_time = _minutes(peer_wall) if peer_accs else "-"
            seeds = f" (seeds {runs[0]['seed']}-{runs[-1]['seed']})" if len(runs) > 1 else ""
            lines.append(f"| {row.name}{seeds} | >= {row.target} | {_fmt(accs)} | {_minutes(wall)} "
                         f"({_minutes(row.budget_s)}) | {peer} | {peer_time} | {'yes' if met else 'NO'} |")
            print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))
    print("\nevery target met" if all_met else "\nNOT every target met")
    sys.exit(0 if all_met else 1)


if __name__ == "__main__":
    main()
