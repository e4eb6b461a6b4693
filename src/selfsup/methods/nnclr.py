"""NNCLR (Dwibedi, Aytar, Tompson, Sermanet & Zisserman 2021, "With a Little Help from My Friends:
Nearest-Neighbor Contrastive Learning of Visual Representations"). The paper's code was not
released; defaults follow the paper and, for CIFAR, solo-learn's ``nnclr.yaml``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup.distributed import gather
from selfsup.losses import nearest_neighbour, nnclr_loss
from selfsup.methods.base import BatchFloor, Method, MethodOutput, Progress
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class NNCLRParams:
    """Defaults from the paper (Sec. 4.1): projector of 3 layers [2048, 2048, 256] with BatchNorm,
    predictor [4096, 256], support set of 98,304 projections, temperature 0.1."""

    proj_hidden_dim: int = 2048
    proj_dim: int = 256
    proj_layers: int = 3
    pred_hidden_dim: int = 4096
    queue_size: int = 98304  # the support set Q
    temperature: float = 0.1


class NNCLR(Method):
    """Each view's projection is replaced by its nearest neighbour in a support set of past
    projections, which must pick out the other view's prediction among the global batch's
    (symmetric NT-Xent-style loss). The support set is a queue of the first view's L2-normalised
    projections, of every process in rank order, enqueued after the step (like MoCo's keys);
    it starts as random unit vectors. BatchNorm is global."""

    global_batch_norm = True

    @classmethod
    def batch_floor(cls, params) -> BatchFloor:
        return BatchFloor(2, "its negatives are the other images of the batch, and one image has none")

    def __init__(self, encoder: Encoder, params: NNCLRParams):
        super().__init__(encoder)
        self.params = params
        self.projector = mlp_head(
            encoder.out_dim, params.proj_hidden_dim, params.proj_dim, params.proj_layers, output_bn=True
        )
        self.predictor = mlp_head(params.proj_dim, params.pred_hidden_dim, params.proj_dim)
        self.register_buffer("queue", F.normalize(torch.randn(params.queue_size, params.proj_dim), dim=1))
        self.register_buffer("queue_position", torch.zeros((), dtype=torch.long))

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        h, n = self.encode_pair(views)
        z = self.projector(h)
        p1, p2 = (gather(p) for p in self.predictor(z).chunk(2))
        z1, z2 = gather(z[:n].detach()), gather(z[n:].detach())
        t = self.params.temperature
        nn1, nn2 = nearest_neighbour(z1, self.queue), nearest_neighbour(z2, self.queue)
        loss = nnclr_loss(nn1, p2, t) / 2 + nnclr_loss(nn2, p1, t) / 2
        return MethodOutput(
            loss,
            monitored={"embedding": h[:n].detach(), "projection": z[:n].detach()},
            update={"support": F.normalize(z1.float(), dim=1)},
        )

    @torch.no_grad()
    def after_step(self, output: MethodOutput, progress: Progress) -> None:
        features = output.update["support"].to(self.queue.dtype)
        index = (self.queue_position + torch.arange(len(features), device=features.device)) % len(self.queue)
        self.queue[index] = features
        self.queue_position.copy_((self.queue_position + len(features)) % len(self.queue))
