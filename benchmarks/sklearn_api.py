"""SoftmaxClassifier next to scikit-learn's MLPClassifier: 5-fold cross_val_score on the digits.

    python benchmarks/sklearn_api.py            # about a minute on 2 cores
    python benchmarks/sklearn_api.py --folds 10

Both estimators see the same folds (``StratifiedKFold``, shuffled, seed 0) of scikit-learn's
1,797 8x8 digits and run one after the other in this process with the same BLAS threads.
Settings side by side, each with its library's defaults otherwise:

| row | estimator |
| --- | --- |
| SoftmaxClassifier | ``SoftmaxClassifier(hidden=(128,), epochs=30, batch_size=64, lr=1e-3, pixel_max=16)``: Adam, global normalisation, 10% of each training fold held out to pick the best epoch |
| SoftmaxClassifier, validation_fraction=0 | the same on every row of the fold, keeping the epoch of the lowest training loss |
| MLPClassifier | ``make_pipeline(StandardScaler(), MLPClassifier((128,), max_iter=30, batch_size=64))``: Adam, lr 1e-3, L2 alpha 1e-4, every row of the fold |

Prints the mean and standard deviation of the fold accuracies and the mean fit time per fold.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import warnings
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_validate  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from softmax_cli import SoftmaxClassifier  # noqa: E402


def estimators() -> dict[str, object]:
    ours = dict(hidden=(128,), epochs=30, batch_size=64, lr=1e-3, pixel_max=16, random_state=0)
    return {
        "SoftmaxClassifier": SoftmaxClassifier(**ours),
        "SoftmaxClassifier, validation_fraction=0": SoftmaxClassifier(**ours, validation_fraction=0),
        "MLPClassifier (StandardScaler)": make_pipeline(
            StandardScaler(), MLPClassifier((128,), max_iter=30, batch_size=64, random_state=0)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    X, y = load_digits(return_X_y=True)
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=0)
    SoftmaxClassifier(hidden=(8,), epochs=1).fit(X[:100], y[:100])    # compiles the kernels once
    print(f"# {date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, NumPy {np.__version__}; digits, {args.folds}-fold CV")
    print("| estimator | accuracy (mean ± sd) | fit time per fold |\n| --- | --- | --- |")
    for name, est in estimators().items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)      # max_iter is the epoch budget
            out = cross_validate(est, X, y, cv=folds)
        scores = out["test_score"]
        print(f"| {name} | {statistics.mean(scores):.4f} ± {statistics.stdev(scores):.4f} | "
              f"{statistics.mean(out['fit_time']):.2f} s |", flush=True)


if __name__ == "__main__":
    main()
