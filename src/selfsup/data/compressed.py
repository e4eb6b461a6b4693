"""Images stored compressed: each image's JPEG bytes one after the other in a file, with their
offsets, read memory-mapped and decoded per batch (:class:`JpegImages`).

Raw uint8 pixels cost H×W×C bytes an image: 150 KB at 224 px, so ImageNet-1k would take about
190 GB. From :data:`COMPRESS_FROM` px up, the store keeps each decoded image (turned upright, in
sRGB, resized as asked) re-encoded as a JPEG of quality :data:`JPEG_QUALITY` (FFCV stores 90),
about a tenth of the raw size, and decodes a batch when it is gathered: with libjpeg-turbo through
``torchvision.io.decode_jpeg`` on the CPU (split across threads, which decode without Python's
lock), or batched on the GPU (nvJPEG) where :meth:`JpegImages.decode_on` names one.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

COMPRESS_FROM = 160
"""Images whose longer side has at least this many pixels are stored as JPEG (``auto``)."""
JPEG_QUALITY = 95
ENCODINGS = ("auto", "raw", "jpeg")
BYTES_FILE, OFFSETS_FILE = "images.jpg.bin", "offsets.npy"
# torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec, whose wheels need
# FFmpeg's libraries; they still decode, with libjpeg-turbo and nvJPEG, and are what is installed
warnings.filterwarnings(
    "ignore", "The image decoding and encoding capabilities of TorchVision", DeprecationWarning
)


def encode_jpeg(array: np.ndarray) -> bytes:
    """A decoded image (H×W grey or H×W×3 RGB uint8) as JPEG bytes of :data:`JPEG_QUALITY`, with
    no chroma subsampling (4:4:4: colour edges stay as sharp as the pixels were)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


def choose_encoding(encoding: str, side: int) -> str:
    """``raw`` or ``jpeg`` for images whose longer side is ``side`` px, by ``data.store``."""
    if encoding not in ENCODINGS:
        from selfsup.errors import ConfigError

        raise ConfigError(f"data.store must be one of {', '.join(ENCODINGS)}, got '{encoding}'")
    if encoding == "auto":
        return "jpeg" if side >= COMPRESS_FROM else "raw"
    return encoding


class JpegImages:
    """The images of a compressed split, N×C×H×W uint8, as far as the training loop, the
    evaluation and the report use a tensor: ``len``, ``shape``, ``dtype``, ``dim()`` and indexing
    by an int, a slice, a list, an array or a tensor of indices (the images are decoded then, and
    returned as a tensor). Indexing with a tensor on a GPU decodes there."""

    dtype = torch.uint8

    def __init__(self, folder: Path, shape: tuple[int, int, int, int]):
        self.folder = Path(folder)
        self.shape = torch.Size(shape)
        self._offsets = np.load(self.folder / OFFSETS_FILE)  # N + 1 int64: 8 bytes an image
        self._bytes = np.memmap(self.folder / BYTES_FILE, dtype=np.uint8, mode="c")
        if len(self._offsets) != shape[0] + 1 or self._offsets[-1] != len(self._bytes):
            raise ValueError(f"{self.folder}: the offsets do not match the images")
        self.device = torch.device("cpu")
        self.workers = max(1, min(4, os.cpu_count() or 1))

    def __len__(self) -> int:
        return self.shape[0]

    def dim(self) -> int:
        return 4

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def decode_on(self, device: torch.device | str) -> JpegImages:
        """The same images, decoded on ``device`` when gathered (a GPU: nvJPEG)."""
        view = copy.copy(self)
        view.device = torch.device(device)
        return view

    def to(self, device) -> JpegImages:
        return self.decode_on(device)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):
            return self._decode(np.arange(len(self))[index])
        rows = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        if rows.ndim == 0:  # an int, or a 0-d tensor or array
            return self[rows.reshape(1)][0]
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        rows = np.where(rows < 0, rows + len(self), rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        return self._decode(rows)

    def _decode(self, rows: np.ndarray) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        mode = ImageReadMode.RGB if self.shape[1] == 3 else ImageReadMode.GRAY
        blobs = [
            torch.from_numpy(self._bytes[self._offsets[r] : self._offsets[r + 1]]) for r in rows.tolist()
        ]
        if not blobs:
            return torch.empty(0, *self.shape[1:], dtype=torch.uint8, device=self.device)
        if self.device.type == "cuda":
            return torch.stack(decode_jpeg(blobs, mode=mode, device=self.device))
        parts = [blobs[i :: self.workers] for i in range(self.workers)]
        with ThreadPoolExecutor(self.workers) as pool:  # libjpeg-turbo decodes without the GIL
            decoded = list(pool.map(lambda part: decode_jpeg(part, mode=mode) if part else [], parts))
        out = torch.empty(len(blobs), *self.shape[1:], dtype=torch.uint8)
        for i, images in enumerate(decoded):
            for j, image in enumerate(images):
                out[i + j * self.workers] = image
        return out

    def __repr__(self) -> str:
        return f"JpegImages({len(self)} images of {tuple(self.shape[1:])}, {self.folder})"
