"""File outputs that are written atomically and carry their provenance.

A killed job must never leave a file that looks complete: every writer here
writes to a temporary sibling ``.<name>.<8 random characters>.tmp`` in the
same folder and renames it into place (``os.replace`` is atomic on POSIX file
systems). The temporary file or folder is created with plain ``open``/``mkdir``
modes, so the result follows the user's umask (e.g. 0644/0755 with umask 022,
group-writable with 002). Before writing, temporaries of the same output left
by a killed job (``.<name>.*.tmp`` and ``.<name>.*.old``) are removed; two jobs
must therefore never write the same output at once (Snakemake's lock on the
working directory refuses a second run over the same outputs).

Checkpoints are loaded with ``torch.load(weights_only=True)``: a file that
would need arbitrary unpickling (and could run code) is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import secrets
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterator

from taskcodec.errors import UserError

_RANDOM_PART = "[a-z0-9_]{8}"  # ours are hex; tempfile's (older outputs) use this alphabet


def _temporary_sibling(path: Path, suffix: str) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"


def _remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Delete the ``.<name>.*.tmp`` / ``.<name>.*.old`` siblings of ``path`` that killed jobs left."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{_RANDOM_PART}\.(tmp|old)")
    for entry in path.parent.iterdir():
        if not pattern.fullmatch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _fresh_temporary(path: str | os.PathLike) -> tuple[Path, Path]:
    """``path`` and a new temporary name beside it, after removing what killed jobs left there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    return path, _temporary_sibling(path, ".tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty temporary file next to ``path``; rename it to ``path`` on success."""
    path, tmp = _fresh_temporary(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # 0o666 minus the umask, as open() does
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty temporary folder next to ``path``; it replaces ``path`` on success."""
    path, tmp = _fresh_temporary(path)
    tmp.mkdir()  # 0o777 minus the umask
    try:
        yield tmp
        if path.exists():  # move the old folder aside first, so a crash never leaves neither
            old = _temporary_sibling(path, ".old")
            old.mkdir()
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; run the stage that writes it first")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); delete it and rerun its stage") from None


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Save a checkpoint dict atomically (``torch.save`` to a temporary name, then rename).

    Store only tensors and plain types (dict, list, str, numbers, None): anything
    else cannot be loaded by :func:`load_checkpoint`.
    """
    import torch  # imported here so stages without checkpoints start without loading torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _first_sentence(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text.split('. ')[0][:120]}" if text else type(err).__name__


def _unsafe_reason(err: pickle.UnpicklingError) -> str:
    """What the weights-only unpickler refused, e.g. ' (it refers to posix.system)', or ''."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    return f" (it refers to {found.group(1)})" if found else ""


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, safely, with a one-sentence error if unusable;
    with ``mmap``, its tensors are mapped from the file (``torch.load(mmap=True)``): read when used.

    Loading never runs code from the file (``weights_only=True``); a missing,
    empty, truncated or foreign file, or one holding objects other than
    tensors and plain types, raises a :class:`UserError` naming the path.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise UserError(f"checkpoint {path} {what}; train it first or fix the path")
    if path.stat().st_size == 0:
        raise UserError(
            f"checkpoint {path} is empty (0 bytes), cut off by a killed job or a full disk; "
            "delete it and rerun the stage that writes it"
        )
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise UserError(
            f"checkpoint {path} was not written by taskcodec or holds objects that cannot be loaded safely"
            f"{_unsafe_reason(err)}; if a taskcodec stage wrote it, delete it and rerun that stage, otherwise "
            "save the weights as a plain state dict (torch.save(model.state_dict(), path))"
        ) from None
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise UserError(
            f"checkpoint {path} is truncated or not a PyTorch checkpoint ({_first_sentence(err)}); "
            "delete it and rerun the stage that writes it, or fix the path"
        ) from None
    if not isinstance(payload, dict):
        raise UserError(
            f"checkpoint {path} holds a {type(payload).__name__}, not a taskcodec checkpoint (a dict); fix the path"
        )
    return payload


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file's bytes (``md5`` is DVC's content hash)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
