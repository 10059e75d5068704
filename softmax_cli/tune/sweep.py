"""A sweep from start to end: the command's inputs checked, the backend run, the outputs written.

:func:`prepare` reads and checks everything a sweep needs (CONFIG, ``--set``, SPACE, the
study's name, ``--storage``'s form) and writes nothing; :func:`run_sweep` runs the backend
(which first checks what it reaches: the database, the Ray cluster) and writes the study's
outputs (:mod:`.outputs`).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Callable

from ..errors import UserError, quote
from .outputs import Summary, write_outputs
from .study import PRUNERS, Sweep, check_storage_url, open_storage
from .trial import METRICS

BACKENDS = ("optuna", "ray")
MAX_TRIALS = 100_000


def default_workers() -> int:
    """The cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def prepare(config: str | Path, space: str | Path, overrides: list[str] = (), *, trials: int = 20,
            timeout: float | None = None, workers: int | None = None, metric: str | None = None,
            study: str | None = None, storage: str | None = None, backend: str = "optuna",
            address: str | None = None, pruner: str = "median") -> Sweep:
    """Check a sweep's inputs and return the :class:`~.study.Sweep`; nothing is written.

    Args:
        config, overrides: the config file and ``--set`` items.
        space: the search space file (:func:`~.space.load_space`).
        metric: ``val_acc`` or ``val_loss``; default: the config's ``train.monitor``.
        study: the study's name; default: the config's ``name``.
        workers: default :func:`default_workers` (optuna backend).

    Raises:
        UserError: a bad config or space file; a metric, backend, pruner, trial count or
            study name that is not allowed; a storage that is no database URL; a config
            without a validation split (the metric is measured on it).
    """
    from ..config import load_config
    from .space import load_space

    if backend not in BACKENDS:
        raise UserError(f"--backend: expected one of {', '.join(BACKENDS)}, got {quote(backend)}")
    if pruner not in PRUNERS:
        raise UserError(f"--pruner: expected one of {', '.join(PRUNERS)}, got {quote(pruner)}")
    if metric is not None and metric not in METRICS:
        raise UserError(f"--metric: expected one of {', '.join(METRICS)}, got {quote(metric)}")
    if not 1 <= trials <= MAX_TRIALS:
        raise UserError(f"--trials: expected 1 to {MAX_TRIALS}, got {trials}")
    if address is not None and backend != "ray":
        raise UserError("--address: joins a Ray cluster; give it with --backend ray")
    cfg = load_config(config, list(overrides))
    if cfg.data.val_fraction == 0:
        raise UserError(f"{config}: data.val_fraction: a search measures each trial on the validation split; "
                        f"expected a value > 0, got 0")
    sp = load_space(space, cfg)
    name = cfg.name if study is None else study
    if not name or "/" in name or name in (".", "..") or len(name.encode()) > 200 or not name.isprintable():
        raise UserError(f"--study: expected a plain directory name of at most 200 bytes, got {quote(name)}")
    if storage is not None:
        check_storage_url(storage)
    study_dir = Path(cfg.output.dir).expanduser().resolve() / "tune" / name
    return Sweep(config=cfg.to_dict(), space=sp, metric=metric or cfg.train.monitor, study=name,
                 study_dir=study_dir, storage=storage, trials=trials, timeout=timeout,
                 workers=workers or default_workers(), pruner=pruner, backend=backend, address=address,
                 sweep_id=uuid.uuid4().hex, started=time.time())


def run_sweep(sweep: Sweep, pictures: bool = True, announce: Callable[[str], None] | None = None) -> Summary:
    """Run the sweep on its backend, then write the study's outputs and return its summary.

    ``announce`` gets a line saying what runs where, once the storage (and the Ray cluster)
    answered and the study is known to be this sweep's: before it, nothing was written.

    An interrupt (SIGINT, SIGTERM) stops the sweep as the backend says (the running trials
    are recorded as interrupted); the outputs are written all the same, and
    ``Summary.interrupted`` is True.

    Raises:
        UserError: the storage or the Ray cluster cannot be reached, the study exists with
            another search, the study directory cannot be made; nothing is written then.
        OSError: an output file cannot be written.
    """
    if sweep.backend == "ray":
        from . import ray_backend

        interrupted = ray_backend.run(sweep, announce or (lambda line: None))
    else:
        from . import optuna_backend

        interrupted = optuna_backend.run(sweep, announce or (lambda line: None))
    import optuna

    study = optuna.load_study(study_name=sweep.study, storage=open_storage(sweep, create=False))
    summary = write_outputs(study, sweep, pictures)
    summary.interrupted = interrupted
    return summary

