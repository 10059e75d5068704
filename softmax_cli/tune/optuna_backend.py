"""The optuna backend: ``--workers K`` processes on this machine, each running Optuna's own
``Study.optimize`` on the shared study (TPE sampler, a pruner fed by each epoch).

Every worker is a separate process (spawned, not forked) that opens the storage itself, as
Optuna's distributed optimisation does, and trains with one BLAS thread (threadpoolctl) so
that K workers share K cores without fighting over them. With one worker the command itself
is the worker.

Interrupts: a Ctrl-C reaches every process of the terminal's group. A worker that is
training stops at the next batch boundary (the engine saves ``last.npz``), records its trial
as interrupted (it does not count: a rerun runs another in its place) and ends; the command
forwards SIGTERM to its workers when it alone was signalled (``kill``), waits for them to
record their trials, and exits 130.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import zlib
from typing import Callable

from ..errors import printable
from .study import Sweep, announcement, counted, journal_lock, open_storage, open_study
from .trial import Outcome, run_trial

EXIT_INTERRUPTED = 130


class TrialFailed(Exception):
    """A trial failed by its own fault: Optuna records it as failed, the sweep goes on."""


class SweepInterrupted(Exception):
    """A signal arrived: the trial is recorded, the worker stops."""


class _Surplus(Exception):
    """The study had its trials when this one was asked (another process asked at once)."""


class Signals:
    """SIGINT and SIGTERM in a worker, noted and never raised: an exception raised at an
    arbitrary point could cut a write to the study's storage in half (a journal entry, its
    file lock). Training stops on them by itself (the engine's own handlers, or
    :class:`~.trial.Reporter` after the epoch); between trials the worker stops before
    asking for the next. Every signal, caught by whichever handler, is seen through a wake-up
    pipe (``signal.set_wakeup_fd``). A context manager: the previous handlers and wake-up fd
    come back on leaving."""

    def __init__(self):
        self.received: list[str] = []

    def __enter__(self) -> "Signals":
        self._read_fd, self._write_fd = os.pipe()
        for fd in (self._read_fd, self._write_fd):
            os.set_blocking(fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd)
        self._previous = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)

    def _handler(self, signum, frame) -> None:
        self.received.append(signal.Signals(signum).name)

    def arrived(self) -> bool:
        """Whether a signal arrived since the worker started (whoever handled it)."""
        try:
            if os.read(self._read_fd, 64):
                self.received.append("signal")
        except BlockingIOError:
            pass
        return bool(self.received)


def make_pruner(sweep: Sweep):
    """Optuna's pruner for ``sweep.pruner``: it may stop a trial from epoch ``epochs // 10``
    on (at least 1), once 5 trials have reported (MedianPruner's default)."""
    import optuna

    warmup = max(1, sweep.epochs // 10)
    if sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    if sweep.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup, reduction_factor=3)
    return optuna.pruners.NopPruner()


def suggest(trial, param):
    """The value Optuna's ``trial`` samples for ``param`` (a :class:`~.space.Param`)."""
    d = param.dist
    if d.type == "float":
        return trial.suggest_float(param.key, float(d.low), float(d.high), log=d.log,
                                   step=None if d.step is None else float(d.step))
    if d.type == "int":
        return trial.suggest_int(param.key, d.low, d.high, log=d.log, step=d.step or 1)
    return trial.suggest_categorical(param.key, param.encoded_choices())


def trial_line(number: int | str, outcome: Outcome, metric: str, described: str) -> str:
    """The stderr line of a finished trial."""
    value = "" if outcome.value is None else f"{metric} {outcome.value:.4f}, "
    if outcome.state == "complete":
        head = f"complete: {value}best epoch {outcome.best_epoch} of {outcome.epochs_run}"
    elif outcome.state == "pruned":
        head = f"pruned at epoch {outcome.epochs_run}: {value}".rstrip(", ")
    else:
        head = f"{outcome.state}: {outcome.message}"
    return printable(f"trial {number}: {head} ({outcome.seconds:.1f} s)  {described}")


def work(sweep: Sweep, index: int) -> int:
    """One worker: run trials of the study until it has ``sweep.trials`` that count, the
    timeout passes, or a signal arrives. Returns the exit code: 0, or 130 when interrupted.

    Raises:
        UserError: the storage cannot be opened.
    """
    with Signals() as signals:
        return _optimize(sweep, index, signals)


def _optimize(sweep: Sweep, index: int, signals: Signals) -> int:
    """:func:`work` with its signals handled: Optuna's ``Study.optimize`` on the shared study."""
    import optuna
    from threadpoolctl import threadpool_limits

    storage = open_storage(sweep, create=False)
    seed = zlib.crc32(f"{sweep.config.get('seed', 0)} {sweep.sweep_id} {index}".encode())
    study = open_study(sweep, storage, optuna.samplers.TPESampler(seed=seed), make_pruner(sweep))

    def after_trial(study, trial) -> None:
        if signals.arrived() or counted(study) >= sweep.trials:
            study.stop()

    timeout = None if sweep.timeout is None else max(0.0, sweep.timeout - (time.time() - sweep.started))
    try:
        with threadpool_limits(limits=1):
            if counted(study) < sweep.trials and timeout != 0.0:
                study.optimize(_objective(sweep, index, study, signals), timeout=timeout, callbacks=[after_trial],
                               catch=(TrialFailed, _Surplus))
    except (SweepInterrupted, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_INTERRUPTED if signals.arrived() else 0


def _objective(sweep: Sweep, index: int, study, signals: Signals) -> Callable:
    """Optuna's objective: sample, train (:func:`~.trial.run_trial`), record; its value is the
    metric of the trial's best epoch; a pruned, failed or interrupted trial raises."""
    import optuna

    def objective(trial) -> float:
        if signals.arrived():        # between the last trial's end and this one's start
            raise SweepInterrupted("a signal arrived before the trial started")
        if counted(study, before=trial.number) >= sweep.trials:
            trial.set_user_attr("surplus", True)
            study.stop()
            raise _Surplus
        values = sweep.space.decode({p.key: suggest(trial, p) for p in sweep.space.params})
        for key, value in {"sweep": sweep.sweep_id, "host": socket.gethostname(), "worker": index}.items():
            trial.set_user_attr(key, value)

        def report(epoch: int, best: float) -> bool:
            trial.report(best, epoch)
            return trial.should_prune()

        outcome = run_trial(sweep.config, sweep.space, values, f"trial-{trial.number:04d}", sweep.study_dir,
                            sweep.metric, report, signals.arrived)
        for key, value in outcome.attrs().items():
            trial.set_user_attr(key, value)
        print(trial_line(trial.number, outcome, sweep.metric, sweep.space.describe(values)), file=sys.stderr,
              flush=True)
        if outcome.state == "complete":
            return outcome.value
        if outcome.state == "pruned":
            raise optuna.TrialPruned(outcome.message)
        if outcome.state == "interrupted":
            raise SweepInterrupted(outcome.message)
        raise TrialFailed(outcome.message)

    return objective


def _worker_main(sweep: Sweep, index: int) -> None:
    """A worker process's entry point: its exit code is :func:`work`'s (1: it failed)."""
    from ..errors import UserError

    try:
        code = work(sweep, index)
    except UserError as exc:
        print(printable(f"softmax: error: worker {index}: {exc}"), file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    sys.exit(code)


def run(sweep: Sweep, announce: Callable[[str], None]) -> bool:
    """Run the sweep's workers (``sweep.workers`` processes; this one with one worker) and
    return whether it was interrupted; ``announce`` gets the starting line once the study
    is open.

    Raises:
        RuntimeError: a worker process died without finishing (its exit code named).
        UserError: the storage cannot be opened (one worker: at once).
    """
    storage = open_storage(sweep)
    study = open_study(sweep, storage)
    with journal_lock(sweep, study):
        announce(announcement(sweep, counted(study)))
        if sweep.workers == 1:
            return work(sweep, 0) == EXIT_INTERRUPTED
        return _run_processes(sweep)


def _run_processes(sweep: Sweep) -> bool:
    """Start ``sweep.workers`` spawned processes and wait for them; on SIGINT or SIGTERM,
    forward SIGTERM to each (a graceful stop there too) and wait for them to record their trials."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(sweep, i), name=f"softmax-tune-{i}")
             for i in range(sweep.workers)]
    interrupted = False
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        interrupted = True
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for p in procs:
                if p.pid is not None and p.is_alive():
                    os.kill(p.pid, signal.SIGTERM)
            for p in procs:
                if p.pid is not None:
                    p.join()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    codes = [p.exitcode for p in procs]
    if any(c == EXIT_INTERRUPTED or (c is not None and c < 0) for c in codes):
        interrupted = True
    failed = [(i, c) for i, c in enumerate(codes) if c not in (0, EXIT_INTERRUPTED) and not interrupted]
    if failed:
        raise RuntimeError(f"worker {failed[0][0]} ended with exit code {failed[0][1]}")
    return interrupted
