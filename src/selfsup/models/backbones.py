"""Backbones chosen by name; each returns the pooled feature vector N×out_dim."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torchvision import models as tv_models

from selfsup.errors import ConfigError

CIFAR_STEM_MAX_SIDE = 64  # at or below this image side, ResNets use the CIFAR stem by default


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def build(in_channels: int, image_size: int, stem: str = "auto", width: int = 64) -> nn.Module:
        del width  # torchvision ResNets have fixed widths
        net = getattr(tv_models, f"resnet{depth}")(weights=None)
        use_cifar_stem = stem == "cifar" or (stem == "auto" and image_size <= CIFAR_STEM_MAX_SIDE)
        if use_cifar_stem:
            # CIFAR stem (He et al. 2016, Sec. 4.2; SimCLR App. B.9): 3×3 stride-1 conv, padding 1, no max-pool
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        return net
    return build


class SmallCNN(nn.Module):
    """Three 3×3 conv-BN-ReLU blocks (widths w, 2w, 4w) with one 2×2 max-pool, then global average pooling.

    Sized for 8×8 to 16×16 inputs such as the digits; ``out_dim`` is 4w.
    """

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, width), *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out_dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _small_cnn(in_channels: int, image_size: int, stem: str = "auto", width: int = 32) -> nn.Module:
    del image_size, stem
    return SmallCNN(in_channels, width)


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "resnet50": _resnet(50),
    "small_cnn": _small_cnn,
}


def build_backbone(name: str, in_channels: int, image_size: int, stem: str = "auto", width: int = 32) -> nn.Module:
    """Build a backbone by name (``resnet18``, ``resnet34``, ``resnet50``, ``small_cnn``).

    ``stem``: ``auto`` (CIFAR stem for images up to 64 px), ``cifar`` or ``imagenet``; ResNets only.
    ``width``: the first layer's channels of ``small_cnn``.
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")
    if stem not in ("auto", "cifar", "imagenet"):
        raise ConfigError(f"unknown stem '{stem}' (choose from auto, cifar, imagenet)")
    return BACKBONES[name](in_channels, image_size, stem=stem, width=width)
