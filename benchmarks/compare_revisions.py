"""Is one revision's training epoch faster than another's? Paired epochs, taking turns.

    python benchmarks/compare_revisions.py HEAD~1 HEAD                 # 40 rounds
    python benchmarks/compare_revisions.py HEAD HEAD --env-b OPENBLAS_THREAD_TIMEOUT=4

On a shared machine the speed of the same code drifts by 1.5-2 x within an hour, far more
than most changes move it, so ``speed.py``'s medians of 5 epochs cannot tell a 5% change
from the drift. This script checks each revision out into a temporary worktree and runs the
MNIST epoch of ``speed.py`` (``Ours``: 784-256-10, batch 128, Adam) in one process per
revision, each process started with its own environment. The processes take turns, one
epoch each per round (the order alternating), with a pause before each epoch so that no
idle thread of the previous one (OpenBLAS spins about 0.1 s after a product) runs into it.
It prints each revision's median epoch and the median and spread of the per-round
difference A - B: a difference well inside the spread divided by the square root of the
rounds is no difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from softmax_cli.cache import mnist_dir  # noqa: E402  ($SOFTMAX_MNIST_DIR, else the download cache)

# the child: load MNIST with the checked-out revision's speed.py, then time one epoch per line
CHILD = """
import sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/benchmarks"]
from pathlib import Path
from threadpoolctl import threadpool_limits
import speed
X, y = speed.load_mnist(Path(sys.argv[2]))
threadpool_limits(int(sys.argv[3]))
method = speed.Ours(X, y, [784, 256, 10], 128)
method.epoch()
print("ready", flush=True)
for _ in sys.stdin:
    start = time.perf_counter()
    method.epoch()
    print(time.perf_counter() - start, flush=True)
"""


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"--env-a/--env-b: expected NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--pause", type=float, default=0.3, help="seconds before each epoch")
    parser.add_argument("--env-a", nargs="*", default=[], metavar="NAME=VALUE")
    parser.add_argument("--env-b", nargs="*", default=[], metavar="NAME=VALUE")
    parser.add_argument("--data", type=Path, default=mnist_dir())
    args = parser.parse_args()
    if args.rounds < 2:
        sys.exit("--rounds: need at least 2 for a spread")

    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        try:
            for label, rev, extra in (("A", args.rev_a, args.env_a), ("B", args.rev_b, args.env_b)):
                tree = Path(tmp) / label
                subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev],
                               check=True)
                procs[label] = subprocess.Popen(
                    [sys.executable, "-c", CHILD, str(tree), str(args.data), str(args.threads)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                    env={**os.environ, **parse_env(extra)}, cwd=tree)
            for label, proc in procs.items():
                if proc.stdout.readline().strip() != "ready":
                    sys.exit(f"revision {label}: its process did not start (see above)")
            times: dict[str, list[float]] = {label: [] for label in procs}
            for r in range(args.rounds):
                for label in ("A", "B") if r % 2 == 0 else ("B", "A"):
                    time.sleep(args.pause)
                    procs[label].stdin.write("epoch\n")
                    procs[label].stdin.flush()
                    times[label].append(float(procs[label].stdout.readline()))
        finally:
            for proc in procs.values():
                proc.stdin.close()
                proc.wait()
            for label in ("A", "B"):
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(tmp) / label)],
                               capture_output=True)

    diff = [a - b for a, b in zip(times["A"], times["B"])]
    spread = statistics.stdev(diff)
    for label, rev, extra in (("A", args.rev_a, args.env_a), ("B", args.rev_b, args.env_b)):
        with_env = f" with {' '.join(extra)}" if extra else ""
        print(f"{label} = {rev}{with_env}: median epoch {statistics.median(times[label]):.3f} s")
    print(f"A - B over {args.rounds} rounds: median {1000 * statistics.median(diff):.0f} ms, "
          f"mean {1000 * statistics.mean(diff):.0f} ms, standard deviation {1000 * spread:.0f} ms "
          f"(standard error of the mean {1000 * spread / args.rounds ** 0.5:.0f} ms)")


if __name__ == "__main__":
    main()
