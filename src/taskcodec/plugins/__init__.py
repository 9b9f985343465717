"""Project plug-ins: every module in this package is imported before a codec or task is looked up.

A researcher adds a codec or a task by dropping one module here (its class registered with
``@register_codec`` or ``@register_task``); a separate installed package can do the same by
declaring an entry point in the group ``taskcodec.plugins`` (``[project.entry-points."taskcodec.plugins"]``
in its pyproject.toml). See README "Extending taskcodec".
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from importlib.metadata import entry_points


@cache
def load_plugins() -> None:
    """Import the modules of this package and of the ``taskcodec.plugins`` entry points (once per process)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    for entry_point in entry_points(group="taskcodec.plugins"):
        entry_point.load()
