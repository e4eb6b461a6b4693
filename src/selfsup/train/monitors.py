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


def collapse_message(out: dict[str, torch.Tensor], metrics: dict[str, float], threshold: float) -> str | None:
    """A warning when the std of ``out``'s embedding or projection (of dimension D) falls below
    ``threshold`` × 1/√D, the spread of points uniform on the sphere."""
    for name in ("embedding", "projection"):
        if name in out:
            dim = out[name].shape[1]
            healthy = 1 / math.sqrt(dim)
            if metrics[f"{name}_std"] < threshold * healthy:
                return (f"{name} collapse: std of the L2-normalised {name}s is {metrics[f'{name}_std']:.4g}, "
                        f"below {threshold} × 1/√{dim} (healthy ≈ {healthy:.4g}); "
                        f"effective rank {metrics['embedding_rank']:.1f}")
    return None
