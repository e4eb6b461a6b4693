"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning"; official code:
facebookresearch/simsiam)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from selfsup.losses import simsiam_loss
from selfsup.methods.base import Method, MethodOutput, Progress
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class SimSiamParams:
    """Defaults from the paper (Sec. 3, App. D): projector 2048-d with BN on every layer including
    the output (3 layers on ImageNet, 2 on CIFAR), predictor bottleneck 2048 → 512 → 2048."""

    proj_dim: int = 2048
    proj_layers: int = 3
    pred_hidden_dim: int = 512
    stop_gradient: bool = True  # switching it off collapses the embedding (paper, Fig. 2)
    fix_pred_lr: bool = (
        True  # the predictor's learning rate is not decayed (paper Sec. 4.2; official --fix-pred-lr)
    )


class SimSiam(Method):
    """Symmetrised negative cosine between each view's prediction and the other view's projection,
    with stop-gradient on the projection; no negatives and no momentum encoder. BatchNorm is
    global (the official code's SyncBatchNorm)."""

    global_batch_norm = True

    def __init__(self, encoder: Encoder, params: SimSiamParams):
        super().__init__(encoder)
        self.params = params
        self.projector = mlp_head(
            encoder.out_dim, params.proj_dim, params.proj_dim, params.proj_layers, output_bn=True
        )
        self.predictor = mlp_head(params.proj_dim, params.pred_hidden_dim, params.proj_dim)

    def fixed_lr_parameters(self) -> tuple[torch.nn.Parameter, ...]:
        return tuple(self.predictor.parameters()) if self.params.fix_pred_lr else ()

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        h, n = self.encode_pair(views)
        z = self.projector(h)
        p1, p2 = self.predictor(z).chunk(2)
        z1, z2 = (z.detach() if self.params.stop_gradient else z).chunk(2)
        loss = simsiam_loss(p1, z2) / 2 + simsiam_loss(p2, z1) / 2
        return MethodOutput(loss, monitored={"embedding": h[:n].detach(), "projection": z[:n].detach()})
