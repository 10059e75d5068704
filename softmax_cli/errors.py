"""The one exception type that means "the user's input is wrong", how its messages quote values,
and how text from outside (file content, class names) is made safe to print.

A checkpoint may come from anyone, and its saved config names data files: ``softmax eval``
reads them inside :func:`hiding_data`, and while it does, :func:`quote_data` (the one function
every reader uses to show file content in a message) shows no content, only that it is hidden
and why. See docs/security.md for the threat model.
"""

from __future__ import annotations

import contextlib
import contextvars
import reprlib
from typing import Iterator

# at most about a line of a bad value (a YAML alias bomb expands to gigabytes printed whole)
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxdict, _QUOTE.maxlist, _QUOTE.maxstring, _QUOTE.maxlong, _QUOTE.maxother = \
    3, 4, 6, 60, 40, 60

# while set: why the content of the data files being read must not be shown (their names came
# from a checkpoint, not from the user)
_HIDDEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("softmax_hidden_data", default=None)


def quote(value) -> str:
    """``repr(value)`` cut to about a line (``reprlib``): how an error message shows a bad value."""
    return _QUOTE.repr(value)


class UserError(Exception):
    """Bad input: a file that is missing or malformed, a bad config key or value.

    The CLI prints ``str(error)`` as one line on stderr and exits with code 2.
    The message names the file (and the place in it) and what was expected. ``key`` is the
    config key (``data.val_fraction``) whose value caused an error found after the config
    was validated, so that it can be blamed on the ``--set`` item that set it.
    """

    def __init__(self, message: str, key: str | None = None):
        # one line, whatever a file name, key or value quoted in it holds
        super().__init__(printable(str(message)))
        self.key = key   # the config key whose value caused it, when one did (see config.blame_override)


def printable(text: str) -> str:
    """``text`` safe to print on a terminal, on one line, encodable in UTF-8.

    A byte of a file name that is not UTF-8 (a surrogate escape, see ``os.fsdecode``) is
    shown as ``\\xXX``; any other character that is not printable (a newline, a terminal
    escape, a lone surrogate) as its Python escape (``\\n``, ``\\x1b``, ``\\ud800``). A
    backslash in the text is left as it is: the escapes are for reading, not for parsing.
    """
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:          # a lone surrogate that is no file-name byte
        pass
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def quote_data(value, *, bare: bool = False) -> str:
    """How an error message shows content read from a data file (a CSV cell, a line, a label).

    Every reader quotes file content through this one function: ``repr`` cut to a line
    (:func:`quote`), or with ``bare`` the value as text (``str``: a number as formatted by
    the caller, say ``f"{label:g}"``). Inside :func:`hiding_data` (data files named by a
    checkpoint, which may come from anyone) it shows no content at all, only
    ``<content not shown: ...>`` with the reason, so that a checkpoint naming, say,
    ``/etc/shadow`` as its training CSV cannot make an error message print that file.
    """
    hidden = _HIDDEN.get()
    if hidden is not None:
        return f"<content not shown: {hidden}>"
    return str(value) if bare else quote(value)


def data_hidden() -> bool:
    """Whether :func:`quote_data` hides content now (inside :func:`hiding_data`)."""
    return _HIDDEN.get() is not None


@contextlib.contextmanager
def hiding_data(reason: str) -> Iterator[None]:
    """While inside: :func:`quote_data` shows ``reason`` instead of any file content.

    ``reason`` says where the file names came from, e.g. ``"the file was named by
    checkpoint evil.npz"``.
    """
    token = _HIDDEN.set(reason)
    try:
        yield
    finally:
        _HIDDEN.reset(token)
