"""Self-supervised losses as pure functions of embeddings, each with its paper's formula."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalised temperature-scaled cross-entropy (SimCLR; Chen et al. 2020, Eq. 1).

    ``z1``, ``z2``: N×D projections of two views; row i of each comes from the same image.
    With u = z / ||z|| and s(a, b) = u_a·u_b / τ, the loss of anchor i with positive j is

        ℓ(i, j) = −log( exp s(i, j) / Σ_{k ≠ i} exp s(i, k) ),

    where k runs over the other 2N − 1 embeddings of the batch (the positive and 2N − 2
    negatives). Returns the mean of ℓ over all 2N anchors (both orderings of each pair).
    Computed in float32 whatever the input precision.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be N×D, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positives)
