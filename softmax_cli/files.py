"""Opening a file the user named, refusing what is no regular file before it can block.

A FIFO (named pipe) opened for reading waits for a writer, forever; a device such as
``/dev/zero`` reads without end; a socket cannot be opened at all. :func:`open_regular`
opens with ``O_NONBLOCK`` (which makes opening a FIFO return at once), looks at what it
opened (``fstat``, so no race with a file swapped in between) and refuses anything but a
regular file, naming the problem the way every softmax message does.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import UserError


def open_regular(path: str | Path, kind: str = "file", expected: str = "a file") -> BinaryIO:
    """Open ``path`` for reading in binary mode, if it is a regular file (links followed).

    Args:
        path: the file.
        kind: what the file is, in messages: ``"checkpoint"`` gives ``checkpoint not found``.
        expected: what was expected instead, e.g. ``"a .npz checkpoint"``.

    Returns:
        The open file (blocking reads: ``O_NONBLOCK`` is cleared again).

    Raises:
        UserError: naming ``path``: ``{kind} not found``; ``is a directory, expected ...``;
            ``not a regular file, expected ...`` (a FIFO, socket or device);
            ``permission denied`` (the file, or a folder on its way, may not be read);
            ``cannot read ...`` (any other error of the operating system).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"{path}: {kind} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected {expected}") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied (cannot read this {kind})") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:      # a socket, or a FIFO-like device without a reader
            raise UserError(f"{path}: not a regular file, expected {expected}") from None
        raise UserError(f"{path}: cannot read this {kind} ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UserError(f"{path}: is a directory, expected {expected}")
        if not stat.S_ISREG(mode):
            raise UserError(f"{path}: not a regular file, expected {expected}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise

