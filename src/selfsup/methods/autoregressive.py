"""Auto-regressive pixel models as pretext tasks: Gated PixelCNN and PixelRNN (Row LSTM).

The method is the same for both backbones (``models.autoregressive``): the loss is the negative
log-likelihood of the 8-bit image in bits per dimension, sampling draws one sub-pixel at a time in
raster and channel order, and an optional class conditioning adds a learned per-class bias to every
layer's gates (the paper's conditional PixelCNN with a one-hot h). Trained on un-augmented images
(``augment.preset=none``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selfsup.errors import ConfigError
from selfsup.losses import bits_per_dim
from selfsup.methods.base import PICTURES, TEST_METRICS, Method, MethodOutput, Progress
from selfsup.models.autoregressive import LEVELS, PixelModel
from selfsup.models.encoder import Encoder


@dataclass
class PixelParams:
    classes: int = 0  # > 0: condition on the class label (0 .. classes-1); the training data must be labelled


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> their 8-bit values as class indices (long)."""
    return (images.float() * (LEVELS - 1)).round().long().clamp(0, LEVELS - 1)


class PixelAutoregressive(Method):
    views = 1
    offers = frozenset({TEST_METRICS, PICTURES})
    backbone_name = ""

    def __init__(self, encoder: Encoder, params: PixelParams):
        super().__init__(encoder)
        model = encoder.backbone
        if not isinstance(model, PixelModel) or encoder.spec["backbone"] != self.backbone_name:
            raise ConfigError(
                f"{type(self).__name__.lower()} needs model.backbone={self.backbone_name}, "
                f"got '{encoder.spec['backbone']}'"
            )
        if params.classes < 0:
            raise ConfigError(
                f"method.classes must be 0 (unconditional) or the number of classes, got {params.classes}"
            )
        self.params = params
        self.needs_labels = params.classes > 0
        self.condition = (
            nn.Embedding(params.classes, len(model.layers) * model.condition_size) if params.classes else None
        )
        if self.condition is not None:
            nn.init.zeros_(self.condition.weight)

    def logits(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits N×256×C×H×W for float images in [0, 1] (and their classes when conditional), and
        the backbone's pooled intermediate features N×width."""
        model: PixelModel = self.encoder.backbone
        biases = None
        if self.condition is not None:
            if labels is None:
                raise ConfigError("this model is class-conditional (method.classes > 0): it needs the labels")
            if bool((labels < 0).any() or (labels >= self.params.classes).any()):
                raise ConfigError(f"class labels must lie in 0 .. {self.params.classes - 1}")
            biases = self.condition(labels).view(len(labels), len(model.layers), model.condition_size)
        return model.logits(self.encoder.normalize(images), biases)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        images = views[0]
        logits, features = self.logits(images, labels)
        return MethodOutput(
            bits_per_dim(logits, quantize(images)), monitored={"embedding": features.detach()}
        )

    @torch.no_grad()
    def test_metrics(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        return {"bits_per_dim": bits_per_dim(self.logits(images, labels)[0], quantize(images)).item()}

    @torch.no_grad()
    def sample(
        self,
        count: int,
        shape: tuple[int, int, int],
        generator: torch.Generator,
        *,
        labels: torch.Tensor | None = None,
        prefix: torch.Tensor | None = None,
        start_row: int = 0,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Draw images in [0, 1] (N×C×H×W) one sub-pixel at a time, in raster then channel order.

        With ``prefix`` (images in [0, 1]), rows above ``start_row`` are kept and the rest completed.
        Each step runs the model on the rows up to the current one only: the rows below cannot
        influence it (causality), so this gives the same distribution at half the cost.
        """
        channels, height, width = shape
        x = torch.zeros(count, channels, height, width, device=device)
        if prefix is not None:
            x[:, :, :start_row] = prefix[:, :, :start_row].to(device)
        for row in range(start_row, height):
            for col in range(width):
                for channel in range(channels):
                    logits = self.logits(x[:, :, : row + 1], labels)[0][:, :, channel, row, col].float()
                    value = torch.multinomial(logits.softmax(dim=1).cpu(), 1, generator=generator).squeeze(1)
                    x[:, channel, row, col] = value.to(device).float() / (LEVELS - 1)
        return x

    @torch.no_grad()
    def pictures(
        self, images: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, list[torch.Tensor]]:
        """``samples``: draws from the model (a class-conditional one draws classes 0, 1, ...);
        ``completions``: held-out images with the bottom half hidden, completed, and the originals."""
        n, shape = len(images), tuple(images.shape[1:])
        classes = (
            (torch.arange(n, device=images.device) % self.params.classes) if self.params.classes else None
        )
        samples = self.sample(n, shape, generator, labels=classes, device=images.device)
        half = shape[1] // 2
        occluded = images.clone()
        occluded[:, :, half:] = 0.5
        completed = self.sample(
            n, shape, generator, labels=labels, prefix=images, start_row=half, device=images.device
        )
        columns = max(1, int(n**0.5))
        return {
            "samples": [samples[i::columns] for i in range(columns)],
            "completions": [occluded, completed, images],
        }


class PixelCNN(PixelAutoregressive):
    """Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders")."""

    backbone_name = "gated_pixelcnn"


class PixelRNN(PixelAutoregressive):
    """PixelRNN with Row LSTM layers (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel
    Recurrent Neural Networks")."""

    backbone_name = "row_lstm"
