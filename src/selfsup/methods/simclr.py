"""SimCLR (Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning
of Visual Representations"; official code: google-research/simclr)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.losses import nt_xent_loss
from selfsup.methods.base import Method
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class SimCLRParams:
    """SimCLR's own settings; defaults from the paper's CIFAR-10 runs (App. B.9)."""

    temperature: float = 0.5
    proj_hidden_dim: int = 0  # 0: the encoder's feature dimension, as in the paper
    proj_dim: int = 128
    proj_layers: int = 2


class SimCLR(Method):
    """Two views through encoder f and projection head g; NT-Xent on the projections."""

    def __init__(self, encoder: Encoder, params: SimCLRParams):
        super().__init__(encoder)
        self.params = params
        hidden = params.proj_hidden_dim or encoder.out_dim
        self.projector = mlp_head(encoder.out_dim, hidden, params.proj_dim, params.proj_layers)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(views) != 2:
            raise ValueError(f"SimCLR takes exactly 2 views, got {len(views)}")
        n = views[0].shape[0]
        h = self.encoder(torch.cat(views))  # one pass over both views: BatchNorm sees all 2N images
        z = self.projector(h)
        loss = nt_xent_loss(z[:n], z[n:], self.params.temperature)
        return {"loss": loss, "embedding": h[:n].detach()}
