"""Corruptions of a denoising auto-encoder's input (Vincent et al. 2008, 2010): images in [0, 1],
float N×C×H×W, each image corrupted independently."""

from __future__ import annotations

import torch


def gaussian_noise(
    images: torch.Tensor, std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Additive isotropic Gaussian noise of standard deviation ``std``, clipped to [0, 1]."""
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + std * noise).clamp(0.0, 1.0)


def mask_patches(
    images: torch.Tensor, ratio: float, patch: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero a random share ``ratio`` of each image's ``patch``×``patch`` squares (patch 1: pixels),
    all channels together; each square is masked independently."""
    n, _, height, width = images.shape
    rows, cols = -(-height // patch), -(-width // patch)
    keep = torch.rand(n, 1, rows, cols, generator=generator, device=images.device) >= ratio
    keep = keep.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)[:, :, :height, :width]
    return images * keep.to(images.dtype)


def salt_and_pepper(
    images: torch.Tensor, share: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Set a random share ``share`` of each image's pixels (all channels) to 0 or 1 with equal odds."""
    n, _, height, width = images.shape
    draw = torch.rand(n, 1, height, width, generator=generator, device=images.device)
    salt = torch.rand(n, 1, height, width, generator=generator, device=images.device) < 0.5
    return torch.where(draw < share, salt.to(images.dtype).expand_as(images), images)
