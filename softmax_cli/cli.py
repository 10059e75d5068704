"""The ``softmax`` command line: parse, call, print.

Results go to stdout, progress and messages to stderr. Exit codes: 0 ok, 1 failure while
running, 2 bad usage or bad input (one line naming the file and the problem), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import UserError, printable

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and run MLP classifiers for MNIST-style images.")

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _err(message: str) -> None:
    typer.echo(printable(message), err=True)      # one line, whatever a name in it holds


def _json(obj) -> str:
    """What ``--json`` prints: strict JSON, a NaN or infinity as null with a note."""
    from .jsonout import dumps

    return dumps(obj)


_SIGNALS = [s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)]
_received: list[str] = []


def _interrupt(signum, frame) -> None:
    """SIGINT, SIGTERM, SIGHUP: stop as Ctrl-C does (KeyboardInterrupt), remembering which."""
    _received.append(signal.Signals(signum).name)
    raise KeyboardInterrupt


def _install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP interrupt like SIGINT in every command and phase (loading,
    evaluating, predicting, ...): exit 130 with one line, not a silent death (143). Training
    installs its own handlers around its loop (a graceful stop that saves) and restores these."""
    import threading

    if threading.current_thread() is threading.main_thread():
        for name in _SIGNALS:
            signal.signal(getattr(signal, name), _interrupt)


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends (``signal.pthread_sigmask``).

    For imports of native extensions: a KeyboardInterrupt raised while a pybind11 module
    initialises can leave it half-made, and the process then dies of a segmentation fault
    (seen: SIGTERM during ``import onnx``, exit -11 and no message). Held, the signal arrives
    right after the import, as an ordinary interrupt (exit 130, one line)."""
    if not hasattr(signal, "pthread_sigmask"):       # Windows: no signal masks to hold them with
        yield
        return
    held = {getattr(signal, name) for name in _SIGNALS}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _interrupted_line() -> str:
    return f"softmax: interrupted ({_received[-1] if _received else 'SIGINT'})"


def _handle_errors(func):
    """Turn expected failures into one stderr line and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _install_signal_handlers()
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            _err(f"softmax: error: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
        except BrokenPipeError:
            # stdout closed early (e.g. `softmax eval ... | head`): stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(EXIT_FAILURE) from None
        except MemoryError as exc:
            _err(f"softmax: error: out of memory ({exc or 'the data or the network is too large'})")
            raise typer.Exit(EXIT_FAILURE) from None
        except FloatingPointError as exc:
            _err(f"softmax: error: {exc}")
            raise typer.Exit(EXIT_FAILURE) from None
        except PermissionError as exc:
            # a file or folder the user may not read or write: their setup, not a failure of ours
            where = f"{exc.filename}: " if exc.filename else ""
            detail = str(exc.strerror or exc)
            extra = "" if detail.lower() == "permission denied" else f" ({detail})"
            _err(f"softmax: error: {where}permission denied{extra}")
            raise typer.Exit(EXIT_USAGE) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _err(f"softmax: error: {where}{exc.strerror or exc}")
            raise typer.Exit(EXIT_FAILURE) from None
        except KeyboardInterrupt:
            _err(_interrupted_line())
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise                           # a command's own ending (click's Exit is a RuntimeError)
        except Exception:
            # a signal's KeyboardInterrupt raised inside a library that turns it into another
            # error (an import Pillow makes of its plugins: a RuntimeError) is still the signal
            if _received:
                _err(_interrupted_line())
                raise typer.Exit(EXIT_INTERRUPTED) from None
            raise

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"softmax {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Train, evaluate and run MLP classifiers for MNIST-style images."""


THREADS_HELP = ("Threads for the matrix products (BLAS), e.g. 1 to leave other cores free; "
                "default: all cores. Results are reproducible for a given thread count.")


def _threads(threads: Optional[int]):
    """A context limiting the BLAS thread pools to ``threads`` (no limit when None)."""
    import contextlib

    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


MAX_REPEAT = 1000   # train --repeat: runs at most (each makes a run directory)


def _read_checkpoint_data(cfg, checkpoint: Path, command: str, read):
    """``read()`` the data a checkpoint's saved config names: announced on stderr first, system
    folders refused, file content kept out of messages (:mod:`softmax_cli.untrusted`)."""
    from .errors import hiding_data
    from .untrusted import checkpoint_data, hidden_reason

    note = checkpoint_data(cfg, checkpoint, command)
    if note is not None:
        _err(note)
    with hiding_data(hidden_reason(checkpoint)):
        return read()


SET_HELP = "Override a config key, e.g. --set train.epochs=10 (value parsed as YAML; repeatable)."


# ------------------------------------------------------------------------------ train
@app.command()
@_handle_errors
def train(config: Optional[Path] = typer.Argument(None, help="YAML experiment config.", show_default=False,
                                          readable=False),
          set_: List[str] = typer.Option([], "--set", help=SET_HELP, show_default=False),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or per-epoch lines."),
          as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
          threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
          resume: Optional[Path] = typer.Option(None, "--resume", show_default=False, readable=False,
                                                help="Continue an interrupted run from its last.npz "
                                                     "(no CONFIG or --set: the run's own config is used)."),
          repeat: int = typer.Option(1, "--repeat", min=1,
                                     help="Train N times with seeds seed, seed+1, ... (each its own split "
                                          "and run directory NAME-seedS) and print the mean and standard "
                                          "deviation of the test accuracy.")) -> None:
    """Train an MLP from a YAML config; write runs/<name>/ with checkpoints and metrics."""
    import dataclasses

    from .config import blame_override, config_from_dict, load_config   # light: a bad config is refused at once

    if repeat > MAX_REPEAT:
        raise UserError(f"--repeat: at most {MAX_REPEAT} runs, got {repeat}")
    ckpt = None
    if resume is not None:
        if config is not None or set_ or repeat != 1:
            raise UserError("--resume: continues with the run's own config; give no CONFIG, --set or --repeat")
        from .checkpoint import load_checkpoint
        from .engine.state import load_state

        ckpt = load_checkpoint(resume)
        cfg = config_from_dict(ckpt.meta["config"], origin=f"{resume} (config)")
        load_state(ckpt, cfg)             # refused before the data is loaded
    elif config is None:
        raise UserError("train: give a CONFIG file (e.g. configs/digits.yaml) or --resume runs/NAME/last.npz")
    else:
        cfg = load_config(config, set_)
    configs = [cfg] if repeat == 1 else [
        dataclasses.replace(cfg, seed=cfg.seed + i, name=f"{cfg.name}-seed{cfg.seed + i}") for i in range(repeat)]
    summaries = []
    for run_cfg in configs:
        try:
            summary = _train_one(run_cfg, ckpt, quiet, threads)
        except UserError as exc:      # e.g. a split that --set data.val_fraction=... makes impossible
            raise blame_override(exc, set_) from None
        summaries.append(summary)
        if as_json and repeat == 1:
            typer.echo(_json(summary))
        elif not as_json:
            _print_summary(summary)
    if repeat > 1:
        import numpy as np

        acc = np.array([s["test_acc"] for s in summaries])
        stats = {"runs": summaries, "seeds": [c.seed for c in configs], "test_acc_mean": float(acc.mean()),
                 "test_acc_std": float(acc.std(ddof=1)), "test_acc_min": float(acc.min()),
                 "test_acc_max": float(acc.max())}
        if as_json:
            typer.echo(_json(stats))
        else:
            typer.echo(f"\ntest accuracy over {repeat} seeds ({configs[0].seed}-{configs[-1].seed}): "
                       f"mean {stats['test_acc_mean']:.4f}, standard deviation {stats['test_acc_std']:.4f} "
                       f"(min {stats['test_acc_min']:.4f}, max {stats['test_acc_max']:.4f})\n"
                       "  per seed: " + "  ".join(f"{c.seed}: {a:.4f}" for c, a in zip(configs, acc)))


def _train_one(cfg, ckpt, quiet: bool, threads: Optional[int]) -> dict:
    """Train one config (or resume ``ckpt``) and return the summary that ``--json`` prints."""
    from .engine import TrainingInterrupted, train as run_training
    from .experiment import layer_sizes, prepare_data

    if ckpt is None:
        data = prepare_data(cfg)
    else:       # resumed: the data a checkpoint names (see softmax_cli.untrusted)
        data = _read_checkpoint_data(cfg, ckpt.path, "train --resume", lambda: prepare_data(cfg))
    ds, splits = data
    if not quiet:
        n_val = 0 if splits.y_val is None else len(splits.y_val)
        sizes = "-".join(map(str, layer_sizes(cfg, ds)))
        _err(f"training {cfg.name}: {ds.description}; {len(splits.y_train)} train / {n_val} val / "
             f"{len(splits.y_test)} test; MLP {sizes} {cfg.model.activation}, "
             f"{cfg.train.optimizer.name} lr {cfg.train.optimizer.lr:g}, seed {cfg.seed}")
    try:
        with _threads(threads):
            result = run_training(cfg, data, progress=not quiet and sys.stderr.isatty(),
                                  log=(lambda line: None) if quiet else _err, resume=ckpt)
    except TrainingInterrupted as exc:
        _err(f"softmax: interrupted: {exc}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        _err("softmax: interrupted; the run directory keeps the checkpoints of finished epochs")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    run_dir = result.run_dir
    return {"run_dir": str(run_dir), "seed": cfg.seed, "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
            "val_loss": None if result.n_val == 0 else result.best["val_loss"],
            "val_acc": None if result.n_val == 0 else result.best["val_acc"], "test_loss": result.test_loss,
            "test_acc": result.test_acc, "n_test": result.n_test, "calibration": result.calibration,
            "best_checkpoint": str(run_dir / "best.npz"), "last_checkpoint": str(run_dir / "last.npz"),
            "curves": str(run_dir / "curves.png")}


def _print_summary(summary: dict) -> None:
    best = f"{summary['best_epoch']} of {summary['epochs_run']}"
    if summary["stopped_early"]:
        best += " (stopped early)"
    if summary["val_acc"] is not None:
        best += f"; val_loss {summary['val_loss']:.4f}, val_acc {summary['val_acc']:.4f}"
    typer.echo(f"best epoch      {best}\n"
               f"test accuracy   {summary['test_acc']:.4f} (loss {summary['test_loss']:.4f}, "
               f"{summary['n_test']} images)")
    cal = summary["calibration"]
    if cal is not None:
        part = "test" if "test_ece_before" in cal else "val"
        fitted = cal.get("note") or "fitted on the validation split"
        typer.echo(f"calibration     temperature {cal['temperature']:.3f} ({fitted}); "
                   f"{part} ECE {cal[f'{part}_ece_before']:.4f} before, {cal[f'{part}_ece_after']:.4f} after")
    typer.echo(f"run directory   {summary['run_dir']}\n"
               f"checkpoints     {summary['best_checkpoint']}, {summary['last_checkpoint']}\n"
               f"curves          {summary['curves']}")


# ------------------------------------------------------------------------------- eval
@app.command("eval")
@_handle_errors
def eval_(checkpoint: Path = typer.Argument(..., help="A .npz checkpoint (e.g. runs/digits/best.npz) or a "
                                                     "shipped model's name (mnist).",
                                           show_default=False, readable=False),
          split: str = typer.Option("test", "--split", help="test, val or train."),
          data: Optional[Path] = typer.Option(None, "--data", readable=False, help="Evaluate on this config's data "
                                              "instead of the checkpoint's own."),
          as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
          threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
          report_dir: Optional[Path] = typer.Option(
              None, "--report", show_default=False,
              help="Also write confusion_matrix.png, errors.png (the most confident mistakes), "
                   "per_class.csv and report.md into this directory (created if missing; "
                   "refused if it holds any of them already)."),
          reject_threshold: List[float] = typer.Option(
              [], "--reject-threshold", metavar="P", show_default=False,
              help="A threshold for the report of answering only when the highest probability is at "
                   "least P, as predict --reject-threshold does (repeatable; default: 0, 0.5, 0.7, "
                   "0.8, 0.9, 0.95, 0.99, 0.999).")) -> None:
    """Loss, accuracy, confusion matrix and per-class precision/recall/F1 of a checkpoint.

    Also the coverage and accuracy of its answers above probability thresholds; --report adds pictures.
    """
    from .checkpoint import load_checkpoint
    from .config import config_from_dict, load_config
    from .metrics import (REJECT_THRESHOLDS, check_threshold, class_report, format_confusion_matrix,
                          format_reject_report, reject_report)

    if split not in ("test", "val", "train"):
        raise UserError(f"--split: expected test, val or train, got {split!r}")
    thresholds = [check_threshold("--reject-threshold", t) for t in reject_threshold] or REJECT_THRESHOLDS
    if report_dir is not None:
        from .report import check_report_dir

        check_report_dir(report_dir)          # refused before the (longer) evaluation
    ckpt = load_checkpoint(_checkpoint_path(checkpoint))   # before the heavy imports: a bad file is refused at once
    cfg = load_config(data) if data else config_from_dict(ckpt.meta["config"], origin=f"{checkpoint} (config)")
    from .experiment import evaluate_checkpoint

    def run():
        return evaluate_checkpoint(ckpt, cfg, split, origin=str(data or checkpoint),
                                   keep_images=report_dir is not None, check=data is None)

    with _threads(threads):
        ev = run() if data else _read_checkpoint_data(cfg, checkpoint, "eval", run)
    if data is None and "splits" not in ckpt.meta:
        _err(f"softmax: note: {checkpoint} records no fingerprints of its splits (an older softmax, or a shipped model): "
             f"its {split} split was made again from its config, unchecked")
    y = ev.y_true
    report = class_report(ev, ckpt.classes)
    rejects = reject_report(ev, thresholds)
    result = {"checkpoint": str(checkpoint), "split": split, "n": int(len(y)), "loss": ev.loss,
              "accuracy": ev.accuracy, "nll": ev.loss, "ece": ev.ece, "temperature": ev.temperature,
              "uncalibrated_loss": ev.uncalibrated_loss, **report, "reject_report": rejects}
    if report_dir is not None:
        from .report import write_report

        described = ckpt.meta.get("data", cfg.data.source) if data is None else f"{data} ({cfg.data.source})"
        path = write_report(report_dir, ev, classes=ckpt.classes, report=report, rejects=rejects,
                            checkpoint=str(checkpoint), data=described, split=split)
        result["report"] = str(path)
        _err(f"wrote {path} with confusion_matrix.png, errors.png, reliability.png and per_class.csv beside it")
    if as_json:
        typer.echo(_json(result))
        return
    names = [printable(c) for c in ckpt.classes]       # a class name may hold a newline or an escape
    calibrated = (f", temperature {ev.temperature:.3f}; {ev.uncalibrated_loss:.4f} at T = 1, as in the curves)"
                  if ev.temperature != 1.0 else ", uncalibrated)")
    typer.echo(f"checkpoint  {printable(str(checkpoint))}\nsplit       {split} ({len(y)} images)\n"
               f"loss        {ev.loss:.4f} (negative log-likelihood, nats{calibrated}\n"
               f"accuracy    {ev.accuracy:.4f}\n"
               f"ECE         {ev.ece:.4f} (expected calibration error, 15 bins)\n")
    typer.echo(format_confusion_matrix(report["confusion_matrix"], names))
    from sklearn.metrics import classification_report

    typer.echo(classification_report(ev.y_true, ev.y_pred, labels=list(range(len(ckpt.classes))),
                                     target_names=names, digits=4, zero_division=0))
    typer.echo(format_reject_report(rejects))


# ---------------------------------------------------------------------------- predict
class PredictFormat(str, enum.Enum):
    """What ``predict --output`` writes (or, for kaggle, prints without it)."""

    predictions = "predictions"   # path, row, class, probability, top-k, checkpoint, error
    kaggle = "kaggle"             # ImageId,Label: the Kaggle digit-recognizer submission


@app.command()
@_handle_errors
def predict(paths: List[str] = typer.Argument(..., show_default=False,
                                              help="Image files (format told by content: PNG, JPEG, BMP, GIF, "
                                                   "TIFF, WebP, ...), folders (searched recursively) or glob "
                                                   "patterns such as 'scans/**/*.jpg'; data files of pixel "
                                                   "rows (.csv, .tsv, .npy, .npz) answer a row each."),
            checkpoint: Optional[str] = typer.Option(None, "--checkpoint", "-c", metavar="FILE|NAME",
                                                     show_default=False,
                                                     help="A checkpoint file, or a shipped model's name (mnist); "
                                                          "default: the shipped MNIST model."),
            top_k: int = typer.Option(1, "--top-k", "-k", min=1, help="Show the k most probable classes."),
            as_json: bool = typer.Option(False, "--json", help="Print one JSON document: an array with an "
                                                               "object per input."),
            as_jsonl: bool = typer.Option(False, "--jsonl", help="Print one JSON object per input, a line each."),
            output: Optional[Path] = typer.Option(None, "--output", "-o", show_default=False,
                                                  help="Write path,class,probability,top1_class,...,checkpoint,"
                                                       "error to this CSV file (one row per input, in order; "
                                                       "a row column for data files) instead of the table; an "
                                                       "existing file is never overwritten (NAME-2.csv, ... "
                                                       "instead)."),
            output_format: PredictFormat = typer.Option(
                "predictions", "--format", case_sensitive=False,
                help="The CSV written: predictions (the columns above) or kaggle (ImageId,Label for the rows of "
                     "one data file, the Kaggle digit-recognizer submission; printed when there is no --output)."),
            reject_threshold: float = typer.Option(0.0, "--reject-threshold", metavar="P",
                                                   help="Answer 'unknown' when the highest class "
                                                        "probability is below P (0 to 1)."),
            save_inputs_to: Optional[Path] = typer.Option(
                None, "--save-inputs", metavar="DIR", show_default=False,
                help="Also write what the model saw for each image, enlarged, as DIR/<n>-<name>.png "
                     "(DIR: a new or empty folder).")) -> None:
    """Classify images and rows of pixels; files that cannot be read are reported, skipped, and
    make the exit code 1."""
    from .checkpoint import load_checkpoint
    from .metrics import check_threshold
    from .models import SHIPPED, resolve_checkpoint
    from .predict import (UNKNOWN, answer, check_inputs_folder, check_kaggle, check_output, format_table,
                          read_inputs, save_inputs, write_csv)

    if as_json and as_jsonl:
        raise UserError("--json and --jsonl: choose one (--json: one document, --jsonl: a line per input)")
    kaggle = output_format is PredictFormat.kaggle
    if kaggle:
        _check_kaggle_options(as_json or as_jsonl, top_k, reject_threshold)
        check_kaggle(paths)
    check_threshold("--reject-threshold", reject_threshold)
    if output is not None:
        check_output(output)
    if save_inputs_to is not None:
        check_inputs_folder(save_inputs_to)
    choice = resolve_checkpoint(checkpoint)
    ckpt = load_checkpoint(choice.path)
    if checkpoint is None:
        _err(f"using the shipped model {choice.name} ({SHIPPED[choice.name].about}); -c FILE for another")
    if reject_threshold > 0 and UNKNOWN in ckpt.classes:
        raise UserError(f"{choice.name}: --reject-threshold answers {UNKNOWN!r}, which is also the name of "
                        f"one of this model's classes")
    inputs = read_inputs(ckpt, paths, on_error=lambda exc: _err(f"softmax: error: {exc}"))
    preds = answer(ckpt, inputs, top_k, reject_threshold)
    answered = sum(p.error is None for p in preds)
    if kaggle:
        _write_kaggle(preds, output)
    elif as_json:
        typer.echo(_json([p.to_record(choice.name) for p in preds]))
    elif as_jsonl:
        for p in preds:
            typer.echo(_json(p.to_record(choice.name)))
    elif output is None and answered:
        typer.echo(format_table(preds, choice.name))
    if output is not None and preds and not kaggle:
        written = write_csv(output, preds, choice.name)
        note = f" ({output} exists and was left as it was)" if written != output else ""
        failed = len(preds) - answered
        rows = f"{answered} prediction{'s' if answered != 1 else ''}" + (
            f" and {failed} error row{'s' if failed != 1 else ''}" if failed else "")
        _err(f"wrote {rows} to {written}{note}")
    if save_inputs_to is not None and answered:
        n = save_inputs(save_inputs_to, inputs, ckpt.image_shape, ckpt.preprocessor.pixel_max)
        _err(f"wrote {n} model input{'s' if n != 1 else ''} to {save_inputs_to}")
    if answered < len(preds):
        raise typer.Exit(EXIT_FAILURE)


def _check_kaggle_options(as_json: bool, top_k: int, reject_threshold: float) -> None:
    """Refuse the options a Kaggle submission (one class per row) has no place for."""
    for given, option in ((as_json, "--json/--jsonl"), (top_k > 1, "--top-k"),
                          (reject_threshold > 0, "--reject-threshold")):
        if given:
            raise UserError(f"--format kaggle writes one class per row (ImageId,Label), with no place for "
                            f"{option}; leave it out")


def _write_kaggle(preds, output: Optional[Path]) -> None:
    """The submission to ``output`` (a new file) or stdout; none when a row could not be read
    (its error is already on stderr: a partial submission would be scored as wrong)."""
    from .predict import kaggle_text, write_new_file

    if not preds or any(p.error is not None for p in preds):
        return
    if len({p.path for p in preds}) > 1:
        raise UserError(f"--format kaggle numbers the rows of one data file; the pattern matched "
                        f"{len({p.path for p in preds})} files")
    text = kaggle_text(preds)
    if output is None:
        typer.echo(text, nl=False)
        return
    from .csvout import csv_bytes

    written = write_new_file(output, csv_bytes(text), "--output")
    note = f" ({output} exists and was left as it was)" if written != output else ""
    _err(f"wrote {len(preds)} row{'s' if len(preds) != 1 else ''} (ImageId,Label) to {written}{note}")


# ---------------------------------------------------------------------------- inspect
@app.command("inspect")
@_handle_errors
def inspect_(checkpoint: Path = typer.Argument(..., help="A .npz checkpoint (e.g. runs/digits/best.npz) or a "
                                                        "shipped model's name (mnist).",
                                              show_default=False, readable=False),
             as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
             weights: Optional[Path] = typer.Option(
                 None, "--weights", show_default=False,
                 help="Also draw the first layer's weights, one image per unit, into this new .png "
                      "file."),
             max_units: int = typer.Option(64, "--max-units", min=1,
                                           help="With --weights: draw the N units whose incoming weights "
                                                "have the largest norms.")) -> None:
    """What a checkpoint holds: architecture, parameters, data, preprocessing, config, metrics."""
    from .checkpoint import describe_checkpoint, load_checkpoint

    if weights is not None:
        if weights.suffix.lower() != ".png":
            raise UserError(f"{weights}: --weights: expected a file name ending in .png")
        if not weights.parent.is_dir():
            raise UserError(f"{weights}: --weights: the directory {weights.parent} does not exist")
        if weights.exists():
            raise UserError(f"{weights}: --weights: already exists; choose another name or remove it")
    ckpt = load_checkpoint(_checkpoint_path(checkpoint))
    info = describe_checkpoint(ckpt)
    if weights is not None:
        from .report import plot_weights

        n = plot_weights(weights, ckpt.model.params[0], ckpt.image_shape, max_units)
        info["weights_png"] = str(weights)
        total = ckpt.model.sizes[1]
        which = f"{n} first-layer units" if n == total else f"{n} of {total} first-layer units (largest norms)"
        _err(f"wrote {weights}: the incoming weights of {which} as {ckpt.image_shape[0]}x"
             f"{ckpt.image_shape[1]} images")
    typer.echo(_json(info) if as_json else _format_inspect(info))


def _value(v) -> str:
    """A config value as YAML writes it (null, true, 0.001, [256])."""
    if v is None or isinstance(v, bool):
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:g}"
    return json.dumps(v, separators=(", ", ": ")) if isinstance(v, (list, dict)) else str(v)


def _section(label: str, d: dict, indent: int = 0) -> list[tuple[str, str]]:
    """``(label, "key value, ...")`` for the scalars of a config section, then a line per sub-section."""
    scalars = ", ".join(f"{k} {_value(v)}" for k, v in d.items() if not isinstance(v, dict))
    lines = [(" " * indent + label, scalars)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += _section(k, v, indent + 2)
    return lines


def _format_inspect(info: dict) -> str:
    """The text of ``softmax inspect``: one ``label  value`` line per fact."""
    unknown = "(not recorded)"
    m = info["model"]
    n_hidden = len(m["sizes"]) - 2
    arch = f"MLP {'-'.join(map(str, m['sizes']))}: "
    arch += (f"{n_hidden} hidden layer{'s' if n_hidden > 1 else ''} ({m['activation']}), " if n_hidden
             else "no hidden layer (softmax regression), ")
    lines = [("checkpoint", info["checkpoint"]),
             ("format", f"{info['format']} version {info['format_version']}, written by softmax "
                        f"{info['package_version'] or '(unknown version)'}"),
             ("architecture", arch + f"softmax output, {m['dtype']}"),
             ("parameters", f"{m['parameters']:,}")]
    for i, layer in enumerate(m["layers"]):
        n_in, n_out = layer["shape"]
        lines.append((f"  layer {i + 1}", f"W{i} {n_in}x{n_out} + b{i} {n_out} = {layer['parameters']:,}, "
                                          f"then {layer['activation']}"))
    classes = [printable(c) for c in info["classes"]]
    lines.append(("classes", f"{len(classes)}: " + (" ".join(classes) if len(classes) <= 30 else
                                                    " ".join(classes[:30]) + " ...")))
    h, w = info["image_shape"]
    lines.append(("input", f"{h}x{w} images ({info['image_style']} style)"))
    data_cfg = info["config"].get("data")
    data = info["data"] or unknown
    if isinstance(data_cfg, dict):
        data += "; " + ", ".join(f"{k} {_value(v)}" for k, v in data_cfg.items() if v is not None)
    if info["seed"] is not None:
        data += f"; seed {info['seed']}"
    lines.append(("data", data))
    pre = info["preprocessing"]
    (o_lo, o_hi), (s_lo, s_hi) = pre["offset"], pre["scale"]
    how = (f"x' = (x - {o_lo:.4g}) / {s_lo:.4g}" if (o_lo, s_lo) == (o_hi, s_hi) else
           f"x' = (x - offset) / scale per pixel, offset {o_lo:.4g} to {o_hi:.4g}, scale {s_lo:.4g} to {s_hi:.4g}")
    lines.append(("preprocessing", f"normalize {pre['normalize']}, pixel_max {pre['pixel_max']:g}: {how}"))
    for name, label in (("train", "training config"), ("model", "model config")):
        section = info["config"].get(name)
        lines += _section(label, section) if isinstance(section, dict) else [(label, unknown)]
    state = info["training_state"]
    epoch = info["epoch"]
    train_cfg = info["config"].get("train")
    monitor = train_cfg.get("monitor") if isinstance(train_cfg, dict) else None
    lines.append(("epoch", unknown if epoch is None else f"{epoch} (the latest finished)" if state else
                  f"{epoch} (the best by {monitor})" if monitor else f"{epoch}"))
    metrics = info["metrics"]
    shown = [k for k in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
             if metrics and isinstance(metrics.get(k), (int, float)) and not isinstance(metrics.get(k), bool)]
    lines.append(("metrics", "  ".join(f"{k} {metrics[k]:.4f}" for k in shown) if shown else unknown))
    if state:
        if state["finished"]:
            how = "finished" if state["epochs_done"] >= state["epochs"] else "finished (stopped early)"
        else:
            how = f"can continue: softmax train --resume {info['checkpoint']}"
            if state["rows_done"]:
                how = f"interrupted after {state['rows_done']} training images of the next epoch; " + how
        lines.append(("training state", f"{state['epochs_done']} of {state['epochs']} epochs done, best epoch "
                                        f"{state['best_epoch']}; {how}"))
    width = max(18, max(len(label) for label, _ in lines) + 2)
    # every value printable on its line: names and config strings come from the checkpoint
    return "\n".join(f"{printable(label):<{width}}{printable(str(value))}".rstrip() for label, value in lines)


# -------------------------------------------------------------------------- gradcheck
@app.command()
@_handle_errors
def gradcheck(config: Path = typer.Argument(..., help="YAML experiment config.", show_default=False,
                                            readable=False),
              samples: int = typer.Option(8, "--samples", min=1, help="Training examples in the batch."),
              entries: int = typer.Option(40, "--entries", min=1,
                                          help="Entries checked per parameter array (random subset)."),
              set_: List[str] = typer.Option([], "--set", help=SET_HELP, show_default=False)) -> None:
    """Check backpropagation against central finite differences, in float64."""
    from .config import blame_override, load_config
    from .nn.gradcheck import TOLERANCE
    from .experiment import run_gradcheck

    cfg = load_config(config, set_)
    try:
        sizes, n, results = run_gradcheck(cfg, samples, entries)
    except UserError as exc:
        raise blame_override(exc, set_) from None
    typer.echo(f"gradcheck: MLP {'-'.join(map(str, sizes))} {cfg.model.activation}, float64, "
               f"{n} samples, central differences (tolerance {TOLERANCE:g})")
    typer.echo(f"{'param':<6} {'shape':<12} {'checked':>7}  rel_error")
    for r in results:
        typer.echo(f"{r.name:<6} {'x'.join(map(str, r.shape)):<12} {r.checked:>7}  {r.rel_error:.2e}")
    worst = max(r.rel_error for r in results)
    ok = worst <= TOLERANCE
    typer.echo(f"{'PASS' if ok else 'FAIL'}: max relative error {worst:.2e}")
    if not ok:
        raise typer.Exit(EXIT_FAILURE)


# ------------------------------------------------------------------- export and serve
def _checkpoint_path(given: Path) -> Path:
    """The checkpoint file that export's and serve's CKPT names: a path, or a shipped model's
    name (``mnist``), resolved as predict's ``--checkpoint`` is (:func:`softmax_cli.models.resolve_checkpoint`).

    Raises:
        UserError: as ``resolve_checkpoint``.
    """
    from .models import resolve_checkpoint

    return resolve_checkpoint(given).path


def _needs(extra: str, *modules: str) -> None:
    """Refuse, in one line, a command whose optional extra is not installed."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"this command needs {' and '.join(missing)}: pip install 'softmax-cli[{extra}]'")


@app.command("export")
@_handle_errors
def export_(checkpoint: Path = typer.Argument(..., help="A .npz checkpoint (e.g. runs/digits/best.npz).",
                                             show_default=False),
            format_: str = typer.Option("onnx", "--format", help="The format: onnx."),
            output: Optional[Path] = typer.Option(
                None, "--output", "-o", show_default=False,
                help="The file to write; default: the checkpoint's name with .onnx, beside it. An existing "
                     "file is never overwritten (NAME-2.onnx, ... instead)."),
            opset: Optional[int] = typer.Option(None, "--opset", metavar="N", show_default=False,
                                                help="ONNX opset to target, 13 or newer; default 17."),
            verify: bool = typer.Option(False, "--verify",
                                        help="Before writing, run the exported model with onnxruntime on the "
                                             "checkpoint's whole test split and compare its probabilities "
                                             "with the checkpoint's (at most 1e-5 apart, the same classes)."),
            as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Export a checkpoint as an ONNX model: raw pixels in, logits and probabilities out."""
    if format_ != "onnx":
        raise UserError(f"--format: expected onnx, got {format_!r}")
    _needs("export", "onnx", "onnxruntime")
    with _signals_deferred():
        import onnx  # noqa: F401  (native extensions, imported whole before a signal is taken)
        import onnxruntime  # noqa: F401
    from . import export
    from .checkpoint import load_checkpoint
    from .predict import check_output, write_new_file

    path = _checkpoint_path(checkpoint)
    target = output if output is not None else export.default_output(path)
    check_output(target, "--output", "model.onnx")
    ckpt = load_checkpoint(path)
    opset = export.DEFAULT_OPSET if opset is None else opset
    data = export.to_onnx(ckpt, opset).SerializeToString()
    check = None
    if verify:      # the test split a checkpoint's config names: announced, its content never quoted
        from .config import config_from_dict

        cfg = config_from_dict(ckpt.meta["config"], origin=f"{path} (config)")
        rows = _read_checkpoint_data(cfg, path, "export --verify", lambda: export.test_rows(ckpt))
        check = export.verify(ckpt, data, rows)
    written = None
    if check is None or check.ok:
        written = write_new_file(target, data, "--output")
        if written != target:
            _err(f"{target} exists and was left as it was; wrote {written}")
    result = export.summary(ckpt, written, len(data), opset, check)
    typer.echo(json.dumps(result) if as_json else export.format_summary(result))
    if written is None:
        _err(f"softmax: error: {path}: the exported model does not match the checkpoint (largest difference "
             f"of probabilities {check.max_abs_diff:.3g}, {check.classes_differ} classes differ); nothing written")
        raise typer.Exit(EXIT_FAILURE)


@app.command()
@_handle_errors
def serve(checkpoint: Path = typer.Argument(..., help="A .npz checkpoint (e.g. runs/mnist/best.npz).",
                                            show_default=False),
          host: str = typer.Option("127.0.0.1", "--host",
                                   help="Address to listen on; 0.0.0.0 opens the server to the network."),
          port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on (0: any free one)."),
          workers: int = typer.Option(1, "--workers", min=1, max=256,
                                      help="Worker processes, each with its own copy of the model."),
          max_request_mb: int = typer.Option(10, "--max-request-mb", min=1, max=1024,
                                             help="Refuse request bodies larger than this many MiB (413)."),
          log_level: str = typer.Option("warning", "--log-level",
                                        help="uvicorn's log level: critical, error, warning, info (adds a "
                                             "line per request) or debug.")) -> None:
    """Serve a checkpoint over HTTP: POST /predict, GET /model, a page to draw a digit on at /."""
    _needs("serve", "fastapi", "uvicorn", "multipart")
    from .checkpoint import load_checkpoint
    from .serve.server import LOG_LEVELS, run

    if log_level not in LOG_LEVELS:
        raise UserError(f"--log-level: expected one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    path = _checkpoint_path(checkpoint)
    ckpt = load_checkpoint(path)
    sizes = "-".join(map(str, ckpt.model.sizes))

    def announce(url: str) -> None:
        _err(f"serving {path} (MLP {sizes}, {len(ckpt.classes)} classes) on {url} with {workers} "
             f"worker{'s' if workers > 1 else ''}: the drawing page at {url}, the API's documentation at "
             f"{url}docs; Ctrl-C to stop")

    if host not in ("127.0.0.1", "::1", "localhost"):
        _err(f"softmax: warning: --host {host}: whoever can reach this address can use the server "
             f"(it has no authentication)")
    try:
        run(ckpt, host, port, workers, max_request_mb * 2**20, log_level, announce)
    except KeyboardInterrupt:
        _err("softmax: interrupted; the server stopped")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except RuntimeError as exc:
        _err(f"softmax: error: {exc}")
        raise typer.Exit(EXIT_FAILURE) from None


# ------------------------------------------------------------------------------- tune
@app.command()
@_handle_errors
def tune(config: Path = typer.Argument(..., help="YAML experiment config to search around.", show_default=False,
                                       readable=False),
         space: Path = typer.Option(..., "--space", show_default=False, readable=False,
                                    help="YAML search space: dotted config keys to distributions, e.g. "
                                         "'train.optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}'."),
         trials: int = typer.Option(20, "--trials", min=1, help="Trials the study should have in all: a rerun runs "
                                                                "only the missing ones."),
         timeout: Optional[float] = typer.Option(None, "--timeout", min=0, metavar="SECONDS", show_default=False,
                                                 help="Start no trial after this many seconds (running ones finish)."),
         workers: Optional[int] = typer.Option(None, "--workers", min=1, show_default=False,
                                               help="Trials at once: worker processes on this machine (optuna; "
                                                    "default: the number of cores), or the CPUs of a local Ray "
                                                    "instance / trials at once on a cluster (ray)."),
         metric: Optional[str] = typer.Option(None, "--metric", show_default=False,
                                              help="val_acc (maximised) or val_loss (minimised); default: the "
                                                   "config's train.monitor."),
         study: Optional[str] = typer.Option(None, "--study", show_default=False,
                                             help="The study's name (default: the config's name); its outputs go "
                                                  "to OUTPUT_DIR/tune/NAME/."),
         storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", show_default=False,
                                               help="A database holding the study, shared by processes on several "
                                                    "machines: sqlite:///FILE, postgresql://..., mysql://...; "
                                                    "default: a journal file in the study's directory."),
         backend: str = typer.Option("optuna", "--backend", help="optuna (processes on this machine) or ray "
                                                                 "(Ray Tune with ASHA; pip install "
                                                                 "'softmax-cli[ray]')."),
         address: Optional[str] = typer.Option(None, "--address", metavar="RAY_ADDRESS", show_default=False,
                                               help="A Ray cluster to join: auto, or ray://HOST:10001; default: "
                                                    "start a local Ray instance."),
         pruner: str = typer.Option("median", "--pruner", help="Stop poor trials early: median (Optuna's "
                                                               "MedianPruner; ASHA with ray), halving (successive "
                                                               "halving) or none."),
         set_: List[str] = typer.Option([], "--set", help=SET_HELP, show_default=False),
         as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object.")) -> None:
    """Search hyperparameters: train CONFIG with values drawn from SPACE; write runs/tune/<study>/."""
    from .tune.sweep import prepare, run_sweep

    sweep = prepare(config, space, set_, trials=trials, timeout=timeout, workers=workers, metric=metric,
                    study=study, storage=storage, backend=backend, address=address, pruner=pruner)
    try:
        summary = run_sweep(sweep, announce=_err)
    except RuntimeError as exc:
        _err(f"softmax: error: {exc}")
        raise typer.Exit(EXIT_FAILURE) from None
    for note in summary.notes:
        _err(f"softmax: note: {note}")
    typer.echo(_json(summary.as_json()) if as_json else summary.text())
    if summary.interrupted:
        c = summary.counts
        _err(f"softmax: interrupted: {c['counted']} of {trials} trials done; run the same command again to "
             f"continue")
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.first_error is not None:
        number, message = summary.first_error
        _err(f"softmax: error: every trial failed; the first, trial {number}: {message}")
        raise typer.Exit(EXIT_FAILURE)


def main() -> None:
    """Console-script entry point."""
    _install_signal_handlers()      # as early as can be; each command installs them again
    try:
        app()
    except KeyboardInterrupt:       # a signal while Typer parses, before a command runs
        _err(_interrupted_line())
        sys.exit(EXIT_INTERRUPTED)
