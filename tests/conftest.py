"""Shared test helpers: the real ``softmax`` entry point, and models trained once per session."""

from __future__ import annotations

import hashlib
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
    """A bad input: exit ``code``, and stderr exactly one ``softmax: error:`` line holding
    every fragment, newline-terminated, with nothing else but ``softmax: note:`` lines before
    it (no traceback, warning, blank line or second error). Tested in tests/test_helpers.py."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.endswith("\n"), f"stderr must end with the error line: {proc.stderr!r}"
    *notes, line = proc.stderr[:-1].split("\n")
    assert all(note.startswith(NOTE) for note in notes), f"more than the error line on stderr: {proc.stderr!r}"
    assert line.startswith("softmax: error: ") and line.strip() == line, proc.stderr
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def assert_usage_error(proc: subprocess.CompletedProcess, command: str, message: str) -> None:
    """Bad usage (an unknown option, a missing argument, an option value out of range), as
    Typer reports it: exit 2, the command's usage line, a hint to --help and ``message``."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"Usage: softmax {command}".rstrip()), proc.stderr
    assert lines[1] == f"Try 'softmax {command} --help' for help.".replace("  ", " "), proc.stderr
    assert message in proc.stderr, (message, proc.stderr)


def _source_hash() -> str:
    """SHA-256 (16 hex digits) of the code and configs a trained fixture depends on:
    every ``softmax_cli/**/*.py`` and ``configs/*`` file, by path and content."""
    digest = hashlib.sha256()
    files = sorted([*(REPO / "softmax_cli").rglob("*.py"), *CONFIGS.rglob("*")])
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


SOURCE_HASH = _source_hash()


def _session_dir(tmp_path_factory) -> Path:
    """A folder of this test session that every pytest-xdist worker shares: the session's
    base temporary folder (``pytest-N``; a worker's own is ``pytest-N/popen-gwK``). Never its
    parent, which outlives the session: a model trained there by an older build would be reused."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _train_once(tmp_path_factory, name: str, *args: str) -> dict:
    """``softmax train ARGS --json`` run once for the whole test session, however many
    pytest-xdist workers ask: the first trains under a file lock in the session's folder
    (:func:`_session_dir`), the others read its summary. The files are keyed by the source
    tree's hash (:data:`SOURCE_HASH`) as well, so that no model of other code is ever used."""
    import fcntl

    shared = _session_dir(tmp_path_factory)
    key = f"trained-{name}-{SOURCE_HASH}"
    cwd, done = shared / key, shared / f"{key}.json"
    with open(shared / f"{key}.lock", "w") as lock:
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
