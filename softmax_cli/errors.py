"""The one exception type that means "the user's input is wrong", and how its messages quote values."""

import reprlib

# at most about a line of a bad value (a YAML alias bomb expands to gigabytes printed whole)
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxdict, _QUOTE.maxlist, _QUOTE.maxstring, _QUOTE.maxlong, _QUOTE.maxother = \
    3, 4, 6, 60, 40, 60


def quote(value) -> str:
    """``repr(value)`` cut to about a line (``reprlib``): how an error message shows a bad value."""
    return _QUOTE.repr(value)


class UserError(Exception):
    """Bad input: a file that is missing or malformed, a bad config key or value.

    The CLI prints ``str(error)`` as one line on stderr and exits with code 2.
    The message names the file (and the place in it) and what was expected.
    """

    def __init__(self, message: str):
        # one line, whatever a file name, key or value quoted in it holds
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message)))


def quote_data(value) -> str:
    """How an error message shows content read from a data file (a CSV cell, a line, a label).

    Every reader quotes file content through this one function, so that content of files a
    checkpoint names (a checkpoint may come from anyone) can be kept out of messages here.
    """
    return quote(value)
