"""The study: what a sweep searches, where its trials are stored, and which trials count.

A sweep's trials live in an Optuna study in storage, never only in memory: by default a
journal file in the study's directory (Optuna's ``JournalStorage``), so that rerunning the
same command continues the study; with ``--storage`` a database (``sqlite:///``,
``postgresql://``, ``mysql://``) that several processes or machines share (Optuna's way past
one machine: https://optuna.readthedocs.io/en/stable/tutorial/10_key_features/004_distributed.html).

``--trials N`` is the study's size, not this command's: the trials that count
(:func:`counts`) are those complete, pruned, failed by their own fault, or running; a
trial stopped by an interrupt (or left running by a process that died) does not, so a
rerun runs another in its place.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import UserError, quote
from .space import Space
from .trial import METRICS

JOURNAL = "journal.log"      # the default storage, in the study directory
LOCK = ".lock"               # held (shared) by every process working on a journal study
HEARTBEAT_S, GRACE_S = 30, 120   # a database study: a trial without a heartbeat for GRACE_S has died
CREATE_ATTEMPTS = 5          # opening a new database, which processes started together all create
PRUNERS = ("median", "halving", "none")
STUDY_ATTR = "softmax"       # the study's user attribute recording its config, space and metric


@dataclass
class Sweep:
    """One ``softmax tune`` command: what it searches and how (picklable: workers get a copy).

    Attributes:
        config: the study's config as a dict (the resolved CONFIG with ``--set`` applied).
        space: the search space.
        metric: ``val_acc`` (maximised) or ``val_loss`` (minimised).
        study: the study's name; ``study_dir``: ``<output.dir>/tune/<study>`` (absolute).
        storage: a database URL, or None for the journal file in ``study_dir``.
        trials: the study's size (trials that count); ``timeout``: seconds after which no
            trial starts (None: no limit).
        workers: processes on this machine (optuna backend).
        pruner: ``median`` (Optuna's MedianPruner), ``halving`` (SuccessiveHalvingPruner,
            asynchronous successive halving) or ``none``.
        backend: ``optuna`` or ``ray``; ``address``: a Ray cluster's (None: start one).
        cpus_per_trial: CPUs Ray reserves per trial.
        sweep_id: marks the trials this command runs; ``started``: when it started (``time.time()``).
    """

    config: dict
    space: Space
    metric: str
    study: str
    study_dir: Path
    storage: str | None = None
    trials: int = 20
    timeout: float | None = None
    workers: int = 1
    pruner: str = "median"
    backend: str = "optuna"
    address: str | None = None
    cpus_per_trial: float = 1.0
    sweep_id: str = ""
    started: float = 0.0

    @property
    def direction(self) -> str:
        return "maximize" if METRICS[self.metric] else "minimize"

    @property
    def epochs(self) -> int:
        return int(self.config["train"]["epochs"])

    def record(self) -> dict:
        """What the study records of its sweep (:data:`STUDY_ATTR`), to know a rerun's is the same."""
        return {"config": self.config, "space": self.space.to_dict(), "metric": self.metric}


def shown_path(path: Path | str) -> str:
    """``path`` as messages and ``--json`` show it: relative to the working directory when it
    lies inside it."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def storage_label(sweep: Sweep) -> str:
    """The storage as messages and ``--json`` show it (a database URL without its password)."""
    if sweep.storage is None:
        return shown_path(sweep.study_dir / JOURNAL)
    from sqlalchemy.engine import make_url

    return make_url(sweep.storage).render_as_string(hide_password=True)


def announcement(sweep: Sweep, done: int) -> str:
    """The line a sweep starts with: what it searches, where, and how many trials are done."""
    if sweep.backend == "ray":
        where = f"Ray Tune on {sweep.address or f'a local Ray instance of {sweep.workers} CPUs'}"
    else:
        where = f"optuna on {sweep.workers} worker process{'es' if sweep.workers > 1 else ''}"
    return (f"tuning {sweep.study}: {len(sweep.space.params)} parameters by {sweep.metric}, {where}; "
            f"{done} of {sweep.trials} trials done; study in {storage_label(sweep)}")


def check_storage_url(url: str) -> None:
    """Refuse a ``--storage`` that is no database URL Optuna's RDBStorage takes.

    Raises:
        UserError: ``--storage URL: ...``.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None
    if parsed is None or parsed.get_backend_name() not in ("sqlite", "postgresql", "mysql"):
        raise UserError(f"--storage {quote(url)[1:-1]}: expected a database URL: sqlite:///FILE, "
                        f"postgresql://USER:PASSWORD@HOST/DATABASE or mysql://USER:PASSWORD@HOST/DATABASE")


