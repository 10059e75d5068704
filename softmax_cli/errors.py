"""The one exception type that means "the user's input is wrong"."""


class UserError(Exception):
    """Bad input: a file that is missing or malformed, a bad config key or value.

    The CLI prints ``str(error)`` as one line on stderr and exits with code 2.
    The message names the file (and the place in it) and what was expected.
    """
