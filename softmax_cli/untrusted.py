"""Data files named by a checkpoint: announced, kept out of system folders, never quoted.

A checkpoint is data from possibly anyone (a download, a colleague's run, a bug report),
and the config saved in it names the data it was trained on. ``softmax eval CHECKPOINT``
(without ``--data``) and ``softmax train --resume`` read those files. So that a checkpoint
whose config says ``data: {source: csv, train: /etc/shadow}`` can neither make softmax show
that file's content in an error message nor read system folders unnoticed, the commands
that read data a checkpoint names go through :func:`checkpoint_data`:

- it refuses data paths inside the system folders of :data:`SYSTEM_FOLDERS` (a folder data
  set rooted at ``/etc`` would walk all of it), pointing to ``--data CONFIG`` for data the
  user names himself;
- it returns the line announcing which files will be read, printed before reading them;
- the caller reads inside :func:`softmax_cli.errors.hiding_data`, under which every reader
  quotes file content as ``<content not shown: ...>`` (:func:`softmax_cli.errors.quote_data`).

docs/security.md states the threat model.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .errors import UserError

#: folders holding the system's own files: never data, often secrets (resolved paths, links followed)
# (not /root: it is the home folder of everyone who works as root, in a container say, and so
# holds their data and softmax's download cache)
SYSTEM_FOLDERS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/run", "/var/log", "/var/lib",
                  "/var/spool", "/var/mail", "/var/run", "/var/cache")
# every data key that names a file or folder (cache_dir: where a named data set is downloaded to)
_DATA_KEYS = ("train", "test", "root", "train_images", "train_labels", "test_images", "test_labels",
              "cache_dir", "sha256sums")


def data_paths(cfg: Config) -> list[tuple[str, str]]:
    """``[(key, path), ...]``: the files and folders ``cfg``'s data source reads, as
    ``("data.train", "/abs/train.csv")``; empty for the built-in digits."""
    return [(f"data.{key}", value) for key in _DATA_KEYS
            if (value := getattr(cfg.data, key, None)) is not None]


def _inside_system_folder(path: str) -> str | None:
    resolved = Path(path).resolve()
    for folder in SYSTEM_FOLDERS:
        if resolved == Path(folder) or Path(folder) in resolved.parents:
            return folder
    return None


def checkpoint_data(cfg: Config, checkpoint: str | Path, command: str) -> str | None:
    """Check the data paths of a config that came from ``checkpoint``; return the line that
    announces them (None when the data is the built-in digits: no file is read).

    Args:
        cfg: the checkpoint's saved config, validated.
        checkpoint: the checkpoint file, for messages.
        command: what reads the data, for messages (``eval``, ``train --resume``).

    Raises:
        UserError: naming the checkpoint and the key: a data path lies in a system folder.
    """
    paths = data_paths(cfg)
    for key, path in paths:
        folder = _inside_system_folder(path)
        if folder is not None:
            raise UserError(f"{checkpoint}: its saved config names {path} ({key}), inside the system "
                            f"folder {folder}; {command} does not read system folders from a checkpoint's "
                            f"config (a checkpoint may come from anyone); to use that data, name it in a "
                            f"config of your own{' with --data CONFIG' if command == 'eval' else ''}")
    if not paths:
        return None
    listed = ", ".join(f"{path} ({key})" for key, path in paths)
    return (f"softmax: note: {command} reads the {cfg.data.source} data that {checkpoint} names in its saved "
            f"config: {listed}; their content is not shown in messages")


def hidden_reason(checkpoint: str | Path) -> str:
    """What :func:`softmax_cli.errors.hiding_data` says in place of content."""
    return f"the file was named by checkpoint {checkpoint}, which may come from anyone"
