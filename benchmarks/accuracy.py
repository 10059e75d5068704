"""Test accuracy of the shipped configs as means over seeds, against scikit-learn's MLPClassifier.

    python benchmarks/accuracy.py                          # every row, seed after seed (hours on 2 cores)
    python benchmarks/accuracy.py --only digits mnist      # some rows
    python benchmarks/accuracy.py --only digits --seeds 0 1 2 3 4 5 6 7
    python benchmarks/accuracy.py --no-peers --json        # ours only; one JSON document on stdout
    python benchmarks/accuracy.py --parallel 6 --threads 2 # 6 seeds at once, each pinned to 2 cores

Every seed of every row is one run of the real ``softmax train CONFIG --set seed=S --threads N``
command (``--json``, in a temporary directory): the seed picks the split (the digits have no
test split of their own, so each seed is scored on other test rows), the initial weights, the
dropout masks and the batch order. The wall time of a seed is that command's, from start to exit
(data loading and the final evaluation included), and is held against the row's budget per
seed. A row prints the mean, the standard deviation (n - 1) and the range of the seeds' test
accuracies; its target is met when the mean reaches the target and the slowest seed is within
the budget.

The peer is scikit-learn's ``MLPClassifier`` trained on the same split of the same data with the
same preprocessing (``softmax_cli``'s own ``prepare_data`` and ``Preprocessor``, fitted on the
training rows): it gets the training and the validation rows, since it does its own stopping,
and is scored on the same test rows, with the same thread count. It runs on every seed where it
is cheap (digits) and on the first seed only for the large rows (the table says which):

| row | config | seeds | target (mean) | budget per seed | peer |
| --- | --- | --- | --- | --- | --- |
| digits | ``configs/digits.yaml`` | 0-4 | >= 0.990 | 1 min | ``MLPClassifier((256,), alpha=1e-3)``, every seed |
| mnist | ``configs/mnist.yaml`` | 0, 1, 2 | >= 0.988 | 15 min | ``MLPClassifier((256,))``, 30 epochs, first seed |
| mnist-augment | ``configs/mnist-augment.yaml`` | 0, 1, 2 | >= 0.996 | 40 min | the mnist row's figure (it has no augmentation) |
| fashion-mnist | ``configs/fashion-mnist.yaml`` | 0, 1, 2 | >= 0.915 | 15 min | ``MLPClassifier((256,))``, 30 epochs, first seed |

The targets and budgets (on two cores) are those of issue 22. MNIST is read from
``$SOFTMAX_MNIST_DIR`` (``--mnist``), Fashion-MNIST from ``/usr/share/datasets/fashion-mnist``
(Debian ``dataset-fashion-mnist``, ``--fashion``); a row whose data is missing is printed as
skipped.

``--parallel K`` runs K seeds at once. Where the machine has at least K x ``--threads`` cores
(``os.sched_getaffinity``), each run is pinned to its own ``--threads`` cores
(``os.sched_setaffinity`` before the command starts), so a 16-core machine measures 6 seeds at
once, each on two cores of its own; the cores each run was allowed are printed (they share the
machine's memory bandwidth and last-level cache, so a quiet machine running one seed at a time
remains the reference for the times). With fewer cores the runs are not pinned and the script
says so. The header gives the CPU (``/proc/cpuinfo``), its vector extensions, the BLAS
(threadpoolctl), the date, the thread count and the load average at the start and the end:
times measured on a busy machine are not the config's.
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
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from softmax_cli.cache import mnist_dir  # noqa: E402  ($SOFTMAX_MNIST_DIR, else the download cache)

SOFTMAX = str(Path(sys.executable).with_name("softmax"))


@dataclass
class Row:
    name: str
    config: str
    target: float
    budget_s: float                 # per seed, on two cores
    seeds: list[int]
    data_root: str | None = None
    peer: dict = field(default_factory=dict)   # MLPClassifier keyword arguments
    peer_every_seed: bool = False   # else the first seed only
    peer_from: str | None = None    # share another row's peer figure
    overrides: list[str] = field(default_factory=list)   # --set for every run (and the peer's split)


@dataclass
class SeedRun:
    seed: int
    test_acc: float
    wall_s: float
    cpu_s: float                    # user + system time of the softmax command
    cores: list[int]                # the cores the run was allowed
    pinned: bool                    # to those cores by the benchmark (else the process's own set)
    best_epoch: int
    epochs_run: int


@dataclass
class Result:
    row: str
    config: str
    target: float
    budget_s: float
    runs: list[SeedRun] = field(default_factory=list)
    peer_acc: list[float] = field(default_factory=list)
    peer_seeds: list[int] = field(default_factory=list)
    peer_wall_s: float | None = None
    skipped: str | None = None

    @property
    def accs(self) -> list[float]:
        return [r.test_acc for r in self.runs]

    @property
    def misses(self) -> list[str]:
        """What keeps the target from being met: ``accuracy`` (the mean), ``time`` (a seed)."""
        if self.skipped is not None:
            return ["skipped"]
        return ([] if statistics.mean(self.accs) >= self.target else ["accuracy"]) + (
            [] if max(r.wall_s for r in self.runs) <= self.budget_s else ["time"])

    @property
    def met(self) -> bool:
        return not self.misses

    def summary(self) -> dict:
        if self.skipped is not None:
            return {"row": self.row, "skipped": self.skipped}
        accs, walls = self.accs, [r.wall_s for r in self.runs]
        return {**asdict(self), "test_acc_mean": statistics.mean(accs), "test_acc_std": _std(accs),
                "test_acc_min": min(accs), "test_acc_max": max(accs), "wall_s_mean": statistics.mean(walls),
                "wall_s_max": max(walls), "cpu_s_mean": statistics.mean(r.cpu_s for r in self.runs), "met": self.met}


def rows(mnist: Path, fashion: Path) -> list[Row]:
    """The table of issue 22: targets are means of test accuracy, budgets are per seed."""
    big = dict(hidden_layer_sizes=(256,), max_iter=30)
    return [
        Row("digits", "digits.yaml", 0.990, 60, [0, 1, 2, 3, 4], None,
            dict(hidden_layer_sizes=(256,), alpha=1e-3, max_iter=500), peer_every_seed=True),
        Row("mnist", "mnist.yaml", 0.988, 15 * 60, [0, 1, 2], str(mnist), big),
        Row("mnist-augment", "mnist-augment.yaml", 0.996, 40 * 60, [0, 1, 2], str(mnist), peer_from="mnist"),
        Row("fashion-mnist", "fashion-mnist.yaml", 0.915, 15 * 60, [0, 1, 2], str(fashion), big),
    ]


# ------------------------------------------------------------------------- the machine
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def vector_extensions() -> str:
    """``avx512f`` / ``avx2`` / ``-``: the widest x86 vector extension the CPU reports."""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        return "-"
    return next((f for f in ("avx512f", "avx2") if f in flags.split()), "-")


def blas() -> str:
    from threadpoolctl import threadpool_info

    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})" for i in libs) or "-"


def machine(threads: int, parallel: int) -> dict:
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_model(),
            "vector": vector_extensions(), "cores": len(os.sched_getaffinity(0)), "threads": threads,
            "parallel": parallel, "blas": blas(), "python": platform.python_version(), "numpy": np.__version__,
            "loadavg_start": list(os.getloadavg())}


def core_slots(parallel: int, threads: int) -> list[list[int]] | None:
    """``parallel`` disjoint sets of ``threads`` cores each, or None when there are too few."""
    cores = sorted(os.sched_getaffinity(0))
    if parallel * threads > len(cores):
        return None
    return [cores[i * threads:(i + 1) * threads] for i in range(parallel)]


# ------------------------------------------------------------------------------- ours
def _command(row: Row, seed: int, workdir: Path, threads: int) -> list[str]:
    cmd = [SOFTMAX, "train", str(ROOT / "configs" / row.config), "--json", "--quiet", "--threads", str(threads),
           "--set", f"seed={seed}", "--set", f"output.dir={workdir}", "--set", f"name={row.name}-seed{seed}"]
    cmd += ["--set", f"data.root={row.data_root}"] if row.data_root else []
    return cmd + [arg for o in row.overrides for arg in ("--set", o)]


# Each run goes through this wrapper: it pins itself to the cores given (every process and thread
# it starts inherits the set), reports the set on stderr's first line, runs the softmax command
# and reports that command's CPU time (user + system, s) on stderr's last line.
WRAP = """import os, resource, subprocess, sys
if sys.argv[1]:
    os.sched_setaffinity(0, map(int, sys.argv[1].split(',')))
