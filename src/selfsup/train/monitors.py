"""Cheap collapse monitors computed from a batch of embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_embedding_std(embeddings: torch.Tensor) -> float:
    """Mean per-dimension standard deviation of the L2-normalised embeddings N×D.

    About 1/√D for embeddings spread over the sphere; 0 when every input maps to one point
    (complete collapse), as in the SimSiam paper's collapse check (Chen & He 2021, Sec. 4.1).
    """
    z = F.normalize(embeddings.float(), dim=1)
    return float(z.std(dim=0).mean())
