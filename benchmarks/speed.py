"""Epoch time of `softmax` training against its limit and its peers, measured side by side.

    python benchmarks/speed.py                  # everything (about 5 minutes on 2 cores)
    python benchmarks/speed.py --no-sweep       # skip the width and batch-size curves

On MNIST (60,000 images, $SOFTMAX_MNIST_DIR), network 784-256-10 ReLU, batch 128, Adam with
lr 1e-3, float32, it times one epoch of:

- ours: ``softmax_cli.engine.step.train_epoch``, the loop ``softmax train`` runs;
- the matrix-product limit: the same epoch's matrix products alone (forward, and backward
  without the input gradient of the first layer), ``numpy.matmul`` into preallocated arrays;
- scikit-learn's ``MLPClassifier`` (``partial_fit``, one epoch per call, float32 input);
- PyTorch on the CPU (``nn.Sequential``, ``CrossEntropyLoss``, ``optim.Adam``), when installed
  (``pip install torch==2.13.0``); skipped with a note otherwise.

The methods take turns, one epoch each per round, so a slow moment of this shared machine
hits all of them; the figures are medians over the rounds and the ratios are between those
medians. Every method gets the same number of threads: all cores (``--threads``), then one.
Before that (while this process is small): the peak memory of ``softmax train`` on MNIST
against the size of its training images, and the start-up time of ``softmax --help`` and
``softmax predict one.png`` against ``python -c "import numpy, PIL.Image"``. After it: how
our epoch time grows with the hidden width and the batch size next to the matrix-product
limit of each.

Targets (issue 4): ours <= 1.3 x the matrix products; >= 1.35 x faster than PyTorch and
>= 1.8 x faster than MLPClassifier; peak memory <= 2.5 x the float32 training images;
``softmax predict one.png`` <= 3 x the numpy + Pillow import.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from softmax_cli.cache import mnist_dir  # noqa: E402  ($SOFTMAX_MNIST_DIR, else the download cache)

from softmax_cli.data import Preprocessor  # noqa: E402
from softmax_cli.data.sources import read_idx  # noqa: E402
from softmax_cli.nn import MLP  # noqa: E402
from softmax_cli.optim import Adam  # noqa: E402
from softmax_cli.engine.step import StepSettings, compact_pixels, train_epoch  # noqa: E402

SOFTMAX = str(Path(sys.executable).with_name("softmax"))


def load_mnist(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST training images as float32 (60000, 784) in [0, 1] and int64 labels."""
    X = read_idx(root / "train-images-idx3-ubyte.gz").reshape(60000, -1).astype(np.float32) / 255
    y = read_idx(root / "train-labels-idx1-ubyte.gz").astype(np.int64)
    return X, y


# ------------------------------------------------------------------- one epoch of each
class Ours:
    name = "softmax (ours)"

    def __init__(self, X, y, sizes, bs, seed=0):
        # what `softmax train` hands the loop: the raw pixels (uint8 here) and the
        # preprocessing, applied to each batch as it is gathered; normalize "none" divides by
        # 255, so the network sees the very numbers the peers get in X
        self.X, self.y = compact_pixels(np.rint(X * 255)), y
        self.settings = StepSettings(preprocess=Preprocessor.fit(X[:1], 255.0, "none"))
        self.rng = np.random.default_rng(seed)
        self.model = MLP(sizes, "relu", np.float32, rng=self.rng)
        self.opt = Adam(self.model.params, lr=1e-3, decay=[True, False] * self.model.n_layers)
        self.ws = self.model.workspace(bs)

    def epoch(self):
        train_epoch(self.model, self.opt, self.X, self.y, self.rng.permutation(len(self.y)), self.ws,
                    settings=self.settings)


