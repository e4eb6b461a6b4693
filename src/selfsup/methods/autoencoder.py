"""Denoising auto-encoder (Vincent, Larochelle, Bengio & Manzagol 2008, "Extracting and Composing
Robust Features with Denoising Autoencoders"; Vincent et al. 2010).

The encoder sees a corrupted image and its pooled bottleneck (the representation the evaluation
uses) must carry enough to reconstruct the clean image: a convolutional decoder maps the vector
back to pixels and the loss is the mean squared error to the clean image (in the encoder's
standardised pixel units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.augment import ops
from selfsup.errors import ConfigError
from selfsup.methods.base import PICTURES, TEST_METRICS, Method, MethodOutput, Progress
from selfsup.models.encoder import Encoder

NOISES = ("gaussian", "mask", "salt_pepper")


@dataclass
class DAEParams:
    noise: str = "mask"  # gaussian, mask (zeroed pixels or patches), salt_pepper
    noise_std: float = 0.3  # gaussian: standard deviation on the [0, 1] pixel scale
    mask_ratio: float = 0.5  # mask: share of squares zeroed
    mask_patch: int = 1  # mask: side of the zeroed squares in pixels (1: single pixels)
    salt_pepper: float = 0.2  # salt_pepper: share of pixels set to 0 or 1
    decoder_width: int = 64  # channels of the decoder's last hidden layer (twice that before it)


class ConvDecoder(nn.Module):
    """Vector N×D -> image N×C×H×W: a linear map to a (2w)×⌈H/4⌉×⌈W/4⌉ map, then two 2× transposed
    convolutions (with BatchNorm and ReLU between), cropped to H×W."""

    def __init__(self, in_dim: int, channels: int, height: int, width: int, hidden: int = 64):
        super().__init__()
        self.size, self.start = (height, width), (math.ceil(height / 4), math.ceil(width / 4))
        self.project = nn.Sequential(
            nn.Linear(in_dim, 2 * hidden * self.start[0] * self.start[1]), nn.ReLU(inplace=True)
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * hidden, hidden, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(hidden, channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(len(z), -1, *self.start)
        return self.up(x)[:, :, : self.size[0], : self.size[1]]


class DenoisingAutoencoder(Method):
    """Reconstruct the clean image from the pooled features of a corrupted one."""

    views = 1
    offers = frozenset({TEST_METRICS, PICTURES})

    def __init__(self, encoder: Encoder, params: DAEParams):
        super().__init__(encoder)
        if params.noise not in NOISES:
            raise ConfigError(f"method.noise must be one of {', '.join(NOISES)}, got '{params.noise}'")
        for name in ("mask_ratio", "salt_pepper"):
            if not 0 <= getattr(params, name) < 1:
                raise ConfigError(f"method.{name} must be in [0, 1), got {getattr(params, name)}")
        if params.noise_std < 0 or params.mask_patch < 1:
            raise ConfigError("method.noise_std must be 0 or more and method.mask_patch at least 1")
        self.params = params
        side = encoder.spec["image_size"]
        self.decoder = ConvDecoder(
            encoder.out_dim, encoder.spec["in_channels"], side, side, params.decoder_width
        )

    def corrupt(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.params
        if p.noise == "gaussian":
            return ops.gaussian_noise(images, p.noise_std, generator)
        if p.noise == "mask":
            return ops.mask_patches(images, p.mask_ratio, p.mask_patch, generator)
        return ops.salt_and_pepper(images, p.salt_pepper, generator)

    def reconstruct(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features N×D of the corrupted images and their reconstruction in standardised pixel units."""
        h = self.encoder(noisy)
        return h, self.decoder(h)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        clean = views[0]
        h, reconstruction = self.reconstruct(self.corrupt(clean))
        loss = F.mse_loss(reconstruction.float(), self.encoder.normalize(clean).float())
        return MethodOutput(loss, monitored={"embedding": h.detach()})

    @torch.no_grad()
    def test_metrics(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        generator = torch.Generator(device=images.device).manual_seed(0)
        _, reconstruction = self.reconstruct(self.corrupt(images, generator))
        return {
            "reconstruction_mse": F.mse_loss(self.encoder.denormalize(reconstruction), images.float()).item()
        }

    @torch.no_grad()
    def pictures(
        self, images: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, list[torch.Tensor]]:
        noisy = self.corrupt(images, generator)
        _, reconstruction = self.reconstruct(noisy)
        return {"reconstructions": [noisy, self.encoder.denormalize(reconstruction), images]}
