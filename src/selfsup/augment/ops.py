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

# the corruptions of a denoising auto-encoder's input, which methods use as ops.<name>
from selfsup.augment.corruptions import gaussian_noise as gaussian_noise
from selfsup.augment.corruptions import mask_patches as mask_patches
from selfsup.augment.corruptions import salt_and_pepper as salt_and_pepper

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
        return draw[generator.start : generator.start + n]
    return torch.rand((n, *shape), generator=generator, device=device)


def uniform(n: int, low: float, high: float, generator: Generator, device, *shape: int) -> torch.Tensor:
    return low + (high - low) * rand(n, generator, device, *shape)


def bernoulli(n: int, p: float, generator: Generator, device) -> torch.Tensor:
    return rand(n, generator, device) < p


def random_resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: Generator,
    device,
    attempts: int = 10,
) -> torch.Tensor:
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
    left = torch.where(
        any_fit, left, torch.full_like(left, 0) + torch.div(width - w, 2, rounding_mode="floor")
    )
    return torch.stack([top, left, h, w], dim=1)


def _crop_axis(
    start: torch.Tensor, length: torch.Tensor, side: int, out: int, sign: torch.Tensor | None = None
) -> torch.Tensor:
    """Normalised input coordinates (N×out) of the ``out`` output pixel centres along one axis of
    a crop [start, start + length) of a ``side``-pixel axis, held on the crop's own pixel centres."""
    centres = (2 * torch.arange(out, dtype=start.dtype, device=start.device) + 1) / out - 1
    scale = length / side if sign is None else sign * length / side
    coord = scale[:, None] * centres[None, :] + ((2 * start + length) / side - 1)[:, None]
    low = ((2 * start + 1) / side - 1)[:, None]
    high = ((2 * (start + length) - 1) / side - 1)[:, None]
    return torch.maximum(torch.minimum(coord, high), low)