class MatmulLimit:
    name = "matrix products alone"

    def __init__(self, X, y, sizes, bs, seed=0):
        rng = np.random.default_rng(seed)
        self.X, self.bs = X, bs
        self.W = [rng.standard_normal((a, b), dtype=np.float32) * 0.01 for a, b in zip(sizes[:-1], sizes[1:])]
        self.Z = [np.empty((bs, b), np.float32) for b in sizes[1:]]
        self.D = [np.empty((bs, b), np.float32) for b in sizes[1:]]
        self.G = [np.empty_like(W) for W in self.W]

    def epoch(self):
        X, bs, W, Z, D, G = self.X, self.bs, self.W, self.Z, self.D, self.G
        for lo in range(0, len(X), bs):
            m = min(bs, len(X) - lo)
            A = X[lo:lo + m]
            acts = [A]
            for l in range(len(W)):                      # forward
                acts.append(np.matmul(acts[-1], W[l], out=Z[l][:m]))
            delta = acts[-1]
            for l in range(len(W) - 1, -1, -1):          # backward
                np.matmul(acts[l].T, delta, out=G[l])
                if l > 0:
                    delta = np.matmul(delta, W[l].T, out=D[l - 1][:m])


class SklearnMLP:
    name = "scikit-learn MLPClassifier"

    def __init__(self, X, y, sizes, bs, seed=0):
        from sklearn.neural_network import MLPClassifier
        self.X, self.y = X, y
        self.classes = np.unique(y)
        self.clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), batch_size=bs, solver="adam",
                                 learning_rate_init=1e-3, random_state=seed)

    def epoch(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.partial_fit(self.X, self.y, classes=self.classes)


class Torch:
    name = "PyTorch (CPU)"

    def __init__(self, X, y, sizes, bs, seed=0):
        import torch
        from torch import nn
        torch.manual_seed(seed)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        self.torch, self.bs = torch, bs
        self.model = nn.Sequential(*layers)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = nn.CrossEntropyLoss()
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)

    def epoch(self):
        perm = self.torch.randperm(len(self.y))
        for lo in range(0, len(perm), self.bs):
            idx = perm[lo:lo + self.bs]
            self.opt.zero_grad(set_to_none=True)
            self.loss(self.model(self.X[idx]), self.y[idx]).backward()
            self.opt.step()


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(methods: list, rounds: int) -> dict[str, float]:
    """Median epoch seconds of each method; one warm-up epoch each, then rounds in turn."""
    for m in methods:
        m.epoch()
    times: dict[str, list[float]] = {m.name: [] for m in methods}
    for _ in range(rounds):
        for m in methods:
            times[m.name].append(timed(m.epoch))
    return {name: statistics.median(t) for name, t in times.items()}


def check(label: str, ok: bool) -> str:
    return f"{label:<66} {'met' if ok else 'NOT MET'}"


