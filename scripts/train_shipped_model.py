"""Train the MNIST model shipped in the package and write ``softmax_cli/models/mnist.npz``.

    python scripts/train_shipped_model.py                      # train, then package
    python scripts/train_shipped_model.py --run runs/mnist-shipped   # package a finished run

Training is ``softmax train configs/mnist-shipped.yaml --set data.root=MNIST`` through the
real command line, in a work folder (``--work``, default a new temporary one), with MNIST's
IDX files from ``--mnist`` (default ``$SOFTMAX_MNIST_DIR`` or the download cache, see
:func:`softmax_cli.cache.mnist_dir`). A run's config holds its data paths resolved, so the
packaging puts back the config file's own relative values (``data/mnist``) and describes the
data by name: the shipped checkpoint names no path of the machine that built it.

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
PATH_KEYS = ("train", "test", "root", "train_images", "train_labels", "test_images", "test_labels")


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


def neutralise_paths(meta: dict, config: Path) -> None:
    """Put the config file's own (relative) data paths back into ``meta["config"]``, in place
    of the resolved ones a run records, and describe the data as the config names it."""
    import yaml

    given = yaml.safe_load(config.read_text(encoding="utf-8"))["data"]
    data = meta["config"]["data"]
    for key in PATH_KEYS:
        if data.get(key) is not None:
            data[key] = given.get(key)
    meta["data"] = f"MNIST, IDX files in {given['root']}"


def package(run: Path, mnist: Path, target: Path, config: Path = CONFIG) -> tuple[float, int]:
    """Turn ``run/best.npz`` into the shipped file ``target``; return (test accuracy, bytes)."""
    with np.load(run / "best.npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files if name != "metadata" and not name.startswith("opt_")}
        meta = json.loads(str(npz["metadata"]))
    neutralise_paths(meta, config)
    found = absolute_paths(meta)
    if found or str(mnist.resolve()) in json.dumps(meta):
        raise SystemExit(f"the checkpoint's metadata still holds this machine's paths: {found or mnist}")
    float32_acc = meta["metrics"].get("test_acc")
    for name in list(arrays):
        if name[0] in "Wb" and name[1:].isdigit():
            arrays[name] = arrays[name].astype(np.float16)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        draft = Path(tmp) / "draft.npz"
        write(draft, arrays, meta)
        acc, n = test_accuracy(draft, mnist)
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
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    mnist = args.mnist or mnist_dir()
    run = args.run
    if run is None:
        work = args.work or Path(tempfile.mkdtemp(prefix="softmax-shipped-"))
        run = train(args.config.resolve(), mnist, work)
    acc, size = package(run, mnist, args.out, args.config.resolve())
    print(f"{args.out}: {size:,} bytes, MNIST test accuracy {acc:.4f} (weights stored as float16)")
    if size > MAX_BYTES or acc < MIN_ACCURACY:
        print(f"FAILED: the shipped model must be at most {MAX_BYTES:,} bytes and reach {MIN_ACCURACY}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
