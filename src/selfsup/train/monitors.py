"""Cheap collapse monitors computed from one batch of embeddings at the end of each epoch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def normalized_embedding_std(embeddings: torch.Tensor) -> float:
    """Mean per-dimension standard deviation of the L2-normalised embeddings N×D.

    About 1/√D for embeddings spread over the sphere; 0 when every input maps to one point
    (complete collapse), as in the SimSiam paper's collapse check (Chen & He 2021, Sec. 4.1).
    NaN for one embedding, whose spread is undefined (written as null in metrics.jsonl).
    """
    if len(embeddings) < 2:
        return math.nan
    z = F.normalize(embeddings.float(), dim=1)
    return float(z.std(dim=0).mean())


def effective_rank(embeddings: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023, Eq. 1): exp of the entropy of the normalised singular values
    p_k = σ_k / Σσ + ε of the embedding matrix N×D; between 1 (collapsed) and min(N, D)."""
    singular = torch.linalg.svdvals(embeddings.float())
    p = singular / singular.sum().clamp_min(eps) + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def assignment_information(probs: torch.Tensor) -> dict[str, float]:
    """For soft assignments N×K (DINO's teacher): the mean entropy of each row and the entropy of
    the mean row, both divided by ln K, and their difference, the mutual information between input
    and prototype as a share of ln K. It is 0 in both of DINO's collapse modes (Caron et al. 2021,
    Sec. 5.3): every input on the uniform distribution, or every input on one prototype."""
    p = probs.float()
    log_k = math.log(p.shape[1])
    row = float(-(p * torch.log(p.clamp_min(1e-12))).sum(dim=1).mean()) / log_k
    mean = p.mean(dim=0)
    marginal = float(-(mean * torch.log(mean.clamp_min(1e-12))).sum()) / log_k
    return {"assignment_entropy": row, "marginal_entropy": marginal, "assignment_information": marginal - row}


def collapse_metrics(out: dict[str, torch.Tensor]) -> dict[str, float]:
    """``embedding_std`` and ``embedding_rank`` of the encoder features, ``projection_std`` of the
    output the loss acts on where the method monitors one, and the ``assignment_information`` of
    soft assignments where it monitors them. ``out``: a :class:`MethodOutput`'s ``monitored``
    tensors (``embedding`` N×D, optionally ``projection`` N×P and ``assignments`` N×K)."""
    metrics = {
        "embedding_std": normalized_embedding_std(out["embedding"]),
        "embedding_rank": effective_rank(out["embedding"]),
    }
    if "projection" in out:
        metrics["projection_std"] = normalized_embedding_std(out["projection"])
    if "assignments" in out:
        metrics.update(assignment_information(out["assignments"]))
    return metrics


def collapse_message(out: dict[str, torch.Tensor], metrics: dict[str, float], threshold: float) -> str | None:
    """A warning when the std of ``out``'s embedding or projection (of dimension D) falls below
    ``threshold`` × 1/√D, the spread of points uniform on the sphere, or the assignment
    information below ``threshold`` × ln K."""
    found = []
    for name in ("embedding", "projection"):
        if name in out:
            dim = out[name].shape[1]
            healthy = 1 / math.sqrt(dim)
            if metrics[f"{name}_std"] < threshold * healthy:
                found.append(
                    f"{name} collapse: std of the L2-normalised {name}s is {metrics[f'{name}_std']:.4g}, "
                    f"below {threshold} × 1/√{dim} (healthy ≈ {healthy:.4g}); "
                    f"effective rank {metrics['embedding_rank']:.1f}"
                )
    if "assignment_information" in metrics and metrics["assignment_information"] < threshold:
        found.append(
            f"assignment collapse: the outputs tell inputs apart by {metrics['assignment_information']:.3g} "
            f"× ln K nats (below {threshold}); mean entropy {metrics['assignment_entropy']:.3f} × ln K "
            f"({'near uniform' if metrics['assignment_entropy'] > 0.5 else 'one prototype'})"
        )
    return "; ".join(found) or None
