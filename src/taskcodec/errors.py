"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (a wrong path, a bad
params value, an odd input file). Stage CLIs print its message as one
sentence and exit with status 2 instead of showing a traceback.
"""


class UserError(Exception):
    """A problem with the user's input, explained in one actionable sentence."""
