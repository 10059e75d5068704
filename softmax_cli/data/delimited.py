"""Delimited text files of pixel rows: comma, semicolon, tab or whitespace separated.

One row per image: the label (one column, or one-hot columns) and the pixels in row-major
order, in ``.csv``/``.tsv``/``.txt`` files, gzip-compressed or not. The file is read as a
stream (:mod:`softmax_cli.data.files`), line by line with a bound on each line's length, and
parsed a chunk of lines at a time by numpy's C parser (``numpy.loadtxt``); only when a chunk
fails is it parsed again in Python to name the line and column at fault. Memory is the
parsed table (float32 pixels) plus one chunk.

Layout rules (the same for training files and for label-less rows given to ``predict``):

- delimiter: ``data.delimiter`` (comma, semicolon, tab, whitespace), else sniffed from the
  first lines with the standard library's ``csv.Sniffer``;
- header: the first row is a header when one of its cells is not a number;
- numbers: decimal, with an optional exponent (``1e-3``), ``nan``/``inf`` refused as not
  finite; quoted numbers (``"12"``) are numbers, as RFC 4180 quotes any cell; ``1_0``,
  ``0x10`` and ``1,5`` are not;
- label columns: ``first``, ``last``, a header name, or ``onehot_first``/``onehot_last``
  (the columns beyond the ``data.image_shape`` pixels hold a one-hot label).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ..errors import UserError, quote_data
from .dataset import number, plain
from .files import open_data

DELIMITERS = {"comma": ",", "semicolon": ";", "tab": "\t", "whitespace": None}
ONEHOT = ("onehot_first", "onehot_last")
CELL_CHARS = 64           # the longest cell read as a number (a float64's repr has at most 24)
MAX_PIXELS = 256 * 256    # the most pixels a row may hold when data.image_shape does not say
LABEL_MARGIN = 1024       # label columns a row may hold beyond its pixels (one-hot of 1024 classes)
CHUNK_LINES = 2048        # lines parsed at once by numpy's C parser
SNIFF_LINES, SNIFF_CHARS = 5, 1 << 16
PREALLOCATE = 512 << 20   # bytes of float32 pixels and float64 labels set aside before growing
_NUMBER = re.compile(r"\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)\s*", re.IGNORECASE)


def is_number(cell: str) -> bool:
    """Whether ``cell`` (unquoted) is a number as the reader reads it."""
    return _NUMBER.fullmatch(cell) is not None


@dataclass
class Table:
    """A delimited file, parsed.

    Attributes:
        header: the header's cells, or None.
        X: float32 (n, pixels) pixel values as written in the file.
        labels: float64 (n,) label values, or for one-hot labels int64 (n,) column indices;
            None when the layout has no label.
        label_names: the one-hot label columns' names (header cells, else "0", "1", ...).
        pixel_columns: int (pixels,) 0-based file column of each pixel.
    """

    header: Optional[list[str]]
    X: np.ndarray
    labels: Optional[np.ndarray]
    label_names: Optional[list[str]]
    pixel_columns: np.ndarray


# ----------------------------------------------------------------------------- lines
class _Lines:
    """The non-blank lines of a text stream as ``(line number, text)``, each read with a
    bound on its length (the length is checked as it is read, never after the fact)."""

    def __init__(self, path: Path, text, limit: int):
        self.path, self.text, self.limit, self.line_no = path, text, limit, 0

    def next(self) -> tuple[int, str] | None:
        while True:
            try:
                line = self.text.readline(self.limit + 1)
            except UnicodeDecodeError:
                raise UserError(f"{self.path}: not a UTF-8 text file (a byte that is not UTF-8 after "
                                f"line {self.line_no})") from None
            if not line:
                return None
            self.line_no += 1
            if len(line) > self.limit and not line.endswith("\n"):
                raise _too_long(self.path, self.line_no, line, self.limit)
            if line.strip():
                return self.line_no, line.rstrip("\n")


def _too_long(path: Path, line_no: int, prefix: str, limit: int) -> UserError:
    """The error for a line longer than ``limit``: naming the cell when one cell is to blame."""
    last = re.split(r"[,;\t ]", prefix)[-1]
    if len(last) > CELL_CHARS:
        column = len(re.findall(r"[,;\t]", prefix)) + 1 if re.search(r"[,;\t]", prefix) \
            else len(prefix.split()) or 1
        return UserError(f"{path}: line {line_no}, column {column}: a cell of more than {len(last):,} "
                         f"characters; expected a number (at most {CELL_CHARS} characters)")
    return UserError(f"{path}: line {line_no}: more than {limit:,} characters, longer than a row of this "
                     f"layout can be ({CELL_CHARS} characters a number); set data.image_shape to the "
                     f"image's [height, width] if its rows are this long")


# ----------------------------------------------------------------------------- cells
def _sniff(sample: list[str], path: Path) -> str | None:
    """The delimiter of the sample lines (None: any run of whitespace).

    ``csv.Sniffer`` picks among comma, semicolon, tab and space when the lines agree; when
    they do not (a ragged row among them, a header of another width), the first of comma,
    tab and semicolon that every line holds, else whitespace when every line splits on it,
    else comma (a file of one column).
    """
    lines = [line[:SNIFF_CHARS] for line in sample]
    try:
        found = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t ").delimiter
        return None if found == " " else found
    except csv.Error:
        pass
    for candidate in (",", "\t", ";"):
        if all(candidate in line for line in lines):
            return candidate
    if all(len(line.split()) > 1 for line in lines):
        return None
    if not any(c in line for line in lines for c in ",;\t"):
        return ","
    raise UserError(f"{path}: cannot tell the delimiter (comma, semicolon, tab or whitespace) from the "
                    f"first lines; set data.delimiter")


def split_cells(line: str, delimiter: str | None) -> list[str]:
    """The cells of one line: ``str.split`` for whitespace, the ``csv`` module (quotes
    removed) for a delimiter character."""
    if delimiter is None:
        return line.split()
    if '"' not in line:
        return line.split(delimiter)
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error as exc:
        raise ValueError(str(exc)) from None


def _locate(path: Path, numbered: list[tuple[int, str]], delimiter: str | None, width: int) -> UserError:
    """The first cell or row of ``numbered`` lines that numpy's parser refused, named."""
    for line_no, line in numbered:
        try:
            cells = split_cells(line, delimiter)
        except ValueError as exc:
            return UserError(f"{path}: line {line_no}: malformed CSV ({exc})")
        if len(cells) != width:
            return UserError(f"{path}: line {line_no}: {len(cells)} columns, expected {width} like the "
                             f"first data row")
        for column, cell in enumerate(cells, start=1):
            if not is_number(cell):
                return UserError(f"{path}: line {line_no}, column {column}: expected a number, got "
                                 f"{quote_data(cell.strip())}")
    first, last = numbered[0][0], numbered[-1][0]
    return UserError(f"{path}: lines {first} to {last}: not read as numbers")


