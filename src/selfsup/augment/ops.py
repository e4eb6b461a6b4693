"""Batched image operations with per-sample random parameters, on whatever device the batch is on.

Every function takes float images N×C×H×W in [0, 1] and per-image parameters as tensors of
shape N, so one call transforms the whole batch without a Python loop over images. The colour
operations follow the definitions of ``torchvision.transforms.functional`` (tested against it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


@dataclass
class BatchShard:
    """A generator for one process's part of a global batch: the random parameters are drawn for
    all ``total`` images of the global batch (every process draws the same numbers) and rows
    ``start``… are kept, so an image's augmentation does not depend on how many processes share
    the batch, and no two processes augment alike."""

    generator: torch.Generator
    total: int
    start: int


Generator = torch.Generator | BatchShard


def rand(n: int, generator: Generator, device, *shape: int) -> torch.Tensor:
    """Uniform [0, 1) numbers of shape n×shape, n being the number of images (rows)."""
    if isinstance(generator, BatchShard):
        draw = torch.rand((generator.total, *shape), generator=generator.generator, device=device)
        return draw[generator.start:generator.start + n]
    return torch.rand((n, *shape), generator=generator, device=device)


def uniform(n: int, low: float, high: float, generator: Generator, device, *shape: int) -> torch.Tensor:
    return low + (high - low) * rand(n, generator, device, *shape)


def bernoulli(n: int, p: float, generator: Generator, device) -> torch.Tensor:
    return rand(n, generator, device) < p


def random_resized_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float],
                              ratio: tuple[float, float], generator: Generator, device,
                              attempts: int = 10) -> torch.Tensor:
    """Integer crop boxes (top, left, h, w), shape n×4, drawn as torchvision's RandomResizedCrop does.

    Each image tries ``attempts`` (area share, log-uniform aspect ratio) draws and keeps the first
    that fits; images where none fits fall back to the largest centred crop with a clamped ratio.
    """
    area = height * width
    target = area * uniform(n, scale[0], scale[1], generator, device, attempts)
    log_r = uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator, device, attempts)
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.int(), dim=1, keepdim=True)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    any_fit = fits.any(dim=1)

    in_ratio = width / height
    if in_ratio < min(ratio):
        fb_w, fb_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fb_h, fb_w = height, int(round(height * max(ratio)))
    else:
        fb_w, fb_h = width, height
    w = torch.where(any_fit, w, torch.full_like(w, fb_w))
    h = torch.where(any_fit, h, torch.full_like(h, fb_h))
    # top/left uniform over the valid integer positions, like torch.randint(0, H - h + 1)
    top = torch.floor(rand(n, generator, device) * (height - h + 1))
    left = torch.floor(rand(n, generator, device) * (width - w + 1))
    top = torch.where(any_fit, top, torch.full_like(top, 0) + torch.div(height - h, 2, rounding_mode="floor"))
    left = torch.where(any_fit, left, torch.full_like(left, 0) + torch.div(width - w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], dim=1)


def crop_resize_flip(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor,
                     size: tuple[int, int]) -> torch.Tensor:
    """Crop each image to its box (top, left, h, w), resize bilinearly to ``size``, mirror where ``flip``.

    One ``grid_sample`` call does all three: the sampling grid maps output pixel centres to input
    coordinates with the same half-pixel convention as ``torch.nn.functional.interpolate``, so the
    result equals resizing each cropped image (without antialiasing) and then flipping it.
    """
    n, _, height, width = images.shape
    top, left, h, w = boxes.to(images.dtype).unbind(1)
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    sign = 1.0 - 2.0 * flip.to(images.dtype)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [n, images.shape[1], size[0], size[1]], align_corners=False)
    # keep samples on the crop's own pixel centres, so edges repeat the crop's border pixels as
    # resizing the cropped image would, instead of blending in pixels from outside the box
    low = torch.stack([(2 * left + 1) / width, (2 * top + 1) / height], dim=1) - 1
    high = torch.stack([(2 * (left + w) - 1) / width, (2 * (top + h) - 1) / height], dim=1) - 1
    grid = torch.maximum(torch.minimum(grid, high.view(n, 1, 1, 2)), low.view(n, 1, 1, 2))
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _per_image(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    ratio = _per_image(factor)
    return (ratio * images + (1.0 - ratio) * other).clamp_(0.0, 1.0)


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma N×1×H×W of RGB images (grey images are returned as they are)."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(1)
    return (GREY_WEIGHTS[0] * r + GREY_WEIGHTS[1] * g + GREY_WEIGHTS[2] * b).unsqueeze(1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = rgb_to_grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    return _blend(images, rgb_to_grayscale(images), factor)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(1)
    value, _ = images.max(dim=1)
    chroma = value - images.min(dim=1).values
    grey = chroma == 0
    safe_chroma = torch.where(grey, torch.ones_like(chroma), chroma)
    saturation = chroma / torch.where(grey, torch.ones_like(value), value)
    # hue sector by which channel holds the maximum (red first, then green, then blue)
    hue = torch.where(value == r, (g - b) / safe_chroma,
                      torch.where(value == g, 2.0 + (b - r) / safe_chroma, 4.0 + (r - g) / safe_chroma))
    hue = torch.where(grey, torch.zeros_like(hue), hue)
    hue = torch.remainder(hue / 6.0, 1.0)
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """The closed form of the six-sector HSV -> RGB map: channel n (R 5, G 3, B 1) is
    v − v·s·clamp(min(k, 4 − k), 0, 1) with k = (n + 6·h) mod 6; a few element-wise operations
    instead of a table of the six sectors."""
    hue, saturation, value = images.unbind(1)
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    k = torch.remainder(offsets + 6.0 * hue.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    v = value.unsqueeze(1)
    return (v - v * saturation.unsqueeze(1) * ramp).clamp_(0.0, 1.0)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` (a fraction of the colour circle, in [-0.5, 0.5]) per image."""
    if images.shape[1] == 1:
        return images
    hsv = rgb_to_hsv(images)
    hue = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1))


