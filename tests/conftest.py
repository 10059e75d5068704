"""Shared test helpers: the real ``softmax`` entry point, and models trained once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from softmax_cli.cache import mnist_dir

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
SAMPLES = REPO / "data" / "samples"


MNIST = mnist_dir()   # $SOFTMAX_MNIST_DIR, else the download cache
MNIST_MISSING = (f"MNIST not found at {MNIST}: set SOFTMAX_MNIST_DIR to a folder holding the four "
                 f"IDX files (.ci/run does), or train configs/mnist.yaml once to download them")


def _entry_point() -> str:
    beside = Path(sys.executable).parent / "softmax"
    found = str(beside) if beside.exists() else shutil.which("softmax")
    if not found:
        raise RuntimeError("the softmax console script is not installed (pip install -e '.[test]')")
    return found


SOFTMAX = _entry_point()


def _without_file_permission_override() -> None:
    """In the child, before exec: make file permissions apply to root too.

    Tests run as root here and in CI, and root reads a mode-000 file (capabilities
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH). Dropping both from the bounding set
    (``prctl(PR_CAPBSET_DROP)``) takes them from the program run next, which stays root and
    owns the test's files, so that permissions are checked as for any user. Fails loudly
    (the test errors, it is never skipped) where they cannot be dropped.
    """
    import ctypes

    if os.geteuid() != 0:
        return                                  # permissions apply already
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):                   # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:   # 24: PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "cannot drop CAP_DAC_OVERRIDE for a permission test")


def run_softmax(*args, cwd: Path, timeout: float = 600, unprivileged: bool = False) -> subprocess.CompletedProcess:
    """Run the installed ``softmax`` command with ``args`` in ``cwd``; capture text output.

    ``unprivileged``: file permissions apply even when the tests run as root (see
    :func:`_without_file_permission_override`).
    """
    return subprocess.run([SOFTMAX, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          preexec_fn=_without_file_permission_override if unprivileged else None)


NOTE = "softmax: note: "   # an informational line (e.g. which data files a checkpoint names), not an error


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> None:
    """A bad input: exit ``code``, one ``softmax: error:`` line on stderr holding every fragment
    (besides ``softmax: note:`` lines that come before it)."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith(NOTE)]
    assert len(lines) == 1 and lines[0].startswith("softmax: error: "), proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == lines[0], proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def assert_usage_error(proc: subprocess.CompletedProcess, command: str, message: str) -> None:
    """Bad usage (an unknown option, a missing argument, an option value out of range), as
    Typer reports it: exit 2, the command's usage line, a hint to --help and ``message``."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"Usage: softmax {command}".rstrip()), proc.stderr
    assert lines[1] == f"Try 'softmax {command} --help' for help.".replace("  ", " "), proc.stderr
    assert message in proc.stderr, (message, proc.stderr)


def _train_once(tmp_path_factory, name: str, *args: str) -> dict:
    """``softmax train ARGS --json`` run once for the whole test session, however many
    pytest-xdist workers ask: the first trains under a file lock in the directory the
    workers share, the others read its summary."""
    import fcntl

    shared = tmp_path_factory.getbasetemp().parent     # the same for every worker of a session
    cwd, done = shared / f"trained-{name}", shared / f"trained-{name}.json"
    with open(shared / f"trained-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            cwd.mkdir(exist_ok=True)
            proc = run_softmax("train", *args, "--json", cwd=cwd)
            assert proc.returncode == 0, proc.stderr
            done.write_text(proc.stdout)
        return _summary_of(done.read_text(), cwd)


def _summary_of(stdout: str, cwd: Path) -> dict:
    """The ``--json`` summary of a training run, with absolute checkpoint paths and its cwd."""
    summary = json.loads(stdout)
    for key in ("best_checkpoint", "last_checkpoint"):
        summary[key] = str(cwd / summary[key])
    return {**summary, "cwd": cwd}


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> dict:
    """``softmax train configs/digits.yaml`` (the shipped config, whole) run once: its JSON
    summary and cwd."""
    return _train_once(tmp_path_factory, "digits", CONFIGS / "digits.yaml")


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory) -> dict:
    """An MNIST model (784-512-256-10, 8 epochs of Adam on a cosine schedule, no dropout or
    label smoothing; 98.4% test accuracy) trained once through the CLI on the full split.
    Smaller or shorter runs (784-128-10 for 3 epochs: 97.0%) leave too little margin for the
    97% the style test asks of predict."""
    if not MNIST.is_dir():
        pytest.skip(MNIST_MISSING)
    return _train_once(tmp_path_factory, "mnist", CONFIGS / "mnist.yaml", "--set", f"data.root={MNIST}",
                       "--set", "model.hidden=[512,256]", "--set", "train.epochs=8", "--set", "model.dropout=0",
                       "--set", "model.input_dropout=0", "--set", "train.label_smoothing=0",
                       "--set", "train.schedule={name: cosine}")
