"""The encoder users keep: input normalisation + backbone, saved as safetensors with its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from selfsup.errors import SelfsupError
from selfsup.models.backbones import build_backbone

ENCODER_FILE = "encoder.safetensors"
ENCODER_META = "encoder.json"


class Encoder(nn.Module):
    """Maps float images N×C×H×W in [0, 1] to features N×out_dim.

    Normalises with the training data's per-channel mean and std, then runs the backbone.
    ``spec`` holds everything needed to rebuild it (see :func:`load_encoder`).
    """

    def __init__(self, backbone: str, in_channels: int, image_size: int, mean: list[float], std: list[float],
                 stem: str = "auto", width: int = 32, depth: int = 0, patch_size: int = 0):
        super().__init__()
        self.spec = dict(backbone=backbone, in_channels=in_channels, image_size=image_size,
                         mean=list(mean), std=list(std), stem=stem, width=width, depth=depth, patch_size=patch_size)
        self.backbone = build_backbone(backbone, in_channels, image_size, stem=stem, width=width, depth=depth,
                                       patch_size=patch_size)
        self.out_dim: int = self.backbone.out_dim
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's input: images in [0, 1] standardised with the training data's channel statistics."""
        return (images - self.mean) / self.std

    def denormalize(self, standardised: torch.Tensor) -> torch.Tensor:
        """Back from the backbone's input scale to images in [0, 1] (clipped), e.g. for reconstructions."""
        return (standardised.float() * self.std + self.mean).clamp(0.0, 1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(images))


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images N×C×H×W, on the [0, 1] scale."""
    x = images.float().div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    std = x.std(dim=1).clamp_min(1e-3)
    return x.mean(dim=1).tolist(), std.tolist()


def save_encoder(encoder: Encoder, run_dir: Path, extra: dict | None = None) -> None:
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    tmp = run_dir / (ENCODER_FILE + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(run_dir / ENCODER_FILE)
    meta = {"encoder": encoder.spec, "out_dim": encoder.out_dim, **(extra or {})}
    (run_dir / ENCODER_META).write_text(json.dumps(meta, indent=2))


def load_encoder(run_dir: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """Rebuild the encoder a pretraining run saved in ``run_dir``; returned in eval mode.

    Input: float images N×C×H×W in [0, 1] of the training size; output: features N×out_dim.
    """
    run_dir = Path(run_dir)
    weights, meta_path = run_dir / ENCODER_FILE, run_dir / ENCODER_META
    if not weights.exists() or not meta_path.exists():
        raise SelfsupError(f"no trained encoder in {run_dir} (expected {ENCODER_FILE} and {ENCODER_META}; "
                           "did the pretraining finish?)")
    encoder = Encoder(**json.loads(meta_path.read_text())["encoder"])
    encoder.load_state_dict(load_file(str(weights)))
    return encoder.to(device).eval()
