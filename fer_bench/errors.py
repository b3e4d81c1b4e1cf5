"""User-facing errors: the CLI prints their message and exits with status 2, no traceback."""


class UserError(Exception):
    """Bad input the user can fix (unknown paper, missing data, bad override, ...).

    The message is one paragraph that says what went wrong and what to do about it.
    """


class DataError(UserError):
    """The dataset is missing, malformed or unreadable."""
