"""The ray backend: Ray Tune runs the trials, with Optuna's sampler (``OptunaSearch``) and the
ASHA scheduler, on a local Ray instance or a cluster (``--address auto``, ``ray://HOST:10001``).

Each trial is a Ray Tune function trainable reserving ``cpus_per_trial`` CPUs (1 by default)
and training with one BLAS thread; it reports the best value so far after every epoch (the
same :class:`~.trial.Reporter` as the optuna backend), so that ASHA stops poor trials early,
and once more when it ends, with its outcome. The driver then records every Ray trial in the
study (:func:`record`), so that ``trials.csv``, ``best.yaml`` and the pictures are made as for
the optuna backend, and a rerun continues: the sampler is told the study's earlier trials
(``OptunaSearch.add_evaluated_point``) and only the trials still missing are run.

Ray's usage statistics are off (``RAY_USAGE_STATS_ENABLED=0``); a local instance is started
with ``--workers`` CPUs and stopped at the end. Ray Tune's own experiment files go to
``<study>/ray/``; on a cluster the trials' run directories are on the node that ran each.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import warnings
import zlib
from pathlib import Path
from typing import Callable

from ..errors import UserError
from .study import Sweep, announcement, counted, counts, journal_lock, open_storage, open_study
from .optuna_backend import Signals, trial_line
from .trial import METRICS, Outcome, run_trial

OBJECTIVE = "objective"      # the metric Ray Tune sees: the best value so far of the searched one
LOCAL_OBJECT_STORE = 200 * 2**20   # bytes: a local instance's object store (trials pass little data)


def _trainable(params: dict, sweep: Sweep) -> None:
    """One Ray Tune trial: train with the sampled ``params`` (Optuna's values), reporting each epoch."""
    from ray import tune
    from threadpoolctl import threadpool_limits

    trial_id = tune.get_context().get_trial_id()

    def report(epoch: int, best: float) -> bool:
        tune.report({OBJECTIVE: best, "epoch": epoch})
        return False                  # ASHA stops a trial itself

    values = sweep.space.decode(params)
    with threadpool_limits(limits=1):
        outcome = run_trial(sweep.config, sweep.space, values, f"ray-{trial_id}", sweep.study_dir, sweep.metric,
                            report)
    final = {"final": True, "host": socket.gethostname(), **outcome.attrs()}
    if outcome.value is not None and outcome.state == "complete":
        final[OBJECTIVE] = outcome.value
    tune.report({k: v for k, v in final.items() if v is not None})


def _connect(sweep: Sweep):
    """``ray.init``: join ``sweep.address``, or start a local instance of ``sweep.workers`` CPUs.

    Raises:
        UserError: Ray is not installed, or the address does not answer.
    """
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")     # no tables of trials: softmax prints a line per trial
    try:
        import ray
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401 - checked here, used by run
    except ImportError:
        raise UserError("--backend ray: needs Ray Tune: pip install 'softmax-cli[ray]'") from None
    options = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                   configure_logging=True)
    if sweep.address is None:
        options.update(num_cpus=sweep.workers, object_store_memory=LOCAL_OBJECT_STORE)
    try:
        with _stdout_to_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")            # Ray Client's timeout warning: the error says it
            ray.init(address=sweep.address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--address {sweep.address}: cannot reach a Ray cluster ({detail})") from None
    return ray


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what Ray prints to stdout (file descriptor 1) to stderr: stdout holds the results."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _searcher(sweep: Sweep, study):
    """OptunaSearch with the TPE sampler, told the study's finished trials (warm start)."""
    import optuna
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    seed = zlib.crc32(f"{sweep.config.get('seed', 0)} {sweep.sweep_id}".encode())
    mode = "max" if METRICS[sweep.metric] else "min"
    searcher = OptunaSearch(space=sweep.space.distributions(), metric=OBJECTIVE, mode=mode,
                            sampler=optuna.samplers.TPESampler(seed=seed))
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        if counts(t) and set(t.params) == set(sweep.space.distributions()):
            searcher.add_evaluated_point(t.params, t.value, error=t.state == TrialState.FAIL,
                                         pruned=t.state == TrialState.PRUNED,
                                         intermediate_values=list(t.intermediate_values.values()) or None)
    return searcher


def _scheduler(sweep: Sweep):
    """ASHA (asynchronous successive halving) over epochs, or FIFO with ``--pruner none``.

    Its time is the reported ``epoch``, and its ``max_t`` one more than the epochs: a trial
    that trained them all is never stopped by ASHA before its last report (its outcome,
    which has no ``epoch`` and is ignored by ASHA).
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if sweep.pruner == "none":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="epoch", max_t=sweep.epochs + 1, grace_period=max(1, sweep.epochs // 10),
                         reduction_factor=3)


def run(sweep: Sweep, announce: Callable[[str], None]) -> bool:
    """Run the sweep's missing trials on Ray Tune and record them in the study; returns
    whether it was interrupted (Ctrl-C: Ray Tune stops the running trials, which are
    recorded as interrupted).

    Raises:
        UserError: Ray is missing, the address does not answer (nothing written), or the
            storage cannot be opened.
    """
    ray = _connect(sweep)
    try:
        storage = open_storage(sweep)
        study = open_study(sweep, storage)
        with journal_lock(sweep, study):
            announce(announcement(sweep, counted(study)))
            missing = sweep.trials - counted(study)
            if missing <= 0:
                return False
            return _fit(sweep, study, missing)
    finally:
        with _stdout_to_stderr():
            ray.shutdown()


def _fit(sweep: Sweep, study, n: int) -> bool:
    """Run ``n`` trials on Ray Tune, each recorded in the study as it ends (:class:`_Recorder`).

    SIGINT (Ctrl-C) is Ray Tune's: it stops the running trials and returns; SIGTERM is
    turned into SIGINT so that it does the same. Whether either arrived is seen through a
    wake-up pipe (:class:`~.optuna_backend.Signals`), whoever handled it.
    """
    from ray import tune

    mode = "max" if METRICS[sweep.metric] else "min"
    trainable = tune.with_resources(tune.with_parameters(_trainable, sweep=sweep), {"cpu": sweep.cpus_per_trial})
    timeout = None if sweep.timeout is None else max(1.0, sweep.timeout - (time.time() - sweep.started))
    recorder = _Recorder.make(sweep, study)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(metric=OBJECTIVE, mode=mode, search_alg=_searcher(sweep, study),
                                    scheduler=_scheduler(sweep), num_samples=n, time_budget_s=timeout,
                                    max_concurrent_trials=sweep.workers if sweep.address else None,
                                    reuse_actors=True),     # a worker process per CPU, not per trial
        run_config=tune.RunConfig(name=f"sweep-{sweep.sweep_id[:8]}", storage_path=str(sweep.study_dir / "ray"),
                                  verbose=0, log_to_file=True, callbacks=[recorder]))
    with _stdout_to_stderr(), Signals() as signals:
        signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
        try:
            tuner.fit()
        except KeyboardInterrupt:        # a second Ctrl-C, or one before Ray Tune took SIGINT over
            signals.received.append("SIGINT")
        interrupted = signals.arrived()
    recorder.finish(interrupted)
    return interrupted


def outcome_of(last: dict, steps: dict[int, float], error, interrupted: bool, study_dir: Path) -> Outcome:
    """A Ray trial's :class:`~.trial.Outcome`: its final report when it made one; else failed
    (an error in the trial's process), or stopped by ASHA (pruned) or by an interrupt."""
    if last.get("final"):
        return Outcome(**{k: last.get(k) for k in Outcome.__dataclass_fields__})
    if error is not None:
        text = str(error).strip()
        return Outcome("failed", message=text.splitlines()[-1] if text else type(error).__name__)
    run_dir = study_dir / f"ray-{last.get('trial_id')}"
    epochs = max(steps, default=0)
    return Outcome("interrupted" if interrupted else "pruned", steps[epochs] if steps else None,
                   epochs_run=epochs, seconds=float(last.get("time_total_s") or 0.0),
                   run_dir=str(run_dir) if run_dir.is_dir() else None,
                   message=f"stopped by the interrupt after epoch {epochs}" if interrupted else None)


class _Recorder:
    """A Ray Tune callback (run in the driver) that records each Ray trial in the study as it
    ends, as an Optuna trial (its parameters, the value of its best epoch, its intermediate
    values, its outcome as user attributes), and prints its line on stderr; :meth:`finish`
    records the trials an interrupt stopped. A trial is in the study as soon as it ends,
    however the sweep ends afterwards."""

    @staticmethod
    def make(sweep: Sweep, study):
        from ray.tune import Callback

        class Recorder(_Recorder, Callback):
            pass

        recorder = Recorder()
        recorder.sweep, recorder.study, recorder.steps, recorder.done = sweep, study, {}, set()
        recorder.trials = {}
        return recorder

    def on_trial_start(self, iteration, trials, trial, **info):
        self.trials[trial.trial_id] = trial

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "epoch" in result and OBJECTIVE in result:
            self.steps.setdefault(trial.trial_id, {})[int(result["epoch"])] = float(result[OBJECTIVE])

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, None, False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, RuntimeError(getattr(trial, "error_msg", None) or "the trial's process failed"), False)

    def finish(self, interrupted: bool) -> None:
        """Record the trials that started and did not end (stopped by an interrupt)."""
        for trial in self.trials.values():
            self._record(trial, None, interrupted)

    def _record(self, trial, error, interrupted: bool) -> None:
        import optuna
        from optuna.trial import TrialState

        if trial.trial_id in self.done:
            return
        self.done.add(trial.trial_id)
        sweep, dists = self.sweep, self.sweep.space.distributions()
        params = {k: v for k, v in (trial.config or {}).items() if k in dists}
        last, steps = dict(trial.last_result or {}), self.steps.get(trial.trial_id, {})
        last.setdefault("trial_id", trial.trial_id)
        outcome = outcome_of(last, steps, error, interrupted, sweep.study_dir)
        state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(outcome.state, TrialState.FAIL)
        if state == TrialState.PRUNED and outcome.value is None:
            state = TrialState.FAIL
        attrs = {**outcome.attrs(), "sweep": sweep.sweep_id, "host": last.get("host") or last.get("hostname"),
                 "ray_trial": trial.trial_id}
        self.study.add_trial(optuna.trial.create_trial(
            state=state, value=outcome.value if state != TrialState.FAIL else None, params=params,
            distributions=dists, user_attrs=attrs, intermediate_values=steps or None))
        described = sweep.space.describe(sweep.space.decode(params))
        print(trial_line(f"ray-{trial.trial_id}", outcome, sweep.metric, described), file=sys.stderr, flush=True)
