"""Folders that appear whole or not at all: every store (images, corpora, token ids) is written
under a temporary name and published by one rename, so a build killed at any point leaves nothing
that a later run mistakes for a finished store."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selfsup import distributed
from selfsup.errors import DataError


def publish(partial: Path, final: Path, marker: str) -> None:
    """Rename the finished folder ``partial`` to ``final``; where another process published
    ``final`` first (its ``marker`` file exists), ``partial`` is dropped. Raises ``OSError`` for
    any other failure to rename."""
    try:
        os.replace(partial, final)
    except OSError:
        if not (final / marker).exists():
            raise
        shutil.rmtree(partial, ignore_errors=True)


def partial_suffix() -> str:
    """The suffix of a folder this process is building: ``partial-HOST-PID``."""
    return f"partial-{socket.gethostname()}-{os.getpid()}"


def remove_dead_partials(folder: Path) -> None:
    """Remove the ``*.partial-HOST-PID`` folders in ``folder`` of this machine whose process is
    gone: what a build killed outright leaves (another machine's, on a shared disk, are left)."""
    host = socket.gethostname()
    for partial in folder.glob("*.partial-*"):
        name, _, pid = partial.name.rpartition("-")
        if name.endswith(f".partial-{host}") and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


@contextmanager
def building(folder: Path) -> Iterator[None]:
    """Work in ``folder``, which other processes (this machine's or, on a shared disk, another's)
    may share: marked as one of its builders (``builders/HOST-PID``) meanwhile; on leaving without
    an error, ``folder`` is removed unless another live builder is marked there (a killed
    process's mark does not count). A build that fails leaves it, for the next one to resume."""
    me = folder / "builders" / f"{socket.gethostname()}-{os.getpid()}"
    while True:
        try:
            me.parent.mkdir(parents=True, exist_ok=True)
            me.touch()
            break
        except FileNotFoundError:  # removed between mkdir and touch by a finishing builder
            continue
    try:
        yield
    finally:
        me.unlink(missing_ok=True)
    if not _others_building(folder):
        shutil.rmtree(folder, ignore_errors=True)


def _others_building(folder: Path) -> bool:
    host = socket.gethostname()
    for mark in folder.glob("builders/*"):
        name, _, pid = mark.name.rpartition("-")
        if name != host or (pid.isdigit() and process_alive(int(pid))):
            return True
    return False


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


STORE_WAIT_SECONDS = 3600.0
"""How long a torchrun process waits for its machine's process of local rank 0 to build a store
(``$SELFSUP_STORE_WAIT``)."""


def local_rank() -> int:
    """This process's rank on its machine under torchrun (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if distributed.launched() else 0


def wait_for(folder: Path, marker: str, what: str) -> None:
    """Wait until the process of local rank 0 has published ``folder`` (its file ``marker``): one
    build per machine, read by all its processes through one page cache. Raises
    :class:`DataError` after ``$SELFSUP_STORE_WAIT`` seconds."""
    limit = float(os.environ.get("SELFSUP_STORE_WAIT", STORE_WAIT_SECONDS))
    deadline = time.monotonic() + limit
    while not (folder / marker).exists():
        if time.monotonic() > deadline:
            raise DataError(
                f"{what} did not appear in {folder} within {limit:g} s: the process of local rank 0 on "
                "this machine builds it (is it running, and is SELFSUP_CACHE_DIR the same for every process?)"
            )
        time.sleep(0.2)