print('cores', *sorted(os.sched_getaffinity(0)), file=sys.stderr, flush=True)
rc = subprocess.call(sys.argv[2:])
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print('cpu_s', ru.ru_utime + ru.ru_stime, file=sys.stderr, flush=True)
sys.exit(rc if rc >= 0 else 128 - rc)
"""


def _run_seed(row: Row, seed: int, workdir: Path, threads: int, cores: list[int] | None) -> SeedRun:
    cmd = [sys.executable, "-c", WRAP, ",".join(map(str, cores or ())), *_command(row, seed, workdir, threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    err = proc.stderr.splitlines()
    allowed = [int(c) for c in err.pop(0).split()[1:]] if err and err[0].startswith("cores") else []
    cpu = float(err.pop().split()[1]) if err and err[-1].startswith("cpu_s") else float("nan")
    if proc.returncode != 0:
        raise SystemExit(f"{row.name} seed {seed}: softmax train failed ({proc.returncode}): "
                         + "\n".join(err).strip())
    s = json.loads(proc.stdout)
    return SeedRun(seed, s["test_acc"], wall, cpu, allowed, cores is not None, s["best_epoch"], s["epochs_run"])


def run_ours(row: Row, seeds: list[int], workdir: Path, threads: int, slots: list[list[int]] | None,
             parallel: int, log) -> list[SeedRun]:
    """Train the config once per seed, ``parallel`` at a time, each on a free slot's cores."""
    from concurrent.futures import ThreadPoolExecutor
    from queue import Queue

    free: Queue = Queue()
    for slot in (slots or [None] * parallel):
        free.put(slot)

    def one(seed: int) -> SeedRun:
        cores = free.get()
        try:
            run = _run_seed(row, seed, workdir, threads, cores)
        finally:
            free.put(cores)
        where = f"pinned to cores {_cores(run.cores)}" if run.pinned else f"cores {_cores(run.cores)}, not pinned"
        log(f"  {row.name} seed {seed}: test accuracy {run.test_acc:.4f}, wall time {_minutes(run.wall_s)} "
            f"(CPU time {_minutes(run.cpu_s)}), {where}, best epoch {run.best_epoch} of {run.epochs_run}")
        return run

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, seeds))


