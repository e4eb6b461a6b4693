"""The classic Siamese network (Bromley et al. 1993, signature verification; Hadsell, Chopra & LeCun
2006, margin contrastive loss; Schroff et al. 2015, triplet loss and hard negatives)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup.errors import ConfigError
from selfsup.losses import margin_contrastive_loss, triplet_loss
from selfsup.methods.base import Method
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head


@dataclass
class SiameseParams:
    """Two weight-shared towers over pairs made from unlabelled images: a positive pair is two
    augmented views of one image, a negative pair views of two different images of the batch."""

    loss: str = "contrastive"  # contrastive (Hadsell et al. 2006) or triplet (Schroff et al. 2015)
    margin: float = 1.0  # on L2-normalised embeddings, whose distances lie in [0, 2]
    hard_negatives: bool = False  # the closest other image of the batch as the negative
    proj_hidden_dim: int = 0  # 0: the encoder's feature dimension
    proj_dim: int = 128


class Siamese(Method):
    """Margin contrastive loss over N positive and N negative pairs, or the triplet loss over N
    triplets (anchor = view 1, positive = view 2 of the same image, negative = view 2 of another)."""

    def __init__(self, encoder: Encoder, params: SiameseParams):
        super().__init__(encoder)
        if params.loss not in ("contrastive", "triplet"):
            raise ConfigError(f"option 'method.loss' must be contrastive or triplet, got '{params.loss}'")
        self.params = params
        hidden = params.proj_hidden_dim or encoder.out_dim
        self.projector = mlp_head(encoder.out_dim, hidden, params.proj_dim)

    def negatives(self, anchor: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        """Index of each anchor's negative among ``others``: the closest other one when mining hard
        negatives, else the next image of the batch."""
        n = len(anchor)
        if not self.params.hard_negatives:
            return torch.roll(torch.arange(n, device=anchor.device), -1)
        with torch.no_grad():
            distance = torch.cdist(anchor.float(), others.float())
            distance.fill_diagonal_(float("inf"))
            return distance.argmin(dim=1)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        h, n = self.encode_pair(views)
        e1, e2 = F.normalize(self.projector(h).float(), dim=1).chunk(2)
        negative = e2[self.negatives(e1, e2)]
        m = self.params.margin
        if self.params.loss == "triplet":
            loss = triplet_loss(e1, e2, negative, m)
        else:
            same = torch.cat([torch.ones(n), torch.zeros(n)]).to(e1.device)
            loss = margin_contrastive_loss(torch.cat([e1, e1]), torch.cat([e2, negative]), same, m)
        return {"loss": loss, "embedding": h[:n].detach(), "projection": e1.detach()}
