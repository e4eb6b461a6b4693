"""The encoder users keep: input normalisation + backbone, saved as safetensors with its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from selfsup import atomic
from selfsup.data.dataset import Rows
from selfsup.data.tokenizer import load_tokenizer, trim_padding
from selfsup.errors import SelfsupError
from selfsup.jsonfile import to_json
from selfsup.models.backbones import CUSTOM, CUSTOM_PREFIX, build_backbone

ENCODER_FILE = "encoder.safetensors"
ENCODER_META = "encoder.json"
CUSTOM_FILE = "backbone.pt"  # a run of the user's own module: the module as handed over (torch.save)


class Encoder(nn.Module):
    """Maps float images N×C×H×W in [0, 1] to features N×out_dim.

    Normalises with the training data's per-channel mean and std, then runs the backbone.
    ``spec`` holds everything needed to rebuild it (see :func:`load_encoder`): ``image_size`` is
    the training images' shorter side (what the backbone is built for), ``input_size`` their
    height and width (None in encoders saved before it was recorded: square images of
    ``image_size``).
    """

    def __init__(
        self,
        backbone: str,
        in_channels: int,
        image_size: int,
        mean: list[float],
        std: list[float],
        stem: str = "auto",
        width: int = 32,
        depth: int = 0,
        patch_size: int = 0,
        input_size: list[int] | None = None,
    ):
        super().__init__()
        self.spec = dict(
            backbone=backbone,
            in_channels=in_channels,
            image_size=image_size,
            mean=list(mean),
            std=list(std),
            stem=stem,
            width=width,
            depth=depth,
            patch_size=patch_size,
            input_size=list(input_size) if input_size is not None else [image_size, image_size],
        )
        self.backbone = build_backbone(
            backbone, in_channels, image_size, stem=stem, width=width, depth=depth, patch_size=patch_size
        )
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

    def inputs(self, dataset) -> torch.Tensor:
        """What this encoder takes of a data set: its uint8 images."""
        if not hasattr(dataset, "images"):
            raise SelfsupError("this encoder was trained on images; give it an image data set")
        return dataset.images

    def fresh(self) -> Encoder:
        """An untrained encoder of the same architecture (the from-scratch baseline)."""
        return Encoder(**self.spec)


def model_input(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of a data set's stored inputs as an encoder takes them: uint8 images -> floats in
    [0, 1] (channels-last), token ids -> without the columns that are all padding."""
    batch = batch.to(device)
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0).contiguous(memory_format=torch.channels_last)
    return trim_padding(batch).long()  # stored ids may be uint16


STATS_SAMPLE = 50_000
"""Images (spread evenly through a larger set) the normalisation statistics are counted over."""


def channel_stats(images: torch.Tensor, chunk_values: int = 2**21) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (unbiased) of uint8 images N×C×H×W, on the [0, 1] scale, from
    each channel's histogram of its 256 values, counted over about ``chunk_values`` pixel values
    at a time: memory-mapped images are read once and never copied whole, and the sums are exact.
    Of more than :data:`STATS_SAMPLE` images, that many spread evenly through them are counted
    (a stored set is not read whole before training starts)."""
    if len(images) > STATS_SAMPLE:
        images = Rows(images, torch.linspace(0, len(images) - 1, STATS_SAMPLE).round().long())
    channels = images.shape[1]
    chunk = max(1, chunk_values // max(1, images[0].numel())) if len(images) else 1
    counts = torch.zeros(channels, 256, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        batch = images[start : start + chunk]
        for c in range(channels):
            counts[c] += torch.bincount(batch[:, c].reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    count = counts.sum(dim=1)
    mean = (counts * values).sum(dim=1) / count
    squares = (counts * values.square()).sum(dim=1)
    std = ((squares - count * mean.square()) / (count - 1).clamp_min(1)).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def save_encoder(encoder: nn.Module, run_dir: Path, extra: dict | None = None) -> None:
    """Write ``encoder`` to ``run_dir``: ``encoder.safetensors`` (a Hugging Face checkpoint's
    encoder: the folder ``hf/``, with ``save_pretrained``) and ``encoder.json``, its spec; each
    file atomically (:mod:`selfsup.atomic`; raises :class:`~selfsup.atomic.WriteError`)."""
    run_dir = Path(run_dir)
    if hasattr(encoder, "save_pretrained"):
        from selfsup.models.hf_text import HF_FOLDER

        with atomic.folder(run_dir / HF_FOLDER) as tmp:
            encoder.save_pretrained(tmp)
    else:
        if encoder.spec.get("backbone", "").startswith(CUSTOM_PREFIX):  # the user's class, pickled
            module = CUSTOM[encoder.spec["backbone"]]
            atomic.write_file(run_dir / CUSTOM_FILE, lambda handle: torch.save(module, handle))
        state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
        atomic.write_bytes(run_dir / ENCODER_FILE, safetensors_bytes(state))
    meta = {"encoder": encoder.spec, "out_dim": encoder.out_dim, **(extra or {})}
    atomic.write_text(run_dir / ENCODER_META, to_json(meta, indent=2))


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """``state`` in the safetensors format, in memory, so that :mod:`selfsup.atomic` writes it
    (safetensors' own ``save_file`` words a failed write its own way)."""
    from safetensors.torch import save

    return save(state, metadata=metadata)


def load_encoder(run_dir: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the encoder a pretraining run saved in ``run_dir``; returned in eval mode.

    Image encoders (:class:`Encoder`) take float images N×C×H×W in [0, 1] of the training size;
    text encoders (:class:`selfsup.models.text.TextEncoder`, with the run's tokenizer attached) take
    token ids N×L (``encoder.inputs(dataset)`` makes them); both return features N×out_dim.
    """
    run_dir = Path(run_dir)
    weights, meta_path = run_dir / ENCODER_FILE, run_dir / ENCODER_META
    if meta_path.exists() and (run_dir / "hf").is_dir():  # started from a Hugging Face checkpoint
        from selfsup.models.hf_text import HF_FOLDER, HFTextEncoder

        spec = json.loads(meta_path.read_text())["encoder"]
        return HFTextEncoder.load(run_dir / HF_FOLDER, spec).to(device).eval()
    if not weights.exists() or not meta_path.exists():
        raise SelfsupError(
            f"no trained encoder in {run_dir} (expected {ENCODER_FILE} and {ENCODER_META}; "
            "did the pretraining finish?)"
        )
    spec = json.loads(meta_path.read_text())["encoder"]
    if spec.get("modality") == "text":
        from selfsup.models.text import TextEncoder

        encoder = TextEncoder.from_spec(spec, load_tokenizer(run_dir))
    else:
        name = spec["backbone"]
        if name.startswith(CUSTOM_PREFIX) and name not in CUSTOM:  # unpickling runs the user's code
            CUSTOM[name] = torch.load(run_dir / CUSTOM_FILE, map_location="cpu", weights_only=False)
        shape = json.loads(meta_path.read_text()).get("image_shape")  # C×H×W, recorded by older runs too
        encoder = Encoder(**{"input_size": shape[1:] if shape else None, **spec})
    encoder.load_state_dict(load_file(str(weights)))
    return encoder.to(device).eval()
