"""Replays the bad-input corpus ``tests/bad_inputs/`` through the real ``softmax`` command.

Each folder is one case (made by ``scripts/make_bad_inputs.py``): its files are copied to a
fresh directory, ``softmax`` runs there with the case's arguments, and it must exit with the
case's code, print exactly one ``softmax: error:`` line holding every expected fragment, print
no traceback, and leave no run directory behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import assert_user_error, run_softmax

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = sorted(p.parent for p in CORPUS.glob("*/case.yaml"))


def test_the_corpus_has_at_least_40_cases_of_every_kind():
    assert len(CASES) >= 40
    kinds = {case.name.split("-")[0] for case in CASES}
    assert kinds == {"config", "csv", "idx", "folder", "checkpoint", "image"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_line_and_its_exit_code(tmp_path, case):
    spec = yaml.safe_load((case / "case.yaml").read_text())
    work = tmp_path / "case"
    shutil.copytree(case, work, ignore=shutil.ignore_patterns("case.yaml"))
    proc = run_softmax(*spec["args"], cwd=work, timeout=120)
    assert_user_error(proc, *spec["expect"], code=spec["exit"])
    assert proc.stdout == ""
    assert not (work / "runs").exists(), "a failed run must not create a run directory"
