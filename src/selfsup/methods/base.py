"""What every method is: a module that turns a list of augmented views into a typed output (its
loss, the loss's named terms, the tensors the collapse monitors watch, and what ``after_step``
applies), and what it offers beyond training (held-out metrics, pictures, diagnostics)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.utils._pytree as pytree
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


@dataclass(frozen=True)
class Progress:
    """Where training stands at an optimiser step: ``step`` (0-based, over the whole run),
    ``total_steps`` of the run and ``steps_per_epoch``. ``epoch`` is the fractional epoch the step
    starts at (step 0 of epoch 2 is 1.0), for schedules given in epochs."""

    step: int = 0
    total_steps: int = 1
    steps_per_epoch: int = 1

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    def generator(self, seed: int, device) -> torch.Generator:
        """A generator seeded by ``seed`` and the step: the same draw in every process and a new
        one each step, for what is drawn for the global batch (I-JEPA's and iBOT's masks)."""
        return torch.Generator(device=device).manual_seed((seed + self.step) % 2**63)


@dataclass
class MethodOutput:
    """What :meth:`Method.forward` returns for a batch of N items.

    - ``loss``: the scalar to minimise.
    - ``terms``: named scalar parts of the loss (detached; e.g. VICReg's ``variance_loss``),
      averaged per epoch into ``metrics.jsonl``.
    - ``monitored``: tensors the collapse monitors read on the last batch of each epoch:
      ``embedding`` (the encoder's features of the first view, N×D, always), ``projection``
      (N×P, what the loss acts on) and ``assignments`` (N×K soft cluster assignments), each
      detached and of this process's share of the batch.
    - ``update``: what :meth:`Method.after_step` applies after the optimiser step (MoCo's keys
      to enqueue, DINO's batch centre), already gathered from every process.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    monitored: dict[str, torch.Tensor] = field(default_factory=dict)
    update: dict[str, torch.Tensor] = field(default_factory=dict)


# with find_unused_parameters, DistributedDataParallel passes a forward's output tensors through its
# autograd sink by flattening the output with pytree: a leaf it cannot open would hide them
pytree.register_pytree_node(
    MethodOutput,
    lambda out: ([out.loss, out.terms, out.monitored, out.update], None),
    lambda children, _: MethodOutput(*children),
    serialized_type_name="selfsup.methods.base.MethodOutput",
)

TEST_METRICS, PICTURES, CROSS_CORRELATION = "test_metrics", "pictures", "cross_correlation"
"""What a method can offer beyond training (``Method.offers``): metrics of its pretext task on the
test split (:meth:`Method.test_metrics`), example pictures (:meth:`Method.pictures`), and the
report's cross-correlation picture of its projections (:meth:`Method.projections`)."""


class Method(nn.Module):
    """Base class of the pretext tasks.

    ``forward(views, labels=None, progress=None)`` takes the augmented views (float N×C×H×W each,
    or one view of token ids N×L for text), the batch's labels where :attr:`needs_labels`, and the
    :class:`Progress` of training, and returns a :class:`MethodOutput`. After the optimiser step
    the loop hands that output back to :meth:`after_step`. Beyond that, the loop reads only the
    class attributes below and :meth:`fixed_lr_parameters`; the end-of-run callbacks use what the
    method ``offers``.
    """

    views: int | None = 2
    """How many views ``forward`` takes (``augment.views``); None: any number, global then local
    (multi-crop)."""

    needs_labels = False
    """Whether ``forward`` also takes the batch's labels (``forward(views, labels=...)``)."""

    modality = "image"
    """What the method learns from: ``image`` (views are float images) or ``text`` (one view of token ids)."""

    global_batch_norm = False
    """Whether the paper's BatchNorm layers normalise over the global batch of all devices (in
    several processes ``train.sync_batch_norm=auto`` then converts them; see :mod:`selfsup.distributed`)."""

    offers: frozenset[str] = frozenset()
    """What the method offers beyond training: any of :data:`TEST_METRICS`, :data:`PICTURES`,
    :data:`CROSS_CORRELATION`."""

    skips_parameters = False
    """Whether some trainable parameters get no gradient in some steps (DDP then looks for them)."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        raise NotImplementedError

    @classmethod
    def batch_floor(cls, params) -> BatchFloor | None:
        """The smallest batch the loss can learn from with ``params``; None: any batch (one image
        up). BatchNorm's own floor is checked on the first step (:mod:`selfsup.train.batch_guard`)."""
        return None

    def after_step(self, output: MethodOutput, progress: Progress) -> None:
        """Called after each optimiser step with that step's output and progress: momentum
        encoders, queues and centres update here. Default: nothing."""

    def fixed_lr_parameters(self) -> tuple[nn.Parameter, ...]:
        """Parameters trained at the peak learning rate throughout (no warm-up, no decay). Default: none."""
        return ()

    @torch.no_grad()
    def test_metrics(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """Metrics of the pretext task on a batch of held-out inputs (float images N×C×H×W in [0, 1],
        or token ids N×L for text; with their labels where ``needs_labels``), e.g. bits per dimension,
        reconstruction error or perplexity, as means over the batch. At the end of training they are
        averaged over the test split, then :meth:`derived_metrics` applies, where :data:`TEST_METRICS`
        is in ``offers``."""
        return {}

    @staticmethod
    def derived_metrics(metrics: dict[str, float]) -> dict[str, float]:
        """Metrics computed from the test-split averages (e.g. perplexity from nats per token).
        Default: as they are."""
        return metrics

    @torch.no_grad()
    def pictures(
        self, images: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, list]:
        """Examples of what the pretext task does to a few held-out inputs: name -> columns of images,
        each n×C×H×W in [0, 1] (saved as ``NAME.png``), or, for text, lines (saved as ``NAME.txt``),
        where :data:`PICTURES` is in ``offers``."""
        return {}

    @torch.no_grad()
    def projections(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """The outputs (N×P each, float32) that the loss compares, of each of ``views`` (float
        N×C×H×W), for the report's cross-correlation picture where :data:`CROSS_CORRELATION` is in
        ``offers``."""
        raise NotImplementedError

    def encode_pair(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Encoder features 2N×D of two views in one pass (so BatchNorm sees all 2N images), and N."""
        if len(views) != 2:
            raise ValueError(f"{type(self).__name__} takes exactly 2 views, got {len(views)}")
        return self.encoder(torch.cat(views)), len(views[0])


def encode_by_size(encoder: nn.Module, views: list[torch.Tensor]) -> torch.Tensor:
    """``encoder`` over every view, one pass per run of views of one image size (multi-crop: the
    global crops together, then the local ones), so that BatchNorm sees all views of a size at
    once: features (V·N)×D, view after view."""
    features: list[torch.Tensor] = []
    start = 0
    while start < len(views):
        end = start
        while end < len(views) and views[end].shape == views[start].shape:
            end += 1
        features.append(encoder(torch.cat(views[start:end])))
        start = end
    return torch.cat(features)


class ProjectedPairMethod(Method):
    """Encoder, then ``self.projector`` on both views, then ``pair_loss(z1, z2)`` on the projections
    of the global batch (gathered from all processes): SimCLR, Barlow Twins, VICReg."""

    global_batch_norm = True  # SimCLR's global BN, Barlow Twins' and VICReg's SyncBatchNorm

    projector: nn.Module

    def pair_loss(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss and its named terms (``NAME_loss``, logged per epoch; may be empty)."""
        raise NotImplementedError

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        h, n = self.encode_pair(views)
        z = self.projector(h)
        loss, terms = self.pair_loss(gather(z[:n]), gather(z[n:]))
        return MethodOutput(loss, terms, {"embedding": h[:n].detach(), "projection": z[:n].detach()})

    @torch.no_grad()
    def projections(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.projector(self.encoder(view)).float() for view in views]
