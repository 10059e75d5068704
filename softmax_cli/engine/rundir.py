"""A run's directory: where it is made, what every checkpoint of it records, how files are written.

``output.dir/<name>/`` (``<name>-2``, ``-3``, ... when taken: never overwritten) holds the
resolved ``config.yaml``, ``metrics.csv``, ``best.npz``, ``last.npz`` and ``curves.png``. Every
file is written atomically (a temporary file beside it, then a rename), so a reader, or a run
that is killed, never leaves half a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import Checkpoint, atomic_write, save_checkpoint
from ..config import Config, dump_yaml
from ..data import Preprocessor, Splits
from ..data.images import style_for
from ..data.prepare import fingerprint_change
from ..data.sources import Dataset
from ..errors import UserError
from ..nn import MLP


def make_run_dir(output_dir: str | Path, name: str) -> Path:
    """Create and return ``output_dir/name``, or ``name-2``, ``name-3``, ... if taken.

    An existing run directory is never reused, so no earlier run is overwritten.

    Raises:
        UserError: ``output_dir`` exists and is not a directory, or it or the run directory
            cannot be created (permissions, a name too long, a read-only file system).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir}: output.dir exists and is not a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for i in range(1, 100_000):
            path = output_dir / (name if i == 1 else f"{name}-{i}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise UserError(f"{exc.filename or output_dir}: cannot create the run directory "
                        f"(output.dir, name): {exc.strerror or exc}") from None
    raise UserError(f"{output_dir}: no free run directory name for {name!r}")


def checkpoint_metadata(cfg: Config, ds: Dataset, splits: Splits) -> dict:
    """What every checkpoint of a run records besides its weights and preprocessing: class
    names, image shape and style, the resolved config, a description of the data and each
    split's fingerprint (``splits``: see :meth:`~softmax_cli.data.Splits.fingerprints`).
    :func:`~softmax_cli.checkpoint.save_checkpoint` adds the format and the architecture."""
    return {"classes": ds.classes, "image_shape": list(ds.image_shape), "config": cfg.to_dict(),
            "data": ds.description, "image_style": style_for(cfg.data.source),
            "splits": splits.fingerprints()}


@dataclass
class RunDir:
    """An open run directory and the metadata its checkpoints share (:func:`checkpoint_metadata`)."""

    path: Path
    meta: dict
    resumed: bool = False

    @classmethod
    def create(cls, cfg: Config, ds: Dataset, splits: Splits) -> "RunDir":
        """A new run directory (:func:`make_run_dir`) holding the resolved ``config.yaml``.

        Raises:
            UserError: the directory cannot be created; OSError: ``config.yaml`` cannot be written.
        """
        run = cls(make_run_dir(cfg.output.dir, cfg.name), checkpoint_metadata(cfg, ds, splits))
        run.write("config.yaml", dump_yaml(cfg.to_dict()).encode())   # read back by YAML 1.1 and 1.2 alike
        return run

    @classmethod
    def reopen(cls, ckpt: Checkpoint, cfg: Config, ds: Dataset, splits: Splits) -> "RunDir":
        """The directory of the run whose ``last.npz`` is ``ckpt``, to continue it.

        Raises:
            UserError: naming ``ckpt``: a split differs from the one the run was trained on
                (its recorded fingerprint; a checkpoint without fingerprints is not checked).
        """
        run = cls(ckpt.path.parent, checkpoint_metadata(cfg, ds, splits), resumed=True)
        recorded = ckpt.meta.get("splits")
        for name, now in run.meta["splits"].items():
            if isinstance(recorded, dict) and recorded.get(name) is not None and now is not None:
                change = fingerprint_change(recorded[name], now)
                if change is not None:
                    raise UserError(f"{ckpt.path}: the {name} split is not the one this run was trained "
                                    f"on: {change} (has the data changed?); start a new run instead")
        return run

    def write(self, name: str, data: bytes) -> None:
        """Write ``data`` to the file ``name`` of the run, atomically.

        Raises:
            OSError: naming the file; the previous one is intact.
        """
        atomic_write(self.path / name, lambda f: f.write(data))

    def save(self, name: str, model: MLP, pre: Preprocessor, epoch: int, metrics: dict,
             state: dict | None = None, optimizer_state: dict[str, np.ndarray] | None = None,
             extra: dict | None = None) -> None:
        """Write the checkpoint ``name`` (``best.npz``, ``last.npz``) of the run at ``epoch``
        with that epoch's ``metrics`` row and, for ``last.npz``, the training state and
        optimiser arrays; ``extra`` adds metadata keys (the final ``best.npz``'s ``calibration``).

        Raises:
            OSError: the file cannot be written; the previous one is intact.
        """
        meta = {**self.meta, **(extra or {}), "epoch": epoch, "metrics": metrics}
        if state is not None:
            meta["train_state"] = state
        save_checkpoint(self.path / name, model, pre, meta, optimizer_state)
