"""Features of non-augmented images from a frozen encoder."""

from __future__ import annotations

import torch
from torch import nn

from selfsup.models.encoder import model_input
from selfsup.train.device import autocast


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    images: torch.Tensor,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    batch_size: int = 512,
) -> torch.Tensor:
    """Encoder outputs (float32, on the CPU) for uint8 images N×C×H×W (or token ids N×L), in eval
    mode, without augmentation."""
    was_training = encoder.training
    encoder.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = model_input(images[start : start + batch_size], device)
        with autocast(device, amp_dtype):
            outputs.append(encoder(batch).float().cpu())
    encoder.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)
