"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (a wrong path, a bad
params value, an odd input file). Stage CLIs print its message as one
sentence and exit with status 2 instead of showing a traceback.
"""

from __future__ import annotations

import os


class UserError(Exception):
    """A problem with the user's input, explained in one actionable sentence."""


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as text that any UTF-8 file or terminal accepts (undecodable name bytes as ``\\xNN``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
