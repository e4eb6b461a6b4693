"""Weighted k-nearest-neighbour classification on cosine similarity (Wu et al. 2018, InstDisc)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 1024,
    max_similarities: int = 2**25,
) -> torch.Tensor:
    """Predicted labels of ``test_features``.

    Each test point takes its k most cosine-similar training points (k capped by their count);
    neighbour j votes for its class with weight exp(s_j / T). Features are L2-normalised here.
    Test points go ``chunk`` at a time, fewer where a chunk's similarities to every training point
    would exceed ``max_similarities`` values (128 MB): never an N×N matrix.
    """
    k = min(k, len(train_features))
    chunk = max(1, min(chunk, max_similarities // max(1, len(train_features))))
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    predictions = []
    for start in range(0, len(test), chunk):
        similarity = test[start : start + chunk] @ train.T
        top_sim, top_idx = similarity.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(len(top_sim), num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)