def open_storage(sweep: Sweep, create: bool = True):
    """Optuna's storage of the sweep: the database, or the journal file of the study directory.

    Args:
        create: make the study directory for the journal file (else it must exist).

    Raises:
        UserError: the database cannot be reached or opened (its message, without a
            password), or its driver is not installed.
    """
    import optuna

    if sweep.storage is None:
        from optuna.storages.journal import JournalFileBackend

        if create:
            try:
                sweep.study_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{exc.filename or sweep.study_dir}: cannot create the study directory "
                                f"({exc.strerror or exc})") from None
        return optuna.storages.JournalStorage(JournalFileBackend(str(sweep.study_dir / JOURNAL)))
    from sqlalchemy.exc import IntegrityError, OperationalError

    try:
        for attempt in range(CREATE_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)     # heartbeats
                    return optuna.storages.RDBStorage(sweep.storage, heartbeat_interval=HEARTBEAT_S,
                                                      grace_period=GRACE_S)
            except (IntegrityError, OperationalError) as exc:
                # another process created the tables at the same moment: not an unreachable database
                racing = isinstance(exc, IntegrityError) or "already exists" in str(exc)
                if not racing or attempt == CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
    except ModuleNotFoundError as exc:
        raise UserError(f"--storage {storage_label(sweep)}: needs the database driver {exc.name} "
                        f"(pip install it)") from None
    except Exception as exc:           # sqlalchemy's errors of an unreachable or refused database
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--storage {storage_label(sweep)}: cannot open the study storage ({detail})") from None


def open_study(sweep: Sweep, storage, sampler=None, pruner=None):
    """Create the study, or load it when it exists, checking it is this sweep's.

    Raises:
        UserError: the study exists with another config, space or metric (a rerun must be
            the same search to continue it): the first difference is named.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)     # softmax prints its own line per trial
    study = optuna.create_study(storage=storage, study_name=sweep.study, direction=sweep.direction,
                                load_if_exists=True, sampler=sampler, pruner=pruner)
    recorded = study.user_attrs.get(STUDY_ATTR)
    mine = json.loads(json.dumps(sweep.record()))
    if recorded is None:
        study.set_user_attr(STUDY_ATTR, mine)
    elif recorded != mine:
        where = _first_difference(recorded, mine)
        raise UserError(f"--study {sweep.study}: this study was started with another search ({where}); "
                        f"rerun it with the same CONFIG, --set, --space and --metric, or give another --study")
    return study


def _first_difference(old: Any, new: Any, where: str = "") -> str:
    """``KEY: OLD, now NEW`` for the first place two JSON documents differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
    return f"{where or 'value'}: {quote(old)}, now {quote(new)}"


def counts(trial) -> bool:
    """Whether ``trial`` (an Optuna FrozenTrial) counts toward the study's ``--trials``:
    complete, pruned, running, or failed by its own fault (its record says ``failed``);
    not one stopped by an interrupt, left by a process that died, or asked beyond the
    study's size by a process racing another (``surplus``)."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return trial.user_attrs.get("state") == "failed"
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def shown(trial) -> bool:
    """Whether ``trial`` is one of the study's trials in its outputs (a surplus one is not)."""
    return not trial.user_attrs.get("surplus")


def counted(study, before: int | None = None) -> int:
    """How many trials of ``study`` count (:func:`counts`), of those numbered below ``before``."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if counts(t) and (before is None or t.number < before))


@contextlib.contextmanager
def journal_lock(sweep: Sweep, study) -> Iterator[None]:
    """While a journal study is worked on: hold a shared lock on its directory's ``.lock``.

    A process that gets it exclusively first knows no other one works on the study, so its
    trials still marked running were left by a process that died (``kill -9``, a power cut):
    they are marked failed (and do not count), then the lock is shared. A database study
    needs none of this: Optuna's heartbeats find the trials of dead processes there.
    """
    if sweep.storage is not None:
        yield
        return
    from optuna.trial import TrialState

    with open(sweep.study_dir / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                study.tell(t.number, state=TrialState.FAIL)
        except BlockingIOError:
            pass                        # another process works on the study: its trials are alive
        fcntl.flock(f, fcntl.LOCK_SH)
        yield
