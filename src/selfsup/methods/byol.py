"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent"; official code:
google-deepmind/deepmind-research/byol)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.losses import byol_loss
from selfsup.methods.base import Method, MethodOutput, Progress
from selfsup.methods.momentum import cosine_momentum, ema_update, frozen_copy
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class BYOLParams:
    """Defaults from the paper (Sec. 3.3, App. C): projector and predictor 4096 → 256, τ_base 0.996
    (0.99 for short runs)."""

    proj_hidden_dim: int = 4096
    proj_dim: int = 256
    pred_hidden_dim: int = 4096
    tau_base: float = 0.996


class BYOL(Method):
    """Online network (encoder, projector, predictor) regresses the target network's projection of
    the other view; the target is an exponential moving average of the online encoder and projector.
    MoCo v3 has the same structure with another loss (``pair_loss``). The loss is per example;
    BatchNorm is global (the official code's cross-replica BatchNorm)."""

    global_batch_norm = True

    def __init__(self, encoder: Encoder, params: BYOLParams, projector_output_bn: bool = False):
        super().__init__(encoder)
        self.params = params
        self.projector = mlp_head(
            encoder.out_dim, params.proj_hidden_dim, params.proj_dim, output_bn=projector_output_bn
        )
        self.predictor = mlp_head(params.proj_dim, params.pred_hidden_dim, params.proj_dim)
        self.target_encoder = frozen_copy(self.encoder)
        self.target_projector = frozen_copy(self.projector)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        h, n = self.encode_pair(views)
        z = self.projector(h)
        p1, p2 = self.predictor(z).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projector(self.target_encoder(torch.cat(views))).chunk(2)
        loss = self.pair_loss(p1, t2) + self.pair_loss(p2, t1)
        return MethodOutput(loss, monitored={"embedding": h[:n].detach(), "projection": z[:n].detach()})

    def pair_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return byol_loss(prediction, target)

    def after_step(self, output: MethodOutput, progress: Progress) -> None:
        momentum = cosine_momentum(self.params.tau_base, progress.step + 1, progress.total_steps)
        ema_update(self.target_encoder, self.encoder, momentum)
        ema_update(self.target_projector, self.projector, momentum)
