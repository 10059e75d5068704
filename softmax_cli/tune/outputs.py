"""What a sweep leaves in ``runs/tune/<study>/`` besides the trials' run directories, all
made from the study in storage (so the same for both backends, and complete after a rerun):

- ``trials.csv``: a row per trial (through the project's spreadsheet-safe CSV writer);
- ``best.yaml``: the config of the best trial, which ``softmax train`` trains again;
- pictures from ``optuna.visualization.matplotlib``: ``history.png`` (the metric of each
  trial and the best so far), ``importances.png`` (fANOVA importance of each parameter)
  and ``slice.png`` (the metric against each parameter).

Every file is written atomically (:func:`~softmax_cli.checkpoint.atomic_write`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..checkpoint import atomic_write
from ..csvout import csv_bytes, dict_rows_text
from .study import Sweep, counts, shown, shown_path as _shown, storage_label
from .trial import trial_config

PICTURES = ("history.png", "importances.png", "slice.png")


def state_of(trial) -> str:
    """A trial's state as ``trials.csv`` gives it: complete, pruned, failed, interrupted
    (also a trial whose process died), running or waiting."""
    name = trial.state.name.lower()
    if name == "fail":
        return trial.user_attrs.get("state") if trial.user_attrs.get("state") == "failed" else "interrupted"
    return name


def trial_rows(study, sweep: Sweep) -> list[dict]:
    """One ``trials.csv`` row per trial of the study (surplus asks left out), in trial order:
    its number, state, each parameter's config value, the metric of its best epoch, its best
    epoch, epochs run, seconds, test accuracy, run directory and message."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if not shown(t):
            continue
        a = t.user_attrs
        seconds = a.get("seconds")
        if seconds is None and t.datetime_start is not None and t.datetime_complete is not None:
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        row = {"trial": t.number, "state": state_of(t)}
        row.update({p.key: t.params.get(p.key) for p in sweep.space.params})
        value = t.value if t.value is not None else a.get("value")
        row.update({sweep.metric: value, "best_epoch": a.get("best_epoch"), "epochs": a.get("epochs_run"),
                    "seconds": None if seconds is None else round(seconds, 2), "test_acc": a.get("test_acc"),
                    "run_dir": a.get("run_dir"), "message": a.get("message")})
        rows.append(row)
    return rows


def columns(sweep: Sweep) -> list[str]:
    return ["trial", "state", *(p.key for p in sweep.space.params), sweep.metric, "best_epoch", "epochs",
            "seconds", "test_acc", "run_dir", "message"]


def best_trial(study):
    """The complete trial with the best value, or None. Of equal values (frequent for an
    accuracy on a small validation split), the lower validation loss wins, as between two
    epochs of a run (:class:`~softmax_cli.engine.Monitor`); then the earlier trial."""
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not complete:
        return None
    sign = 1 if study.direction.name == "MAXIMIZE" else -1

    def loss(t) -> float:
        value = t.user_attrs.get("val_loss")
        return float("inf") if value is None else value

    return max(complete, key=lambda t: (sign * t.value, -loss(t), -t.number))


def best_config_text(sweep: Sweep, trial) -> str:
    """``best.yaml``: the study's config with the best trial's values, named ``<study>-best``,
    its ``train.monitor`` the searched metric, written to the config's own ``output.dir``."""
    from ..config import dump_yaml

    values = sweep.space.decode(trial.params)
    output_dir = sweep.config.get("output", {}).get("dir", "runs")
    cfg = trial_config(sweep.config, sweep.space, values, f"{sweep.study}-best", output_dir, sweep.metric)
    head = (f"# softmax tune: the best trial of study {sweep.study}: trial {trial.number}, {sweep.metric} "
            f"{trial.value:.4f}.\n# `softmax train best.yaml --threads 1` trains it again: the same split, "
            f"the same weights (the trial trained with one BLAS thread).\n")
    return head + dump_yaml(cfg.to_dict())      # the study's name is printable (checked by prepare)


