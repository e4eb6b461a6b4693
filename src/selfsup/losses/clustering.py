"""Learning by clustering: SwAV's equipartitioned codes and its swapped prediction (Caron, Misra,
Mairal, Goyal, Bojanowski & Joulin 2020, "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments"; official code facebookresearch/swav)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.losses.precision import upcast


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's codes (Sec. 3.1, Eq. 3; the official ``distributed_sinkhorn``): the soft assignment
    Q of B samples to K prototypes that maximises Tr(Qᵀ Cᵀ Z) + ε H(Q) under the equipartition
    constraint (every prototype gets B/K samples, every sample one unit), found by ``iterations``
    Sinkhorn-Knopp steps from Q = exp(scores / ε) / Σ exp(scores / ε):

        repeat: rows (prototypes) scaled to sum 1/K, then columns (samples) to sum 1/B;
        finally Q × B, so that each sample's code sums to 1.

    ``scores``: B×K prototype scores zᵀc of every sample being assigned (the global batch, and the
    queue where there is one). Returns B×K codes, float32 or wider, no gradient. Each iteration
    ends on the samples, so every code sums to exactly 1; the prototypes' totals approach B/K.
    To avoid overflow at small ε the exponent is shifted by its maximum, which the normalisation
    cancels. Raises ValueError for scores that are not B×K.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be B×K (samples × prototypes), got {tuple(scores.shape)}")
    logits = upcast(scores) / epsilon
    q = torch.exp(logits - logits.max()).T  # K×B, as in the paper's notation
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    return (q * b).T


def swav_loss(scores: torch.Tensor, codes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SwAV's swapped prediction (Sec. 3.1, Eq. 1-2, with multi-crop): each code q_i, computed from
    view i, is predicted from every other view v by p_v = softmax(z_vᵀC / τ):

        L = mean_i [ 1/(V − 1) Σ_{v ≠ i} mean_n −Σ_k q_i,nk log p_v,nk ].

    ``scores``: V×N×K prototype scores of all views (the first ``A`` are the views the codes come
    from, the global crops); ``codes``: A×N×K (from :func:`sinkhorn_knopp`, no gradient). Returns
    the scalar loss. Raises ValueError for mismatched shapes.
    """
    if scores.dim() != 3 or codes.dim() != 3 or codes.shape[1:] != scores.shape[1:]:
        raise ValueError(
            f"scores must be V×N×K and codes A×N×K, got {tuple(scores.shape)} and {tuple(codes.shape)}"
        )
    views, assigned = scores.shape[0], codes.shape[0]
    if assigned > views or views < 2:
        raise ValueError(f"{assigned} codes need at least as many views and 2 in all, got {views}")
    log_p = F.log_softmax(upcast(scores) / temperature, dim=-1)
    codes = upcast(codes).detach()
    total = 0.0
    for i in range(assigned):
        others = [v for v in range(views) if v != i]
        cross = -(codes[i] * log_p[others]).sum(dim=-1)  # (V−1)×N
        total = total + cross.mean()
    return total / assigned
