"""The one exception type for problems a user can cause and fix (bad files, bad options)."""


class FashionClfError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""
