"""The teacher's side of self-distillation, shared by DINO's and iBOT's losses and their
assignment monitors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.losses.precision import upcast


def teacher_distribution(logits: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's centred, sharpened distribution over the K prototypes (Caron et al. 2021,
    DINO Eq. 1-4; Zhou et al. 2022, iBOT): P_t = softmax((t − center) / τ_t) over the last
    dimension. ``logits``: ...×K; ``center``: K (or 1×K). Carries no gradient; float32 or better."""
    return F.softmax((upcast(logits) - upcast(center)) / temperature, dim=-1).detach()