def to_grayscale(images: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """Replace the images where ``apply`` by their luma, kept as C channels."""
    if images.shape[1] == 1 or not bool(apply.any()):
        return images
    grey = rgb_to_grayscale(images).expand_as(images)
    return torch.where(_per_image(apply), grey, images)


def color_jitter(images: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                 p: float, generator: Generator) -> torch.Tensor:
    """torchvision's ColorJitter wrapped in RandomApply(p), with each image's own factors and order.

    Factors are drawn uniformly from [max(0, 1 - s), 1 + s] (hue shift from [-hue, hue]); the four
    operations run in a random order per image, and only on the images selected with probability p.
    """
    n, device = images.shape[0], images.device
    apply = bernoulli(n, p, generator, device)
    factors = [
        uniform(n, max(0.0, 1 - brightness), 1 + brightness, generator, device),
        uniform(n, max(0.0, 1 - contrast), 1 + contrast, generator, device),
        uniform(n, max(0.0, 1 - saturation), 1 + saturation, generator, device),
        uniform(n, -hue, hue, generator, device),
    ]
    strengths = (brightness, contrast, saturation, hue)
    operations = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    order = torch.argsort(rand(n, generator, device, 4), dim=1)
    out = images.clone()
    for position in range(4):
        for op_index, operation in enumerate(operations):
            if strengths[op_index] == 0:
                continue
            chosen = torch.nonzero(apply & (order[:, position] == op_index)).flatten()
            if len(chosen):
                out.index_copy_(0, chosen, operation(out[chosen], factors[op_index][chosen]))
    return out


def blur_kernel_size(side: int) -> int:
    """About 10% of the image side, odd, at least 3 (SimCLR: 23 px at 224 px)."""
    size = int(0.1 * side)
    size += 1 - size % 2
    return max(3, size)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur each image with its own Gaussian ``sigma`` (N), as torchvision's ``gaussian_blur``:
    a ``kernel_size``-tap kernel exp(−x²/2σ²) normalised to sum 1, applied along rows then
    columns (the 2-D kernel is their outer product), with reflected borders."""
    n, c, h, w = images.shape
    half = kernel_size // 2
    if half >= min(h, w):
        raise ValueError(f"blur kernel of {kernel_size} px is too large for {h}×{w} images")
    x = torch.arange(-half, half + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x[None, :] / sigma.to(images.dtype)[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N·C)×K
    out = F.pad(images.reshape(1, n * c, h, w), (half, half, half, half), mode="reflect")
    out = F.conv2d(out, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    out = F.conv2d(out, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return out.view(n, c, h, w)


def solarize(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert the pixels at or above ``threshold`` (torchvision's ``solarize`` on float images)."""
    return torch.where(images >= threshold, 1.0 - images, images)


def random_blur(images: torch.Tensor, p: float, sigma: tuple[float, float], kernel_size: int,
                generator: Generator) -> torch.Tensor:
    """``gaussian_blur`` on the images chosen with probability ``p``, σ uniform in ``sigma``."""
    n, device = images.shape[0], images.device
    apply = bernoulli(n, p, generator, device)
    sigmas = uniform(n, sigma[0], sigma[1], generator, device)
    chosen = torch.nonzero(apply).flatten()
    if len(chosen) == 0:
        return images
    return images.index_copy(0, chosen, gaussian_blur(images[chosen], sigmas[chosen], kernel_size))


def random_solarize(images: torch.Tensor, p: float, threshold: float, generator: Generator) -> torch.Tensor:
    apply = bernoulli(images.shape[0], p, generator, images.device)
    return torch.where(_per_image(apply), solarize(images, threshold), images)


# Corruptions of a denoising auto-encoder's input (Vincent et al. 2008, 2010): images in [0, 1].

def gaussian_noise(images: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive isotropic Gaussian noise of standard deviation ``std``, clipped to [0, 1]."""
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return (images + std * noise).clamp(0.0, 1.0)


def mask_patches(images: torch.Tensor, ratio: float, patch: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a random share ``ratio`` of each image's ``patch``×``patch`` squares (patch 1: pixels),
    all channels together; each square is masked independently."""
    n, _, height, width = images.shape
    rows, cols = -(-height // patch), -(-width // patch)
    keep = torch.rand(n, 1, rows, cols, generator=generator, device=images.device) >= ratio
    keep = keep.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)[:, :, :height, :width]
    return images * keep.to(images.dtype)


def salt_and_pepper(images: torch.Tensor, share: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Set a random share ``share`` of each image's pixels (all channels) to 0 or 1 with equal odds."""
    n, _, height, width = images.shape
    draw = torch.rand(n, 1, height, width, generator=generator, device=images.device)
    salt = torch.rand(n, 1, height, width, generator=generator, device=images.device) < 0.5
    return torch.where(draw < share, salt.to(images.dtype).expand_as(images), images)