# ------------------------------------------------------------------------------ peers
def run_peer(row: Row, seeds: list[int], threads: int) -> tuple[list[float], float]:
    """MLPClassifier on each seed's split of the row's config; accuracies and mean wall time (s)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    from softmax_cli.config import load_config
    from softmax_cli.data.prepare import Preprocessor
    from softmax_cli.experiment import prepare_data

    overrides = ([f"data.root={row.data_root}"] if row.data_root else []) + row.overrides
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
        with warnings.catch_warnings(), threadpool_limits(limits=threads):
            warnings.simplefilter("ignore", ConvergenceWarning)   # max_iter is the epoch budget
            clf.fit(X, y)
            accs.append(float(accuracy_score(splits.y_test, clf.predict(pre.transform(splits.X_test)))))
        times.append(time.perf_counter() - start)
    return accs, statistics.mean(times)


def add_peer(result: Result, row: Row, table: list[Row], done: dict[str, Result], threads: int,
             slot: list[int] | None) -> None:
    """Fill ``result``'s peer columns: its own MLPClassifier, or the row it shares one with."""
    if row.peer_from:
        other = done.get(row.peer_from)
        if other is None or not other.peer_acc:
            other = Result(row.peer_from, "", 0, 0)
            src = next(r for r in table if r.name == row.peer_from)
            other.peer_seeds = _peer_seeds(src, [r.seed for r in result.runs])
            other.peer_acc, other.peer_wall_s = _pinned(slot, run_peer, src, other.peer_seeds, threads)
        result.peer_acc, result.peer_seeds, result.peer_wall_s = other.peer_acc, other.peer_seeds, other.peer_wall_s
        return
    result.peer_seeds = _peer_seeds(row, [r.seed for r in result.runs])
    result.peer_acc, result.peer_wall_s = _pinned(slot, run_peer, row, result.peer_seeds, threads)


def _peer_seeds(row: Row, seeds: list[int]) -> list[int]:
    return seeds if row.peer_every_seed else seeds[:1]


def _pinned(cores: list[int] | None, fn, *args):
    """``fn(*args)`` with this process pinned to ``cores`` (no pinning when None)."""
    if not cores:
        return fn(*args)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        return fn(*args)
    finally:
        os.sched_setaffinity(0, before)


# ----------------------------------------------------------------------------- output
def _std(accs: list[float]) -> float:
    return statistics.stdev(accs) if len(accs) > 1 else 0.0


