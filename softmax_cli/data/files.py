"""Opening data files: regular files only, problems named, gzip inflated as a bounded stream.

Every reader of a data file (CSV, IDX, ``.npz``/``.npy``) opens it through :func:`open_data`,
so that the same rules hold for all of them:

- only a regular file is read: a FIFO would block forever, a device such as ``/dev/zero``
  would be read without end, so both (and sockets) are refused as "not a regular file"
  before anything is read from them;
- a missing file, a folder, a file this user may not read: one line each, exit 2;
- a gzip file (told by its magic number, whatever its name) is inflated as a stream, and a
  stream is refused as a decompression bomb as soon as what it has inflated to is more than
  :data:`MAX_INFLATION` times the compressed bytes read so far (once past
  :data:`RATIO_FLOOR`), or more than :data:`MAX_INFLATION` times the whole file (once past
  :data:`MIN_INFLATED_LIMIT`): a 2 MB file of one repeated byte stops after 4 MB.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import zlib
from pathlib import Path
from typing import BinaryIO

from ..errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
# deflate can reach about 1032:1 on one repeated byte; real data files (MNIST as CSV: 7:1,
# its IDX images 5:1) stay far below 256:1, so a stream above both limits is refused
MAX_INFLATION = 256
MIN_INFLATED_LIMIT = 64 * 2**20     # small files may inflate that far whatever their ratio
RATIO_FLOOR = 4 * 2**20             # the running ratio is checked once this much is inflated


def _special_kind(mode: int) -> str | None:
    """What a non-regular, non-directory file is (a FIFO, a socket, a device), else None."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "a special file"


def _os_problem(path: Path, exc: OSError) -> UserError:
    if isinstance(exc, FileNotFoundError):
        return UserError(f"{path}: file not found")
    if isinstance(exc, PermissionError):
        return UserError(f"{path}: permission denied (cannot read this file)")
    if isinstance(exc, IsADirectoryError):
        return UserError(f"{path}: is a directory, expected a file")
    if isinstance(exc, NotADirectoryError):
        return UserError(f"{path}: file not found (a part of the path is not a folder)")
    return UserError(f"{path}: cannot read ({exc.strerror or exc})")


def check_regular(path: str | Path) -> os.stat_result:
    """``os.stat(path)`` of a regular file; nothing is opened.

    Raises:
        UserError: naming ``path``: missing, permission denied, a directory, or not a
            regular file (a FIFO, socket or device: reading those blocks or never ends).
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _os_problem(path, exc) from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path}: is a directory, expected a file")
    kind = _special_kind(st.st_mode)
    if kind:
        raise UserError(f"{path}: not a regular file ({kind}); expected a data file")
    return st


def open_regular(path: str | Path) -> BinaryIO:
    """Open a regular file for reading in binary mode, never blocking on what is not one.

    The file is checked with ``stat`` before it is opened and with ``fstat`` after (a file
    swapped in between is still caught); it is opened with ``O_NONBLOCK`` so that even then
    a FIFO cannot block the open.

    Raises:
        UserError: as :func:`check_regular`.
    """
    path = Path(path)
    check_regular(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _os_problem(path, exc) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode) or _special_kind(mode):
            raise UserError(f"{path}: not a regular file; expected a data file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _BoundedInflate(io.RawIOBase):
    """A gzip stream read through a limit on its inflated size; gzip errors become UserErrors."""

    def __init__(self, path: Path, raw: BinaryIO, limit: int):
        self.path, self.limit, self.inflated = path, limit, 0
        self._raw = raw
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self.limit + 1 - self.inflated)
        try:
            data = self._gz.read(want) if want > 0 else b""
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{self.path}: corrupt gzip data ({exc})") from None
        self.inflated += len(data)
        if self.inflated > self.limit or (self.inflated > RATIO_FLOOR
                                          and self.inflated > MAX_INFLATION * self._raw.tell()):
            raise UserError(f"{self.path}: inflates to more than {MAX_INFLATION} times its compressed size "
                            f"({self.inflated:,} bytes from {self._raw.tell():,}): refused as a "
                            f"decompression bomb")
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._gz.close()
        super().close()


class DataFile:
    """An open data file: ``stream`` yields its (inflated) bytes.

    Attributes:
        path: the file as named.
        size: its size on disk, bytes.
        compressed: whether it is gzip data (inflated on the fly).
        limit: the most bytes ``stream`` will yield: the file size, or the inflation limit.
        estimated_size: what ``stream`` will likely yield: the file size, or for gzip the
            inflated size its trailer records (exact for one member below 4 GiB), within
            ``limit``.
        stream: a buffered binary stream (``read``, ``readinto``, ``readline``).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        raw = open_regular(self.path)
        try:
            self.size = os.fstat(raw.fileno()).st_size
            self.compressed = raw.read(2) == GZIP_MAGIC
            trailer = b""
            if self.compressed and self.size >= 18:
                raw.seek(self.size - 4)
                trailer = raw.read(4)
            raw.seek(0)
        except OSError as exc:
            raw.close()
            raise _os_problem(self.path, exc) from None
        if self.compressed:
            self.limit = max(MIN_INFLATED_LIMIT, MAX_INFLATION * self.size)
            recorded = int.from_bytes(trailer, "little") if len(trailer) == 4 else 0
            self.estimated_size = min(self.limit, max(recorded, self.size))
            self.stream = io.BufferedReader(_BoundedInflate(self.path, raw, self.limit), 1 << 16)
        else:
            self.limit = self.estimated_size = self.size
            self.stream = io.BufferedReader(_Checked(self.path, raw), 1 << 16)

    def text(self) -> io.TextIOWrapper:
        """The stream as UTF-8 text (a byte-order mark dropped), with universal newlines:
        Windows (CRLF) and old Mac (CR) line ends read as ``\\n``."""
        return io.TextIOWrapper(self.stream, encoding="utf-8-sig", errors="strict", newline=None)

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> "DataFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Checked(io.RawIOBase):
    """A plain file whose read errors (EIO, a file vanishing on a network share) become UserErrors."""

    def __init__(self, path: Path, raw: BinaryIO):
        self.path, self._raw = path, raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self._raw.readinto(buffer)
        except OSError as exc:
            raise _os_problem(self.path, exc) from None

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_data(path: str | Path) -> DataFile:
    """Open a data file for reading (see the module's rules); use it as a context manager.

    Raises:
        UserError: missing, unreadable, a directory, not a regular file; later, while
            reading: corrupt gzip data, or gzip data inflating beyond the limit.
    """
    return DataFile(path)


def read_exactly(f: DataFile, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``f.stream``; return how many bytes came (fewer at the end)."""
    got = 0
    while got < len(buffer):
        n = f.stream.readinto(buffer[got:])
        if not n:
            break
        got += n
    return got


def count_rest(f: DataFile) -> int:
    """Read ``f.stream`` to its end (within its limit), returning the number of bytes read."""
    total = 0
    while chunk := f.stream.read(1 << 20):
        total += len(chunk)
    return total
