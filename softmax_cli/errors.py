"""The one exception type that means "the user's input is wrong"."""


class UserError(Exception):
    """Bad input: a file that is missing or malformed, a bad config key or value.

    The CLI prints ``str(error)`` as one line on stderr and exits with code 2.
    The message names the file (and the place in it) and what was expected.
    """

    def __init__(self, message: str):
        # one line, whatever a file name, key or value quoted in it holds
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message)))
