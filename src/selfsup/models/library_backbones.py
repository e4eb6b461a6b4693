"""Backbones from the libraries people use, by name: ``timm:NAME`` (any model ``timm.create_model``
knows; the ``timm`` extra) and ``torchvision:NAME`` (any torchvision classification model).

Each is built untrained, without its classifier, and returns the pooled feature vector N×out_dim;
``out_dim`` is found by running the model once on blank images of the data's size. ResNet-like
models (a ``conv1`` convolution and a ``maxpool``) take the CIFAR stem as selfsup's own ResNets do
(``model.stem``); torchvision models get grey images repeated to RGB, timm models are built for
the data's channels (``in_chans``) and, where they take it, its image size (``img_size``, ViTs).
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from selfsup.errors import ConfigError

LIBRARIES = ("timm", "torchvision")


def is_library_backbone(name: str) -> bool:
    """Whether ``name`` is ``LIBRARY:MODEL`` for a library of :data:`LIBRARIES`."""
    library, colon, model = name.partition(":")
    return bool(colon and model) and library in LIBRARIES


def library_backbone(
    name: str, in_channels: int, image_size: int, stem: str, cifar_stem_max_side: int
) -> nn.Module:
    """The backbone ``LIBRARY:MODEL`` for images of ``in_channels`` × ``image_size`` px, with
    ``out_dim``. Raises :class:`ConfigError` for a library that is not installed, an unknown model
    (naming close ones), a model without a classifier to remove, or one that cannot take images
    of this size."""
    library, _, model = name.partition(":")
    net = _timm(model, in_channels, image_size) if library == "timm" else _torchvision(model, in_channels)
    if stem == "cifar" or (stem == "auto" and image_size <= cifar_stem_max_side):
        _cifar_stem(net)
    backbone = Features(net, repeat_grey=library == "torchvision" and in_channels == 1)
    backbone.out_dim = feature_dim(backbone, name, in_channels, image_size)
    return backbone


class Features(nn.Module):
    """A model without its classifier: images -> flat features N×D (``repeat_grey``: grey images
    are repeated to the three channels the model takes)."""

    def __init__(self, net: nn.Module, repeat_grey: bool):
        super().__init__()
        self.net, self.repeat_grey = net, repeat_grey

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.repeat_grey:
            images = images.expand(-1, 3, -1, -1)
        return self.net(images).flatten(1)


def _timm(model: str, in_channels: int, image_size: int) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ConfigError(
            f"backbone 'timm:{model}' needs the timm package: pip install 'selfsup[timm]'"
        ) from None
    if model not in timm.list_models():
        close = difflib.get_close_matches(model, timm.list_models(), n=5)
        raise ConfigError(f"timm has no model '{model}'" + (f" (close: {', '.join(close)})" if close else ""))
    try:  # ViTs and other fixed-size models are built for the data's size
        return timm.create_model(
            model, pretrained=False, num_classes=0, in_chans=in_channels, img_size=image_size
        )
    except TypeError:
        return timm.create_model(model, pretrained=False, num_classes=0, in_chans=in_channels)


def _torchvision(model: str, in_channels: int) -> nn.Module:
    from torchvision import models

    names = models.list_models(module=models)  # the classification models
    if model not in names:
        close = difflib.get_close_matches(model, names, n=5)
        raise ConfigError(
            f"torchvision has no classification model '{model}'"
            + (f" (close: {', '.join(close)})" if close else "")
        )
    net = models.get_model(model, weights=None)
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"torchvision:{model} has no final linear classifier to remove")
    parent_name, _, child = linears[-1][0].rpartition(".")
    setattr(net.get_submodule(parent_name) if parent_name else net, child, nn.Identity())
    return net


def _cifar_stem(net: nn.Module) -> None:
    """3×3 stride-1 first convolution and no max-pool (He et al. 2016, Sec. 4.2), where the model
    has a ResNet's ``conv1`` and ``maxpool``."""
    conv = getattr(net, "conv1", None)
    if isinstance(conv, nn.Conv2d) and isinstance(getattr(net, "maxpool", None), nn.Module):
        net.conv1 = nn.Conv2d(
            conv.in_channels, conv.out_channels, kernel_size=3, stride=1, padding=1, bias=False
        )
        net.maxpool = nn.Identity()


def feature_dim(
    backbone: nn.Module,
    name: str,
    in_channels: int,
    image_size: int | tuple[int, int],
    hint: str = "resize them with data.image_size=N",
) -> int:
    """The size of the features ``backbone`` gives for images of ``in_channels`` × ``image_size`` px
    (a side, or height and width); raises :class:`ConfigError` (ending with ``hint``) where it
    cannot take them."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            features = backbone(torch.zeros(2, in_channels, height, width))
    except Exception as exc:  # noqa: BLE001 - each library raises its own types for a wrong size
        raise ConfigError(
            f"backbone '{name}' cannot take images of {in_channels}×{height}×{width} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); {hint}"
        ) from None
    finally:
        backbone.train(was_training)
    return int(features.shape[1])


class TimmViTPatches:
    """The patch-token view of a timm ``VisionTransformer`` that MAE needs, as selfsup's own ViT
    offers it: ``embed`` (images -> patch tokens with their positions, N×L×dim), ``encode`` (the
    class token and any subset of patch tokens through the blocks), ``grid``, ``patch_size``,
    ``num_patches``, ``out_dim``. MAE's official code is built on this very model."""

    def __init__(self, net: nn.Module):
        self.net = net
        self.patch_size = int(net.patch_embed.patch_size[0])
        self.grid = int(net.patch_embed.grid_size[0])
        self.out_dim = int(net.embed_dim)

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def _positions(self) -> tuple[torch.Tensor | float, torch.Tensor]:
        """The class token's position (0 where it has none) and the patches' positions."""
        pos = self.net.pos_embed
        return (0.0, pos) if self.net.no_embed_class else (pos[:, :1], pos[:, 1:])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.patch_embed(x) + self._positions()[1]

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        cls = (self.net.cls_token + self._positions()[0]).expand(len(tokens), -1, -1)
        x = self.net.norm_pre(torch.cat([cls, tokens], dim=1))
        return self.net.norm(self.net.blocks(x))


def timm_vit_patches(backbone: nn.Module) -> TimmViTPatches | None:
    """The patch-token view of a ``timm:`` backbone that is a plain ViT (a class token, no register
    tokens, fixed absolute positions, square patches); None for any other backbone."""
    net = getattr(backbone, "net", None)
    if type(net).__name__ != "VisionTransformer" or not hasattr(net, "patch_embed"):
        return None
    embed = net.patch_embed
    plain = (
        net.cls_token is not None
        and getattr(net, "reg_token", None) is None
        and net.pos_embed is not None
        and not getattr(net, "dynamic_img_size", False)
        and getattr(embed, "flatten", False)
        and embed.patch_size[0] == embed.patch_size[1]
        and embed.grid_size[0] == embed.grid_size[1]
    )
    return TimmViTPatches(net) if plain else None