def _parse(path: Path, numbered: list[tuple[int, str]], delimiter: str | None, width: int,
           integers: bool = True) -> np.ndarray:
    """(len(numbered), width): the lines parsed by numpy's C parser, every value finite.

    With ``integers`` the lines are first parsed as int64, which numpy parses about six times
    faster than floats (most pixel files hold whole numbers); a chunk that is not all
    integers is parsed again as float64.

    Raises:
        UserError: naming the line (and column) of the first cell that is not a number, a
            row of another width, or a value that is not finite.
    """
    lines = [line for _, line in numbered]
    options = dict(delimiter=delimiter, quotechar=None if delimiter is None else '"', comments=None, ndmin=2)
    table = None
    if integers:
        try:
            table = np.loadtxt(lines, dtype=np.int64, **options)
        except (ValueError, OverflowError):
            pass
    if table is None:
        try:
            table = np.loadtxt(lines, dtype=np.float64, **options)
        except ValueError:
            raise _locate(path, numbered, delimiter, width) from None
    if table.shape != (len(lines), width):
        raise _locate(path, numbered, delimiter, width)
    if table.dtype.kind == "f" and not np.isfinite(table).all():
        row, col = np.argwhere(~np.isfinite(table))[0]
        raise UserError(f"{path}: line {numbered[row][0]}, column {col + 1}: expected a finite number, "
                        f"got {number(table[row, col])}")
    return table


class _Growing:
    """Rows appended chunk by chunk into one array, allocated once for the rows the file can
    hold (an upper bound, never touched beyond what is written: those pages stay virtual) and
    doubled only if a gzip file's own size estimate was wrong. A list of chunks concatenated
    at the end would hold the table twice at its peak."""

    def __init__(self, rows: int):
        self.rows, self.array, self.n = max(rows, 1), None, 0

    def add(self, part: np.ndarray) -> None:
        if self.array is None:
            self.array = np.empty((self.rows, *part.shape[1:]), part.dtype)
        if self.n + len(part) > len(self.array):
            bigger = np.empty((max(2 * len(self.array), self.n + len(part)), *part.shape[1:]), part.dtype)
            bigger[:self.n] = self.array[:self.n]
            self.array = bigger
        self.array[self.n:self.n + len(part)] = part
        self.n += len(part)

    def result(self) -> np.ndarray:
        return self.array[:self.n]


