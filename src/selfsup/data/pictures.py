"""Image grids as PNG files: what a method does to a few images (held-out pictures), augmented
views, retrieval (used by training, the `augment` verb and the report)."""

from __future__ import annotations

from pathlib import Path

import torch

from selfsup.atomic import write_file


def save_image_grid(columns: list[torch.Tensor], path: str | Path, cell: int = 64) -> Path:
    """Save :func:`image_grid` of ``columns`` as an image file (PNG, or the format its suffix
    names), atomically (:class:`~selfsup.atomic.WriteError`)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid, kind = image_grid(columns, cell), Image.registered_extensions().get(path.suffix.lower(), "PNG")
    write_file(path, lambda handle: grid.save(handle, format=kind))
    return path


def image_grid(columns: list[torch.Tensor], cell: int = 64):
    """Columns of images side by side, as a PIL image: column j is an n×C×h×w float tensor in
    [0, 1] (C 1 or 3), row i shows image i of every column. Each image is enlarged by the same
    whole factor (nearest neighbour) so that the largest fills a ``cell``-pixel tile; smaller ones
    sit in the middle of theirs; 2-pixel white gutters."""
    from PIL import Image

    rows = max(len(column) for column in columns)
    side = max(max(column.shape[-2:]) for column in columns)
    scale = max(1, cell // side)
    tile = side * scale
    grid = torch.ones(3, rows * (tile + 2), len(columns) * (tile + 2))
    for j, column in enumerate(columns):
        big = column.detach().float().cpu().repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
        big = big.expand(-1, 3, -1, -1)
        h, w = big.shape[-2:]
        for i in range(len(column)):
            top, left = i * (tile + 2) + 1 + (tile - h) // 2, j * (tile + 2) + 1 + (tile - w) // 2
            grid[:, top : top + h, left : left + w] = big[i]
    pixels = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels)
