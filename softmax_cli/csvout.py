"""Every CSV file softmax writes, made one way: the ``csv`` module, and cells a spreadsheet
cannot run.

A spreadsheet (Excel, LibreOffice Calc, Google Sheets) opening a CSV file runs a cell that
begins with ``=``, ``+``, ``-`` or ``@`` as a formula, and one beginning with a tab or a
carriage return can be made to; a class folder named ``=HYPERLINK(...)`` would land in
``per_class.csv`` as a live formula. OWASP's rule ("CSV Injection",
https://owasp.org/www-community/attacks/CSV_Injection) is applied to every text cell: such a
cell is written with a single quote in front (``'=1+2``), which spreadsheets show as text.

Numbers stay numbers: a Python or NumPy number (a probability, a loss, a count) is written
as the number it is, and so is a text cell that is exactly a plain decimal number such as
``-1`` or ``+2.5e-3`` (a class named ``-1``): a spreadsheet reads it as that number, which
is no formula. Anything else that begins with one of the characters above (``-1+2``,
``-cmd|...``) gets the quote. Quoting (commas, double quotes, line breaks inside a cell) is
the ``csv`` module's, minimal quoting, with RFC 4180's ``\\r\\n`` line ends.
"""

from __future__ import annotations

import csv
import io
import numbers
import re
from typing import Any, Iterable, Sequence

#: the first characters that make a spreadsheet cell a formula (OWASP)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet shows and never runs.

    Numbers (``bool`` excluded) and ``None`` (an empty cell) are returned unchanged; any other
    value is turned into text, and text that begins with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return, and is not a plain decimal number, gets a ``'`` in front.
    """
    if value is None or (isinstance(value, numbers.Number) and not isinstance(value, bool)):
        return value
    text = str(value)
    if text.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A whole CSV document: the header row, then ``rows``, each cell through :func:`safe_cell`."""
    buf = io.StringIO()
    # RFC 4180's CRLF line ends: the csv module quotes a cell holding a character of the line
    # terminator, so with "\r\n" a cell holding a lone "\r" is quoted too (with "\n" it is not)
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([safe_cell(c) for c in header])
    writer.writerows([safe_cell(c) for c in row] for row in rows)
    return buf.getvalue()


def dict_rows_text(columns: Sequence[str], rows: Iterable[dict]) -> str:
    """:func:`csv_text` of dicts: one row each, the ``columns`` in order, missing keys empty."""
    return csv_text(columns, ([row.get(c, "") for c in columns] for row in rows))


def csv_bytes(text: str) -> bytes:
    """The bytes of a CSV document: UTF-8, a byte of a file name that is not UTF-8 (a
    surrogate escape, see ``os.fsdecode``) written back as that byte, any other lone
    surrogate (only a hand-edited checkpoint's class names could hold one) as ``\\udXXX``."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")
