"""Nearest neighbours as positives: NNCLR (Dwibedi, Aytar, Tompson, Sermanet & Zisserman 2021,
"With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual
Representations")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.losses.precision import upcast


@torch.no_grad()
def nearest_neighbour(z: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """NN(z, Q) of NNCLR (Sec. 3.1): for each row of ``z`` (N×D) the row of the support set
    ``support`` (Q×D) of highest cosine similarity, L2-normalised (N×D, no gradient).
    Raises ValueError when the dimensions differ."""
    if z.dim() != 2 or support.dim() != 2 or z.shape[1] != support.shape[1]:
        raise ValueError(
            f"z must be N×D and the support set Q×D, got {tuple(z.shape)} and {tuple(support.shape)}"
        )
    support = F.normalize(upcast(support), dim=1)
    index = (F.normalize(upcast(z), dim=1) @ support.T).argmax(dim=1)
    return support[index]


def nnclr_loss(neighbours: torch.Tensor, predictions: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NNCLR's loss of one direction (Eq. 2): with nn_i = NN(z_i, Q) of one view and p⁺ the other
    view's predictions, both L2-normalised,

        L = mean_i −log( exp(nn_i · p⁺_i / τ) / Σ_k exp(nn_i · p⁺_k / τ) ),

    the other images' predictions being the negatives. ``neighbours``, ``predictions``: N×D (the
    global batch). The paper symmetrises: ½ L(NN(z1), p2) + ½ L(NN(z2), p1). Raises ValueError for
    mismatched shapes."""
    if neighbours.shape != predictions.shape or neighbours.dim() != 2:
        raise ValueError(
            f"neighbours and predictions must both be N×D, got {tuple(neighbours.shape)} and "
            f"{tuple(predictions.shape)}"
        )
    nn, p = F.normalize(upcast(neighbours), dim=1), F.normalize(upcast(predictions), dim=1)
    logits = nn @ p.T / temperature
    return F.cross_entropy(logits, torch.arange(len(p), device=p.device))
