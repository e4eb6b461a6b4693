"""Turn a batch of uint8 images into augmented float views, on the batch's device."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from selfsup.augment import ops


@dataclass
class AugmentConfig:
    """Parameters of the view pipeline: crop -> flip -> colour jitter -> grayscale -> blur -> solarise.

    The defaults are SimCLR's CIFAR-10 augmentations (Chen et al. 2020, App. B.9): random
    resized crop (scale 0.08-1, ratio 3/4-4/3), flip, colour jitter of strength 0.5 with p 0.8,
    grayscale with p 0.2, and no blur at 32×32.
    """

    views: int = 2
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    # blur and solarisation, per view: view i uses entry i (the last entry for the views after it)
    blur_p: list[float] = field(default_factory=lambda: [0.0])
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 0  # pixels; 0 = about 10% of the side, odd (SimCLR: 23 at 224)
    solarize_p: list[float] = field(default_factory=lambda: [0.0])
    solarize_threshold: float = 0.5
    preset: str = ""  # the preset the other values started from (augment.preset=NAME sets them all)
    # multi-crop (Caron et al. 2020, SwAV; DINO): extra small views after the ``views`` global ones
    local_views: int = 0
    local_crop_scale: tuple[float, float] = (0.05, 0.14)
    local_size: int = 0  # side of the local views in pixels; 0 = 3/7 of the input side (96/224, rounded)
    local_blur_p: float = 0.0

    def local_side(self, side: int) -> int:
        return self.local_size if self.local_size > 0 else max(1, round(side * 96 / 224))


class ViewAugmenter:
    """Makes ``config.views`` independently augmented views of a uint8 batch, then
    ``config.local_views`` smaller ones (multi-crop).

    Every image draws its own parameters from ``generator`` (an :class:`ops.BatchShard` when the
    batch is one process's part of a global batch); the result is float32 in [0, 1], global views
    with the input's spatial size.
    """

    def __init__(self, config: AugmentConfig):
        self.config = config

    def view(self, images: torch.Tensor, generator: ops.Generator, index: int = 0, local: bool = False) -> torch.Tensor:
        """View number ``index`` (it picks the per-view blur and solarisation probabilities): the
        input's size, or a local view (``local_crop_scale``, ``local_side``, ``local_blur_p``)."""
        c = self.config
        x = images.float().div_(255.0)
        n, _, height, width = x.shape
        scale = c.local_crop_scale if local else c.crop_scale
        size = (c.local_side(height), c.local_side(width)) if local else (height, width)
        boxes = ops.random_resized_crop_boxes(n, height, width, scale, c.crop_ratio, generator, x.device)
        flip = ops.bernoulli(n, c.flip_p, generator, x.device)
        if not (size == (height, width) and bool((boxes[:, 2] == height).all() and (boxes[:, 3] == width).all())
                and not flip.any()):  # the identity (whole image, no flip) leaves the pixels exact
            x = ops.crop_resize_flip(x, boxes, flip, size)
        if c.jitter_p > 0:
            x = ops.color_jitter(x, c.brightness, c.contrast, c.saturation, c.hue, c.jitter_p, generator)
        if c.grayscale_p > 0:
            x = ops.to_grayscale(x, ops.bernoulli(n, c.grayscale_p, generator, x.device))
        blur_p = c.local_blur_p if local else c.blur_p[min(index, len(c.blur_p) - 1)]
        if blur_p > 0:
            kernel = c.blur_kernel or ops.blur_kernel_size(min(size))
            x = ops.random_blur(x, blur_p, c.blur_sigma, kernel, generator)
        solarize_p = 0.0 if local else c.solarize_p[min(index, len(c.solarize_p) - 1)]
        if solarize_p > 0:
            x = ops.random_solarize(x, solarize_p, c.solarize_threshold, generator)
        return x

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, generator: ops.Generator) -> list[torch.Tensor]:
        c = self.config
        return ([self.view(images, generator, index=i) for i in range(c.views)]
                + [self.view(images, generator, local=True) for _ in range(c.local_views)])
