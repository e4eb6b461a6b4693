"""Which code a benchmark measured: another revision's files beside this tree, and this tree's
commit. Shared by the scripts that compare before and after (code_shape.py, text_memory.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def unpacked(rev: str, folder: Path, *paths: str) -> Path:
    """The files of git revision ``rev`` (only ``paths`` where given) under ``folder``, by
    ``git archive``; returns ``folder``."""
    archive = subprocess.run(["git", "archive", rev, *paths], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def head(*paths: str) -> str:
    """This tree's commit (short), with " + changes" where files (under ``paths``) differ from it."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", *paths], cwd=ROOT, capture_output=True, text=True)
    return commit.stdout.strip() + (" + changes" if dirty.stdout.strip() else "")
