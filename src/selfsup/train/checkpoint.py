"""Atomic checkpoints: written to a temporary file, then renamed over the old one."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from selfsup.errors import SelfsupError

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` so that a reader sees either the old checkpoint or the whole new one, never a torn file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable files
        raise SelfsupError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
