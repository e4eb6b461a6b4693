"""VICReg (Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization";
official code: facebookresearch/vicreg)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.losses import vicreg_terms
from selfsup.methods.base import CROSS_CORRELATION, BatchFloor, ProjectedPairMethod
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class VICRegParams:
    """Defaults from the paper (Sec. 4.1): expander of 3 linear layers of 8192 units, invariance 25,
    variance 25, covariance 1."""

    proj_dim: int = 8192
    proj_layers: int = 3
    sim_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0


class VICReg(ProjectedPairMethod):
    """Invariance between the views' expansions, a variance hinge per dimension and a covariance
    penalty, each branch regularised separately; no negatives, no momentum, no stop-gradient."""

    offers = frozenset({CROSS_CORRELATION})

    @classmethod
    def batch_floor(cls, params) -> BatchFloor:
        return BatchFloor(
            2, "its variance and covariance terms are statistics over the batch, undefined for one image"
        )

    def __init__(self, encoder: Encoder, params: VICRegParams):
        super().__init__(encoder)
        self.params = params
        self.projector = mlp_head(encoder.out_dim, params.proj_dim, params.proj_dim, params.proj_layers)

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        p = self.params
        invariance, variance, covariance = vicreg_terms(z1, z2)
        loss = p.sim_weight * invariance + p.var_weight * variance + p.cov_weight * covariance
        return loss, {
            "invariance_loss": invariance.detach(),
            "variance_loss": variance.detach(),
            "covariance_loss": covariance.detach(),
        }
