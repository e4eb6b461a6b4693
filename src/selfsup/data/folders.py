"""Folders that appear whole or not at all: every store (images, corpora, token ids) is written
under a temporary name and published by one rename, so a build killed at any point leaves nothing
that a later run mistakes for a finished store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


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


def remove_dead_partials(folder: Path) -> None:
    """Remove the ``*.partial-PID`` folders in ``folder`` whose process (on this machine) is gone:
    what a build killed outright leaves."""
    for partial in folder.glob("*.partial-*"):
        pid = partial.name.rpartition("-")[2]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(partial, ignore_errors=True)
        except (ValueError, PermissionError):  # not ours to judge
            continue
