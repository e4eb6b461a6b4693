"""A plain Vision Transformer (Dosovitskiy et al. 2021) with MAE's fixed 2-D sine-cosine positions.

The encoder MAE trains (He et al. 2022, official code facebookresearch/mae ``models_mae.py``):
patches embedded by a strided convolution, a class token, pre-norm transformer blocks (attention
and a 4× MLP with GELU), a final LayerNorm. ``embed`` and ``encode`` are separate so that MAE can
drop the masked patches in between; ``forward`` sees all patches and returns the mean of the patch
tokens, the representation the evaluation harness uses.
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup.errors import ConfigError


def sincos_positions(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D positions 1×grid²×dim: half the channels encode the row, half the column, each as
    sin and cos of the index times frequencies 1/10000^(k/(dim/4)) (MAE's ``get_2d_sincos_pos_embed``)."""
    if dim % 4:
        raise ConfigError(
            f"the ViT's token dimension (model.width) must be a multiple of 4 for 2-D sine-cosine "
            f"positions, got {dim}"
        )
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float().unsqueeze(0)


def transformer_block(
    dim: int, heads: int, layer: type[nn.Module] = nn.TransformerEncoderLayer, dropout: float = 0.0
) -> nn.Module:
    """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x)), MLP 4× wide with GELU, no dropout
    by default (ViT/MAE). ``layer``: PyTorch's encoder layer, or its decoder layer (with cross-attention).
    ``dropout``: on the attention weights and the residual branches (BERT's 0.1; SimCSE's noise)."""
    return layer(
        dim,
        heads,
        dim_feedforward=4 * dim,
        dropout=dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
        layer_norm_eps=1e-6,
    )


def init_transformer(module: nn.Module) -> None:
    """MAE's initialisation: Xavier-uniform linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VisionTransformer(nn.Module):
    """ViT over ``patch_size``-pixel patches of square ``image_size`` images; ``out_dim`` = ``dim``."""

    def __init__(self, in_channels: int, image_size: int, patch_size: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.patch_size, self.grid = patch_size, image_size // patch_size
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_positions(dim, self.grid), persistent=False)
        self.blocks = nn.ModuleList(transformer_block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out_dim = dim
        init_transformer(self)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(dim, -1))
        nn.init.normal_(self.cls_token, std=0.02)

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with their positions, N×L×dim, in raster order of the patches."""
        side = self.grid * self.patch_size
        if tuple(x.shape[-2:]) != (side, side):
            raise ValueError(f"this ViT takes {side}×{side} images, got {tuple(x.shape[-2:])}")
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """The class token, then ``tokens`` (N×L'×dim, any subset of patches), through the blocks:
        N×(1+L')×dim."""
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)  # traced: any batch
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(self.embed(x))[:, 1:].mean(dim=1)


def selfsup_vit(encoder: nn.Module, method: str, why: str) -> VisionTransformer:
    """The encoder's backbone where it is selfsup's :class:`VisionTransformer` (whose patch tokens
    ``method`` takes apart: ``why``); else :class:`ConfigError`."""
    vit = encoder.backbone
    if not isinstance(vit, VisionTransformer):
        raise ConfigError(
            f"{method} needs selfsup's ViT, whose patch {why}: model.backbone=vit, "
            f"got '{encoder.spec['backbone']}'"
        )
    return vit
