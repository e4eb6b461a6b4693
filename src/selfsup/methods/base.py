"""What every method is: a module that turns a list of augmented views into a loss."""

from __future__ import annotations

import torch
from torch import nn

from selfsup.models.encoder import Encoder


class Method(nn.Module):
    """Base class of the pretext tasks.

    ``forward(views)`` takes the augmented views (float N×C×H×W each) and returns a dict with at
    least ``loss`` (a scalar to minimise) and ``embedding`` (the encoder's features of the first
    view, N×D, used by the collapse monitor). The training loop knows nothing else about it.
    """

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (momentum encoders update here). Default: nothing."""
