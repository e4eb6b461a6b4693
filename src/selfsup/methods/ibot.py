"""iBOT (Zhou, Wei, Wang, Shen, Xie, Yuille & Kong 2022, "iBOT: Image BERT Pre-Training with Online
Tokenizer"; official code bytedance/ibot ``main_ibot.py``).

DINO's self-distillation of the [CLS] token across the two global views, plus masked image
modelling with the teacher as an online tokenizer: in each of the student's global views, blocks
of patches (BEiT's blockwise masking) have their patch embeddings replaced by a learned mask
token, and at each masked patch the student's distribution over the prototypes matches the
teacher's, computed from the same view unmasked
(:func:`selfsup.losses.masked_prediction.ibot_patch_loss`). The head (DINO's,
:class:`selfsup.methods.dino.DINOHead`) is shared by the [CLS] and patch tokens
(the official ``--shared_head true`` of the paper's runs); each has its own centre and teacher
temperature. Local crops (multi-crop) are not supported: selfsup's ViT has fixed positions for
one image size, so the method takes the 2 global views only.

Masks are drawn on the batch's device for the global batch from a generator seeded by the step,
so that each process takes its share of the same draw (as :class:`selfsup.augment.ops.BatchShard`
does for the augmentations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from selfsup import distributed
from selfsup.errors import ConfigError
from selfsup.losses import dino_loss, ibot_patch_loss, teacher_distribution
from selfsup.methods.base import Method, MethodOutput, Progress
from selfsup.methods.dino import DINOHead
from selfsup.methods.momentum import cosine_momentum, ema_update, frozen_copy
from selfsup.models.encoder import Encoder
from selfsup.models.vit import selfsup_vit


@dataclass
class IBOTParams:
    """Defaults from the paper's ViT-S/16 run (official README): head 2048 → 2048 → bottleneck 256
    → 8192 weight-normalised prototypes, shared by [CLS] and patches; student temperature 0.1;
    teacher temperatures ([CLS] and patch) warmed up linearly from 0.04 to 0.07 over 30 epochs;
    centre momentum 0.9 (both centres); teacher momentum 0.996 rising to 1 on a cosine schedule;
    λ1 = λ2 = 1; prototypes frozen for the first epoch; blockwise masks (aspect 0.3-1/0.3) of a
    ratio drawn per image and view: 0 with probability 0.5, else uniform in 0.3 ± 0.2 (the README's
    ``--pred_ratio 0 0.3 --pred_ratio_var 0 0.2``; the code's default is 0.3 ± 0 for every image,
    ``pred_ratio_zero_p=0 pred_ratio_var=0``). The official ViT-S run does not weight-normalise
    the last layer (``--norm_last_layer false``); DINOHead always does (the ViT-B setting)."""

    out_dim: int = 8192
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    shared_head: bool = True  # one head for [CLS] and patches; else a second head of patch_out_dim
    patch_out_dim: int = 8192
    student_temp: float = 0.1
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_patch_temp: float = 0.04
    teacher_patch_temp: float = 0.07
    warmup_teacher_temp_epochs: float = 30
    center_momentum: float = 0.9
    tau_base: float = 0.996
    lambda1: float = 1.0  # weight of the [CLS] loss
    lambda2: float = 1.0  # weight of the masked-patch loss
    pred_ratio: float = 0.3
    pred_ratio_var: float = 0.2
    pred_ratio_zero_p: float = 0.5  # share of (image, view) pairs left unmasked
    pred_aspect: tuple[float, float] = (0.3, 1 / 0.3)
    head_batch_norm: bool = False
    freeze_last_layer_epochs: float = 1


def blockwise_masks(
    ratios: torch.Tensor,
    grid: int,
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
    generator: torch.Generator | None = None,
    attempts: int = 10,
) -> torch.Tensor:
    """BEiT's blockwise masks as iBOT draws them (``ImageFolderMask``), for all images at once:
    image i gets blocks until ``ratios[i]``·grid² patches are masked. Each round every image tries
    ``attempts`` blocks (area uniform between (grid//3)² and the patches still wanted, log-uniform
    aspect ratio, uniform position) and takes the first that fits the grid and adds between 1 and
    the wanted number of new patches; an image with no such block, or with enough, stops.
    Returns booleans N×grid² (raster order, True = masked)."""
    n, device = len(ratios), ratios.device
    mask = torch.zeros(n, grid, grid, dtype=torch.bool, device=device)
    wanted = ratios.float() * grid * grid
    count = torch.zeros(n, device=device)
    active = count < wanted
    low = float((grid // 3) ** 2)
    cells = torch.arange(grid, device=device)
    log_low, log_high = math.log(aspect[0]), math.log(aspect[1])
    while bool(active.any()):
        remaining = (wanted - count)[:, None]
        u = torch.rand(4, n, attempts, generator=generator, device=device)
        area = low + (remaining - low) * u[0]
        ratio = torch.exp(log_low + (log_high - log_low) * u[1])
        h, w = torch.round(torch.sqrt(area * ratio)), torch.round(torch.sqrt(area / ratio))
        top = torch.floor(u[2] * (grid - h + 1))[..., None]
        left = torch.floor(u[3] * (grid - w + 1))[..., None]
        block = ((cells >= top) & (cells < top + h[..., None]))[..., :, None] & (
            (cells >= left) & (cells < left + w[..., None])
        )[..., None, :]
        new = (block & ~mask[:, None]).flatten(2).sum(dim=2)
        valid = (h < grid) & (w < grid) & (new > 0) & (new <= remaining) & active[:, None]
        found = valid.any(dim=1)
        chosen = block[torch.arange(n, device=device), valid.float().argmax(dim=1)] & found[:, None, None]
        count = count + (chosen & ~mask).flatten(1).sum(dim=1)
        mask |= chosen
        active = active & found & (count < wanted)
    return mask.flatten(1)


class IBOT(Method):
    """Student and EMA teacher ViTs with DINO heads; the [CLS] loss (DINO's, across the two global
    views) weighted by λ1 plus the masked-patch loss (each view's masked patches against the
    teacher's unmasked same view) weighted by λ2. Both centres move towards the teacher's mean
    output over the global batch after each step."""

    views = 2
    global_batch_norm = True  # BatchNorm in the head (head_batch_norm), global as the official SyncBatchNorm

    def __init__(self, encoder: Encoder, params: IBOTParams):
        super().__init__(encoder)
        selfsup_vit(encoder, "ibot", "embeddings it can mask")
        check_params(params)
        self.params = params
        self.skips_parameters = params.freeze_last_layer_epochs > 0  # the prototypes while they are frozen
        dims = (encoder.out_dim, params.hidden_dim, params.bottleneck_dim)
        self.head = DINOHead(*dims, params.out_dim, params.head_batch_norm)
        self.patch_head = (
            None if params.shared_head else DINOHead(*dims, params.patch_out_dim, params.head_batch_norm)
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.out_dim))
        self.teacher_encoder = frozen_copy(self.encoder)
        self.teacher_head = frozen_copy(self.head)
        self.teacher_patch_head = None if params.shared_head else frozen_copy(self.patch_head)
        self.register_buffer("center", torch.zeros(params.out_dim))
        self.register_buffer(
            "center_patch", torch.zeros(params.out_dim if params.shared_head else params.patch_out_dim)
        )
        # the masks' random stream: from the run's seed (drawn alike in every process), then the step
        self.mask_seed = int(torch.randint(0, 2**62, (1,)))

    def teacher_temperatures(self, progress: Progress) -> tuple[float, float]:
        """The teacher's [CLS] and patch temperatures at ``progress``: each linear from its warm-up
        value to its final one over ``warmup_teacher_temp_epochs``, then constant."""
        p = self.params
        share = (
            min(1.0, progress.epoch / p.warmup_teacher_temp_epochs)
            if p.warmup_teacher_temp_epochs > 0
            else 1.0
        )
        return (
            p.warmup_teacher_temp + (p.teacher_temp - p.warmup_teacher_temp) * share,
            p.warmup_teacher_patch_temp + (p.teacher_patch_temp - p.warmup_teacher_patch_temp) * share,
        )

    def masks(self, n: int, views: int, device, progress: Progress) -> torch.Tensor:
        """This process's share of the global batch's masks, (views·N)×L, view after view."""
        p, world = self.params, distributed.world_size()
        generator = progress.generator(self.mask_seed, device)
        u = torch.rand(2, views, n * world, generator=generator, device=device)
        ratios = p.pred_ratio + p.pred_ratio_var * (2 * u[0] - 1)
        ratios = torch.where(u[1] < p.pred_ratio_zero_p, torch.zeros_like(ratios), ratios)
        grid = self.encoder.backbone.grid
        masks = blockwise_masks(ratios.flatten(), grid, p.pred_aspect, generator).view(views, n * world, -1)
        return distributed.own_share(masks, n, dim=1).flatten(0, 1)

    def _heads(
        self, tokens: torch.Tensor, head: DINOHead, patch_head: DINOHead | None, frozen: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[CLS] bottleneck B×P, [CLS] logits B×K and patch logits B×L×K' of encoded tokens B×(1+L)×D."""
        b, length, dim = tokens.shape
        patch_head = patch_head or head  # the shared head: [CLS] and patches in separate passes (BatchNorm)
        z = head.embed(tokens[:, 0])
        patches = patch_head.embed(tokens[:, 1:].reshape(-1, dim)).view(b, length - 1, -1)
        return z, head.logits(z, frozen), patch_head.logits(patches, frozen)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        if len(views) != 2:
            raise ValueError(f"iBOT takes exactly 2 global views, got {len(views)}")
        p, progress = self.params, progress or Progress()
        frozen = progress.step < p.freeze_last_layer_epochs * progress.steps_per_epoch
        n, vit, teacher = len(views[0]), self.encoder.backbone, self.teacher_encoder.backbone
        x = self.encoder.normalize(torch.cat(views))
        mask = self.masks(n, len(views), x.device, progress)
        tokens = vit.embed(x)
        hidden = self.mask_token.to(tokens.dtype) + vit.pos_embed.to(tokens.dtype)
        student = vit.encode(torch.where(mask[..., None], hidden, tokens))
        z, cls, patches = self._heads(student, self.head, self.patch_head, frozen)
        with torch.no_grad():
            _, t_cls, t_patches = self._heads(
                teacher.encode(teacher.embed(x)), self.teacher_head, self.teacher_patch_head
            )
        cls_temp, patch_temp = self.teacher_temperatures(progress)
        cls_loss = dino_loss(cls.view(2, n, -1), t_cls.view(2, n, -1), self.center, p.student_temp, cls_temp)
        patch_loss = ibot_patch_loss(patches, t_patches, mask, self.center_patch, p.student_temp, patch_temp)
        return MethodOutput(
            p.lambda1 * cls_loss + p.lambda2 * patch_loss,
            terms={"cls_loss": cls_loss.detach(), "patch_loss": patch_loss.detach()},
            monitored={
                "embedding": student[:n, 1:].mean(dim=1).detach(),
                "projection": z[:n].detach(),
                "assignments": teacher_distribution(t_cls[:n], self.center, cls_temp),
            },
            update={
                "center": distributed.mean_over_processes(t_cls.float().mean(dim=0)),
                "center_patch": distributed.mean_over_processes(t_patches.float().mean(dim=(0, 1))),
            },
        )

    @torch.no_grad()
    def after_step(self, output: MethodOutput, progress: Progress) -> None:
        momentum = cosine_momentum(self.params.tau_base, progress.step + 1, progress.total_steps)
        ema_update(self.teacher_encoder, self.encoder, momentum)
        ema_update(self.teacher_head, self.head, momentum)
        if self.patch_head is not None:
            ema_update(self.teacher_patch_head, self.patch_head, momentum)
        m = self.params.center_momentum
        self.center.mul_(m).add_(output.update["center"], alpha=1 - m)
        self.center_patch.mul_(m).add_(output.update["center_patch"], alpha=1 - m)


def check_params(p: IBOTParams) -> None:
    """ConfigError for masks that cannot be drawn."""
    low, high = p.pred_ratio - p.pred_ratio_var, p.pred_ratio + p.pred_ratio_var
    if not 0 <= low <= high < 1 or not 0 <= p.pred_ratio_zero_p <= 1:
        raise ConfigError(
            f"method.pred_ratio ± method.pred_ratio_var must lie in [0, 1) and method.pred_ratio_zero_p in "
            f"[0, 1], got {p.pred_ratio} ± {p.pred_ratio_var} and {p.pred_ratio_zero_p}"
        )
    if not 0 < p.pred_aspect[0] <= p.pred_aspect[1]:
        raise ConfigError(
            f"method.pred_aspect must be [low, high] with 0 < low <= high, got {list(p.pred_aspect)}"
        )
