"""Masked auto-encoder (He, Chen, Xie, Li, Dollár & Girshick 2022, "Masked Autoencoders Are Scalable
Vision Learners"; official code facebookresearch/mae ``models_mae.py``).

Each image loses the same number of randomly chosen patches (``mask_ratio`` of them, per-sample
random); the ViT encoder sees only the visible ones; a light transformer decoder gets the encoded
visible tokens and a shared learned mask token at every hidden position (with fixed positions) and
predicts the pixels of every patch; the loss is the squared error on the hidden patches only, with
each target patch standardised by its own mean and variance. For evaluation the encoder sees all
patches (``VisionTransformer.forward``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selfsup.errors import ConfigError
from selfsup.losses import masked_patch_loss, standardize_patches
from selfsup.methods.base import PICTURES, TEST_METRICS, Method, MethodOutput, Progress
from selfsup.models.encoder import Encoder
from selfsup.models.library_backbones import TimmViTPatches, timm_vit_patches
from selfsup.models.vit import VisionTransformer, init_transformer, sincos_positions, transformer_block


@dataclass
class MAEParams:
    """Defaults: the paper's mask ratio and normalised-pixel loss; a decoder sized for small images
    (the official one is 512 wide and 8 deep for ViT-B/L at 224 px)."""

    mask_ratio: float = 0.75
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    norm_pix_loss: bool = True


def random_masking(
    n: int, length: int, ratio: float, device, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking: exactly ``length - int(length·(1-ratio))`` patches hidden per sample.

    Returns ``keep`` (N×K indices of the visible patches), ``restore`` (N×L: position of each patch
    in the order visible-then-hidden, to undo the shuffle) and ``mask`` (N×L, 1 = hidden).
    """
    visible = int(length * (1 - ratio))
    shuffle = torch.rand(n, length, device=device, generator=generator).argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    mask = torch.ones(n, length, device=device)
    mask[:, :visible] = 0
    return shuffle[:, :visible], restore, mask.gather(1, restore)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """N×C×H×W -> N×L×(p·p·C), patches in raster order, pixels (row, column, channel) within a patch."""
    n, c, h, w = images.shape
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int) -> torch.Tensor:
    n, length, _ = patches.shape
    grid = int(round(length**0.5))
    x = patches.reshape(n, grid, grid, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, channels, grid * patch, grid * patch)


def patch_tokens(backbone: nn.Module) -> VisionTransformer | TimmViTPatches | None:
    """What MAE hides patches of: selfsup's ViT itself, or the patch-token view of a timm ViT."""
    return backbone if isinstance(backbone, VisionTransformer) else timm_vit_patches(backbone)


class MAE(Method):
    views = 1
    offers = frozenset({TEST_METRICS, PICTURES})

    def __init__(self, encoder: Encoder, params: MAEParams):
        super().__init__(encoder)
        vit = patch_tokens(encoder.backbone)
        if vit is None:
            raise ConfigError(
                f"mae needs a ViT whose patch tokens it can hide: model.backbone=vit or a timm ViT "
                f"(timm:vit_*, with a class token and fixed positions), got '{encoder.spec['backbone']}'"
            )
        if not 0 < params.mask_ratio < 1 or int(vit.num_patches * (1 - params.mask_ratio)) < 1:
            raise ConfigError(
                f"method.mask_ratio must leave at least one of the {vit.num_patches} patches visible "
                f"and hide at least one, got {params.mask_ratio}"
            )
        self.params = params
        dim, channels = vit.out_dim, encoder.spec["in_channels"]
        self.decoder_embed = nn.Linear(dim, params.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, params.decoder_dim))
        self.register_buffer(
            "decoder_pos",
            torch.cat(
                [torch.zeros(1, 1, params.decoder_dim), sincos_positions(params.decoder_dim, vit.grid)], dim=1
            ),
            persistent=False,
        )
        self.decoder_blocks = nn.ModuleList(
            transformer_block(params.decoder_dim, params.decoder_heads) for _ in range(params.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(params.decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(params.decoder_dim, vit.patch_size**2 * channels)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            init_transformer(module)
        nn.init.normal_(self.mask_token, std=0.02)

    def masked_prediction(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Encode the visible patches of the standardised ``images`` and predict every patch.

        Returns ``pred`` and ``target`` (N×L×p²C, standardised pixels), ``mask`` (N×L, 1 = hidden)
        and ``latent`` (N×(1+K)×dim, the class token and the K visible tokens)."""
        vit = patch_tokens(self.encoder.backbone)
        x = self.encoder.normalize(images)
        tokens = vit.embed(x)
        n, length, dim = tokens.shape
        keep, restore, mask = random_masking(n, length, self.params.mask_ratio, x.device, generator)
        latent = vit.encode(tokens.gather(1, keep[:, :, None].expand(-1, -1, dim)))
        y = self.decoder_embed(latent)
        hidden = self.mask_token.to(y.dtype).expand(n, length - keep.shape[1], -1)
        patches = torch.cat([y[:, 1:], hidden], dim=1).gather(
            1, restore[:, :, None].expand(-1, -1, y.shape[-1])
        )
        y = torch.cat([y[:, :1], patches], dim=1) + self.decoder_pos
        for block in self.decoder_blocks:
            y = block(y)
        pred = self.decoder_pred(self.decoder_norm(y))[:, 1:]
        return {"pred": pred, "target": patchify(x, vit.patch_size), "mask": mask, "latent": latent}

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        out = self.masked_prediction(views[0])
        loss = masked_patch_loss(out["pred"], out["target"], out["mask"], self.params.norm_pix_loss)
        return MethodOutput(loss, monitored={"embedding": out["latent"][:, 1:].mean(dim=1).detach()})

    def _reconstruction(
        self, images: torch.Tensor, out: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images in [0, 1]: the input with its hidden patches predicted (a normalised-pixel
        prediction is mapped back with the true patch's mean and scale, as the official demo does),
        the input with its hidden patches grey, and the pixel mask N×C×H×W (1 = hidden)."""
        patch, channels = patch_tokens(self.encoder.backbone).patch_size, images.shape[1]
        pred = out["pred"].float()
        if self.params.norm_pix_loss:
            _, mean, scale = standardize_patches(out["target"].float())
            pred = pred * scale + mean
        hidden = unpatchify(out["mask"][:, :, None].expand(-1, -1, pred.shape[-1]), patch, channels)
        predicted = self.encoder.denormalize(unpatchify(pred, patch, channels))
        filled = torch.where(hidden.bool(), predicted, images.float())
        masked = torch.where(hidden.bool(), torch.full_like(filled, 0.5), images.float())
        return filled, masked, hidden

    @torch.no_grad()
    def test_metrics(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        out = self.masked_prediction(images, torch.Generator(device=images.device).manual_seed(0))
        filled, _, hidden = self._reconstruction(images, out)
        squared = (filled - images.float()) ** 2 * hidden
        return {
            "masked_patch_loss": masked_patch_loss(
                out["pred"], out["target"], out["mask"], self.params.norm_pix_loss
            ).item(),
            "reconstruction_mse": (squared.sum() / hidden.sum()).item(),
        }

    @torch.no_grad()
    def pictures(
        self, images: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, list[torch.Tensor]]:
        filled, masked, _ = self._reconstruction(images, self.masked_prediction(images, generator))
        return {"reconstructions": [masked, filled, images]}
