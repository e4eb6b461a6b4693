"""Image files as the 8-bit picture an image viewer shows.

Pillow decodes the file; this module turns every mode and bit depth it may give into uint8
greyscale (H×W) or RGB (H×W×3), the way a colour-managed viewer displays it:

* the EXIF orientation is applied (a photo stored sideways is turned upright);
* 16-bit greyscale is scaled by 255/65535 (value / 257), not clipped; integer TIFFs by their
  ``BitsPerSample``; float greyscale must lie in [0, 1] and is scaled by 255;
* transparency (RGBA, LA, a transparent palette entry, grey level or colour) is composited over
  white, as a web page or an image viewer with a white background shows it;
* CMYK, Lab, HSV and YCbCr become RGB; an embedded ICC colour profile (RGB and CMYK) is converted
  to sRGB with Pillow's LittleCMS bindings;
* animations and multi-page files give their first frame.

What has no faithful 8-bit picture (signed integer pixels, floats outside [0, 1], negative values)
is an :class:`UnmappableImage` error saying why, never a silent clip.

Large images are read up to a pixel limit the user sets (``data.max_pixels``, default
:data:`MAX_PIXELS`, Pillow's own decompression-bomb limit); above it, :class:`TooLarge` says by
how much, before anything is decoded. selfsup applies that limit itself, so Pillow's is lifted
while a store is built (:func:`own_pixel_limit`). A JPEG that will be resized anyway is decoded
at a reduced size (libjpeg's DCT scaling, Pillow's ``draft``), no smaller than the size asked for.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageCms, ImageOps

ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
TIFF_BITS_PER_SAMPLE, TIFF_SAMPLE_FORMAT = 258, 339
TIFF_SIGNED, TIFF_FLOAT = 2, 3


MAX_PIXELS = 2 * 89_478_485
"""The default pixel limit (``data.max_pixels``): where Pillow refuses an image as a possible
decompression bomb (twice its ``MAX_IMAGE_PIXELS``, 1024 × 1024 × 1024 // 4 // 3)."""


class UnmappableImage(ValueError):
    """The decoded pixels have no faithful 8-bit picture (the message says why)."""


class TooLarge(ValueError):
    """An image has more pixels than the limit: ``pixels`` (width × height) over ``limit``."""

    def __init__(self, width: int, height: int, limit: int):
        self.width, self.height, self.pixels, self.limit = width, height, width * height, limit
        super().__init__(
            f"{width}×{height} is {self.pixels / 1e6:.0f} megapixels, over the limit of "
            f"{limit / 1e6:.0f} (data.max_pixels={limit})"
        )


def decode_image(data: bytes, max_pixels: int | None = MAX_PIXELS, at_least: int | None = None) -> np.ndarray:
    """The picture in an image file's bytes: uint8 H×W (greyscale) or H×W×3 (colour).

    ``max_pixels``: raise :class:`TooLarge` for an image of more pixels, before decoding it
    (None: no limit). ``at_least``: the image will be resized so that its shorter side is this
    long: a JPEG is decoded at the smallest reduced size (1/2, 1/4, 1/8) whose sides stay at least
    this long. Raises :class:`UnmappableImage` for pixel values without a faithful 8-bit picture,
    and Pillow's own exceptions for files it cannot decode.
    """
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise TooLarge(width, height, max_pixels)
        if at_least is not None and image.format == "JPEG":
            image.draft(image.mode, (at_least, at_least))
        image.load()
        return viewer_array(image)


_limit_lock = threading.Lock()
_limit_users = 0
_pillow_limit: int | None = None


@contextmanager
def own_pixel_limit() -> Iterator[None]:
    """Lift Pillow's decompression-bomb limit meanwhile (selfsup checks ``data.max_pixels``
    itself, before decoding); restored when the last user leaves. Pillow reads its limit from a
    module global, so it is lifted for the process, not for one thread."""
    global _limit_users, _pillow_limit
    with _limit_lock:
        if _limit_users == 0:
            _pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        _limit_users += 1
    try:
        yield
    finally:
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                Image.MAX_IMAGE_PIXELS = _pillow_limit


def viewer_array(image: Image.Image) -> np.ndarray:
    """``image`` (any Pillow mode) as uint8 H×W or H×W×3, as described in the module docstring."""
    profile = image.info.get("icc_profile")
    tiff_tags = dict(image.tag_v2) if image.format == "TIFF" else {}
    ImageOps.exif_transpose(image, in_place=True)  # no copy of pixels that need no turning
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _scaled_grey(image, tiff_tags)
    if (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    ):  # a transparent palette entry, grey or colour
        mode = "LA" if mode == "L" else "RGBA"
        image = image.convert(mode)
    elif mode == "P":
        mode = "RGB"
        image = image.convert(mode)
    if mode in ALPHA_MODES:
        grey = mode in ("LA", "La")
        pixels = np.asarray(image.convert("LA" if grey else "RGBA"))
        # premultiplied modes (La, RGBa) are unpremultiplied by the conversion
        colour, alpha = pixels[..., :-1].astype(np.uint16), pixels[..., -1:].astype(np.uint16)
        over_white = (colour * alpha + 255 * (255 - alpha) + 127) // 255
        if grey:
            return over_white[..., 0].astype(np.uint8)
        image = Image.fromarray(over_white.astype(np.uint8), "RGB")
        mode = "RGB"
    if mode in ("1", "L"):
        return np.asarray(image if mode == "L" else image.convert("L"))
    if profile and mode in ("RGB", "CMYK"):
        transform = _to_srgb(profile, mode)
        if transform is not None:
            return np.asarray(ImageCms.applyTransform(image, transform))
    return np.asarray(image if mode == "RGB" else image.convert("RGB"))


def _scaled_grey(image: Image.Image, tags: dict) -> np.ndarray:
    """16/32-bit integer or float greyscale scaled to 0..255 by the format's full range (``tags``:
    a TIFF's, which name its bit depth and sample format)."""
    pixels = np.asarray(image)
    if image.mode == "F":
        low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
        if np.isnan(pixels).any() or low < 0 or high > 1:
            raise UnmappableImage(
                f"float greyscale pixels span [{low:g}, {high:g}] (or hold NaN); only [0, 1] has a "
                "standard picture: scale the file to [0, 1], 8 or 16 bits"
            )
        return np.round(pixels * 255.0).astype(np.uint8)
    if image.mode.startswith("I;16"):
        bits = 16
    else:
        if _first(tags.get(TIFF_SAMPLE_FORMAT)) == TIFF_SIGNED:
            raise UnmappableImage(
                "signed integer pixels have no standard picture (their display range is not fixed); "
                "convert the file to unsigned 8 or 16 bits"
            )
        # mode I is a 32-bit container: TIFF names the depth, Pillow's PNM reader scales to 16 bits
        bits = int(_first(tags.get(TIFF_BITS_PER_SAMPLE)) or 16)
    pixels = pixels.astype(np.float64)
    top = 2.0**bits - 1
    if pixels.min() < 0 or pixels.max() > top:
        raise UnmappableImage(
            f"{bits}-bit greyscale pixels span [{pixels.min():g}, {pixels.max():g}], outside 0..{top:g}"
        )
    return np.round(pixels * (255.0 / top)).astype(np.uint8)


def _first(value):
    return value[0] if isinstance(value, tuple) else value


@functools.lru_cache(maxsize=32)
def _to_srgb(profile: bytes, mode: str):
    """A LittleCMS transform from an embedded profile to sRGB (cached: a data set holds a few
    profiles, and building a transform costs far more than applying it); None for a profile
    LittleCMS cannot read, whose pixels are then shown as they are, as viewers do."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), mode, "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
