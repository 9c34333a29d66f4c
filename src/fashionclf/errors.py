"""The exception type for problems a user can cause and fix (bad files, bad options), and the warning type for what
a user should know but need not stop for."""


class FashionClfError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""


class FashionClfWarning(UserWarning):
    """A user-facing warning: the CLI prints its message on one line and carries on."""
