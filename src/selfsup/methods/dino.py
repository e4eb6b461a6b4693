"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers"; official
code: facebookresearch/dino)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.distributed import mean_over_processes
from selfsup.losses import dino_loss, teacher_distribution
from selfsup.methods.base import Method, MethodOutput, Progress, encode_by_size
from selfsup.methods.momentum import cosine_momentum, ema_update, frozen_copy
from selfsup.models.encoder import Encoder


@dataclass
class DINOParams:
    """Defaults from the paper and the official code (facebookresearch/dino): head 2048 → 2048 →
    bottleneck 256 → L2-normalised → weight-normalised layer of 65,536 prototypes, no BatchNorm;
    student temperature 0.1; teacher temperature warmed up linearly from 0.04 to 0.07 over 30
    epochs (the paper's ViT setting; its ResNet-50 command keeps 0.04); centre momentum 0.9;
    teacher momentum 0.996 rising to 1 on a cosine schedule; prototypes frozen for the first epoch."""

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    student_temp: float = 0.1
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_temp_epochs: float = 30
    center_momentum: float = 0.9
    tau_base: float = 0.996
    head_batch_norm: bool = False  # BatchNorm in the head's hidden layers (official: off; ``use_bn_in_head``)
    freeze_last_layer_epochs: float = 1  # the prototypes get no gradient at first (official: 1 epoch)
    global_views: int = 2  # the first views are global crops (seen by the teacher); any others are local


class DINOHead(nn.Module):
    """MLP (GELU) to a bottleneck, L2 normalisation, then a weight-normalised linear layer with its
    norm fixed to 1 (the official ``norm_last_layer=True``)."""

    def __init__(
        self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int, batch_norm: bool = False
    ):
        super().__init__()
        norm = (lambda: nn.BatchNorm1d(hidden_dim)) if batch_norm else nn.Identity
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            norm(),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            norm(),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for module in self.mlp:
            if isinstance(module, nn.Linear):  # as the official head
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalised bottleneck embedding."""
        return F.normalize(self.mlp(x), dim=-1)

    def logits(self, z: torch.Tensor, freeze_prototypes: bool = False) -> torch.Tensor:
        """Cosine similarities of normalised embeddings to the prototypes."""
        prototypes = self.prototypes.detach() if freeze_prototypes else self.prototypes
        return z @ F.normalize(prototypes, dim=1).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embed(x))


class DINO(Method):
    """Self-distillation: the student's distribution over prototypes for every view matches the
    centred, sharpened distribution of the momentum teacher for the other global views. The
    centre moves towards the mean teacher output of the global batch (``output.update["center"]``,
    applied after the step); BatchNorm (in a ResNet backbone) is global, as the official code
    converts it to SyncBatchNorm. The schedules given in epochs (teacher temperature, frozen
    prototypes) read the training's :class:`Progress`; without one, they are at step 0."""

    views = None
    global_batch_norm = True

    def __init__(self, encoder: Encoder, params: DINOParams):
        super().__init__(encoder)
        self.params = params
        self.skips_parameters = params.freeze_last_layer_epochs > 0  # the prototypes while they are frozen
        self.head = DINOHead(
            encoder.out_dim, params.hidden_dim, params.bottleneck_dim, params.out_dim, params.head_batch_norm
        )
        self.teacher_encoder = frozen_copy(self.encoder)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(params.out_dim))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints of earlier versions hold a step count (``steps_done``) for the schedules,
        # which now come from the training's Progress; drop it so that those runs still load
        state_dict.pop(prefix + "steps_done", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def teacher_temperature(self, progress: Progress) -> float:
        """The teacher's temperature at ``progress``: linear from ``warmup_teacher_temp`` to
        ``teacher_temp`` over ``warmup_teacher_temp_epochs``, then constant."""
        p = self.params
        epoch = progress.epoch
        if epoch >= p.warmup_teacher_temp_epochs:
            return p.teacher_temp
        return (
            p.warmup_teacher_temp
            + (p.teacher_temp - p.warmup_teacher_temp) * epoch / p.warmup_teacher_temp_epochs
        )

    def _by_resolution(
        self, encoder: nn.Module, head: DINOHead, views: list[torch.Tensor], freeze_prototypes: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder features and head bottleneck of the first view, and head outputs V×N×K; one
        encoder pass per image size, so BatchNorm sees all views of a size together."""
        h = encode_by_size(encoder, views)
        z = head.embed(h)
        n = len(views[0])
        return h[:n], z[:n], head.logits(z, freeze_prototypes).view(len(views), n, -1)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        g = self.params.global_views
        if len(views) < g:
            raise ValueError(f"DINO needs at least {g} views (global crops first), got {len(views)}")
        progress = progress or Progress()
        frozen = progress.step < self.params.freeze_last_layer_epochs * progress.steps_per_epoch
        embedding, projection, student = self._by_resolution(self.encoder, self.head, views, frozen)
        with torch.no_grad():
            _, _, teacher = self._by_resolution(self.teacher_encoder, self.teacher_head, views[:g])
        temperature = self.teacher_temperature(progress)
        loss = dino_loss(student, teacher, self.center, self.params.student_temp, temperature)
        assignments = teacher_distribution(teacher[0], self.center, temperature)
        return MethodOutput(
            loss,
            monitored={
                "embedding": embedding.detach(),
                "projection": projection.detach(),
                "assignments": assignments,
            },
            update={"center": mean_over_processes(teacher.float().mean(dim=(0, 1)))},
        )

    @torch.no_grad()
    def after_step(self, output: MethodOutput, progress: Progress) -> None:
        momentum = cosine_momentum(self.params.tau_base, progress.step + 1, progress.total_steps)
        ema_update(self.teacher_encoder, self.encoder, momentum)
        ema_update(self.teacher_head, self.head, momentum)
        m = self.params.center_momentum
        self.center.mul_(m).add_(output.update["center"], alpha=1 - m)
