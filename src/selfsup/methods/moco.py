"""MoCo v2 (Chen, Fan, Girshick & He 2020, "Improved Baselines with Momentum Contrastive Learning";
official code: facebookresearch/moco) and MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of
Training Self-Supervised Vision Transformers"; official code: facebookresearch/moco-v3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup.losses import moco_loss, moco_v3_loss
from selfsup.methods.base import Method
from selfsup.methods.byol import BYOL
from selfsup.methods.momentum import ema_update, frozen_copy
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class MoCoV2Params:
    """Defaults from MoCo v2 (Sec. 2) and the official CIFAR-10 demo of facebookresearch/moco:
    MLP head (hidden = encoder width, no BatchNorm) to 128, queue 4096, momentum 0.99, temperature 0.2."""

    proj_hidden_dim: int = 0  # 0: the encoder's feature dimension
    proj_dim: int = 128
    queue_size: int = 4096
    momentum: float = 0.99
    temperature: float = 0.2
    symmetric: bool = False  # both views as queries (the official CIFAR demo's option)


class MoCoV2(Method):
    """Queries from the encoder, keys from its momentum copy; the negatives are a queue of past keys.

    The key encoder is updated after each optimiser step (equivalent to MoCo's update before the
    keys of the next step) and this step's keys are enqueued then. On one process the key
    encoder's BatchNorm sees the same batch as the query encoder (MoCo shuffles BN across GPUs).
    """

    def __init__(self, encoder: Encoder, params: MoCoV2Params):
        super().__init__(encoder)
        self.params = params
        hidden = params.proj_hidden_dim or encoder.out_dim
        self.projector = mlp_head(encoder.out_dim, hidden, params.proj_dim, hidden_bn=False)
        self.key_encoder = frozen_copy(self.encoder)
        self.key_projector = frozen_copy(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(params.queue_size, params.proj_dim), dim=1))
        self.register_buffer("queue_position", torch.zeros((), dtype=torch.long))
        self._pending_keys: torch.Tensor | None = None

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        h, n = self.encode_pair(views)
        q1, q2 = self.projector(h).chunk(2)
        with torch.no_grad():
            k1, k2 = F.normalize(self.key_projector(self.key_encoder(torch.cat(views))).float(), dim=1).chunk(2)
        t = self.params.temperature
        if self.params.symmetric:
            loss = (moco_loss(q1, k2, self.queue, t) + moco_loss(q2, k1, self.queue, t)) / 2
            self._pending_keys = torch.cat([k1, k2])
        else:
            loss = moco_loss(q1, k2, self.queue, t)
            self._pending_keys = k2
        return {"loss": loss, "embedding": h[:n].detach(), "projection": q1.detach()}

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        ema_update(self.key_encoder, self.encoder, self.params.momentum)
        ema_update(self.key_projector, self.projector, self.params.momentum)
        if self._pending_keys is not None:
            keys = self._pending_keys.to(self.queue.dtype)
            index = (self.queue_position + torch.arange(len(keys), device=keys.device)) % len(self.queue)
            self.queue[index] = keys
            self.queue_position.copy_((self.queue_position + len(keys)) % len(self.queue))
            self._pending_keys = None


@dataclass
class MoCoV3Params:
    """Defaults from MoCo v3 for ResNets (Sec. 4 and facebookresearch/moco-v3): projector 2 layers
    4096 → 256 with BatchNorm on the output, predictor 4096 → 256, momentum 0.99 rising to 1 on a
    cosine schedule, temperature 1.0 (the official code's default for ResNets)."""

    proj_hidden_dim: int = 4096
    proj_dim: int = 256
    pred_hidden_dim: int = 4096
    tau_base: float = 0.99  # the key encoder's momentum m at the start of the cosine schedule
    temperature: float = 1.0


class MoCoV3(BYOL):
    """Symmetrised in-batch contrast between each view's prediction and the momentum encoder's
    keys of the other view; no queue. Shares BYOL's online/momentum structure."""

    def __init__(self, encoder: Encoder, params: MoCoV3Params):
        super().__init__(encoder, params, projector_output_bn=True)

    def pair_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return moco_v3_loss(prediction, target, self.params.temperature)
