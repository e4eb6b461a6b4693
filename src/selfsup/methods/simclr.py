"""SimCLR (Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning
of Visual Representations"; official code: google-research/simclr)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.losses import nt_xent_loss
from selfsup.methods.base import BatchFloor, ProjectedPairMethod
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class SimCLRParams:
    """SimCLR's own settings; defaults from the paper's CIFAR-10 runs (App. B.9)."""

    temperature: float = 0.5
    proj_hidden_dim: int = 0  # 0: the encoder's feature dimension, as in the paper
    proj_dim: int = 128
    proj_layers: int = 2


class SimCLR(ProjectedPairMethod):
    """Two views through encoder f and projection head g; NT-Xent on the projections."""

    @classmethod
    def batch_floor(cls, params) -> BatchFloor:
        return BatchFloor(
            2, "NT-Xent contrasts each image with the other images of the batch, and one image has none"
        )

    def __init__(self, encoder: Encoder, params: SimCLRParams):
        super().__init__(encoder)
        self.params = params
        hidden = params.proj_hidden_dim or encoder.out_dim
        self.projector = mlp_head(encoder.out_dim, hidden, params.proj_dim, params.proj_layers)

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return nt_xent_loss(z1, z2, self.params.temperature), {}
