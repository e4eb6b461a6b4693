"""Momentum (exponential moving average) targets, shared by BYOL and later MoCo and DINO."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's schedule (Grill et al. 2020, Sec. 3.2): τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2, from
    τ_base to 1."""
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total_steps) / max(1, total_steps)) + 1) / 2


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that receives no gradient (the momentum target)."""
    target = copy.deepcopy(module)
    for param in target.parameters():
        param.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """θ_target ← τ·θ_target + (1 − τ)·θ_online for every parameter, in a few batched ``_foreach`` ops.

    Buffers (BatchNorm running statistics) are not averaged: the target normalises with its own
    batch statistics in training and keeps its own running statistics from its own forward passes,
    as in BYOL's official code, where the target network's state comes from its own forward pass.
    """
    target_params = list(target.parameters())
    online_params = [p.detach() for p in online.parameters()]
    torch._foreach_lerp_(target_params, online_params, 1.0 - momentum)