def draw_pictures(study, study_dir: Path, metric: str) -> tuple[list[Path], list[str]]:
    """Draw :data:`PICTURES` with ``optuna.visualization.matplotlib`` (Agg backend).

    Returns:
        The pictures written, and a note for each that could not be drawn (too few
        complete trials, a single parameter value, ...); the previous file is then kept.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.visualization import matplotlib as ovm

    draws: dict[str, Callable[[], Any]] = {
        "history.png": lambda: ovm.plot_optimization_history(study, target_name=metric),
        "importances.png": lambda: ovm.plot_param_importances(study, target_name=metric),
        "slice.png": lambda: ovm.plot_slice(study, target_name=metric),
    }
    written, notes = [], []
    for name, draw in draws.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")          # ExperimentalWarning, empty plots
                axes = draw()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            notes.append(f"{name}: not drawn ({exc})")
            continue
        fig = np.atleast_1d(axes).ravel()[0].figure
        try:
            atomic_write(study_dir / name, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
            written.append(study_dir / name)
        finally:
            plt.close(fig)
    return written, notes


@dataclass
class Summary:
    """What ``softmax tune`` prints at the end (``--json``: :meth:`as_json`)."""

    sweep: Sweep
    counts: dict
    best: dict | None
    files: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    first_error: tuple[int, str] | None = None
    interrupted: bool = False

    def as_json(self) -> dict:
        s = self.sweep
        return {"study": s.study, "study_dir": _shown(s.study_dir), "storage": storage_label(s),
                "backend": s.backend, "metric": s.metric, "direction": s.direction, "trials": self.counts,
                "best": self.best, **{k: (None if v is None else _shown(v) if isinstance(v, Path)
                                          else [_shown(p) for p in v]) for k, v in self.files.items()},
                "interrupted": self.interrupted}

    def text(self) -> str:
        c, s = self.counts, self.sweep
        lines = [("study", f"{s.study}: {c['counted']} of {s.trials} trials ({c['complete']} complete, "
                           f"{c['pruned']} pruned, {c['failed']} failed); {c['this_run']} run now")]
        if self.best is None:
            lines.append(("best trial", "none yet (no trial is complete)"))
        else:
            b = self.best
            lines += [("best trial", f"{b['trial']}: {s.metric} {b[s.metric]:.4f} (best epoch {b['best_epoch']} "
                                     f"of {b['epochs_run']})"),
                      ("test accuracy", "-" if b["test_acc"] is None else f"{b['test_acc']:.4f}"),
                      ("parameters", s.space.describe(b["params"])),
                      ("best config", f"{_shown(self.files['best_config'])} (softmax train "
                                      f"{_shown(self.files['best_config'])} trains it again)"),
                      ("run directory", b["run_dir"] and _shown(Path(b["run_dir"])))]
        lines.append(("trials", _shown(self.files["trials_csv"])))
        if self.files.get("pictures"):
            lines.append(("pictures", ", ".join(_shown(p) for p in self.files["pictures"])))
        return "\n".join(f"{k:<15} {v}" for k, v in lines)


def write_outputs(study, sweep: Sweep, pictures: bool = True) -> Summary:
    """Write ``trials.csv``, ``best.yaml`` (when a trial is complete) and the pictures into
    the study directory, and return the :class:`Summary` of the study.

    Raises:
        OSError: a file cannot be written (the previous one is intact).
    """
    sweep.study_dir.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study, sweep)
    files: dict = {"trials_csv": sweep.study_dir / "trials.csv", "best_config": None, "pictures": []}
    atomic_write(files["trials_csv"], lambda f: f.write(csv_bytes(dict_rows_text(columns(sweep), rows))))
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    mine = [t for t in trials.values() if t.user_attrs.get("sweep") == sweep.sweep_id and shown(t)]
    counted_states = [r["state"] for r in rows if counts(trials[r["trial"]])]
    counts_ = {"target": sweep.trials, "counted": len(counted_states),
               **{k: sum(1 for r in rows if r["state"] == k) for k in
                  ("complete", "pruned", "failed", "interrupted", "running")},
               "this_run": len(mine)}
    best, summary_best = best_trial(study), None
    if best is not None:
        files["best_config"] = sweep.study_dir / "best.yaml"
        text = best_config_text(sweep, best)
        atomic_write(files["best_config"], lambda f: f.write(text.encode()))
        a = best.user_attrs
        summary_best = {"trial": best.number, "params": sweep.space.decode(best.params), sweep.metric: best.value,
                        "best_epoch": a.get("best_epoch"), "epochs_run": a.get("epochs_run"),
                        "test_acc": a.get("test_acc"), "run_dir": a.get("run_dir")}
    notes = []
    if pictures and any(r["state"] == "complete" for r in rows):
        files["pictures"], notes = draw_pictures(study, sweep.study_dir, sweep.metric)
    failed = sorted((t.number, t.user_attrs.get("message") or "failed") for t in mine)
    first_error = failed[0] if mine and all(state_of(t) == "failed" for t in mine) else None
    return Summary(sweep, counts_, summary_best, files, notes, first_error)

