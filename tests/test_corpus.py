"""Replays the bad-input corpus ``tests/bad_inputs/`` through the real ``softmax`` command.

Each folder is one case (made by ``scripts/make_bad_inputs.py``): its files are copied to a
fresh directory, ``softmax`` runs there with the case's arguments, and it must exit with the
case's code, print exactly one ``softmax: error:`` line holding every expected fragment, print
no traceback, and leave no run directory behind.
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import assert_user_error, run_softmax

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = sorted(p.parent for p in CORPUS.glob("*/case.yaml"))


def test_the_corpus_is_what_make_bad_inputs_writes(tmp_path):
    # the config, CSV, IDX and folder cases are tables in test_bad_inputs.py: a row edited
    # there without rerunning the script would otherwise test nothing new
    script = CORPUS.parents[1] / "scripts" / "make_bad_inputs.py"
    spec = importlib.util.spec_from_file_location("make_bad_inputs", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path / "corpus")

    def files(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    assert files(tmp_path / "corpus") == files(CORPUS), "rerun python scripts/make_bad_inputs.py"
    # byte for byte, but for what Pillow or zlib compressed: their output may change with
    # their version, and case.yaml says what each case expects of those files
    compressed = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".gz")
    plain = [f for f in files(CORPUS) if not f.lower().endswith(compressed)]
    assert sum(f.endswith("case.yaml") for f in plain) == len(CASES)
    _, differ, errors = filecmp.cmpfiles(tmp_path / "corpus", CORPUS, plain, shallow=False)
    assert differ == [] and errors == [], f"{differ}: rerun python scripts/make_bad_inputs.py"


def test_the_corpus_has_at_least_40_cases_of_every_kind():
    assert len(CASES) >= 40
    kinds = {case.name.split("-")[0] for case in CASES}
    assert kinds == {"config", "csv", "idx", "folder", "checkpoint", "image", "npz"}


def make_setup(work: Path, setup: dict) -> None:
    """What a case needs that git cannot hold: FIFOs, links to devices, file modes."""
    for name in setup.get("fifos", []):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(work / name)
    for name, target in setup.get("links", {}).items():
        (work / name).symlink_to(target)
    for name, mode in setup.get("modes", {}).items():
        os.chmod(work / name, mode)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_line_and_its_exit_code(tmp_path, case):
    spec = yaml.safe_load((case / "case.yaml").read_text())
    work = tmp_path / "case"
    shutil.copytree(case, work, ignore=shutil.ignore_patterns("case.yaml"))
    setup = spec.get("setup", {})
    make_setup(work, setup)
    try:   # a FIFO must be refused, never waited on: the timeout would fail the test
        proc = run_softmax(*spec["args"], cwd=work, timeout=120, unprivileged="modes" in setup)
    finally:
        for name in setup.get("modes", {}):
            os.chmod(work / name, 0o755)       # so that pytest can remove the folder
    check_case_output(proc, spec, work)


def check_case_output(proc, spec: dict, work: Path) -> None:
    """What a case must give: its exit code, nothing on stdout, stderr exactly one
    ``softmax: error:`` line holding every expected fragment (``assert_user_error``), and no
    run directory left behind. Tested on fake outputs in tests/test_helpers.py."""
    assert_user_error(proc, *spec["expect"], code=spec["exit"])
    assert proc.stdout == "", proc.stdout
    assert not (work / "runs").exists(), "a failed run must not create a run directory"
