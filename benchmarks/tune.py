"""softmax tune on the digits: trials per minute with 1 and 2 workers, and a 24-trial search from a
weak start next to GridSearchCV(MLPClassifier) given the same time.

    python benchmarks/tune.py                      # about 12 minutes on 2 quiet cores
    python benchmarks/tune.py --only throughput    # or: --only search
    python benchmarks/tune.py --trials 8           # a shorter throughput run

Throughput: ``softmax tune configs/digits.yaml`` (150 epochs a trial) over a space of the
learning rate alone (every trial costs the same), no pruner, ``--trials N`` with
``--workers 1`` then ``--workers 2``; trials per minute over each command's whole wall time
(worker start-up included), and their ratio (the target on two cores: at least 1.7).

Search: ``softmax tune configs/digits.yaml --space configs/digits-space.yaml --trials 24
--workers 2`` from a deliberately weak start (``model.hidden=[32]``, ``train.optimizer.lr=0.1``,
no dropout); printed: that start trained once, and the best trial's validation and test
accuracy. The peer: ``GridSearchCV`` of ``StandardScaler + MLPClassifier`` (3-fold CV,
``n_jobs=2``) on the same training and validation rows, scored on the same test rows, over the
largest of a few grids (learning rate, width, L2 alpha, batch size) whose estimated time fits
the search's wall time (estimated from a pilot fit per width).

Run on a quiet machine for figures to quote; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SOFTMAX = str(Path(sys.executable).parent / "softmax")
CONFIG = REPO / "configs" / "digits.yaml"
SPACE = REPO / "configs" / "digits-space.yaml"
WEAK = ["--set", "model.hidden=[32]", "--set", "train.optimizer.lr=0.1", "--set", "model.dropout=0",
        "--set", "model.input_dropout=0"]
LR_ONLY = "train.optimizer.lr: {type: float, low: 3.0e-4, high: 3.0e-3, log: true}\n"
# coarse to fine: the largest whose estimated time fits the search's is run
GRIDS = [
    {"hidden": [(64,), (256,)], "alpha": [1e-4, 1e-2], "lr": [1e-3], "batch": [200]},
    {"hidden": [(64,), (256,), (512,)], "alpha": [1e-5, 1e-4, 1e-3, 1e-2], "lr": [1e-3, 1e-2], "batch": [200]},
    {"hidden": [(32,), (128,), (256,), (512,), (256, 256)], "alpha": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
     "lr": [3e-4, 1e-3, 3e-3, 1e-2], "batch": [200]},
    {"hidden": [(32,), (128,), (256,), (512,), (256, 256)], "alpha": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
     "lr": [3e-4, 1e-3, 3e-3, 1e-2], "batch": [32, 200]},
]


def softmax_tune(workdir: Path, *args: str) -> tuple[dict, float]:
    """Run ``softmax tune ... --json`` in ``workdir``; its summary and wall time (s)."""
    started = time.perf_counter()
    proc = subprocess.run([SOFTMAX, "tune", *args, "--json"], cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"softmax tune failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout), wall


def trial_seconds(workdir: Path, study: str) -> float:
    with open(workdir / "runs" / "tune" / study / "trials.csv", newline="") as f:
        return float(np.mean([float(r["seconds"]) for r in csv.DictReader(f)]))


def throughput(trials: int) -> None:
    print(f"\n## Trials per minute: digits.yaml (150 epochs), learning rate only, no pruner, {trials} trials\n")
    print("| workers | wall time | trials per minute | mean time of a trial |\n| --- | --- | --- | --- |")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "lr.yaml"
        space.write_text(LR_ONLY)
        for workers in (1, 2):
            study = f"throughput-{workers}"
            summary, wall = softmax_tune(Path(tmp), str(CONFIG), "--space", str(space), "--trials", str(trials),
                                         "--workers", str(workers), "--pruner", "none", "--study", study)
            assert summary["trials"]["this_run"] == trials
            rates[workers] = trials / (wall / 60)
            print(f"| {workers} | {wall:.0f} s | {rates[workers]:.2f} | {trial_seconds(Path(tmp), study):.1f} s |",
                  flush=True)
    print(f"\n2 workers / 1 worker: **{rates[2] / rates[1]:.2f}x** (target >= 1.7 on two cores)")


def train_once(workdir: Path, *args: str) -> dict:
    proc = subprocess.run([SOFTMAX, "train", str(CONFIG), *args, "--quiet", "--json"], cwd=workdir,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"softmax train failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def grid_search(budget_s: float) -> dict:
    """GridSearchCV(StandardScaler + MLPClassifier) on the digits config's train+val rows, the
    largest grid of :data:`GRIDS` estimated to fit ``budget_s``; scored on its test rows."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from softmax_cli.config import load_config
    from softmax_cli.experiment import prepare_data

    _, s = prepare_data(load_config(CONFIG))
    X = np.concatenate([s.X_train, s.X_val]).astype(np.float64)
    y = np.concatenate([s.y_train, s.y_val])
    warnings.simplefilter("ignore", ConvergenceWarning)
    pilot = {}
    for hidden in sorted({h for g in GRIDS for h in g["hidden"]}):      # one fit per width: its cost
        started = time.perf_counter()
        make_pipeline(StandardScaler(), MLPClassifier(hidden, random_state=0)).fit(X[: len(X) * 2 // 3],
                                                                                  y[: len(X) * 2 // 3])
        pilot[hidden] = time.perf_counter() - started

    def estimate(grid: dict) -> float:     # 3 folds, 2 jobs; a batch of 32 costs ~3x one of 200
        cost = sum(pilot[h] * (3 if b == 32 else 1) for h, a, lr, b in
                   itertools.product(grid["hidden"], grid["alpha"], grid["lr"], grid["batch"]))
        return cost * 3 / 2

    grid = max((g for g in GRIDS if estimate(g) <= budget_s), key=estimate, default=GRIDS[0])
    params = {"mlpclassifier__hidden_layer_sizes": grid["hidden"], "mlpclassifier__alpha": grid["alpha"],
              "mlpclassifier__learning_rate_init": grid["lr"], "mlpclassifier__batch_size": grid["batch"]}
    search = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(random_state=0)), params, cv=3, n_jobs=2)
    started = time.perf_counter()
    search.fit(X, y)
    wall = time.perf_counter() - started
    n = int(np.prod([len(v) for v in params.values()]))
    return {"candidates": n, "cv_acc": float(search.best_score_), "wall": wall, "estimate": estimate(grid),
            "test_acc": float(search.score(s.X_test.astype(np.float64), s.y_test)),
            "best": {k.split("__")[1]: v for k, v in search.best_params_.items()}}


def search(trials: int) -> None:
    print(f"\n## A {trials}-trial search from a weak start (hidden [32], lr 0.1, no dropout), 2 workers\n")
    with tempfile.TemporaryDirectory() as tmp:
        weak = train_once(Path(tmp), *WEAK, "--set", "name=weak")
        summary, wall = softmax_tune(Path(tmp), str(CONFIG), "--space", str(SPACE), *WEAK, "--trials",
                                     str(trials), "--workers", "2", "--study", "weak-start")
        c, best = summary["trials"], summary["best"]
        grid = grid_search(wall)
    print("| | validation accuracy | test accuracy | wall time |\n| --- | --- | --- | --- |")
    print(f"| the weak start, trained once | {weak['val_acc']:.4f} | {weak['test_acc']:.4f} | |")
    print(f"| softmax tune: best of {trials} trials ({c['complete']} complete, {c['pruned']} pruned, "
          f"{c['failed']} failed) | {best['val_acc']:.4f} | {best['test_acc']:.4f} | {wall:.0f} s |")
    print(f"| GridSearchCV(MLPClassifier): best of {grid['candidates']} candidates x 3 folds, n_jobs=2 | "
          f"{grid['cv_acc']:.4f} (3-fold CV) | {grid['test_acc']:.4f} | {grid['wall']:.0f} s "
          f"(estimated {grid['estimate']:.0f} s) |")
    print(f"\nbest trial: {json.dumps(best['params'])}\nbest grid point: {grid['best']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["throughput", "search"])
    ap.add_argument("--trials", type=int, default=16, help="trials of the throughput runs (default 16)")
    ap.add_argument("--search-trials", type=int, default=24)
    args = ap.parse_args()
    print(f"# {date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, NumPy {np.__version__}; load average before: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.only in (None, "throughput"):
        throughput(args.trials)
    if args.only in (None, "search"):
        search(args.search_trials)
    print(f"\nload average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
