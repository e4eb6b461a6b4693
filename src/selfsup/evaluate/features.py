"""Features of non-augmented images from a frozen encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from selfsup.atomic import reserve, write_path
from selfsup.models.encoder import model_input
from selfsup.train.device import autocast


def extract_features(
    encoder: nn.Module,
    images: torch.Tensor,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    batch_size: int = 512,
) -> torch.Tensor:
    """Encoder outputs (float32, on the CPU) for uint8 images N×C×H×W (or token ids N×L), in eval
    mode, without augmentation."""
    outputs = [features for _, features in feature_batches(encoder, images, device, amp_dtype, batch_size)]
    return torch.cat(outputs) if outputs else torch.empty(0)


def write_features(
    encoder: nn.Module,
    images: torch.Tensor,
    device: torch.device,
    out: np.ndarray,
    amp_dtype: torch.dtype | None = None,
    batch_size: int = 512,
) -> None:
    """:func:`extract_features` written batch by batch into ``out`` (N×D, e.g. a memory-mapped
    ``.npy``): memory is set by the batch, not by the number of images."""
    for start, features in feature_batches(encoder, images, device, amp_dtype, batch_size):
        out[start : start + len(features)] = features.numpy()


def save_features(encoder: nn.Module, parts: list[torch.Tensor], device: torch.device, out: Path) -> None:
    """The features of every row of ``parts`` (stored inputs, one after the other) as one float32
    ``.npy`` (N×D), streamed into a memory-mapped file written under a temporary name, then
    renamed: memory is set by the batch, not by the data set. The file's blocks are allocated
    before it is mapped (:func:`selfsup.atomic.reserve`): a disk without room for it is a
    :class:`~selfsup.atomic.WriteError` before any work, not a SIGBUS during it."""
    shape = (sum(len(part) for part in parts), encoder.out_dim)

    def write(tmp: Path) -> None:
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False,
            "shape": shape,
        }
        with open(tmp, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            reserve(handle, out, handle.tell() + shape[0] * shape[1] * 4)
        rows = np.lib.format.open_memmap(tmp, mode="r+")
        at = 0
        for part in parts:
            write_features(encoder, part, device, rows[at : at + len(part)])
            at += len(part)
        rows.flush()
        del rows

    write_path(out, write, suffix=".npy")


BATCH_TOKENS = 8192
"""At most this many token positions (rows × stored length) in one forward pass over token ids:
a transformer's activations grow with the tokens of a batch, and 512 documents of 128 tokens held
about 0.6 GB at once (AG News, the 4×256 default), more than the whole training step."""


def rows_per_batch(inputs, batch_size: int) -> int:
    """``batch_size`` for images; for token ids N×L, as many rows as :data:`BATCH_TOKENS` allows
    (at least one)."""
    if len(inputs.shape) != 2:  # images: N×C×H×W
        return batch_size
    return max(1, min(batch_size, BATCH_TOKENS // max(1, inputs.shape[1])))


@torch.no_grad()
def feature_batches(encoder, images, device, amp_dtype=None, batch_size: int = 512):
    """(first row, float32 CPU features of the batch) for each batch of ``images``, in eval mode;
    the encoder's mode is restored at the end. Token ids go :data:`BATCH_TOKENS` at a time."""
    was_training = encoder.training
    encoder.eval()
    batch_size = rows_per_batch(images, batch_size)
    try:
        for start in range(0, len(images), batch_size):
            batch = model_input(images[start : start + batch_size], device)
            with autocast(device, amp_dtype):
                yield start, encoder(batch).float().cpu()
    finally:
        encoder.train(was_training)
