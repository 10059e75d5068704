"""Shared test helpers: the real ``softmax`` entry point, and models trained once per session."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
SAMPLES = REPO / "data" / "samples"
MNIST = REPO.parent / "shared" / "data" / "mnist"


def _entry_point() -> str:
    beside = Path(sys.executable).parent / "softmax"
    found = str(beside) if beside.exists() else shutil.which("softmax")
    if not found:
        raise RuntimeError("the softmax console script is not installed (pip install -e '.[test]')")
    return found


SOFTMAX = _entry_point()


def run_softmax(*args, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed ``softmax`` command with ``args`` in ``cwd``; capture text output."""
    return subprocess.run([SOFTMAX, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> None:
    """A bad input: exit ``code``, one ``softmax: error:`` line on stderr holding every fragment."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("softmax: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _summary(proc: subprocess.CompletedProcess, cwd: Path) -> dict:
    """The ``--json`` summary of a training run, with absolute checkpoint paths and its cwd."""
    summary = json.loads(proc.stdout)
    for key in ("best_checkpoint", "last_checkpoint"):
        summary[key] = str(cwd / summary[key])
    return {**summary, "cwd": cwd}


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> dict:
    """``softmax train configs/digits.yaml`` run once: its JSON summary and cwd."""
    cwd = tmp_path_factory.mktemp("digits")
    proc = run_softmax("train", CONFIGS / "digits.yaml", "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return _summary(proc, cwd)


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory) -> dict:
    """An MNIST model (784-512-256-10, 8 epochs, cosine learning rate; 98.4% test accuracy)
    trained once through the CLI on the full split. Smaller or shorter runs (784-128-10 for 3
    epochs: 97.0%) leave too little margin for the 97% the style test asks of predict."""
    if not MNIST.is_dir():
        pytest.skip(f"MNIST not found at {MNIST}")
    cwd = tmp_path_factory.mktemp("mnist")
    proc = run_softmax("train", CONFIGS / "mnist.yaml", "--set", f"data.root={MNIST}",
                       "--set", "model.hidden=[512,256]", "--set", "train.epochs=8",
                       "--set", "train.schedule={name: cosine}", "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return _summary(proc, cwd)
