"""VICReg (Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization";
official code: facebookresearch/vicreg)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.losses import vicreg_loss
from selfsup.methods.base import Method
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


class VICReg(Method):
    """Invariance between the views' expansions, a variance hinge per dimension and a covariance
    penalty, each branch regularised separately; no negatives, no momentum, no stop-gradient."""

    def __init__(self, encoder: Encoder, params: VICRegParams):
        super().__init__(encoder)
        self.params = params
        self.projector = mlp_head(encoder.out_dim, params.proj_dim, params.proj_dim, params.proj_layers)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(views) != 2:
            raise ValueError(f"VICReg takes exactly 2 views, got {len(views)}")
        n = len(views[0])
        h = self.encoder(torch.cat(views))
        z = self.projector(h)
        p = self.params
        loss = vicreg_loss(z[:n], z[n:], p.sim_weight, p.var_weight, p.cov_weight)
        return {"loss": loss, "embedding": h[:n].detach()}
