"""Train the MNIST model shipped in the package and write ``softmax_cli/models/mnist.npz``.

    python scripts/train_shipped_model.py                      # train, then package
    python scripts/train_shipped_model.py --run runs/mnist-shipped   # package a finished run

Training is ``softmax train configs/mnist-shipped.yaml --set data.root=MNIST`` through the
real command line, in a work folder (``--work``, default a new temporary one), with MNIST's
IDX files from ``--mnist`` (default ``$SOFTMAX_MNIST_DIR`` or the download cache, see
:func:`softmax_cli.cache.mnist_dir`). A run's config holds its data paths resolved, so the
packaging names the data by name (``data.source: mnist``, downloaded and verified wherever
the checkpoint is evaluated): the shipped checkpoint names no path of the machine that
built it. It also fits the calibration temperature on the validation split (as ``softmax
train`` does; ``--repackage`` redoes the packaging of the shipped file alone).

Packaging takes the run's ``best.npz``, stores its weights and biases as float16 (half the
size; they are read back as float32, the model's dtype, by ``load_checkpoint``), measures the
accuracy of that stored file on the 10,000 MNIST test images, records the figure in the
metadata (``metrics.test_acc``, ``shipped``), writes the file compressed, reloads it and
checks that it gives the same figure. It fails (exit 1) when the file is over 2 MB
(:data:`MAX_BYTES`) or below 0.99 (:data:`MIN_ACCURACY`), the targets of the shipped model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "mnist-shipped.yaml"
TARGET = ROOT / "softmax_cli" / "models" / "mnist.npz"
MAX_BYTES = 2_000_000
MIN_ACCURACY = 0.99
PATH_KEYS = ("train", "test", "root", "train_images", "train_labels", "test_images", "test_labels",
             "cache_dir", "sha256sums")


def train(config: Path, mnist: Path, work: Path) -> Path:
    """Run ``softmax train config`` in ``work`` on the IDX files in ``mnist``; return the run
    directory. Raises ``CalledProcessError`` when training fails."""
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-c", "from softmax_cli.cli import main; main()", "train", str(config),
           "--set", f"data.root={mnist.resolve()}", "--json"]
    print(f"training in {work}: softmax train {config.name} (per-epoch lines on stderr)", file=sys.stderr)
    out = subprocess.run(cmd, cwd=work, check=True, stdout=subprocess.PIPE, text=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    return work / summary["run_dir"]


def absolute_paths(value) -> list[str]:
    """Every string in a (nested) config that is an absolute path."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in absolute_paths(v)]
    return [value] if isinstance(value, str) and os.path.isabs(value) else []


