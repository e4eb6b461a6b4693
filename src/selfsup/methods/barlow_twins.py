"""Barlow Twins (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction"; official code: facebookresearch/barlowtwins)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.losses import barlow_twins_terms
from selfsup.methods.base import CROSS_CORRELATION, BatchFloor, ProjectedPairMethod
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class BarlowTwinsParams:
    """Defaults from the paper (Sec. 4, App.): projector of 3 linear layers of 8192 units (BN and
    ReLU after the first two), λ = 0.0051."""

    proj_dim: int = 8192
    proj_layers: int = 3
    lambd: float = 0.0051


class BarlowTwins(ProjectedPairMethod):
    """Cross-correlation of the two views' batch-standardised projections pushed to the identity.

    The standardisation inside the loss is the official code's BatchNorm1d without affine
    parameters; the projector's hidden layers carry their own BatchNorm.
    """

    offers = frozenset({CROSS_CORRELATION})

    @classmethod
    def batch_floor(cls, params) -> BatchFloor:
        return BatchFloor(
            3,
            "it standardises each feature over the batch, and over 2 images every standardised value "
            "is ±1 whatever the input, so no gradient reaches the network",
        )

    def __init__(self, encoder: Encoder, params: BarlowTwinsParams):
        super().__init__(encoder)
        self.params = params
        self.projector = mlp_head(encoder.out_dim, params.proj_dim, params.proj_dim, params.proj_layers)

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        on_diagonal, off_diagonal = barlow_twins_terms(z1, z2)
        loss = on_diagonal + self.params.lambd * off_diagonal
        return loss, {
            "invariance_loss": on_diagonal.detach(),
            "redundancy_loss": off_diagonal.detach(),
        }
