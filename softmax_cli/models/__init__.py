"""Pretrained models shipped inside the package, by name: ``softmax predict -c mnist``.

Each is an ordinary checkpoint file in this folder (package data, installed with softmax),
built by a script in ``scripts/`` from a config in ``configs/``, so that anyone can rebuild
it. :func:`resolve_checkpoint` is the one place where a ``--checkpoint`` value becomes a file:
a shipped model's name, or a path; nothing here ever guesses among training runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError



@dataclass(frozen=True)
class ShippedModel:
    """A model in this folder: its file name, and one line on what it recognises."""

    file: str
    about: str


SHIPPED = {
    # 784-800-400-10 ReLU, trained with augmentation: scripts/train_shipped_model.py, configs/mnist-shipped.yaml
    "mnist": ShippedModel("mnist.npz", "handwritten digits 0-9, trained on MNIST"),
}
DEFAULT = "mnist"            # what `softmax predict` uses without --checkpoint


@dataclass(frozen=True)
class CheckpointChoice:
    """A ``--checkpoint`` value resolved.

    Attributes:
        path: the checkpoint file.
        name: how outputs name it: the shipped model's name (``mnist``), or the path as given;
            either can be passed back to ``--checkpoint`` for the same model.
        shipped: True for a shipped model.
    """

    path: Path
    name: str
    shipped: bool


def shipped_path(name: str) -> Path:
    """The file of the shipped model ``name`` (a key of :data:`SHIPPED`) inside the package.

    Raises:
        KeyError: ``name`` is not a shipped model.
    """
    return Path(__file__).with_name(SHIPPED[name].file)


def resolve_checkpoint(value: str | os.PathLike | None) -> CheckpointChoice:
    """Turn a ``--checkpoint`` value into a file: None means the shipped :data:`DEFAULT`
    model; a name in :data:`SHIPPED` means that shipped model; anything else is a path.

    A name that is also a file in the current folder is refused rather than guessed at
    (write ``./mnist`` for the file).

    Raises:
        UserError: the value is both a shipped model's name and an existing path; a path
            that does not exist (naming the shipped models); a shipped model's file missing
            from this installation.
    """
    if value is None:
        name = DEFAULT
    else:
        name = os.fspath(value)
        if name not in SHIPPED:
            path = Path(name)
            if not path.exists():
                raise UserError(f"{name}: checkpoint not found (neither a file nor a shipped model: "
                                f"{', '.join(SHIPPED)})")
            return CheckpointChoice(path, name, shipped=False)
        if os.path.lexists(name):
            raise UserError(f"{name}: both a shipped model's name and a file here; write ./{name} for the file")
    path = shipped_path(name)
    if not path.is_file():
        raise UserError(f"{name}: the shipped model's file {path} is missing from this installation; "
                        f"reinstall softmax")
    return CheckpointChoice(path, name, shipped=True)
