"""Cheap collapse monitors computed from one batch of embeddings at the end of each epoch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def normalized_embedding_std(embeddings: torch.Tensor) -> float:
    """Mean per-dimension standard deviation of the L2-normalised embeddings N×D.

    About 1/√D for embeddings spread over the sphere; 0 when every input maps to one point
    (complete collapse), as in the SimSiam paper's collapse check (Chen & He 2021, Sec. 4.1).
    """
    z = F.normalize(embeddings.float(), dim=1)
    return float(z.std(dim=0).mean())


def effective_rank(embeddings: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023, Eq. 1): exp of the entropy of the normalised singular values
    p_k = σ_k / Σσ + ε of the embedding matrix N×D; between 1 (collapsed) and min(N, D)."""
    singular = torch.linalg.svdvals(embeddings.float())
    p = singular / singular.sum().clamp_min(eps) + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def collapse_metrics(out: dict[str, torch.Tensor]) -> dict[str, float]:
    """``embedding_std`` and ``embedding_rank`` of the encoder features, and ``projection_std`` of
    the output the loss acts on, where the method returns one."""
    metrics = {"embedding_std": normalized_embedding_std(out["embedding"]),
               "embedding_rank": effective_rank(out["embedding"])}
    if "projection" in out:
        metrics["projection_std"] = normalized_embedding_std(out["projection"])
    return metrics


def collapse_message(metrics: dict[str, float], dims: dict[str, int], threshold: float) -> str | None:
    """A warning when an std falls below ``threshold`` × 1/√D (the spread of a uniform sphere)."""
    for name in ("embedding_std", "projection_std"):
        if name in metrics:
            healthy = 1 / math.sqrt(dims[name])
            if metrics[name] < threshold * healthy:
                return (f"{name.replace('_std', '')} collapse: std of the L2-normalised "
                        f"{name.split('_')[0]}s is {metrics[name]:.4g}, below {threshold} × 1/√{dims[name]} "
                        f"(healthy ≈ {healthy:.4g}); effective rank {metrics['embedding_rank']:.1f}")
    return None
