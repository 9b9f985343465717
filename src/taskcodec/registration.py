"""The one way things are registered by name: a class decorator that adds a class to a table.

Every family (codecs, tasks, task models, latent classifiers, classical codecs) keeps its own
table and decorator made here, so a new entry is one class and one decorator line.
"""

from __future__ import annotations

from typing import Callable


def registrar(table: dict[str, type], kind: str,
              accept: Callable[[str, type], None] | None = None) -> Callable[[str], Callable[[type], type]]:
    """A ``register(name)`` class decorator adding classes to ``table``; ``accept(name, cls)`` may check or
    complete a class first (e.g. set its ``name``)."""

    def register(name: str) -> Callable[[type], type]:
        def decorator(cls: type) -> type:
            if name in table:
                raise ValueError(f"{kind} '{name}' is registered twice")
            if accept is not None:
                accept(name, cls)
            table[name] = cls
            return cls

        return decorator

    return register
