"""The helpers every bad-input test relies on, on fake outputs: each must refuse what a
broken error handler would print (a traceback before the line, two lines, a wrong prefix)."""

from __future__ import annotations

import subprocess

import pytest

from conftest import NOTE, assert_user_error
from test_corpus import check_case_output

LINE = "softmax: error: cfg.yaml: train.epochs: expected an integer, got 'x'\n"
TRACEBACK = ('Traceback (most recent call last):\n  File "/x/cli.py", line 9, in main\n'
             "softmax_cli.errors.UserError: cfg.yaml: train.epochs: expected an integer, got 'x'\n")

# stderr that a correct command never prints for a bad input, and why
BAD_STDERR = {
    "traceback-before-the-line": TRACEBACK + LINE,
    "traceback-without-its-heading": '  File "/x/cli.py", line 9, in main\n    run()\n' + LINE,
    "two-error-lines": LINE + LINE,
    "a-warning-before": "/x/loop.py:3: RuntimeWarning: overflow encountered in exp\n" + LINE,
    "a-note-after": LINE + NOTE + "eval reads cfg.yaml\n",
    "a-blank-line-after": LINE + "\n",
    "wrong-prefix": LINE.replace("softmax: error: ", "error: "),
    "another-program": LINE.replace("softmax: ", "python: "),
    "unterminated": LINE[:-1],
    "empty": "",
    "the-fragment-only-in-a-note": NOTE + "cfg.yaml: train.epochs: expected an integer\n" + "softmax: error: failed\n",
}


def fake(stderr: str, code: int = 2, stdout: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["softmax", "train", "cfg.yaml"], code, stdout, stderr)


def test_assert_user_error_accepts_one_error_line_after_notes():
    assert_user_error(fake(LINE), "cfg.yaml", "train.epochs", "expected an integer")
    assert_user_error(fake(NOTE + "reading cfg.yaml\n" + LINE), "train.epochs")
    assert_user_error(fake(LINE, code=1), code=1)


@pytest.mark.parametrize("stderr", BAD_STDERR.values(), ids=BAD_STDERR.keys())
def test_assert_user_error_refuses_anything_but_that_line(stderr):
    with pytest.raises(AssertionError):
        assert_user_error(fake(stderr), "cfg.yaml: train.epochs: expected an integer")


def test_assert_user_error_checks_the_exit_code_and_every_fragment():
    for proc, fragments in ((fake(LINE, code=1), ()), (fake(LINE, code=0), ()), (fake(LINE), ("epochs", "lr"))):
        with pytest.raises(AssertionError):
            assert_user_error(proc, *fragments)


SPEC = {"args": ["train", "cfg.yaml"], "expect": ["cfg.yaml", "train.epochs"], "exit": 2}


def test_the_corpus_runner_accepts_the_right_output(tmp_path):
    check_case_output(fake(LINE), SPEC, tmp_path)


@pytest.mark.parametrize("stderr", BAD_STDERR.values(), ids=BAD_STDERR.keys())
def test_the_corpus_runner_refuses_anything_but_one_error_line(tmp_path, stderr):
    with pytest.raises(AssertionError):
        check_case_output(fake(stderr), SPEC, tmp_path)


def test_the_corpus_runner_refuses_output_wrong_code_fragments_or_a_run_left(tmp_path):
    for proc, spec in ((fake(LINE, stdout="7\n"), SPEC), (fake(LINE, code=1), SPEC),
                       (fake(LINE), {**SPEC, "expect": ["cfg.yaml", "model.hidden"]})):
        with pytest.raises(AssertionError):
            check_case_output(proc, spec, tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(AssertionError, match="run directory"):
        check_case_output(fake(LINE), SPEC, tmp_path)
