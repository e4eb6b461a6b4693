"""The classic Siamese network (Bromley et al. 1993, signature verification; Hadsell, Chopra & LeCun
2006, margin contrastive loss; Schroff et al. 2015, triplet loss and hard / semi-hard negatives)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from selfsup.distributed import gather
from selfsup.errors import ConfigError
from selfsup.losses import margin_contrastive_loss, triplet_loss
from selfsup.methods.base import BatchFloor, Method, MethodOutput, Progress
from selfsup.models.encoder import Encoder
from selfsup.models.heads import mlp_head

MINING = ("none", "hardest", "semi_hard")
PAIRS = ("views", "labels")


@dataclass
class SiameseParams:
    """Two weight-shared towers over pairs. Unlabelled (``pairs: views``): a positive pair is two
    augmented views of one image, a negative pair views of two different images of the batch.
    Labelled (``pairs: labels``): a positive pair is two images of one class (or the image's two
    views when it is alone in its class in the batch), a negative pair two images of different
    classes."""

    loss: str = "contrastive"  # contrastive (Hadsell et al. 2006) or triplet (Schroff et al. 2015)
    margin: float = 1.0  # on L2-normalised embeddings, whose distances lie in [0, 2]
    mining: str = "none"  # negatives: none (random), hardest (closest), semi_hard (Schroff et al. 2015)
    pairs: str = "views"  # views (self-supervised) or labels (same class = similar; needs labelled data)
    proj_hidden_dim: int = 0  # 0: the encoder's feature dimension
    proj_dim: int = 128


class Siamese(Method):
    """Margin contrastive loss over N positive and N negative pairs, or the triplet loss over N
    triplets (anchor = view 1 of an image; positive = its view 2, or with labels view 2 of an image
    of its class; negative = view 2 of an image that is not the anchor, and with labels not of its
    class). Positives and negatives are mined in the global batch (all processes)."""

    @classmethod
    def batch_floor(cls, params) -> BatchFloor:
        return BatchFloor(2, "a negative pair is two different images of the batch")

    def __init__(self, encoder: Encoder, params: SiameseParams):
        super().__init__(encoder)
        for key, value, allowed in (
            ("loss", params.loss, ("contrastive", "triplet")),
            ("mining", params.mining, MINING),
            ("pairs", params.pairs, PAIRS),
        ):
            if value not in allowed:
                raise ConfigError(f"option 'method.{key}' must be {' or '.join(allowed)}, got '{value}'")
        self.params = params
        self.needs_labels = params.pairs == "labels"
        hidden = params.proj_hidden_dim or encoder.out_dim
        self.projector = mlp_head(encoder.out_dim, hidden, params.proj_dim)

    @torch.no_grad()
    def positives(self, labels: torch.Tensor) -> torch.Tensor:
        """Index of each anchor's positive among the second views: a random other image of its
        class, or itself when it has none in the batch."""
        n = len(labels)
        same = labels[:, None] == labels[None, :]
        same.fill_diagonal_(False)
        weights = torch.where(same.any(dim=1, keepdim=True), same.float(), torch.eye(n, device=labels.device))
        return torch.multinomial(weights, 1).squeeze(1)

    @torch.no_grad()
    def negatives(
        self,
        anchor: torch.Tensor,
        others: torch.Tensor,
        positive: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Index of each anchor's negative among ``others`` (never the anchor's own image, and with
        ``labels`` never its class): with mining ``none`` the next valid image of the batch; ``hardest``
        the closest; ``semi_hard`` the closest that is still farther than the positive
        (``others[positive]``), else the farthest (as TensorFlow Addons' semi-hard triplet loss)."""
        n = len(anchor)
        valid = ~torch.eye(n, dtype=torch.bool, device=anchor.device)
        if labels is not None:
            different = labels[:, None] != labels[None, :]
            valid &= different | ~different.any(dim=1, keepdim=True)  # a one-class batch keeps all others
        if self.params.mining == "none":
            # the first valid index after i, cyclically: rank columns by (j - i) mod n
            shift = (
                torch.arange(n, device=anchor.device)[None, :]
                - torch.arange(n, device=anchor.device)[:, None]
            ) % n
            return torch.where(valid, shift, n).argmin(dim=1)
        distance = torch.cdist(anchor.float(), others.float())
        inf = torch.tensor(float("inf"), device=anchor.device)
        hardest = torch.where(valid, distance, inf).argmin(dim=1)
        if self.params.mining == "hardest":
            return hardest
        positive = torch.arange(n, device=anchor.device) if positive is None else positive
        d_pos = distance.gather(1, positive[:, None])
        semi = valid & (distance > d_pos)
        closest_farther = torch.where(semi, distance, inf).argmin(dim=1)
        farthest = torch.where(valid, distance, -inf).argmax(dim=1)
        return torch.where(semi.any(dim=1), closest_farther, farthest)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        if self.needs_labels and labels is None:
            raise ValueError("method.pairs=labels needs the batch's labels")
        h, local = self.encode_pair(views)
        own = F.normalize(self.projector(h).float(), dim=1)
        e1, e2 = gather(own[:local]), gather(own[local:])
        labels = gather(labels) if self.needs_labels else None
        n = len(e1)
        positive_index = self.positives(labels) if labels is not None else None
        positive = e2 if positive_index is None else e2[positive_index]
        negative = e2[self.negatives(e1, e2, positive_index, labels)]
        m = self.params.margin
        if self.params.loss == "triplet":
            loss = triplet_loss(e1, positive, negative, m)
        else:
            same = (torch.arange(2 * n, device=e1.device) < n).float()  # made on the device: no host copy
            loss = margin_contrastive_loss(torch.cat([e1, e1]), torch.cat([positive, negative]), same, m)
        return MethodOutput(
            loss, monitored={"embedding": h[:local].detach(), "projection": own[:local].detach()}
        )
