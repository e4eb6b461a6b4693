"""SwAV (Caron, Misra, Mairal, Goyal, Bojanowski & Joulin 2020, "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments"; official code facebookresearch/swav)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.distributed import gather, own_share
from selfsup.losses import sinkhorn_knopp, swav_loss
from selfsup.methods.base import Method, MethodOutput, Progress, encode_by_size
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class SwAVParams:
    """Defaults from the paper and the official code (``main_swav.py`` and its ImageNet commands):
    projector 2048 → 128 with BatchNorm, 3,000 prototypes, temperature 0.1, Sinkhorn-Knopp with
    ε 0.05 and 3 iterations, prototypes frozen for the first epoch (the official 313 iterations at
    batch 4096), codes from the 2 global crops, and the small-batch command's queue of 3,840
    features, filled from epoch 15 and used once full."""

    proj_hidden_dim: int = 2048
    proj_dim: int = 128
    prototypes: int = 3000
    temperature: float = 0.1
    epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    freeze_prototypes_epochs: float = 1
    queue_size: int = 3840  # features of past batches per global crop; 0: no queue
    queue_start_epoch: float = 15
    global_views: int = (
        2  # the first views are global crops (codes come from them; official crops_for_assign)
    )


class SwAV(Method):
    """Swapped prediction: the code of each global crop, from Sinkhorn-Knopp over the prototype
    scores of the global batch (plus the queue), is predicted from every other view.

    As in the official code the prototypes are L2-normalised after every optimiser step (so the
    scores are cosine similarities) and get no gradient for the first ``freeze_prototypes_epochs``;
    BatchNorm is global (SyncBatchNorm). Where the official code keeps one queue per process and
    all-reduces Sinkhorn's sums, here the queue holds the features of every process (rank order,
    the same in each) and each process runs Sinkhorn on the gathered scores of the global batch:
    the same codes, computed redundantly, with no collective inside the iterations."""

    views = None
    global_batch_norm = True

    def __init__(self, encoder: Encoder, params: SwAVParams):
        super().__init__(encoder)
        self.params = params
        self.skips_parameters = params.freeze_prototypes_epochs > 0
        self.projector = mlp_head(encoder.out_dim, params.proj_hidden_dim, params.proj_dim)
        self.prototypes = nn.Parameter(
            F.normalize(nn.Linear(params.proj_dim, params.prototypes, bias=False).weight.detach(), dim=1)
        )
        if params.queue_size:
            self.register_buffer(
                "queue", torch.zeros(params.global_views, params.queue_size, params.proj_dim)
            )
            self.register_buffer("queue_rows", torch.zeros((), dtype=torch.long))
        self._queue_rows: int | None = None  # queue_rows on the host, read once (no sync per step)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._queue_rows = None  # read again from the loaded buffer

    def _rows_queued(self) -> int:
        """Rows ever enqueued (``queue_rows``), read from the buffer once after building or loading."""
        if self._queue_rows is None:
            self._queue_rows = int(self.queue_rows)
        return self._queue_rows

    def _queue_full(self) -> bool:
        return bool(self.params.queue_size) and self._rows_queued() >= self.params.queue_size

    def codes(self, scores: torch.Tensor) -> torch.Tensor:
        """Sinkhorn-Knopp codes A×N×K of this process's share of the global crops' scores
        ``scores`` (A×N×K), computed over the global batch and, once full, the queue."""
        p, n = self.params, scores.shape[1]
        codes = []
        for i in range(scores.shape[0]):
            batch = gather(scores[i].detach())
            queued = self.queue[i] @ self.prototypes.detach().T if self._queue_full() else batch[:0]
            q = sinkhorn_knopp(torch.cat([queued.to(batch.dtype), batch]), p.epsilon, p.sinkhorn_iterations)
            codes.append(own_share(q[len(queued) :], n))
        return torch.stack(codes)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        p = self.params
        if len(views) < max(2, p.global_views):
            raise ValueError(f"SwAV needs at least {max(2, p.global_views)} views (global crops first)")
        progress = progress or Progress()
        frozen = progress.step < p.freeze_prototypes_epochs * progress.steps_per_epoch
        n = len(views[0])
        h = encode_by_size(self.encoder, views)
        z = F.normalize(self.projector(h), dim=1)
        prototypes = self.prototypes.detach() if frozen else self.prototypes
        scores = (z @ prototypes.T).view(len(views), n, -1)
        codes = self.codes(scores[: p.global_views])
        loss = swav_loss(scores, codes, p.temperature)
        update = {}
        if p.queue_size and progress.epoch >= p.queue_start_epoch:
            update["queue"] = torch.stack([gather(zi) for zi in z[: p.global_views * n].detach().split(n)])
        return MethodOutput(
            loss,
            monitored={
                "embedding": h[:n].detach(),
                "projection": z[:n].detach(),
                "assignments": codes[0],
            },
            update=update,
        )

    @torch.no_grad()
    def after_step(self, output: MethodOutput, progress: Progress) -> None:
        self.prototypes.copy_(F.normalize(self.prototypes, dim=1))
        if "queue" not in output.update:
            return
        features = output.update["queue"].to(self.queue.dtype)
        size = self.params.queue_size
        index = (self._rows_queued() + torch.arange(features.shape[1], device=features.device)) % size
        self.queue[:, index] = features
        self._queue_rows += features.shape[1]
        self.queue_rows.fill_(self._queue_rows)
