"""The training engine: the loop, its state, the monitor, callbacks and the run directory.

- :mod:`.step`: one training step (forward, loss, backward, step) and an epoch of them;
- :mod:`.loop`: :func:`train`, the loop over epochs, and :class:`Trainer`, its set-up;
- :mod:`.state`: :class:`TrainState`, what a run carries from epoch to epoch and saves;
- :mod:`.monitor`: :class:`Monitor`, the best epoch and the epochs since (best checkpoint,
  early stopping, plateau schedule);
- :mod:`.callbacks`: :class:`Callback` and the run's own (progress bar, log, ``metrics.csv``,
  checkpoints, ``curves.png``);
- :mod:`.rundir`: the run directory and the metadata its checkpoints share.

Names are imported on first use (PEP 562), so that reading a checkpoint's training state
(``softmax inspect``) does not load the loop's compiled kernels.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "train": "loop", "Trainer": "loop", "TrainResult": "loop", "TrainingInterrupted": "loop",
    "TrainState": "state", "EpochMetrics": "state", "METRIC_COLUMNS": "state", "load_state": "state",
    "run_finished": "state",
    "Monitor": "monitor",
    "Callback": "callbacks", "CallbackList": "callbacks", "CheckpointWriter": "callbacks",
    "CurvesWriter": "callbacks", "EpochLog": "callbacks", "MetricsWriter": "callbacks",
    "ProgressBar": "callbacks",
    "RunDir": "rundir", "make_run_dir": "rundir", "checkpoint_metadata": "rundir",
    "StepSettings": "step", "compact_pixels": "step", "train_epoch": "step", "train_step": "step",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
