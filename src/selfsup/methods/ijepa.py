"""I-JEPA (Assran, Duval, Misra, Bojanowski, Vincent, Rabbat, LeCun & Ballas 2023, "Self-Supervised
Learning from Images with a Joint-Embedding Predictive Architecture"; official code
facebookresearch/ijepa).

One view per image, no augmentation beyond the crop. A context block (scale 0.85-1, square) of
the patch grid, with the patches of 4 target blocks (scale 0.15-0.2, aspect 0.75-1.5) removed
from it, goes through the context encoder (the run's ViT); the target encoder (its EMA copy) sees
the whole image; a narrow ViT predictor gets the encoded context tokens and, for each target block
in turn, a learned mask token at each target position (both with fixed sine-cosine positions),
and regresses the target encoder's layer-normalised features of those patches
(:func:`selfsup.losses.masked_prediction.ijepa_loss`). selfsup's ViT prepends a class token in
``encode``; I-JEPA has none, so its output is dropped here (it takes part in attention as one
more learned token, as it does when the encoder is evaluated, ``VisionTransformer.forward``).

Masks are drawn on the batch's device, for the global batch from a generator seeded by the
step (so each process takes its share of the same draw: the masks do not depend on how many
processes share the batch), and every image keeps as many context patches as the image of the
global batch that keeps fewest (the official collator trims to the minimum count the same way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from selfsup import distributed
from selfsup.errors import ConfigError
from selfsup.losses import ijepa_loss
from selfsup.methods.base import Method, MethodOutput, Progress
from selfsup.methods.momentum import ema_update, frozen_copy
from selfsup.models.encoder import Encoder
from selfsup.models.vit import init_transformer, selfsup_vit, sincos_positions, transformer_block


@dataclass
class IJEPAParams:
    """Defaults from the paper and the official configs (``in1k_vith14_ep300.yaml``): predictor
    384 wide and 12 blocks deep (16 heads, the ViT-H encoder's); 4 target blocks of scale
    0.15-0.2 and aspect ratio 0.75-1.5; one context block of scale 0.85-1, aspect 1, keeping at
    least 10 patches; target-encoder momentum rising linearly from 0.996 to 1 over the run."""

    predictor_dim: int = 384
    predictor_depth: int = 12
    predictor_heads: int = 16
    num_targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)
    target_aspect: tuple[float, float] = (0.75, 1.5)
    context_scale: tuple[float, float] = (0.85, 1.0)
    min_context: int = 10  # the official ``min_keep``: fewest context patches a draw may leave
    ema_start: float = 0.996
    ema_end: float = 1.0


def block_size(
    u: float, scale: tuple[float, float], aspect: tuple[float, float], grid: int
) -> tuple[int, int]:
    """Height and width in patches of a block covering ``scale`` of a grid×grid patch grid with
    height/width ratio ``aspect``, both at the same point ``u`` in [0, 1) of their ranges (as the
    official ``_sample_block_size`` draws them), at most grid − 1 patches on a side."""
    keep = int(grid * grid * (scale[0] + u * (scale[1] - scale[0])))
    ratio = aspect[0] + u * (aspect[1] - aspect[0])
    h, w = round(math.sqrt(keep * ratio)), round(math.sqrt(keep / ratio))
    return max(1, min(h, grid - 1)), max(1, min(w, grid - 1))


def block_masks(
    n: int, count: int, grid: int, size: tuple[int, int], generator: torch.Generator | None, device
) -> torch.Tensor:
    """``count`` blocks of ``size`` (h, w) at uniformly drawn positions inside the grid for each of
    ``n`` images: booleans n×count×grid×grid."""
    h, w = size
    top = torch.randint(0, grid - h + 1, (n, count, 1), generator=generator, device=device)
    left = torch.randint(0, grid - w + 1, (n, count, 1), generator=generator, device=device)
    cells = torch.arange(grid, device=device)
    rows = (cells >= top) & (cells < top + h)
    cols = (cells >= left) & (cells < left + w)
    return rows[..., :, None] & cols[..., None, :]


def first_indices(mask: torch.Tensor, k: int) -> torch.Tensor:
    """Raster indices of the first ``k`` set cells of each row of ``mask`` (...×L booleans), in order."""
    length = mask.shape[-1]
    key = (~mask).long() * length + torch.arange(length, device=mask.device)
    return key.argsort(dim=-1)[..., :k]


def multiblock_masks(
    n: int,
    grid: int,
    params: IJEPAParams,
    generator: torch.Generator | None = None,
    device=None,
    tries: int = 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """I-JEPA's multi-block masks for ``n`` images of a grid×grid patch grid.

    One target block size and one context block size are drawn for the batch; each image gets
    ``num_targets`` target blocks and one context block at uniform positions, the context minus
    every target patch. Of ``tries`` context positions an image takes the first that leaves at
    least ``min_context`` patches (else the one leaving most). Returns ``context`` (n×K: raster
    indices of the context patches, the same number K for every image, the first K of each) and
    ``targets`` (n×num_targets×T: the patches of each target block)."""
    p = params
    u = torch.rand(2, generator=generator, device=device).tolist()
    target_size = block_size(u[0], p.target_scale, p.target_aspect, grid)
    context_size = block_size(u[1], p.context_scale, (1.0, 1.0), grid)
    targets = block_masks(n, p.num_targets, grid, target_size, generator, device).flatten(2)
    allowed = ~targets.any(dim=1)
    candidates = block_masks(n, tries, grid, context_size, generator, device).flatten(2) & allowed[:, None]
    counts = candidates.sum(dim=2)
    good = counts >= p.min_context
    choice = torch.where(good.any(dim=1), good.float().argmax(dim=1), counts.argmax(dim=1))
    context = candidates[torch.arange(n, device=device), choice]
    keep = int(context.sum(dim=1).min())
    return first_indices(context, keep), first_indices(targets, target_size[0] * target_size[1])


def take(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of N×L×D ``tokens`` at N×K ``index``: N×K×D."""
    return tokens.gather(1, index[..., None].expand(-1, -1, tokens.shape[-1]))


class Predictor(nn.Module):
    """The narrow ViT predictor: context features mapped to ``dim`` plus their positions, followed
    by a mask token plus position at each target patch, through pre-norm blocks; the outputs at
    the target positions mapped back to the encoder's width. Each target block is predicted in a
    sequence of its own (with all the context tokens), as in the official code."""

    def __init__(self, width: int, dim: int, depth: int, heads: int, grid: int):
        super().__init__()
        self.embed = nn.Linear(width, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_positions(dim, grid), persistent=False)
        self.blocks = nn.ModuleList(transformer_block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, width)
        init_transformer(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self, context: torch.Tensor, context_index: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """``context``: N×K×width features at patches ``context_index`` (N×K); ``targets``:
        N×M×T patch indices of M target blocks. Returns predictions N×M×T×width."""
        n, m, t = targets.shape
        positions = self.pos_embed.expand(n, -1, -1)
        x = self.embed(context)
        x = x + take(positions, context_index).to(x.dtype)
        x = x[:, None].expand(-1, m, -1, -1).reshape(n * m, x.shape[1], x.shape[2])
        queries = self.mask_token.to(x.dtype) + take(positions, targets.reshape(n, m * t)).to(x.dtype)
        y = torch.cat([x, queries.reshape(n * m, t, -1)], dim=1)
        for block in self.blocks:
            y = block(y)
        return self.proj(self.norm(y[:, -t:])).reshape(n, m, t, -1)


class IJEPA(Method):
    views = 1

    def __init__(self, encoder: Encoder, params: IJEPAParams):
        super().__init__(encoder)
        vit = selfsup_vit(encoder, "ijepa", "tokens it can pick")
        check_params(params, vit.grid)
        self.params = params
        self.predictor = Predictor(
            vit.out_dim, params.predictor_dim, params.predictor_depth, params.predictor_heads, vit.grid
        )
        self.target_encoder = frozen_copy(self.encoder)
        # the masks' random stream: from the run's seed (drawn alike in every process), then the step
        self.mask_seed = int(torch.randint(0, 2**62, (1,)))

    def masks(self, n: int, device, progress: Progress) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's share of the global batch's masks (context N×K, targets N×M×T)."""
        generator, grid = progress.generator(self.mask_seed, device), self.encoder.backbone.grid
        context, targets = multiblock_masks(
            n * distributed.world_size(), grid, self.params, generator, device
        )
        return distributed.own_share(context, n), distributed.own_share(targets, n)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        x = self.encoder.normalize(views[0])
        n, vit = len(x), self.encoder.backbone
        context, targets = self.masks(n, x.device, progress or Progress())
        features = vit.encode(take(vit.embed(x), context))[:, 1:]
        with torch.no_grad():
            teacher = self.target_encoder.backbone
            full = teacher.encode(teacher.embed(x))[:, 1:]
            target = take(full, targets.flatten(1)).view(*targets.shape, -1)
        pred = self.predictor(features, context, targets)
        loss = ijepa_loss(pred, target)
        return MethodOutput(loss, monitored={"embedding": features.mean(dim=1).detach()})

    def momentum(self, progress: Progress) -> float:
        """The target encoder's momentum: linear from ``ema_start`` to ``ema_end`` over the run."""
        p = self.params
        return p.ema_start + (p.ema_end - p.ema_start) * min(progress.step, progress.total_steps) / max(
            1, progress.total_steps
        )

    @torch.no_grad()
    def after_step(self, output: MethodOutput, progress: Progress) -> None:
        ema_update(self.target_encoder, self.encoder, self.momentum(progress))


def check_params(p: IJEPAParams, grid: int) -> None:
    """ConfigError for masks or a predictor that cannot be built."""
    for name in ("target_scale", "context_scale"):
        low, high = getattr(p, name)
        if not 0 < low <= high <= 1:
            raise ConfigError(
                f"method.{name} must be [low, high] with 0 < low <= high <= 1, got {[low, high]}"
            )
    low, high = p.target_aspect
    if not 0 < low <= high:
        raise ConfigError(f"method.target_aspect must be [low, high] with 0 < low <= high, got {[low, high]}")
    if p.num_targets < 1 or p.min_context < 1:
        raise ConfigError(
            f"method.num_targets and method.min_context must be at least 1, "
            f"got {p.num_targets} and {p.min_context}"
        )
    if grid < 2:
        raise ConfigError(
            f"ijepa needs a patch grid of at least 2×2, got {grid}×{grid} (lower model.patch_size)"
        )
    if p.predictor_dim % 4 or p.predictor_dim % p.predictor_heads:
        raise ConfigError(
            f"method.predictor_dim must be a multiple of 4 (sine-cosine positions) and of "
            f"method.predictor_heads, got {p.predictor_dim} and {p.predictor_heads}"
        )
