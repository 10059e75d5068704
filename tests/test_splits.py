"""Checkpoints record which rows each split held: eval and resume refuse data that changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, run_softmax

TRAIN = ("--set", "model.hidden=[8]", "--quiet", "--json")


def write_digits_csv(path: Path, change=None) -> None:
    """scikit-learn's digits as a CSV (label first, 64 pixels 0-16), ``change(table)`` applied."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    table = np.column_stack([digits.target, digits.data]).astype(int)
    if change is not None:
        table = change(table)
    np.savetxt(path, table, fmt="%d", delimiter=",")


@pytest.fixture(scope="module")
def trained_on_csv(tmp_path_factory) -> Path:
    """A folder with digits.csv, cfg.yaml and a run on it (runs/cfg), 2 epochs done of the 3
    its last.npz asks for (so it can resume). The config names the CSV by its absolute path,
    as a run records it: an edit of that file is an edit of the run's data."""
    cwd = tmp_path_factory.mktemp("csv")
    write_digits_csv(cwd / "digits.csv")
    (cwd / "cfg.yaml").write_text(f"data: {{source: csv, train: {cwd / 'digits.csv'}, label_column: first, "
                                  f"pixel_max: 16}}\ntrain: {{epochs: 2, batch_size: 64}}\n")
    proc = run_softmax("train", "cfg.yaml", *TRAIN, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    run = cwd / "runs" / "cfg"
    with np.load(run / "last.npz") as npz:
        saved = {k: npz[k] for k in npz.files}
    meta = json.loads(str(saved["metadata"]))
    meta["config"]["train"]["epochs"] = 3
    np.savez(run / "last.npz", **{**saved, "metadata": np.array(json.dumps(meta))})
    return cwd


@pytest.fixture
def csv_run(trained_on_csv) -> Path:
    """:func:`trained_on_csv` with its digits.csv as it was trained on (a test may edit it)."""
    write_digits_csv(trained_on_csv / "digits.csv")
    return trained_on_csv


def test_the_splits_are_those_of_before_and_their_fingerprints_are_recorded(csv_run):
    from sklearn.model_selection import train_test_split

    from softmax_cli.checkpoint import load_checkpoint
    from softmax_cli.config import load_config
    from softmax_cli.data import load_dataset, make_splits

    cfg = load_config(csv_run / "cfg.yaml")
    ds = load_dataset(cfg.data)
    splits = make_splits(ds, cfg.data, cfg.seed)
    # the row indices travel with the rows: the same split as splitting the arrays alone
    X, X_test, y, y_test = train_test_split(ds.X, ds.y, test_size=0.2, stratify=ds.y, random_state=0)
    X, X_val, y, y_val = train_test_split(X, y, test_size=0.1, stratify=y, random_state=0)
    for name, (X_part, y_part) in {"train": (X, y), "val": (X_val, y_val), "test": (X_test, y_test)}.items():
        np.testing.assert_array_equal(splits.part(name)[0], X_part)
        np.testing.assert_array_equal(splits.part(name)[0], ds.X[getattr(splits, f"rows_{name}")])
        np.testing.assert_array_equal(splits.part(name)[1], y_part)
    recorded = load_checkpoint(csv_run / "runs/cfg/best.npz").meta["splits"]
    assert recorded == splits.fingerprints()
    assert [recorded[k]["rows"] for k in ("train", "val", "test")] == [1293, 144, 360]
    proc = run_softmax("eval", "runs/cfg/best.npz", "--json", cwd=csv_run)
    assert proc.returncode == 0 and _besides_the_announcement(proc.stderr) == [], proc.stderr


def _besides_the_announcement(stderr: str) -> list[str]:
    """The lines of ``stderr`` other than eval's note naming the data files a checkpoint names."""
    return [line for line in stderr.splitlines() if not (line.startswith("softmax: note: eval reads")
                                                         and "names in its saved config" in line)]


EDITS = {
    # a pixel of every row changed: the same rows, other values
    "values": (lambda t: np.column_stack([t[:, :1], (t[:, 1:2] + 1) % 17, t[:, 2:]]),
               "the same rows hold other values (the SHA-256 of the data differs)"),
    # ten rows fewer: fewer test rows
    "rows": (lambda t: t[:-10], "360 rows when the model was trained, 358 now"),
    # the rows in another order: as many, other ones drawn
    "order": (lambda t: t[np.random.default_rng(0).permutation(len(t))],
              "other rows were drawn (the SHA-256 of the row indices differs)"),
}


@pytest.mark.parametrize("edit, what", EDITS.values(), ids=EDITS.keys())
def test_eval_refuses_a_split_whose_data_changed_unless_given_on_purpose(csv_run, edit, what):
    cwd = csv_run
    write_digits_csv(cwd / "digits.csv", edit)
    best = cwd / "runs" / "cfg" / "best.npz"
    proc = run_softmax("eval", best, cwd=cwd)
    assert_user_error(proc, f"{best}: the test split is not the one recorded when the model was trained: {what}",
                      "give its config with --data")
    assert proc.stdout == ""
    on_purpose = run_softmax("eval", best, "--data", "cfg.yaml", "--json", cwd=cwd)
    assert on_purpose.returncode == 0 and on_purpose.stderr == "", on_purpose.stderr
    assert json.loads(on_purpose.stdout)["n"] == (358 if edit is EDITS["rows"][0] else 360)


def test_resume_refuses_data_that_changed(csv_run):
    cwd = csv_run
    write_digits_csv(cwd / "digits.csv", EDITS["values"][0])
    run = cwd / "runs" / "cfg"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    proc = run_softmax("train", "--resume", run / "last.npz", "--quiet", cwd=cwd)
    assert_user_error(proc, f"{run / 'last.npz'}: the train split is not the one this run was trained on: "
                            "the same rows hold other values")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_checkpoint_without_fingerprints_still_evaluates_with_a_note(csv_run, tmp_path):
    with np.load(csv_run / "runs/cfg/best.npz") as npz:
        saved = {k: npz[k] for k in npz.files}
    meta = json.loads(str(saved["metadata"]))
    del meta["splits"]                              # as an older softmax wrote it
    np.savez(tmp_path / "old.npz", **{**saved, "metadata": np.array(json.dumps(meta))})
    proc = run_softmax("eval", tmp_path / "old.npz", "--json", cwd=csv_run)
    assert proc.returncode == 0, proc.stderr
    assert _besides_the_announcement(proc.stderr) == [
        f"softmax: note: {tmp_path / 'old.npz'} records no fingerprints of its splits "
        "(an older softmax, or a shipped model): its test split was made again from its config, unchecked"]
    ours = json.loads(run_softmax("eval", "runs/cfg/best.npz", "--json", cwd=csv_run).stdout)
    assert json.loads(proc.stdout)["accuracy"] == ours["accuracy"]
