"""Calibration of a shipped config: expected calibration error before and after temperature
scaling, and what ``--reject-threshold`` answers with the calibrated probabilities.

    python benchmarks/calibration.py                        # configs/mnist.yaml (about 5 min on 2 cores)
    python benchmarks/calibration.py --config configs/digits.yaml
    python benchmarks/calibration.py --checkpoint runs/mnist/best.npz   # an existing run

It trains the config through the real ``softmax train`` (in a temporary folder; MNIST from
``$SOFTMAX_MNIST_DIR`` when set, else downloaded by name), then runs ``softmax eval --json``
on the best checkpoint. Printed: the temperature, the test split's ECE and NLL before and after
(from the checkpoint's ``calibration`` record), and for each threshold the coverage (share of
test images answered) and the accuracy of the answered ones. The targets are issue 18's: ECE
after at most half of ECE before; at ``--reject-threshold 0.99`` at least 90% answered with at
least 99.7% of them right.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOFTMAX = str(Path(sys.executable).with_name("softmax"))


def run(*args: str, cwd: Path) -> dict:
    proc = subprocess.run([SOFTMAX, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"softmax {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "mnist.yaml")
    ap.add_argument("--checkpoint", type=Path, help="evaluate this checkpoint instead of training")
    ap.add_argument("--threshold", type=float, action="append", help="reject thresholds (default 0.9, 0.99, 0.999)")
    args = ap.parse_args()
    thresholds = args.threshold or [0.9, 0.99, 0.999]
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        ckpt = args.checkpoint.resolve() if args.checkpoint else None
        if ckpt is None:
            sets = []
            mnist = os.environ.get("SOFTMAX_MNIST_DIR")
            if mnist and "mnist" in args.config.name and "fashion" not in args.config.name:
                sets = ["--set", f"data.root={mnist}"]
            summary = run("train", str(args.config.resolve()), "--json", "--quiet", *sets, cwd=cwd)
            ckpt = cwd / summary["best_checkpoint"]
        ev = run("eval", str(ckpt), "--json", *[a for t in thresholds for a in ("--reject-threshold", str(t))], cwd=cwd)
        with __import__("numpy").load(ckpt) as npz:
            meta = json.loads(str(npz["metadata"]))
    cal = meta.get("calibration")
    print(f"checkpoint {ckpt.name} of {args.config.name if not args.checkpoint else args.checkpoint}: "
          f"test accuracy {ev['accuracy']:.4f} on {ev['n']} images")
    if cal is None:
        print("no calibration temperature (train.calibration null, or no validation split)")
    else:
        print(f"temperature {cal['temperature']:.4f} (fitted on the validation split)")
        print(f"test ECE {cal['test_ece_before']:.4f} before, {cal['test_ece_after']:.4f} after "
              f"(ratio {cal['test_ece_after'] / cal['test_ece_before']:.2f}; target <= 0.5): "
              f"{'met' if cal['test_ece_after'] <= cal['test_ece_before'] / 2 else 'NOT MET'}")
        print(f"test NLL {cal['test_nll_before']:.4f} before, {cal['test_nll_after']:.4f} after")
    print(f"{'threshold':>9}  {'coverage':>8}  {'accuracy':>8}  {'answered':>8}")
    for r in ev["reject_report"]:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        print(f"{r['threshold']:>9g}  {r['coverage']:>8.4f}  {acc:>8}  {r['answered']:>8}")
    at = next((r for r in ev["reject_report"] if r["threshold"] == 0.99), None)
    if at is not None and at["accuracy"] is not None:
        ok = at["coverage"] >= 0.9 and at["accuracy"] >= 0.997
        print(f"--reject-threshold 0.99: {at['coverage']:.1%} answered, {at['accuracy']:.2%} of them right "
              f"(targets >= 90%, >= 99.7%): {'met' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
