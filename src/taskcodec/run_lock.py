"""One pipeline run per results folder, and one sentence for a second one.

Snakemake locks the files a run writes, but a second run on the same folder stops with a ``LockException``
whose advice (``--unlock``) is wrong while the first run is alive. So the Snakefile holds an ``flock`` on
``<results>/.pipeline.lock`` from ``onstart`` to the end of its process (the kernel releases it however the
process ends: it is never stale), and every later reading of the Snakefile in a main process checks it first
(:func:`check_free`; ``python -m taskcodec.run_lock <results>`` for scripts). Runs into different results
folders do not exclude each other, as in Snakemake.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

from taskcodec.errors import UserError

NAME = ".pipeline.lock"
_held: list[IO[str]] = []  # the lock file of this process's run, open as long as the process lives


def _locked(handle: IO[str], kind: int) -> bool:
    try:
        fcntl.flock(handle, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def check_free(results: str | os.PathLike) -> None:
    """Raise :class:`UserError` naming the run that holds the lock of ``results``, if one does."""
    path = Path(results, NAME)
    if _held or not os.access(path, os.R_OK):
        return
    with open(path) as handle:  # a shared lock, which a read-only file allows (another user's run)
        if not _locked(handle, fcntl.LOCK_SH):
            owner = handle.read().strip() or "a process that just started"
            raise UserError(f"another pipeline run ({owner}) is writing to {Path(results)}/; "
                            "wait for it to end or stop it, then run again")


def hold(results: str | os.PathLike) -> None:
    """Lock ``results`` for the rest of this process (not if a run started at the same moment has the lock:
    Snakemake's own lock then stops one of the two)."""
    path = Path(results, NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not os.access(path, os.W_OK):
        return
    handle = open(path, "a+")
    if not _locked(handle, fcntl.LOCK_EX):
        handle.close()
        return
    handle.truncate(0)
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    _held.append(handle)


if __name__ == "__main__":
    try:
        check_free(sys.argv[1])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
