"""The precision every loss is computed in."""

from __future__ import annotations

import torch


def upcast(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision inputs (losses are computed at least in float32), else unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