# ----------------------------------------------------------------------------- layout
@dataclass
class _Layout:
    labels: np.ndarray          # 0-based columns of the label (one, or the one-hot block)
    pixels: np.ndarray          # 0-based columns of the pixels
    onehot: bool

    def columns(self, which: np.ndarray) -> slice | np.ndarray:
        """``which`` as a slice when its columns are consecutive (a view, not a gather)."""
        if len(which) and np.array_equal(which, np.arange(which[0], which[0] + len(which))):
            return slice(int(which[0]), int(which[0]) + len(which))
        return which


def _layout(spec: str, header: list[str] | None, width: int, pixels: int | None, path: Path) -> _Layout:
    """Which columns hold the label and which the pixels, for a row of ``width`` cells.

    ``spec``: ``first``, ``last``, a header name, ``onehot_first``, ``onehot_last``, or
    ``none`` (rows of pixels only). ``pixels``: the pixel count ``data.image_shape`` declares.
    """
    columns = np.arange(width)
    if spec == "none":
        if pixels is not None and width != pixels:
            raise UserError(f"{path}: rows of {width} columns; expected {pixels} pixel values per row "
                            f"(the model's input), with no label column")
        return _Layout(columns[:0], columns, False)
    if spec in ONEHOT:
        k = width - (pixels or 0)
        if pixels is None or k < 2:
            raise UserError(f"{path}: rows of {width} columns leave {k} for a one-hot label after the "
                            f"{pixels} pixels of data.image_shape; a one-hot label needs a column per "
                            f"class (at least 2)")
        labels = columns[:k] if spec == "onehot_first" else columns[width - k:]
        return _Layout(labels, np.setdiff1d(columns, labels), True)
    col = _label_column(header, width, spec, path)
    if width < 2:
        raise UserError(f"{path}: no pixel columns besides the label column")
    return _Layout(columns[col:col + 1], np.delete(columns, col), False)


def _label_column(header: list[str] | None, width: int, spec: str, path: Path) -> int:
    if spec == "first":
        return 0
    if spec == "last":
        return width - 1
    if header is None:
        raise UserError(f"{path}: no header row, so data.label_column '{spec}' cannot be found; "
                        f"use first or last")
    if spec not in header:
        shown = ", ".join(quote_data(h) for h in header[:5])
        raise UserError(f"{path}: no column named '{spec}' for data.label_column "
                        f"(columns: {shown}{', ...' if len(header) > 5 else ''})")
    return header.index(spec)


def _check_labels(block: np.ndarray, layout: _Layout, path: Path, numbered, spec: str) -> np.ndarray:
    """The labels of one chunk: float64 values, or int64 one-hot column indices."""
    if layout.onehot:
        ok = ((block == 0) | (block == 1)).all(axis=1) & (block.sum(axis=1) == 1)
        if not ok.all():
            row = int(np.argmin(ok))
            raise UserError(f"{path}: line {numbered[row][0]}: the {block.shape[1]} label columns "
                            f"(data.label_column {spec}) are not one-hot (one 1, the others 0): "
                            f"{quote_data([plain(v) for v in block[row]])}")
        return np.argmax(block, axis=1).astype(np.int64)
    labels = block[:, 0]
    wrong = (labels != np.round(labels)) | (np.abs(labels) > 2**53)   # 2**53: exact in float64
    if wrong.any():
        row = int(np.argmax(wrong))
        raise UserError(f"{path}: line {numbered[row][0]}: label {number(labels[row])} is not an integer "
                        f"(of magnitude below 2**53)")
    return labels.astype(np.float64)


def _check_range(X: np.ndarray, pixel_range: tuple[float, float], layout: _Layout, path: Path,
                 numbered, range_key: str) -> None:
    low, high = pixel_range
    bad = (X < low) | (X > high)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UserError(f"{path}: line {numbered[row][0]}, column {layout.pixels[col] + 1}: pixel value "
                        f"{number(X[row, col])} outside [{low:g}, {high:g}] ({range_key})")


# ----------------------------------------------------------------------------- reading
def _first_limit(spec: str, pixels: int | None) -> int:
    columns = (pixels if pixels is not None else MAX_PIXELS) + LABEL_MARGIN
    return columns * (CELL_CHARS + 1)