def test_accuracy(path: Path, mnist: Path) -> tuple[float, int]:
    """Accuracy of the checkpoint file ``path`` on MNIST's test set, and the number of images."""
    from softmax_cli.checkpoint import load_checkpoint
    from softmax_cli.data.sources import read_idx

    ckpt = load_checkpoint(path)
    images = read_idx(mnist / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz")
    X = images.reshape(len(images), -1).astype(np.float32)
    index = {c: i for i, c in enumerate(ckpt.classes)}
    y = np.array([index[str(v)] for v in labels])
    predicted = ckpt.predict_proba(X).argmax(axis=1)
    return float((predicted == y).mean()), len(y)


def write(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write a checkpoint archive (compressed) with ``meta`` as its metadata string."""
    np.savez_compressed(path, **{**arrays, "metadata": np.array(json.dumps(meta))})


def neutralise_paths(meta: dict) -> None:
    """Make ``meta["config"]`` name MNIST by name (``data.source: mnist``, downloaded and
    verified wherever the checkpoint is used) instead of the local copy it was trained from,
    and describe the data so.

    The split fingerprints are dropped: the copy this is trained on may be a rebuilt MNIST
    whose pixels differ slightly from the official files (see ``$SOFTMAX_MNIST_DIR``), and a
    fingerprint of it would make ``softmax eval`` refuse the official test set."""
    data = meta["config"]["data"]
    for key in PATH_KEYS:
        data[key] = None
    data["source"] = "mnist"
    meta["data"] = "MNIST (data.source: mnist)"
    meta.pop("splits", None)


def calibrate(draft: Path, mnist: Path, meta: dict) -> dict:
    """Temperature scaling of the stored weights in ``draft``, fitted on the run's validation
    split (its seed and val_fraction) of the MNIST copy in ``mnist``: the record
    ``softmax train`` writes as ``metadata["calibration"]``."""
    from softmax_cli.calibration import calibration_record
    from softmax_cli.checkpoint import load_checkpoint
    from softmax_cli.config import config_from_dict
    from softmax_cli.experiment import prepare_data

    raw = json.loads(json.dumps(meta["config"]))
    raw["data"].update(source="idx", root=str(mnist))
    raw["data"] = {k: v for k, v in raw["data"].items() if v is not None}
    cfg = config_from_dict(raw, origin="the shipped model's config")
    ds, splits = prepare_data(cfg)
    ckpt = load_checkpoint(draft)
    index = np.array([ckpt.classes.index(c) for c in ds.classes])
    return calibration_record(ckpt.logits(splits.X_val), index[splits.y_val],
                              ckpt.logits(splits.X_test), index[splits.y_test])


def package(best: Path, mnist: Path, target: Path) -> tuple[float, int]:
    """Turn the checkpoint ``best`` (a run's ``best.npz``, or the shipped file itself, to
    package it again) into the shipped file ``target``; return (test accuracy, bytes)."""
    with np.load(best, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files if name != "metadata" and not name.startswith("opt_")}
        meta = json.loads(str(npz["metadata"]))
    neutralise_paths(meta)
    found = absolute_paths(meta)
    if found or str(mnist.resolve()) in json.dumps(meta):
        raise SystemExit(f"the checkpoint's metadata still holds this machine's paths: {found or mnist}")
    float32_acc = meta.get("shipped", {}).get("float32_test_acc", meta["metrics"].get("test_acc"))
    for name in list(arrays):
        if name[0] in "Wb" and name[1:].isdigit():
            arrays[name] = arrays[name].astype(np.float16)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        draft = Path(tmp) / "draft.npz"
        meta.pop("calibration", None)
        write(draft, arrays, meta)
        acc, n = test_accuracy(draft, mnist)
        meta["calibration"] = calibrate(draft, mnist, meta)
    meta["metrics"] = {**meta["metrics"], "test_acc": acc}
    meta["metrics"].pop("test_loss", None)       # measured on the float32 weights, not these
    meta["shipped"] = {"weights_stored_as": "float16", "test_acc": acc, "n_test": n,
                       "float32_test_acc": float32_acc, "built_by": "scripts/train_shipped_model.py",
                       "config": "configs/mnist-shipped.yaml"}
    write(target, arrays, meta)
    again, _ = test_accuracy(target, mnist)
    if again != acc:
        raise SystemExit(f"{target}: reloaded accuracy {again} differs from the measured {acc}")
    return acc, target.stat().st_size


def main() -> None:
    from softmax_cli.cache import mnist_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=None, help="folder of MNIST's four IDX files")
    parser.add_argument("--work", type=Path, default=None, help="folder to train in (default: a new temporary one)")
    parser.add_argument("--run", type=Path, default=None, help="package this finished run instead of training")
    parser.add_argument("--repackage", action="store_true",
                        help="package the shipped file again (its metadata and calibration) without training")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    mnist = args.mnist or mnist_dir()
    if args.repackage:
        best = Path(tempfile.mkdtemp(prefix="softmax-shipped-")) / "shipped.npz"
        best.write_bytes(args.out.read_bytes())
    else:
        run = args.run
        if run is None:
            work = args.work or Path(tempfile.mkdtemp(prefix="softmax-shipped-"))
            run = train(args.config.resolve(), mnist, work)
        best = run / "best.npz"
    acc, size = package(best, mnist, args.out)
    print(f"{args.out}: {size:,} bytes, MNIST test accuracy {acc:.4f} (weights stored as float16)")
    if size > MAX_BYTES or acc < MIN_ACCURACY:
        print(f"FAILED: the shipped model must be at most {MAX_BYTES:,} bytes and reach {MIN_ACCURACY}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
