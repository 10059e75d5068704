"""One trial: an ordinary training of the config with the sampled values set, reporting each epoch.

A trial is :func:`softmax_cli.engine.train` on the trial's config (the study's config with
the sampled values, ``name`` the trial's, ``output.dir`` the study's directory and
``train.monitor`` the searched metric): the same engine, checkpoints and run directory as
``softmax train``. It talks to the search only through a :class:`~softmax_cli.engine.Callback`
(:class:`Reporter`): after each epoch it hands the best value of the metric so far to the
backend (Optuna's pruner, Ray Tune's scheduler), and asks the loop to stop when told to.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from ..engine import Callback
from ..errors import UserError
from .space import Space

#: the metrics a search can optimise, and whether larger is better
METRICS = {"val_acc": True, "val_loss": False}


@dataclass
class Outcome:
    """How a trial ended.

    Attributes:
        state: ``complete``; ``pruned`` (stopped by the pruner or scheduler); ``failed`` (its
            config does not fit together, its loss became NaN, ...: ``message`` says what);
            ``interrupted`` (Ctrl-C, SIGTERM: to be run again when the sweep is rerun).
        value: the searched metric of its best epoch (None before a first epoch).
        val_loss: the validation loss of its best epoch (of equal accuracies, the lower
            loss is the better trial, as it is the better epoch: :class:`~softmax_cli.engine.Monitor`).
        best_epoch, epochs_run: of its training.
        seconds: wall time of the trial (s).
        test_acc: its best weights' accuracy on the test split (None when not tested).
        run_dir: its run directory (None when it failed before making one).
        message: why it failed or was interrupted.
    """

    state: Literal["complete", "pruned", "failed", "interrupted"]
    value: float | None = None
    val_loss: float | None = None
    best_epoch: int = 0
    epochs_run: int = 0
    seconds: float = 0.0
    test_acc: float | None = None
    run_dir: str | None = None
    message: str | None = None

    def attrs(self) -> dict:
        """The outcome as a trial's user attributes in a study (JSON: a NaN is None)."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(self).items()}


class Reporter(Callback):
    """After each epoch: ``report(epoch, best)`` with the best value of ``metric`` so far; a
    True answer stops the run (the pruner's decision), and so does ``interrupted()`` turning
    True (a signal the engine did not see: it came before training began); remembers the
    run directory.

    The best value so far, not the epoch's own, is what the trial's final value will be (the
    metric of its best epoch), so a pruner compares like with like at every epoch.
    """

    def __init__(self, metric: str, report: Callable[[int, float], bool],
                 interrupted: Callable[[], bool] = lambda: False):
        self.metric, self.report, self.maximize = metric, report, METRICS[metric]
        self.is_interrupted = interrupted
        self.best: float | None = None
        self.epoch = 0
        self.interrupted = False
        self.run_dir: Path | None = None

    def on_epoch_end(self, state, metrics: dict) -> None:
        value, self.epoch = metrics[self.metric], metrics["epoch"]
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best = value
        if self.is_interrupted():
            self.interrupted = True
            self.request_stop(f"interrupted after epoch {metrics['epoch']}")
        elif self.report(metrics["epoch"], self.best):
            self.request_stop(f"pruned at epoch {metrics['epoch']}")

    def on_train_end(self, state, result) -> None:
        self.run_dir = result.run_dir


def trial_config(base: dict, space: Space, values: dict[str, Any], name: str, output_dir: str | Path, metric: str):
    """The :class:`~softmax_cli.config.Config` of a trial: ``base`` (a config as a dict) with
    the config ``values`` of the sampled parameters, ``name``, ``output.dir`` and ``train.monitor``.

    Raises:
        UserError: the values do not fit together (the config's message).
    """
    from ..config import config_from_dict

    raw = space.apply(base, values)
    raw.update(name=name, output={**raw.get("output", {}), "dir": str(output_dir)})
    raw["train"] = {**raw["train"], "monitor": metric}
    return config_from_dict(raw, origin="the sampled config")


def run_trial(base: dict, space: Space, values: dict[str, Any], name: str, output_dir: str | Path, metric: str,
              report: Callable[[int, float], bool], interrupted: Callable[[], bool] = lambda: False) -> Outcome:
    """Train one trial (see :func:`trial_config`) and say how it ended; never raises for a
    failure of the trial itself (the sweep goes on).

    Args:
        values: ``{config key: value}`` sampled for this trial.
        report: called after each epoch with ``(epoch, best value so far)``; True stops it.
        interrupted: whether a signal arrived that the engine may not have seen (checked
            after each epoch; True stops the trial as interrupted).

    Returns:
        The :class:`Outcome`: complete, pruned, failed (with the message) or interrupted
        (SIGINT or SIGTERM while training: ``last.npz`` was saved first).

    Raises:
        KeyboardInterrupt: a second Ctrl-C (the engine stops at once).
    """
    from ..engine import TrainingInterrupted, train

    started = time.perf_counter()
    reporter = Reporter(metric, report, interrupted)
    outcome = Outcome("failed")
    try:
        cfg = trial_config(base, space, values, name, output_dir, metric)
        result = train(cfg, callbacks=[reporter])
        best = result.best.get(metric)
        state = "complete"
        if result.outcome == "stopped":
            state = "interrupted" if reporter.interrupted else "pruned"
        outcome = Outcome(state, best, result.best.get("val_loss"), result.best_epoch, result.epochs_run,
                          test_acc=result.test_acc, run_dir=str(result.run_dir),
                          message=result.stop_reason if state == "interrupted" else None)
    except TrainingInterrupted as exc:
        outcome = Outcome("interrupted", reporter.best, epochs_run=reporter.epoch,
                          message=str(exc).split("; continue with")[0])
    except (UserError, FloatingPointError, MemoryError, OSError) as exc:
        outcome.message = str(exc) or type(exc).__name__
    except Exception as exc:     # noqa: BLE001 - a bug shows in the trial's record, the sweep goes on
        outcome.message = f"{type(exc).__name__}: {exc}"
    outcome.seconds = time.perf_counter() - started
    if outcome.state == "failed":
        outcome.value, outcome.epochs_run = reporter.best, reporter.epoch
    if outcome.run_dir is None and reporter.run_dir is not None:
        outcome.run_dir = str(reporter.run_dir)
    return outcome
