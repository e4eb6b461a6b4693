"""Backbones chosen by name; each returns the pooled feature vector N×out_dim."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from selfsup.errors import ConfigError
from selfsup.models.library_backbones import Features, feature_dim, is_library_backbone, library_backbone

CIFAR_STEM_MAX_SIDE = 64  # at or below this image side, ResNets use the CIFAR stem by default


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def build(in_channels: int, image_size: int, stem: str = "auto", **unused) -> nn.Module:
        del unused  # torchvision ResNets have fixed widths and depths
        from torchvision import models as tv_models  # here: text runs never pay for its import

        net = getattr(tv_models, f"resnet{depth}")(weights=None)
        use_cifar_stem = stem == "cifar" or (stem == "auto" and image_size <= CIFAR_STEM_MAX_SIDE)
        if use_cifar_stem:
            # CIFAR stem (He et al. 2016, Sec. 4.2; SimCLR App. B.9): 3×3 stride-1 conv, padding 1,
            # no max-pool
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        return net

    return build


def resnet_last_stage_input_side(side: int, stem: str) -> int:
    """Side of the feature map that ResNet's last stage (layer4, first 3×3 conv) receives for input
    images of ``side`` pixels: after the stem (ImageNet: stride-2 conv and stride-2 max-pool; CIFAR:
    neither) and the stride-2 layer2 and layer3."""
    use_cifar_stem = stem == "cifar" or (stem == "auto" and side <= CIFAR_STEM_MAX_SIDE)
    for _ in range(2 if use_cifar_stem else 4):
        side = -(-side // 2)
    return side


class SmallCNN(nn.Module):
    """Three 3×3 conv-BN-ReLU blocks (widths w, 2w, 4w) with one 2×2 max-pool, then global average pooling.

    Sized for 8×8 to 16×16 inputs such as the digits; ``out_dim`` is 4w.
    """

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *block(in_channels, width),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _small_cnn(in_channels: int, image_size: int, width: int = 32, **unused) -> nn.Module:
    del image_size, unused
    return SmallCNN(in_channels, width)


def vit_patch_size(image_size: int, patch_size: int = 0) -> int:
    """The ViT's patch side: ``patch_size``, or 0 for 4 px at 32 px and above, else 2 px."""
    return patch_size or (4 if image_size >= 32 else 2)


def _vit(
    in_channels: int, image_size: int, width: int = 192, depth: int = 0, patch_size: int = 0, **unused
) -> nn.Module:
    from selfsup.models.vit import VisionTransformer

    del unused
    return VisionTransformer(
        in_channels,
        image_size,
        vit_patch_size(image_size, patch_size),
        dim=width,
        depth=depth or 12,
        heads=max(1, width // 64),
    )


def _gated_pixelcnn(
    in_channels: int, image_size: int, width: int = 64, depth: int = 0, **unused
) -> nn.Module:
    from selfsup.models.autoregressive import GatedPixelCNN

    del image_size, unused
    return GatedPixelCNN(in_channels, width, depth or 8)


def _row_lstm(in_channels: int, image_size: int, width: int = 64, depth: int = 0, **unused) -> nn.Module:
    from selfsup.models.autoregressive import RowLSTM

    del image_size, unused
    return RowLSTM(in_channels, width, depth or 4)


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "resnet50": _resnet(50),
    "small_cnn": _small_cnn,
    "vit": _vit,
    "gated_pixelcnn": _gated_pixelcnn,
    "row_lstm": _row_lstm,
}


CUSTOM_PREFIX = "custom:"
CUSTOM: dict[str, nn.Module] = {}
"""The users' own modules by name (``custom:ClassName``), as they were handed over (untrained)."""


def register_backbone(module: nn.Module) -> str:
    """Make the user's ``module`` (images N×C×H×W -> features, flattened to N×D) a backbone;
    returns its name for ``model.backbone``. A copy is kept, so later training leaves it as given:
    it is what every run of this backbone starts from, and the from-scratch baseline."""
    if not isinstance(module, nn.Module):
        raise ConfigError(f"backbone must be a name or a torch.nn.Module, got {type(module).__name__}")
    name = f"{CUSTOM_PREFIX}{type(module).__name__}"
    if name in CUSTOM:
        name += f"-{len(CUSTOM)}"
    CUSTOM[name] = copy.deepcopy(module).cpu()
    return name


def custom_backbone(name: str, in_channels: int, image_size: int) -> nn.Module:
    """A fresh copy of the registered module ``name`` with ``out_dim``, found by a forward pass."""
    if name not in CUSTOM:
        raise ConfigError(
            f"backbone '{name}' is a Python module not handed over in this process; "
            "pass it again with api.pretrain(..., backbone=module)"
        )
    backbone = Features(copy.deepcopy(CUSTOM[name]), repeat_grey=False)
    hint = "give images of the size and channels the module takes"
    backbone.out_dim = feature_dim(backbone, name, in_channels, image_size, hint)
    return backbone


def build_backbone(
    name: str,
    in_channels: int,
    image_size: int,
    stem: str = "auto",
    width: int = 32,
    depth: int = 0,
    patch_size: int = 0,
) -> nn.Module:
    """Build a backbone by name (``resnet18``, ``resnet34``, ``resnet50``, ``small_cnn``, ``vit``,
    ``gated_pixelcnn``, ``row_lstm``; ``timm:NAME``, ``torchvision:NAME``:
    :mod:`selfsup.models.library_backbones`; ``custom:NAME``: :func:`register_backbone`).

    ``stem``: ``auto`` (CIFAR stem for images up to 64 px), ``cifar`` or ``imagenet``; ResNets only.
    ``width``: the first layer's channels of ``small_cnn``; the token dimension of ``vit`` (heads:
    width / 64); the feature channels of the pixel models. ``depth``: blocks or layers (0: the
    default, 12 for ``vit``, 8 for ``gated_pixelcnn``, 4 for ``row_lstm``). ``patch_size``: ``vit``
    only (0: 4 px for images of side 32 or more, else 2 px).
    """
    if stem not in ("auto", "cifar", "imagenet"):
        raise ConfigError(f"unknown stem '{stem}' (choose from auto, cifar, imagenet)")
    if is_library_backbone(name):
        return library_backbone(name, in_channels, image_size, stem, CIFAR_STEM_MAX_SIDE)
    if name.startswith(CUSTOM_PREFIX):
        return custom_backbone(name, in_channels, image_size)
    if name not in BACKBONES:
        raise ConfigError(
            f"unknown backbone '{name}' (choose from {', '.join(BACKBONES)}, timm:NAME or torchvision:NAME)"
        )
    if name == "vit":
        patch = vit_patch_size(image_size, patch_size)
        if image_size % patch:
            raise ConfigError(f"model.patch_size {patch} does not divide the image side {image_size}")
    return BACKBONES[name](
        in_channels, image_size, stem=stem, width=width, depth=depth, patch_size=patch_size
    )
