"""``softmax tune``: the search space refused or accepted, trials run on the engine, the study
continued, shared, interrupted and failed, on both backends. Small: digits, tiny networks, a
few epochs, a few trials."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import CONFIGS, SOFTMAX, assert_user_error, run_softmax

# a few seconds a trial at most: no augmentation, small networks, three epochs
SMALL = ("--set", "train.epochs=3", "--set", "train.augment=null", "--set", "model.hidden=[16]",
         "--set", "train.schedule={name: constant}")
SPACE = {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
         "model.hidden": {"type": "categorical", "choices": [[16], [32]]}}


def write_space(folder: Path, space: dict | str, name: str = "space.yaml") -> Path:
    path = folder / name
    path.write_text(space if isinstance(space, str) else yaml.safe_dump(space, sort_keys=False))
    return path


def tune(tmp_path: Path, *args, space: dict | str = SPACE, timeout: float = 300) -> subprocess.CompletedProcess:
    path = write_space(tmp_path, space)
    return run_softmax("tune", CONFIGS / "digits.yaml", "--space", path, *SMALL, *args, cwd=tmp_path, timeout=timeout)


def trials_csv(study_dir: Path) -> list[dict]:
    with open(study_dir / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def load_study(study_dir: Path, name: str = "digits", storage=None):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if storage is None:
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))
    return optuna.load_study(study_name=name, storage=storage)


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written
BAD_SPACES = [
    ("trian.optimizer.lr: {type: float, low: 1.0e-3, high: 1.0e-2}", ["trian: unknown key", "did you mean 'train'"]),
    ("train.optimizer.lrr: {type: float, low: 1.0e-3, high: 1.0e-2}", ["train.optimizer.lrr: unknown key", "'lr'"]),
    ("train.batch_size: {type: float, low: 16, high: 64}", ["train.batch_size.low: expected an integer, got 16.0"]),
    ("model.hidden: {type: int, low: 16, high: 64}", ["model.hidden.low: expected a list of integers"]),
    ("model.dropout: {type: float, low: 0.0, high: 1.5}", ["model.dropout.high: expected rates >= 0 and < 1"]),
    ("train.optimizer.lr: {type: float, low: 0.0, high: 0.1}", ["train.optimizer.lr.low: expected a value > 0"]),
    ("model.activation: {type: categorical, choices: [relu, tanhh]}", ["model.activation.choices[1]: expected one of"]),
    ("model.hidden: {type: categorical, choices: [[16], [x]]}", ["model.hidden.choices[1][0]: expected an integer"]),
    ("model.dropout: {type: float, lo: 0.0, high: 0.5}", ["model.dropout.lo: unknown key", "did you mean 'low'"]),
    ("model.dropout: {type: uniform, low: 0.0, high: 0.5}", ["model.dropout.type: expected one of float, int"]),
    ("model.dropout: {type: float, low: 0.4, high: 0.1}", ["model.dropout.high: expected a value > low (0.4)"]),
    ("model.dropout: {type: float, low: 0.1}", ["model.dropout: lacks high"]),
    ("train.optimizer.lr: {type: float, low: 0.0, high: 0.1, log: true}", ["lr.low: expected a value > 0 with log"]),
    ("model.hidden: {type: categorical, choices: []}", ["model.hidden.choices: expected a non-empty list"]),
    ("model.hidden: {type: categorical, choices: [[16], [16]]}", ["model.hidden.choices[1]: repeats choices[0]"]),
    ("train.monitor: {type: categorical, choices: [val_acc, val_loss]}", ["train.monitor: set by softmax tune"]),
    ("output.dir: {type: categorical, choices: [a, b]}", ["output.dir: set by softmax tune"]),
    ("model.dropout: 0.3", ["model.dropout: expected a distribution"]),
    ("- model.dropout", ["expected a mapping of config keys to distributions"]),
    ("", ["expected a mapping of config keys to distributions"]),
    ("model.dropout: {type: float, low: 0.0, high: 0.5", ["line 1, column 49: YAML syntax error"]),
    ("a: {type: float, low: 0, high: 1}\na: {type: float, low: 0, high: 1}", ["duplicate key 'a'"]),
]


@pytest.mark.parametrize("text, fragments", BAD_SPACES, ids=[f"space{i}" for i in range(len(BAD_SPACES))])
def test_a_bad_space_file_is_refused_in_one_line_and_nothing_is_written(tmp_path, text, fragments):
    proc = tune(tmp_path, space=text)
    assert_user_error(proc, "space.yaml: ", *fragments)
    assert proc.stdout == "" and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--metric", "train_acc"], ["--metric: expected one of val_acc, val_loss"]),
    (["--backend", "dask"], ["--backend: expected one of optuna, ray"]),
    (["--pruner", "hyperband"], ["--pruner: expected one of median, halving, none"]),
    (["--study", "a/b"], ["--study: expected a plain directory name"]),
    (["--storage", "runs/study.db"], ["--storage runs/study.db: expected a database URL: sqlite:///FILE"]),
    (["--storage", "sqlite:////nonexistent/folder/study.db"],
     ["--storage sqlite:////nonexistent/folder/study.db: cannot open the study storage", "unable to open"]),
    (["--storage", "postgresql://user:secret@127.0.0.1:1/study"], ["--storage postgresql://user:***@127.0.0.1:1/"]),
    (["--address", "auto"], ["--address: joins a Ray cluster; give it with --backend ray"]),
    (["--set", "data.val_fraction=0"], ["data.val_fraction: a search measures each trial on the validation split"]),
    (["--space", "missing.yaml"], ["missing.yaml: search space file not found"]),
], ids=["metric", "backend", "pruner", "study", "storage-path", "storage-unreachable", "storage-password", "address",
        "no-val", "missing-space"])
def test_bad_options_are_refused_in_one_line_and_nothing_is_written(tmp_path, args, fragments):
    proc = tune(tmp_path, *args)
    assert_user_error(proc, *fragments)
    assert "secret" not in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "runs").exists()


def test_a_ray_address_that_does_not_answer_is_refused_and_nothing_is_written(tmp_path):
    env_free = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    path = write_space(tmp_path, SPACE)
    proc = subprocess.run([SOFTMAX, "tune", str(CONFIGS / "digits.yaml"), "--space", str(path), "--backend", "ray",
                           "--address", "auto", *SMALL], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=env_free)
    assert_user_error(proc, "--address auto: cannot reach a Ray cluster", "Could not find any running Ray instance")
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ a sweep, its outputs, a rerun
def test_a_sweep_writes_its_study_and_best_yaml_trains_the_best_trial_again(tmp_path):
    proc = tune(tmp_path, "--trials", "4", "--workers", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    study_dir = tmp_path / "runs" / "tune" / "digits"
    assert summary["study_dir"] == "runs/tune/digits" and summary["trials"]["this_run"] == 4
    assert summary["storage"] == "runs/tune/digits/journal.log"
    assert "study in runs/tune/digits/journal.log" in proc.stderr
    assert {"journal.log", "trials.csv", "best.yaml", "history.png", "importances.png", "slice.png"} <= \
        {p.name for p in study_dir.iterdir()}
    rows = trials_csv(study_dir)
    assert list(rows[0]) == ["trial", "state", "train.optimizer.lr", "model.hidden", "val_acc", "best_epoch", "epochs",
                             "seconds", "test_acc", "run_dir", "message"]
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"]
    # each trial is an ordinary run of the engine: its own run directory, config and metrics
    for row in rows:
        run = Path(row["run_dir"])
        assert run.parent == study_dir and run.name == f"trial-{int(row['trial']):04d}"
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert saved["model"]["hidden"] == json.loads(row["model.hidden"])
        assert saved["train"]["optimizer"]["lr"] == float(row["train.optimizer.lr"])
        assert saved["train"]["monitor"] == "val_acc" and saved["train"]["epochs"] == 3
        assert {"best.npz", "last.npz", "metrics.csv"} <= {p.name for p in run.iterdir()}
        if row["state"] == "complete":
            assert float(row["val_acc"]) == max(float(m["val_acc"]) for m in metrics(run))

    # the value reported after each epoch (the pruner's input) is the best val_acc so far of the run
    study = load_study(study_dir)
    for trial in study.trials:
        best_so_far, seen = {}, 0.0
        for m in metrics(Path(trial.user_attrs["run_dir"])):
            seen = max(seen, float(m["val_acc"]))
            best_so_far[int(m["epoch"])] = seen
        assert trial.intermediate_values == best_so_far

    best = summary["best"]
    assert best["val_acc"] == max(float(r["val_acc"]) for r in rows if r["state"] == "complete")
    assert Path(best["run_dir"]).name == f"trial-{best['trial']:04d}"
    config = yaml.safe_load((study_dir / "best.yaml").read_text())
    assert config["name"] == "digits-best" and config["output"]["dir"] == "runs"
    assert config["model"]["hidden"] == best["params"]["model.hidden"]
    assert config["train"]["optimizer"]["lr"] == best["params"]["train.optimizer.lr"]
    # the trial trained with one BLAS thread: so does this, and it gives the same split and weights
    again = run_softmax("train", study_dir / "best.yaml", "--threads", "1", "--quiet", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    again = json.loads(again.stdout)
    assert again["run_dir"] == "runs/digits-best"
    assert (again["val_acc"], again["test_acc"], again["best_epoch"]) == (best["val_acc"], best["test_acc"],
                                                                        best["best_epoch"])

    # the same command with --trials 6 runs the two missing trials, not six
    proc = tune(tmp_path, "--trials", "6", "--workers", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trials"]["this_run"] == 2 and summary["trials"]["counted"] == 6
    assert [r["trial"] for r in trials_csv(study_dir)] == [str(i) for i in range(6)]
    assert len(list(study_dir.glob("trial-*"))) == 6
    assert "4 of 6 trials done" in proc.stderr

    # and with another search under the same study name, it refuses: outputs intact
    before = (study_dir / "trials.csv").read_bytes()
    proc = tune(tmp_path, "--trials", "6", "--set", "train.epochs=2")
    assert_user_error(proc, "--study digits: this study was started with another search",
                      "config.train.epochs: 3, now 2")
    assert (study_dir / "trials.csv").read_bytes() == before


def test_timeout_zero_starts_no_trial(tmp_path):
    proc = tune(tmp_path, "--trials", "3", "--workers", "1", "--timeout", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trials"]["this_run"] == 0 and summary["best"] is None
    assert trials_csv(tmp_path / "runs" / "tune" / "digits") == []


# ------------------------------------------------------------------ trials that fail, trials that are pruned
def test_a_sweep_where_every_trial_fails_exits_1_naming_the_first_error(tmp_path):
    space = {"train.optimizer.lr": {"type": "float", "low": 1e4, "high": 1e5, "log": True}}
    proc = tune(tmp_path, "--trials", "2", "--workers", "1", "--set", "train.optimizer.name=sgd", space=space)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("softmax: error: every trial failed; the first, trial 0: epoch ")
    assert ": the train loss became" in last
    rows = trials_csv(tmp_path / "runs" / "tune" / "digits")
    assert [r["state"] for r in rows] == ["failed", "failed"]
    assert all("the train loss became" in r["message"] for r in rows)
    assert not (tmp_path / "runs" / "tune" / "digits" / "best.yaml").exists()


def test_run_trial_records_a_bad_combination_as_failed_and_a_pruned_run_as_pruned(tmp_path):
    from softmax_cli.config import load_config
    from softmax_cli.tune.space import load_space
    from softmax_cli.tune.trial import run_trial

    cfg = load_config(CONFIGS / "digits.yaml", [item for item in SMALL if item != "--set"])
    space = load_space(write_space(tmp_path, {
        "model.hidden": {"type": "categorical", "choices": [[16], [16, 16]]},
        "model.dropout": {"type": "categorical", "choices": [0.1, [0.1]]}}), cfg)
    base = cfg.to_dict()

    bad = run_trial(base, space, {"model.hidden": [16, 16], "model.dropout": [0.1]}, "bad", tmp_path, "val_acc",
                    lambda epoch, best: False)
    assert bad.state == "failed" and bad.run_dir is None
    assert "model.dropout: expected one rate per hidden layer (2)" in bad.message

    reports = []

    def prune_at_2(epoch, best):
        reports.append((epoch, best))
        return epoch == 2

    pruned = run_trial(base, space, {"model.hidden": [16], "model.dropout": 0.1}, "cut", tmp_path, "val_acc",
                       prune_at_2)
    assert pruned.state == "pruned" and pruned.epochs_run == 2 and [e for e, _ in reports] == [1, 2]
    rows = metrics(Path(pruned.run_dir))
    assert len(rows) == 2 and pruned.value == max(float(r["val_acc"]) for r in rows) == reports[-1][1]
    assert 0 < pruned.test_acc <= 1          # a stopped run ends as a finished one: its best weights tested


@pytest.mark.parametrize("metric, values, best", [("val_acc", [0.5, 0.7, 0.6, 0.8], [0.5, 0.7, 0.7, 0.8]),
                                                  ("val_loss", [1.0, 0.8, 0.9, 0.7], [1.0, 0.8, 0.8, 0.7])])
def test_the_reporter_hands_the_pruner_the_best_value_so_far_and_stops_when_told(metric, values, best):
    from softmax_cli.tune.trial import Reporter

    reported = []
    reporter = Reporter(metric, lambda epoch, value: reported.append((epoch, value)) or epoch == 4)
    for epoch, value in enumerate(values, 1):
        reporter.on_epoch_end(None, {"epoch": epoch, metric: value})
        assert reporter.stop_reason is None if epoch < 4 else reporter.stop_reason == "pruned at epoch 4"
    assert reported == list(enumerate(best, 1)) and not reporter.interrupted

    late = Reporter(metric, lambda epoch, value: False, interrupted=lambda: True)   # a signal before training
    late.on_epoch_end(None, {"epoch": 1, metric: values[0]})
    assert late.interrupted and late.stop_reason == "interrupted after epoch 1"


# ------------------------------------------------------------------ one study shared by two processes
def test_two_processes_share_one_sqlite_study_and_run_no_trial_twice(tmp_path):
    path = write_space(tmp_path, SPACE)
    db = tmp_path / "shared.db"
    args = [SOFTMAX, "tune", str(CONFIGS / "digits.yaml"), "--space", str(path), *SMALL, "--trials", "6",
            "--workers", "1", "--storage", f"sqlite:///{db}", "--json"]
    # each process in its own folder, as on two machines; the study is in the database only
    folders = [tmp_path / "a", tmp_path / "b"]
    procs = []
    for folder in folders:
        folder.mkdir()
        procs.append(subprocess.Popen(args, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    summaries = [json.loads(out) for out, _ in outputs]
    ran = [{int(d.name.removeprefix("trial-")) for d in (f / "runs" / "tune" / "digits").glob("trial-*")}
           for f in folders]
    assert sum(s["trials"]["this_run"] for s in summaries) == 6 == len(ran[0]) + len(ran[1])
    assert not ran[0] & ran[1]                           # no trial run twice
    import optuna

    study = load_study(None, storage=optuna.storages.RDBStorage(f"sqlite:///{db}"))
    done = [t for t in study.trials if not t.user_attrs.get("surplus")]
    assert sorted(t.number for t in done) == sorted(ran[0] | ran[1])
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in done)
    # each process's trials.csv shows the whole study
    assert len(trials_csv(folders[1] / "runs" / "tune" / "digits")) == 6 or \
        len(trials_csv(folders[0] / "runs" / "tune" / "digits")) == 6


# ------------------------------------------------------------------ Ctrl-C: nothing lost, a rerun continues
def wait_for_training(study_dir: Path, proc: subprocess.Popen, first: int, timeout: float = 120) -> None:
    """Wait until a trial numbered ``first`` or later has finished an epoch (it is training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(int(d.name[6:]) >= first and (d / "metrics.csv").exists() for d in study_dir.glob("trial-*")):
            return
        time.sleep(0.02)
    raise AssertionError(f"no trial numbered {first} or later trained (exit code {proc.poll()})")


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_an_interrupted_sweep_keeps_its_trials_and_a_rerun_continues(tmp_path, how):
    path = write_space(tmp_path, SPACE)
    cmd = [SOFTMAX, "tune", str(CONFIGS / "digits.yaml"), "--space", str(path), "--trials", "5", "--workers", "2",
           "--pruner", "none", *SMALL, "--set", "train.epochs=30"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    study_dir = tmp_path / "runs" / "tune" / "digits"
    wait_for_training(study_dir, proc, 2)                 # the first two trials are done, a third is training
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)              # what a terminal does: every process of the group
    else:
        proc.send_signal(signal.SIGTERM)                # the command alone: it stops its workers
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("softmax: interrupted: ")
    rows = trials_csv(study_dir)
    states = [r["state"] for r in rows]
    assert "complete" in states and "running" not in states
    assert "interrupted" in states
    for row in rows:
        if row["state"] == "interrupted" and row["run_dir"]:
            assert (Path(row["run_dir"]) / "last.npz").exists()      # the engine saved it on the signal
    done = states.count("complete") + states.count("pruned")
    assert f"{done} of 5 trials done" in err
    if how == "kill":
        return

    proc = subprocess.run(cmd + ["--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trials"]["this_run"] == 5 - done and summary["trials"]["counted"] == 5
    rows = trials_csv(study_dir)
    assert sum(r["state"] in ("complete", "pruned") for r in rows) == 5
    assert len({r["run_dir"] for r in rows if r["run_dir"]}) == sum(1 for r in rows if r["run_dir"])


# ------------------------------------------------------------------ the ray backend, on a local instance
def test_the_ray_backend_runs_the_same_sweep_on_a_local_ray_instance(tmp_path):
    proc = tune(tmp_path, "--backend", "ray", "--workers", "2", "--trials", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    study_dir = tmp_path / "runs" / "tune" / "digits"
    assert summary["backend"] == "ray" and summary["trials"]["this_run"] == 3
    assert "local Ray instance of 2 CPUs" in proc.stderr
    rows = trials_csv(study_dir)
    assert len(rows) == 3 and {r["state"] for r in rows} <= {"complete", "pruned"}
    assert (study_dir / "ray").is_dir() and (study_dir / "best.yaml").exists()
    best = summary["best"]
    run = Path(best["run_dir"])
    assert run.parent == study_dir and run.name.startswith("ray-")
    assert best["val_acc"] == max(float(m["val_acc"]) for m in metrics(run))
    again = run_softmax("train", study_dir / "best.yaml", "--threads", "1", "--quiet", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["test_acc"] == best["test_acc"]

    # a rerun continues the study: one more trial for --trials 4
    proc = tune(tmp_path, "--backend", "ray", "--workers", "2", "--trials", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["trials"]["this_run"] == 1 and len(trials_csv(study_dir)) == 4
