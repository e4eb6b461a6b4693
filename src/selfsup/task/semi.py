"""The unlabelled training items in the task model's second stage, as pure functions where they
can be: label spreading over a k-nearest-neighbour graph of the features, and the targets of
self-training and distillation.

* :func:`label_spreading` (Zhou, Bousquet, Lal, Weston & Schölkopf 2004, "Learning with Local and
  Global Consistency"; the kNN graph and the entropy weights of Iscen, Tolias, Avrithis & Chum
  2019, "Label Propagation for Deep Semi-supervised Learning"): every item's class distribution
  from the labelled ones, through the graph; the head is then trained on every item, each weighted
  by how sure its spread label is.
* :func:`confident` (self-training, the FixMatch / Noisy Student family in its simplest form): the
  unlabelled items whose predicted class is at least ``threshold`` probable, as pseudo-labels.
* Distillation (SimCLRv2, Chen et al. 2020) trains a student on the teacher's class probabilities
  (temperature 1) of every item: :func:`selfsup.evaluate.finetune.train_classifier` with soft
  targets.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse

NEIGHBOURS = 10
"""Neighbours of each item in the graph (Iscen et al.: k = 50 on CIFAR's 50,000; 10 fits a few
thousand items as well)."""
ALPHA = 0.99
"""How much of an item's distribution comes from its neighbours rather than its own label (Zhou et
al.'s α)."""
GAMMA = 3
"""Edge weights are cosine similarities to this power (Iscen et al.), so that the nearest count most."""
ITERATIONS = 30
"""Iterations of F ← αSF + Y (enough for α = 0.99 on a sparse graph: the change is below 1e-3)."""
SIMILARITIES = 2**25
"""Similarities computed at a time (128 MB of float32)."""


def knn_graph(features: torch.Tensor, neighbours: int = NEIGHBOURS) -> sparse.csr_matrix:
    """The symmetric kNN graph of the L2-normalised ``features`` (N×D): W = A + Aᵀ where A holds
    each item's ``neighbours`` nearest others (cosine), weighted by max(s, 0)^:data:`GAMMA`; never
    an N×N matrix (blocks of :data:`SIMILARITIES`)."""
    x = F.normalize(features.float(), dim=1)
    count = len(x)
    neighbours = max(1, min(neighbours, count - 1))
    step = max(1, SIMILARITIES // max(1, count))
    rows, cols, weights = [], [], []
    for start in range(0, count, step):
        similarity = x[start : start + step] @ x.T
        similarity[torch.arange(len(similarity)), torch.arange(start, start + len(similarity))] = -2.0
        top, index = similarity.topk(neighbours, dim=1)
        rows.append(torch.arange(start, start + len(top)).repeat_interleave(neighbours))
        cols.append(index.flatten())
        weights.append(top.clamp_min(0).pow(GAMMA).flatten())
    a = sparse.csr_matrix(
        (torch.cat(weights).numpy(), (torch.cat(rows).numpy(), torch.cat(cols).numpy())), shape=(count, count)
    )
    return (a + a.T).tocsr()


def label_spreading(
    features: torch.Tensor,
    labelled: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    neighbours: int = NEIGHBOURS,
    alpha: float = ALPHA,
    iterations: int = ITERATIONS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's class distribution (N×``classes``, rows summing to 1) and weight in [0, 1]
    (1 − entropy / ln K: 1 where sure) spread from the ``labels`` of the rows ``labelled``:
    F ← α·S·F + Y with S = D^-1/2 W D^-1/2 of :func:`knn_graph`, Y one-hot on the labelled rows
    (Zhou et al. 2004). Labelled rows keep their own label (weight 1); a row the graph does not
    reach gets the uniform distribution (weight 0)."""
    graph = knn_graph(features, neighbours)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    scale = sparse.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    s = (scale @ graph @ scale).tocsr()
    y = np.zeros((graph.shape[0], classes))
    y[labelled.numpy(), labels.numpy()] = 1.0
    f = y.copy()
    for _ in range(iterations):
        f = alpha * (s @ f) + y
    f = np.maximum(f, 0)
    total = f.sum(axis=1, keepdims=True)
    probabilities = np.where(total > 0, f / np.maximum(total, 1e-300), 1.0 / classes)
    entropy = -(probabilities * np.log(np.maximum(probabilities, 1e-12))).sum(axis=1)
    weight = 1.0 - entropy / math.log(classes) if classes > 1 else np.ones(len(f))
    probabilities[labelled.numpy()] = y[labelled.numpy()]
    weight[labelled.numpy()] = 1.0
    return torch.from_numpy(probabilities).float(), torch.from_numpy(weight).float().clamp(0, 1)


def confident(probabilities: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows whose most probable class has probability ≥ ``threshold``, and that class."""
    top, predicted = probabilities.max(dim=1)
    rows = torch.nonzero(top >= threshold).flatten()
    return rows, predicted[rows]
