"""Where softmax keeps what it can rebuild: compiled kernels and downloaded data.

Nothing is ever written inside the installed package: a read-only install, several users
sharing one install, and a reinstall over an earlier one (``pip install .`` then
``pip install -e .``) all depend on it. Every cache lives below :func:`cache_dir`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CACHE_ENV = "SOFTMAX_CACHE_DIR"


def cache_dir() -> Path:
    """The user cache directory of softmax: ``$SOFTMAX_CACHE_DIR`` when set, else
    ``platformdirs.user_cache_dir("softmax")`` (``~/.cache/softmax`` on Linux,
    ``~/Library/Caches/softmax`` on macOS, ``%LOCALAPPDATA%\\softmax\\Cache`` on Windows).

    The directory is not created here; each user of it creates its own sub-folder.
    """
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("softmax", appauthor=False))


def _writable_dir(path: Path) -> Path | None:
    """``path``, created if needed, when this process can write in it; else None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK | os.X_OK) else None


def configure_numba() -> Path:
    """Point numba's on-disk cache of compiled kernels (``@njit(cache=True)``) at
    ``cache_dir() / "numba"`` and return the directory used.

    Call it before any kernel module is imported (:mod:`softmax_cli.nn.kernels` and
    :mod:`softmax_cli.optim` do, first thing). Numba would otherwise write its cache into
    ``__pycache__`` beside the installed source files, where a later ``pip install -e .``
    leaves it behind as a folder that shadows the editable install. A ``NUMBA_CACHE_DIR``
    set by the user is kept. When the cache directory cannot be created or written (a
    read-only home), a per-user folder under the system's temporary directory is used, so
    compiled kernels are still cached and nothing fails.
    """
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    if not chosen:
        user = os.getuid() if hasattr(os, "getuid") else "user"
        path = (_writable_dir(cache_dir() / "numba")
                or _writable_dir(Path(tempfile.gettempdir()) / f"softmax-numba-{user}"))
        chosen = str(path) if path is not None else ""
        if chosen:
            os.environ["NUMBA_CACHE_DIR"] = chosen
    import sys

    if "numba" in sys.modules:          # imported before us: its config was read already
        sys.modules["numba"].config.CACHE_DIR = chosen
    return Path(chosen)


def data_cache_dir(name: str) -> Path:
    """The folder a data set downloaded by name (``data.source: mnist``, ...) is kept in when
    ``data.cache_dir`` is not set: ``cache_dir() / "data" / name``."""
    return cache_dir() / "data" / name


MNIST_ENV = "SOFTMAX_MNIST_DIR"


def mnist_dir() -> Path:
    """Where the test suite and ``benchmarks/`` read MNIST's four IDX files: ``$SOFTMAX_MNIST_DIR``
    when set (CI sets it), else the download cache that ``data.source: mnist`` fills."""
    given = os.environ.get(MNIST_ENV)
    return Path(given).expanduser() if given else data_cache_dir("mnist")
