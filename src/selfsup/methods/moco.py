"""MoCo v2 (Chen, Fan, Girshick & He 2020, "Improved Baselines with Momentum Contrastive Learning";
official code: facebookresearch/moco) and MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of
Training Self-Supervised Vision Transformers"; official code: facebookresearch/moco-v3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup.distributed import gather, world_size
from selfsup.losses import moco_loss, moco_v3_loss
from selfsup.methods.base import BatchFloor, Method, MethodOutput, Progress
from selfsup.methods.byol import BYOL
from selfsup.methods.momentum import ema_update, frozen_copy
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class MoCoV2Params:
    """Defaults from MoCo v2 (Sec. 2) and the official CIFAR-10 demo of facebookresearch/moco:
    MLP head (hidden = encoder width, no BatchNorm) to 128, queue 4096, momentum 0.99, temperature
    0.2, BatchNorm statistics over 8 splits of the batch with the keys shuffled (the demo's
    ``bn_splits=8``, its one-device stand-in for shuffling BN across GPUs)."""

    proj_hidden_dim: int = 0  # 0: the encoder's feature dimension
    proj_dim: int = 128
    queue_size: int = 4096
    momentum: float = 0.99
    temperature: float = 0.2
    symmetric: bool = False  # both views as queries (the official CIFAR demo's option)
    bn_splits: int = 8  # BatchNorm sees the batch in this many parts; 1 = the whole batch


class MoCoV2(Method):
    """Queries from the encoder, keys from its momentum copy; the negatives are a queue of past keys.

    The key encoder is updated after each optimiser step (equivalent to MoCo's update before the
    keys of the next step) and this step's keys (``output.update["keys"]``) are enqueued then.
    MoCo shuffles the keys across GPUs so that a query and its key never share BatchNorm
    statistics (a shortcut otherwise); on one device both encoders normalise ``bn_splits`` parts
    of their batch separately and the keys are shuffled before the split and put back in order
    after it. In several processes each normalises ``bn_splits / processes`` parts of its own share
    (the same part size as one process), and the keys of all processes are enqueued, in rank order.
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

    def split_encode(self, encoder: torch.nn.Module, images: torch.Tensor, shuffle: bool) -> torch.Tensor:
        """``encoder`` over ``bn_splits`` parts of ``images`` (each its own BatchNorm batch), in
        the input order; with ``shuffle`` the parts are drawn from a random permutation."""
        order = torch.randperm(len(images), device=images.device) if shuffle else None
        x = images[order] if order is not None else images
        h = torch.cat([encoder(part) for part in x.chunk(max(1, self.params.bn_splits // world_size()))])
        return h[torch.argsort(order)] if order is not None else h

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        if len(views) != 2:
            raise ValueError(f"MoCoV2 takes exactly 2 views, got {len(views)}")
        n = len(views[0])
        symmetric = self.params.symmetric
        # one view at a time, so that BatchNorm never mixes a query with its own key's image
        h = torch.cat(
            [self.split_encode(self.encoder, v, shuffle=False) for v in (views if symmetric else views[:1])]
        )
        q = self.projector(h)
        with torch.no_grad():
            keys = [
                F.normalize(
                    self.key_projector(self.split_encode(self.key_encoder, v, shuffle=True)).float(), dim=1
                )
                for v in (views if symmetric else views[1:])
            ]
        t = self.params.temperature
        if symmetric:
            loss = (moco_loss(q[:n], keys[1], self.queue, t) + moco_loss(q[n:], keys[0], self.queue, t)) / 2
        else:
            loss = moco_loss(q, keys[0], self.queue, t)
        return MethodOutput(
            loss,
            monitored={"embedding": h[:n].detach(), "projection": q[:n].detach()},
            update={"keys": torch.cat([gather(k) for k in keys])},
        )

    @torch.no_grad()
    def after_step(self, output: MethodOutput, progress: Progress) -> None:
        ema_update(self.key_encoder, self.encoder, self.params.momentum)
        ema_update(self.key_projector, self.projector, self.params.momentum)
        keys = output.update["keys"].to(self.queue.dtype)
        index = (self.queue_position + torch.arange(len(keys), device=keys.device)) % len(self.queue)
        self.queue[index] = keys
        self.queue_position.copy_((self.queue_position + len(keys)) % len(self.queue))


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
    keys of the other view (the keys of the global batch); no queue. Shares BYOL's online/momentum
    structure and its global BatchNorm (the official code's SyncBatchNorm)."""

    @classmethod
    def batch_floor(cls, params) -> BatchFloor:
        return BatchFloor(2, "its keys are the other images of the batch, and one image has none")

    def __init__(self, encoder: Encoder, params: MoCoV3Params):
        super().__init__(encoder, params, projector_output_bn=True)

    def pair_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return moco_v3_loss(gather(prediction), gather(target), self.params.temperature)
