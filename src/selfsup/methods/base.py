"""What every method is: a module that turns a list of augmented views into a loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selfsup.distributed import gather
from selfsup.models.encoder import Encoder


@dataclass(frozen=True)
class BatchFloor:
    """The smallest batch a method's loss learns from (``size``), and why (``reason``, a clause);
    ``per_process``: under torchrun each process's share must reach it (the loss is computed per
    process), else the global batch."""

    size: int
    reason: str
    per_process: bool = False


class Method(nn.Module):
    """Base class of the pretext tasks.

    ``forward(views)`` takes the augmented views (float N×C×H×W each) and returns a dict with at
    least ``loss`` (a scalar to minimise) and ``embedding`` (the encoder's features of the first
    view, N×D), and optionally ``projection`` (the first view's output that the loss acts on), both
    read by the collapse monitors. The training loop knows nothing else about it.
    """

    views: int | None = 2
    """How many views ``forward`` takes (``augment.views``); None: any number, global then local (multi-crop)."""

    needs_labels = False
    """Whether ``forward`` also takes the batch's labels (``forward(views, labels=...)``)."""

    modality = "image"
    """What the method learns from: ``image`` (views are float images) or ``text`` (one view of token ids)."""

    global_batch_norm = False
    """Whether the paper's BatchNorm layers normalise over the global batch of all devices (in
    several processes ``train.sync_batch_norm=auto`` then converts them; see :mod:`selfsup.distributed`)."""

    skips_parameters = False
    """Whether some trainable parameters get no gradient in some steps (DDP then looks for them)."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def batch_floor(cls, params) -> BatchFloor | None:
        """The smallest batch the loss can learn from with ``params``; None: any batch (one image
        up). BatchNorm's own floor is checked on the first step (:mod:`selfsup.train.batch_guard`)."""
        return None

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (momentum encoders update here). Default: nothing."""

    def fixed_lr_parameters(self) -> tuple[nn.Parameter, ...]:
        """Parameters trained at the peak learning rate throughout (no warm-up, no decay). Default: none."""
        return ()

    def set_steps_per_epoch(self, steps_per_epoch: int) -> None:
        """Told once before training, for schedules given in epochs. Default: nothing."""

    @torch.no_grad()
    def test_metrics(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """Metrics of the pretext task on a batch of held-out inputs (float images N×C×H×W in [0, 1],
        or token ids N×L for text; with their labels where ``needs_labels``), e.g. bits per dimension,
        reconstruction error or perplexity, as means over the batch. The loop averages them over the
        test split, then applies :meth:`derived_metrics`. Default: none."""
        return {}

    @staticmethod
    def derived_metrics(metrics: dict[str, float]) -> dict[str, float]:
        """Metrics computed from the test-split averages (e.g. perplexity from nats per token). Default: as they are."""
        return metrics

    @torch.no_grad()
    def pictures(
        self, images: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, list]:
        """Examples of what the pretext task does to a few held-out inputs: name -> columns of images,
        each n×C×H×W in [0, 1] (saved as ``NAME.png``), or, for text, lines (saved as ``NAME.txt``).
        Default: none."""
        return {}

    def encode_pair(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Encoder features 2N×D of two views in one pass (so BatchNorm sees all 2N images), and N."""
        if len(views) != 2:
            raise ValueError(f"{type(self).__name__} takes exactly 2 views, got {len(views)}")
        return self.encoder(torch.cat(views)), len(views[0])


class ProjectedPairMethod(Method):
    """Encoder, then ``self.projector`` on both views, then ``pair_loss(z1, z2)`` on the projections
    of the global batch (gathered from all processes): SimCLR, Barlow Twins, VICReg."""

    global_batch_norm = True  # SimCLR's global BN, Barlow Twins' and VICReg's SyncBatchNorm

    projector: nn.Module

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """The loss, or a dict of it (``loss``) and its terms (``NAME_loss``, logged per epoch)."""
        raise NotImplementedError

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        h, n = self.encode_pair(views)
        z = self.projector(h)
        loss = self.pair_loss(gather(z[:n]), gather(z[n:]))
        terms = loss if isinstance(loss, dict) else {"loss": loss}
        return {**terms, "embedding": h[:n].detach(), "projection": z[:n].detach()}
