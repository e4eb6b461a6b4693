"""Unsupervised SimCSE (Gao, Yao & Chen 2021, "SimCSE: Simple Contrastive Learning of Sentence
Embeddings"; official code: princeton-nlp/SimCSE).

The same token ids go twice through the encoder in train mode: the two dropout masks are the two
views. Each sentence's second embedding is its positive, the other sentences' second embeddings
(of the global batch under torchrun) its negatives, with cosine similarity over a temperature of
0.05 (:func:`selfsup.losses.text.simcse_loss`).

Pooling, as the official unsupervised setting (``--pooler_type cls --mlp_only_train``): the
[CLS] state with an MLP (dense + tanh) on top during training only; the embedding the evaluation
uses is the [CLS] state before the MLP (``cls_before_pooler``). selfsup's own encoder is built
with ``pooling='first'`` for that (``pooler: mean`` pools the mean of the tokens instead). A
Hugging Face checkpoint (``--backbone hf:PATH``) keeps its own pooling (the mean of the tokens)
and its own dropout probabilities; selfsup's own encoder takes ``method.dropout`` (BERT's 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from selfsup.distributed import gather
from selfsup.errors import ConfigError
from selfsup.losses import simcse_loss
from selfsup.methods.base import TEST_METRICS, BatchFloor, MethodOutput, Progress
from selfsup.methods.text import TextMethod
from selfsup.models.text import BaseTextEncoder


@dataclass
class SimCSEParams:
    """Unsupervised SimCSE's settings; defaults from the paper's BERT-base runs (Sec. 3, App. A)."""

    temperature: float = 0.05
    pooler: str = "cls"  # "cls": the [CLS] state; "mean": the mean of the token states
    mlp: bool = True  # dense + tanh over the pooled state, in training only (mlp_only_train)
    dropout: float = 0.1  # of selfsup's own encoder (BERT's): the only augmentation


class SimCSE(TextMethod):
    """Two dropout-noised passes of the same sentences; in-batch InfoNCE between them."""

    offers = frozenset({TEST_METRICS})

    @classmethod
    def batch_floor(cls, params) -> BatchFloor:
        return BatchFloor(2, "SimCSE contrasts each sentence with the other sentences of the batch")

    def __init__(self, encoder: BaseTextEncoder, params: SimCSEParams):
        super().__init__(encoder)
        if params.pooler not in ("cls", "mean"):
            raise ConfigError(f"method.pooler must be cls or mean, got {params.pooler!r}")
        if params.temperature <= 0 or not 0 <= params.dropout < 1:
            raise ConfigError("method.temperature must be positive and method.dropout in [0, 1)")
        if encoder.spec["causal"]:
            raise ConfigError("SimCSE needs a bidirectional encoder")
        self.params = params
        dim = encoder.out_dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.Tanh()) if params.mlp else nn.Identity()

    @staticmethod
    def encoder_options(params: SimCSEParams) -> dict:
        return {"dropout": params.dropout, "pooling": "first" if params.pooler == "cls" else "mean"}

    def embed_twice(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled embeddings N×D of two passes of ``ids`` N×L, in one batch of 2N (each row
        draws its own dropout mask, as the official code's doubled batch)."""
        doubled = torch.cat([ids, ids])
        pooled = self.encoder.pool(self.encoder.backbone(doubled), doubled)
        return pooled[: len(ids)], pooled[len(ids) :]

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        h1, h2 = self.embed_twice(views[0])
        z1, z2 = self.mlp(h1), self.mlp(h2)
        loss = simcse_loss(gather(z1), gather(z2), self.params.temperature)
        return MethodOutput(
            loss, monitored={"embedding": h1.detach().float(), "projection": z1.detach().float()}
        )

    @torch.no_grad()
    def test_metrics(self, ids: torch.Tensor, labels=None) -> dict[str, float]:
        """With dropout on (the training noise): the held-out SimCSE loss, and the paper's Sec. 5
        alignment E‖f(x) − f(x⁺)‖² and uniformity log E exp(−2‖f(x) − f(y)‖²) of the normalised
        embeddings (Wang & Isola 2020), the pairs (x, y) from different sentences of the batch."""
        mode = self.encoder.training
        self.encoder.train()
        try:
            h1, h2 = self.embed_twice(ids)
        finally:
            self.encoder.train(mode)
        u1, u2 = nn.functional.normalize(h1.float(), dim=1), nn.functional.normalize(h2.float(), dim=1)
        distances = torch.pdist(u1) if len(u1) > 1 else torch.zeros(1, device=u1.device)
        return {
            "contrastive_loss": float(simcse_loss(self.mlp(h1), self.mlp(h2), self.params.temperature)),
            "alignment": float((u1 - u2).pow(2).sum(dim=1).mean()),
            "uniformity": float(distances.pow(2).mul(-2).exp().mean().log()),
        }