def crop_resize_flip(
    images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Crop each image to its box (top, left, h, w), resize bilinearly to ``size``, mirror where ``flip``.

    One ``grid_sample`` call does all three: the sampling grid maps output pixel centres to input
    coordinates with the same half-pixel convention as ``torch.nn.functional.interpolate``, so the
    result equals resizing each cropped image (without antialiasing) and then flipping it. The
    grid is separable (x depends on the column, y on the row), so it is built from two N×side
    tables; samples are held on the crop's own pixel centres, so edges repeat the crop's border
    pixels as resizing the cropped image would, instead of blending in pixels from outside the box.
    """
    n, height, width = images.shape[0], images.shape[2], images.shape[3]
    top, left, h, w = boxes.to(images.dtype).unbind(1)
    sign = 1.0 - 2.0 * flip.to(images.dtype)
    x = _crop_axis(left, w, width, size[1], sign)
    y = _crop_axis(top, h, height, size[0])
    grid = torch.stack(
        [x[:, None, :].expand(n, size[0], size[1]), y[:, :, None].expand(n, size[0], size[1])], dim=3
    )
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


# Element-wise arithmetic between a float tensor and a bool tensor (torch.where, masked_fill, a
# bool multiplied in) takes a slow, unvectorised path on the CPU in torch 2.14: ~40× the cost of
# a float multiplication on a 256×3×32×32 batch (benchmarks/augment_throughput.py, primitive_ms).
# The colour operations therefore turn masks into uint8 (a free reinterpretation) before mixing
# them with pixels, and per-image choices are made on the N-long parameter vectors or by indexing
# the chosen images, not with masks over the pixels.


def _mask(condition: torch.Tensor) -> torch.Tensor:
    return condition.view(torch.uint8)


def _per_image(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor·images + (1 − factor)·other, clamped to [0, 1] (torchvision's ``_blend``)."""
    ratio = _per_image(factor)
    return (ratio * images).add_((1.0 - ratio) * other).clamp_(0.0, 1.0)


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma N×1×H×W of RGB images (grey images are returned as they are)."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(1)
    return (
        torch.mul(r, GREY_WEIGHTS[0])
        .add_(g, alpha=GREY_WEIGHTS[1])
        .add_(b, alpha=GREY_WEIGHTS[2])
        .unsqueeze(1)
    )


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (_per_image(factor) * images).clamp_(0.0, 1.0)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = rgb_to_grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    return _blend(images, rgb_to_grayscale(images), factor)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` (a fraction of the colour circle, in [-0.5, 0.5]) per image.

    The same map as torchvision's RGB -> HSV -> shift -> RGB, without building the HSV image:
    the hue in sixths of the circle is h6 = (g − b)/C, 2 + (b − r)/C or 4 + (r − g)/C as red,
    green or blue holds the maximum V (red first on ties; C = V − min, h6 = 0 for greys), and
    the closed form of HSV -> RGB gives channel n (R 5, G 3, B 1) as
    V − C·clamp(min(k, 4 − k), 0, 1) with k = (n + h6 + 6·shift) mod 6 (V·S = C).
    """
    if images.shape[1] == 1:
        return images
    # written with in-place steps on a few buffers: on the CPU, fresh temporaries cost more than
    # the arithmetic (their pages fault in)
    r, g, b = images.unbind(1)
    value = images.amax(dim=1)
    chroma = images.amin(dim=1).neg_().add_(value)
    red = value == r
    green = (value == g).logical_and_(~red)
    blue = (red | green).logical_not_()
    turn = torch.sub(g, b).mul_(_mask(red))
    part = torch.sub(b, r).mul_(_mask(green))
    turn.add_(part)
    turn.add_(torch.sub(r, g, out=part).mul_(_mask(blue)))
    turn.div_(torch.add(chroma, _mask(chroma == 0), out=part))  # 1 for greys, where turn is 0
    turn.add_(_mask(green), alpha=2.0).add_(_mask(blue), alpha=4.0).add_(6.0 * shift.view(-1, 1, 1))
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    k = offsets + turn.unsqueeze(1)
    wrap = torch.div(k, 6.0).floor_()
    k.sub_(wrap.mul_(6.0))  # k mod 6
    ramp = torch.minimum(k, torch.sub(4.0, k, out=wrap), out=k).clamp_(0.0, 1.0)
    return ramp.mul_(chroma.unsqueeze(1)).neg_().add_(value.unsqueeze(1))


# On a GPU, picking the chosen images out (``nonzero``, a data-dependent shape) waits for the
# device; there every image is transformed and the chosen ones are kept with ``torch.where``,
# which gives the same pixels. On the CPU, transforming only the chosen images saves the work.
SYNC_FREE_ON_CPU = False  # the tests set it to compare the two ways on the CPU


def sync_free(images: torch.Tensor) -> bool:
    """Whether per-image choices on ``images`` are made without waiting for the device."""
    return images.device.type != "cpu" or SYNC_FREE_ON_CPU


def replace_chosen(images: torch.Tensor, apply: torch.Tensor, operation, inplace: bool) -> torch.Tensor:
    """``images`` with the images where ``apply`` replaced by ``operation(those images, their rows)``;
    written into ``images`` itself when ``inplace`` (the augmentation pipeline owns its buffers)."""
    if sync_free(images):
        rows = torch.arange(len(images), device=images.device)
        new = torch.where(_per_image(apply), operation(images, rows), images)
        return images.copy_(new) if inplace else new
    chosen = torch.nonzero(apply).flatten()
    if len(chosen) == 0:
        return images
    new = operation(images[chosen], chosen)
    return images.index_copy_(0, chosen, new) if inplace else images.index_copy(0, chosen, new)


def to_grayscale(images: torch.Tensor, apply: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Replace the images where ``apply`` by their luma, kept as C channels."""
    if images.shape[1] == 1:
        return images
    return replace_chosen(
        images, apply, lambda chosen, _: rgb_to_grayscale(chosen).expand_as(chosen), inplace
    )


@dataclass
class JitterDraw:
    """One batch's colour-jitter parameters: which images are jittered (``apply``), each image's
    factors (N×4: brightness, contrast, saturation, hue shift) and each image's order of the
    four operations (N×4, ``order[i, position]`` = operation index)."""

    apply: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor


def draw_jitter(
    n: int,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    p: float,
    generator: Generator,
    device,
) -> JitterDraw:
    """Factors uniform in [max(0, 1 − s), 1 + s] (hue shift in [−hue, hue]), a uniformly random
    order of the four operations, and RandomApply's coin with probability p, per image."""
    apply = bernoulli(n, p, generator, device)
    factors = torch.stack(
        [
            uniform(n, max(0.0, 1 - brightness), 1 + brightness, generator, device),
            uniform(n, max(0.0, 1 - contrast), 1 + contrast, generator, device),
            uniform(n, max(0.0, 1 - saturation), 1 + saturation, generator, device),
            uniform(n, -hue, hue, generator, device),
        ],
        dim=1,
    )
    order = torch.argsort(rand(n, generator, device, 4), dim=1)
    return JitterDraw(apply, factors, order)


def color_jitter(
    images: torch.Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    p: float,
    generator: Generator,
) -> torch.Tensor:
    """torchvision's ColorJitter wrapped in RandomApply(p), with each image's own factors and order.

    The operations of one position in the order run on the whole batch at once: brightness,
    contrast and saturation are all x -> clamp(a·x + b·grey(x) + c·mean(grey(x))) with per-image
    (a, b, c) — (f, 0, 0), (f, 0, 1 − f), (f, 1 − f, 0), and (1, 0, 0) (no change) for images
    whose operation at this position is another one or that are not jittered — so a position is
    one pass over the batch plus the hue rotation of the images whose turn it is.
    """
    n, device = images.shape[0], images.device
    draw = draw_jitter(n, brightness, contrast, saturation, hue, p, generator, device)
    return apply_jitter(images.clone(), draw, (brightness, contrast, saturation, hue))


def apply_jitter(
    out: torch.Tensor, draw: JitterDraw, strengths: tuple[float, float, float, float]
) -> torch.Tensor:
    """The colour jitter of ``draw`` written into ``out``; operations of strength 0 are skipped."""
    grey_input = out.shape[1] == 1  # saturation and hue leave grey images as they are
    disabled = [i for i, s in enumerate(strengths) if s == 0 or (grey_input and i >= 2)]
    free = sync_free(out)
    for position in range(4):
        operation = draw.order[:, position]
        active = draw.apply
        for i in disabled:
            active = active & (operation != i)
        linear = active & (operation < 3)
        if free or bool(linear.any()):  # factor 1 and shift 0 leave the other images exact
            factor = torch.where(linear, draw.factors.gather(1, operation.clamp(max=2)[:, None])[:, 0], 1.0)
            rest = 1.0 - factor
            grey_weight = torch.where(operation == 2, rest, 0.0)
            mean_weight = torch.where(operation == 1, rest, 0.0)
            grey = rgb_to_grayscale(out)
            mean = _per_image(mean_weight) * grey.mean(dim=(1, 2, 3), keepdim=True)
            # grey images are their own luma (and saturation is off for them): only contrast's mean term
            shift = mean if grey is out else grey.mul_(_per_image(grey_weight)).add_(mean)
            out.mul_(_per_image(factor)).add_(shift).clamp_(0.0, 1.0)
        hue = active & (operation == 3)
        if 3 not in disabled:
            replace_chosen(
                out, hue, lambda chosen, rows: adjust_hue(chosen, draw.factors[rows, 3]), inplace=True
            )
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
    return (_mask(images >= threshold) - images).abs_()  # |1 − x| where at or above, |−x| elsewhere


def draw_blur(
    n: int, p: float, sigma: tuple[float, float], generator: Generator, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which of n images are blurred (probability ``p``) and each image's σ, uniform in ``sigma``."""
    return bernoulli(n, p, generator, device), uniform(n, sigma[0], sigma[1], generator, device)


def blur_chosen(
    images: torch.Tensor, apply: torch.Tensor, sigmas: torch.Tensor, kernel_size: int, inplace: bool = False
) -> torch.Tensor:
    """``gaussian_blur`` on the images where ``apply``, each with its own σ (``sigmas``, N)."""
    return replace_chosen(
        images, apply, lambda chosen, rows: gaussian_blur(chosen, sigmas[rows], kernel_size), inplace
    )


def random_blur(
    images: torch.Tensor, p: float, sigma: tuple[float, float], kernel_size: int, generator: Generator
) -> torch.Tensor:
    """``gaussian_blur`` on the images chosen with probability ``p``, σ uniform in ``sigma``."""
    return blur_chosen(images, *draw_blur(images.shape[0], p, sigma, generator, images.device), kernel_size)


def solarize_chosen(
    images: torch.Tensor, apply: torch.Tensor, threshold: float, inplace: bool = False
) -> torch.Tensor:
    """``solarize`` on the images where ``apply``."""
    return replace_chosen(images, apply, lambda chosen, _: solarize(chosen, threshold), inplace)