def _chunks(lines: _Lines, pending: list[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
    chunk = list(pending)
    while True:
        while len(chunk) < CHUNK_LINES:
            item = lines.next()
            if item is None:
                break
            chunk.append(item)
        if not chunk:
            return
        yield chunk
        if len(chunk) < CHUNK_LINES:
            return
        chunk = []


def read_table(path: str | Path, spec: str = "first", pixels: int | None = None,
               delimiter: str | None = None, pixel_range: tuple[float, float] | None = None,
               range_key: str = "data.pixel_range") -> Table:
    """Read and check a delimited file of pixel rows.

    Args:
        path: the file (``.gz`` or plain; told by its content).
        spec: the label column(s): ``first``, ``last``, a header name, ``onehot_first``,
            ``onehot_last``, or ``none`` for rows of pixels only.
        pixels: the pixel count per row when known (``data.image_shape``; needed for one-hot
            labels); it also bounds the line length. None: at most :data:`MAX_PIXELS`.
        delimiter: a key of :data:`DELIMITERS`, or None to sniff it.
        pixel_range: ``(low, high)`` every pixel must lie in; None: not checked here.
        range_key: the config key named when a pixel lies outside ``pixel_range``.

    Returns:
        A :class:`Table`.

    Raises:
        UserError: naming the file and the line (and column) at fault: not a regular file,
            empty, no data rows, a line longer than a row can be, a cell that is not a finite
            number, a row of another width, a label that is not an integer or not one-hot,
            a pixel outside ``pixel_range``, a header of another width than the rows.
    """
    path = Path(path)
    with open_data(path) as f:
        lines = _Lines(path, f.text(), _first_limit(spec, pixels))
        sample = []
        while len(sample) < SNIFF_LINES and (item := lines.next()) is not None:
            sample.append(item)
        if not sample:
            raise UserError(f"{path}: empty CSV file")
        sep = DELIMITERS[delimiter] if delimiter is not None else _sniff([s for _, s in sample], path)
        try:
            first = split_cells(sample[0][1], sep)
        except ValueError as exc:
            raise UserError(f"{path}: line {sample[0][0]}: malformed CSV ({exc})") from None
        header = None if all(map(is_number, first)) else [c.strip() for c in first]
        rows = sample[1:] if header is not None else sample
        if not rows and (item := lines.next()) is not None:
            rows = [item]
        if not rows:
            raise UserError(f"{path}: no data rows")
        try:
            width = len(split_cells(rows[0][1], sep))
        except ValueError as exc:
            raise UserError(f"{path}: line {rows[0][0]}: malformed CSV ({exc})") from None
        if header is not None and len(header) != width:
            raise UserError(f"{path}: the header has {len(header)} columns, the rows {width}")
        layout = _layout(spec, header, width, pixels, path)
        lines.limit = width * (CELL_CHARS + 1) + 256
        for line_no, line in rows:
            if len(line) > lines.limit:
                raise _too_long(path, line_no, line[:lines.limit + 1], lines.limit)
        # every row takes at least two characters a cell (a digit and a delimiter or line end);
        # at most PREALLOCATE bytes are set aside up front (address space, resident once written)
        most_rows = min(f.estimated_size // (2 * width) + 1, PREALLOCATE // (8 * width))
        X_rows, label_rows, integers = _Growing(most_rows), _Growing(most_rows), True
        for chunk in _chunks(lines, rows):
            table = _parse(path, chunk, sep, width, integers)
            integers = table.dtype.kind == "i"
            X = table[:, layout.columns(layout.pixels)].astype(np.float32)
            if pixel_range is not None:
                _check_range(X, pixel_range, layout, path, chunk, range_key)
            X_rows.add(X)
            if spec != "none":
                label_rows.add(_check_labels(table[:, layout.columns(layout.labels)], layout, path, chunk, spec))
            del table
    X = X_rows.result()
    labels = None if spec == "none" else label_rows.result()
    label_names = None
    if layout.onehot:
        label_names = [header[c] for c in layout.labels] if header else [str(i) for i in range(len(layout.labels))]
    return Table(header, X, labels, label_names, layout.pixels)


def same_columns(a: Table, b: Table) -> bool:
    """Whether two tables have the same layout (pixel columns and header)."""
    return (a.X.shape[1] == b.X.shape[1] and np.array_equal(a.pixel_columns, b.pixel_columns)
            and (a.header is None or b.header is None or a.header == b.header))


def read_rows(path: str | Path, n_features: int, pixel_range: tuple[float, float],
              delimiter: str | None = None, range_key: str = "data.pixel_range") -> np.ndarray:
    """Label-less pixel rows of a delimited file (see :func:`read_table`, layout ``none``).

    Returns:
        float32 (n, n_features): each value minus ``pixel_range[0]``, so in
        ``[0, pixel_range[1] - pixel_range[0]]`` with 0 as background.
    """
    table = read_table(path, "none", n_features, delimiter, pixel_range, range_key)
    X = table.X
    if pixel_range[0]:
        X -= np.float32(pixel_range[0])
    return X
