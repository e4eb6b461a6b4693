"""Turn a batch of uint8 images into augmented float views, on the batch's device."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import selfsup.augment.ops as ops


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


@dataclass
class ViewDraw:
    """The random parameters of one view of a batch of n images: crop boxes (n×4), flips, colour
    jitter, grayscale, blur (which images, σ) and solarisation choices; None where the view has
    no such step."""

    boxes: torch.Tensor
    flip: torch.Tensor
    jitter: ops.JitterDraw | None
    grey: torch.Tensor | None
    blur: tuple[torch.Tensor, torch.Tensor] | None
    solarize: torch.Tensor | None


class ViewAugmenter:
    """Makes ``config.views`` independently augmented views of a uint8 batch, then
    ``config.local_views`` smaller ones (multi-crop).

    Every image draws its own parameters from ``generator`` (an :class:`ops.BatchShard` when the
    batch is one process's part of a global batch), view after view in the order of the pipeline;
    then all views of one size are transformed together as one batch (fewer, larger operations:
    on a GPU each operation is a kernel launch, on the CPU a pass of a thread pool). The result is
    float32 in [0, 1], global views with the input's spatial size.
    """

    def __init__(self, config: AugmentConfig):
        self.config = config

    def draw(
        self,
        n: int,
        height: int,
        width: int,
        generator: ops.Generator,
        device,
        index: int = 0,
        local: bool = False,
    ) -> ViewDraw:
        """The parameters of view number ``index`` (it picks the per-view blur and solarisation
        probabilities), or of a local view (``local_crop_scale``, ``local_blur_p``)."""
        c = self.config
        boxes = ops.random_resized_crop_boxes(
            n, height, width, c.local_crop_scale if local else c.crop_scale, c.crop_ratio, generator, device
        )
        flip = ops.bernoulli(n, c.flip_p, generator, device)
        jitter = (
            ops.draw_jitter(n, c.brightness, c.contrast, c.saturation, c.hue, c.jitter_p, generator, device)
            if c.jitter_p > 0
            else None
        )
        grey = ops.bernoulli(n, c.grayscale_p, generator, device) if c.grayscale_p > 0 else None
        blur_p = c.local_blur_p if local else c.blur_p[min(index, len(c.blur_p) - 1)]
        blur = ops.draw_blur(n, blur_p, c.blur_sigma, generator, device) if blur_p > 0 else None
        solarize_p = 0.0 if local else c.solarize_p[min(index, len(c.solarize_p) - 1)]
        solarize = ops.bernoulli(n, solarize_p, generator, device) if solarize_p > 0 else None
        return ViewDraw(boxes, flip, jitter, grey, blur, solarize)

    def apply(self, images: torch.Tensor, draws: list[ViewDraw], size: tuple[int, int]) -> torch.Tensor:
        """The views ``draws`` of ``images`` (N×C×H×W, uint8 or float in [0, 1]; left unchanged),
        resized to ``size``, stacked view after view: float (len(draws)·N)×C×size in [0, 1]."""
        c = self.config
        views, (n, _, height, width) = len(draws), images.shape
        x = (
            images.repeat(views, 1, 1, 1) if views > 1 else images
        )  # repeated while still uint8: 4× less to copy
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        boxes = torch.cat([d.boxes for d in draws])
        flip = torch.cat([d.flip for d in draws])
        if ops.sync_free(x) or not (
            size == (height, width)
            and bool((boxes[:, 2] == height).all() and (boxes[:, 3] == width).all())
            and not flip.any()
        ):  # the identity (whole image, no flip) leaves the pixels exact
            x = ops.crop_resize_flip(x, boxes, flip, size)
        elif x is images:
            x = x.clone()  # the caller's float images are never written into
        # x is these views' own buffer from here on: the operations write into it (no new
        # allocations, which on the CPU cost more than the arithmetic: fresh pages fault in)
        if draws[0].jitter is not None:
            jitter = ops.JitterDraw(
                *(
                    torch.cat(parts)
                    for parts in zip(*((d.jitter.apply, d.jitter.factors, d.jitter.order) for d in draws))
                )
            )
            x = ops.apply_jitter(x, jitter, (c.brightness, c.contrast, c.saturation, c.hue))
        if draws[0].grey is not None:
            x = ops.to_grayscale(x, torch.cat([d.grey for d in draws]), inplace=True)
        off = torch.zeros(n, dtype=torch.bool, device=x.device)  # a view without the step: no image chosen
        if any(d.blur is not None for d in draws):
            apply, sigmas = (
                torch.cat(parts) for parts in zip(*(d.blur or (off, off.float() + 1.0) for d in draws))
            )
            x = ops.blur_chosen(
                x, apply, sigmas, c.blur_kernel or ops.blur_kernel_size(min(size)), inplace=True
            )
        if any(d.solarize is not None for d in draws):
            apply = torch.cat([off if d.solarize is None else d.solarize for d in draws])
            x = ops.solarize_chosen(x, apply, c.solarize_threshold, inplace=True)
        return x

    def view(
        self, images: torch.Tensor, generator: ops.Generator, index: int = 0, local: bool = False
    ) -> torch.Tensor:
        """One view of a uint8 (or float in [0, 1]) batch: view number ``index``, or a local view."""
        n, _, height, width = images.shape
        size = (self.config.local_side(height), self.config.local_side(width)) if local else (height, width)
        return self.apply(images, [self.draw(n, height, width, generator, images.device, index, local)], size)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, generator: ops.Generator) -> list[torch.Tensor]:
        c = self.config
        n, _, height, width = images.shape
        global_draws = [
            self.draw(n, height, width, generator, images.device, index=i) for i in range(c.views)
        ]
        local_draws = [
            self.draw(n, height, width, generator, images.device, local=True) for _ in range(c.local_views)
        ]
        out = list(self.apply(images, global_draws, (height, width)).split(n)) if global_draws else []
        if local_draws:
            out += self.apply(images, local_draws, (c.local_side(height), c.local_side(width))).split(n)
        return out