def _fmt(accs: list[float]) -> str:
    if len(accs) == 1:
        return f"{accs[0]:.4f}"
    return f"{statistics.mean(accs):.4f} ± {_std(accs):.4f}"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _seeds(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _cores(cores: list[int]) -> str:
    return ",".join(map(str, cores))


HEADER = ["| data | seeds | target (mean) | test accuracy: mean ± std | range | wall time per seed: "
          "mean, max (budget) | CPU time per seed | met | MLPClassifier | its seeds | its wall time |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]


def table_line(r: Result) -> str:
    if r.skipped is not None:
        return f"| {r.row} | | >= {r.target:.3f} | skipped: {r.skipped} | | | | | | | |"
    s = r.summary()
    peer = (_fmt(r.peer_acc), _seeds(r.peer_seeds), _minutes(r.peer_wall_s)) if r.peer_acc else ("-", "-", "-")
    return (f"| {r.row} | {_seeds([x.seed for x in r.runs])} | >= {r.target:.3f} | {_fmt(r.accs)} | "
            f"{s['test_acc_min']:.4f}-{s['test_acc_max']:.4f} | {_minutes(s['wall_s_mean'])}, "
            f"{_minutes(s['wall_s_max'])} ({_minutes(r.budget_s)}) | {_minutes(s['cpu_s_mean'])} | "
            f"{'yes' if r.met else 'NO (' + ', '.join(r.misses) + ')'} | "
            f"{peer[0]} | {peer[1]} | {peer[2]} |")


def header_lines(m: dict) -> list[str]:
    pin = (f"{m['parallel']} seeds at once, each pinned to {m['threads']} core(s) of its own"
           if m.get("pinned") else f"{m['parallel']} seed(s) at once, not pinned")
    return ([f"# {m['date']}: {m['cpu']} ({m['vector']}), {m['cores']} cores available; BLAS {m['blas']}",
            f"# Python {m['python']}, NumPy {m['numpy']}; --threads {m['threads']}; {pin}",
            f"# load average (1, 5, 15 min) at the start: {_load(m['loadavg_start'])}"]
            + ([f"# every run with --set {' --set '.join(m['overrides'])} (not the shipped configs)"]
               if m.get("overrides") else []))


def _load(avg: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in avg)


# ------------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="ROW", help="digits, mnist, mnist-augment, fashion-mnist")
    ap.add_argument("--seeds", nargs="+", type=int, metavar="S", help="these seeds for every row chosen "
                    "(default: the row's own: 0-4 for the digits, 0 1 2 for the others)")
    ap.add_argument("--threads", type=int, default=2, metavar="N", help="threads per run (default 2)")
    ap.add_argument("--parallel", type=int, default=1, metavar="K",
                    help="seeds trained at once, each pinned to --threads cores where there are enough")
    ap.add_argument("--mnist", type=Path, default=mnist_dir())
    ap.add_argument("--fashion", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to every softmax train (repeatable): a row measured with other settings")
    ap.add_argument("--no-peers", action="store_true", help="skip MLPClassifier")
    ap.add_argument("--json", action="store_true", help="print one JSON document on stdout (progress on stderr)")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.parallel < 1:
        ap.error("--threads and --parallel: at least 1")
    table = rows(args.mnist.resolve(), args.fashion.resolve())
    unknown = set(args.only or ()) - {r.name for r in table}
    if unknown:
        ap.error(f"unknown row(s) {', '.join(sorted(unknown))}")
    return args


def measure(row: Row, args, table: list[Row], done: dict[str, Result], slots, tmp: Path, log) -> Result:
    result = Result(row.name, row.config, row.target, row.budget_s)
    if row.data_root and not Path(row.data_root).is_dir():
        result.skipped = f"no data at {row.data_root}"
        return result
    seeds = args.seeds or row.seeds
    result.runs = run_ours(row, seeds, tmp / row.name, args.threads, slots, args.parallel, log)
    if not args.no_peers:
        add_peer(result, row, table, done, args.threads, slots[0] if slots else None)
    return result


def main(argv=None) -> None:
    args = parse_args(argv)
    table = rows(args.mnist.resolve(), args.fashion.resolve())
    table = [replace(r, overrides=args.overrides) for r in table if not args.only or r.name in args.only]
    slots = core_slots(args.parallel, args.threads) if args.parallel > 1 else None
    m = {**machine(args.threads, args.parallel), "pinned": slots is not None, "overrides": args.overrides}

    def log(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    for line in header_lines(m):
        log(line)
    if args.parallel > 1 and slots is None:
        log(f"# not pinned: {m['cores']} cores are fewer than {args.parallel} x {args.threads}; "
            "the seeds share the cores and their times are not those of two cores each")
    done: dict[str, Result] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in table:
            done[row.name] = measure(row, args, table, done, slots, Path(tmp), log)
            log(table_line(done[row.name]))
    m["loadavg_end"] = list(os.getloadavg())
    all_met = all(r.met for r in done.values())
    if args.json:
        print(json.dumps({"machine": m, "rows": [r.summary() for r in done.values()], "all_met": all_met}))
    else:
        log("\n" + "\n".join(header_lines(m) + [f"# load average at the end: {_load(m['loadavg_end'])}", ""]
                             + HEADER + [table_line(r) for r in done.values()]))
        log("\nevery target met" if all_met else "\nNOT every target met")
    sys.exit(0 if all_met else 1)


if __name__ == "__main__":
    main()