# ----------------------------------------------------------------- memory and start-up
def peak_rss_mb(args: list[str]) -> float:
    """Peak resident memory (MiB) of one ``softmax`` run, read with ``wait4``."""
    proc = subprocess.Popen([SOFTMAX, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"softmax {' '.join(args)} failed: {proc.stderr.read().decode()}")
    return usage.ru_maxrss / 1024   # kilobytes on Linux


def command_seconds(cmd: list[str], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def memory_and_startup(data: Path) -> list[str]:
    """Print the peak memory of ``softmax train`` and the start-up times; return their checks.

    Run before this process loads MNIST or PyTorch: on Linux a child's peak resident memory
    starts from its parent's at ``fork``, so a large parent would hide the children's.
    """
    results = []
    data_mb = 60000 * 784 * 4 / 2**20          # MNIST's training images as float32
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--quiet", "--set", f"output.dir={tmp}", "--set", "train.epochs=2",
                  "--set", "model.hidden=[256]"]
        base = peak_rss_mb(["train", str(ROOT / "configs" / "digits.yaml"), *common])
        mnist = peak_rss_mb(["train", str(ROOT / "configs" / "mnist.yaml"), *common,
                             "--set", f"data.root={data}", "--set", "name=mnist-memory"])
        ratio = (mnist - base) / data_mb
        print(f"\npeak memory, softmax train: MNIST {mnist:.0f} MiB, digits {base:.0f} MiB (interpreter, "
              f"libraries, tiny data);\n  MNIST's extra {mnist - base:.0f} MiB = {ratio:.2f} x its float32 "
              f"training images ({data_mb:.0f} MiB)")
        results.append(check(f"memory: {ratio:.2f} x the training images (target <= 2.5)", ratio <= 2.5))

        ckpt = Path(tmp) / "mnist-memory" / "best.npz"
        image = ROOT / "data" / "samples" / "mnist-3.png"
        imports = command_seconds([sys.executable, "-c", "import numpy, PIL.Image"])
        helps = command_seconds([SOFTMAX, "--help"])
        predict = command_seconds([SOFTMAX, "predict", str(image), "-c", str(ckpt)])
        # what reading a photo needs besides (softmax_cli/data/ink.py): the floor under predict's time
        photo_libs = command_seconds([sys.executable, "-c", "import numpy, PIL.Image, scipy.ndimage; "
                                      "from skimage.filters import threshold_otsu"])
        print(f"\nstart-up (median of 7): python -c 'import numpy, PIL.Image' {imports:.3f} s, "
              f"softmax --help {helps:.3f} s, softmax predict one.png {predict:.3f} s\n"
              f"  (the image path's libraries alone, numpy, Pillow, scipy.ndimage and scikit-image's "
              f"Otsu: {photo_libs:.3f} s = {photo_libs / imports:.2f} x numpy + Pillow)")
        results.append(check(f"predict one image = {predict / imports:.2f} x numpy + Pillow import "
                             f"(target <= 3)", predict / imports <= 3))

    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=mnist_dir())
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs per method (median)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the width and batch curves")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: no MNIST here (pass --data DIR)")

    checks = memory_and_startup(args.data)
    print()
    X, y = load_mnist(args.data)
    sizes, bs = [784, 256, 10], 128
    have_torch = torch_available()
    results = []
    for threads in dict.fromkeys([args.threads, 1]):     # all cores, then one (once if equal)
        print(f"MNIST {X.shape[0]} images, network {'-'.join(map(str, sizes))} ReLU, batch {bs}, "
              f"Adam lr 1e-3, float32, {threads} thread(s), median of {args.rounds} epochs per method")
        if have_torch:
            import torch
            torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            classes = [Ours, MatmulLimit, SklearnMLP] + ([Torch] if have_torch else [])
            med = compare([c(X, y, sizes, bs) for c in classes], args.rounds)
        ours, limit = med[Ours.name], med[MatmulLimit.name]
        print(f"{'method':<30} {'s/epoch':>8} {'x ours':>8}")
        for name, t in med.items():
            print(f"{name:<30} {t:8.3f} {t / ours:8.2f}")
        if not have_torch:
            print(f"{Torch.name:<30} skipped: torch is not installed (pip install torch==2.13.0)")
        print()
        tag = f"{threads} thread(s): "
        results += [check(f"{tag}ours / matrix products = {ours / limit:.2f} (target <= 1.3)", ours / limit <= 1.3),
                    check(f"{tag}MLPClassifier / ours = {med[SklearnMLP.name] / ours:.2f} (target >= 1.8)",
                          med[SklearnMLP.name] / ours >= 1.8)]
        if have_torch:
            results.append(check(f"{tag}PyTorch / ours = {med[Torch.name] / ours:.2f} (target >= 1.35)",
                                 med[Torch.name] / ours >= 1.35))

    if not args.no_sweep:
        with threadpool_limits(limits=args.threads):
            print("\nepoch time against hidden width (batch 128): seconds, and ours / matrix products")
            print(f"{'width':>6} {'ours':>8} {'matmul':>8} {'ratio':>6}")
            for width in (64, 128, 256, 512, 1024, 2048):
                s = [784, width, 10]
                med = compare([Ours(X, y, s, 128), MatmulLimit(X, y, s, 128)], 2)
                print(f"{width:>6} {med[Ours.name]:8.3f} {med[MatmulLimit.name]:8.3f} "
                      f"{med[Ours.name] / med[MatmulLimit.name]:6.2f}")
            print("\nepoch time against batch size (width 256)")
            print(f"{'batch':>6} {'ours':>8} {'matmul':>8} {'ratio':>6}")
            for batch in (16, 32, 64, 128, 256, 512, 1024):
                med = compare([Ours(X, y, sizes, batch), MatmulLimit(X, y, sizes, batch)], 2)
                print(f"{batch:>6} {med[Ours.name]:8.3f} {med[MatmulLimit.name]:8.3f} "
                      f"{med[Ours.name] / med[MatmulLimit.name]:6.2f}")

    results += checks
    print("\ntargets:")
    print("\n".join(results))
    if any(r.endswith("NOT MET") for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
