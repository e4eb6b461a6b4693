"""Self-supervised losses as pure functions of embeddings, each with its paper's formula.

The Siamese, masked-image and likelihood losses are here; the clustering and nearest-neighbour
losses (SwAV, NNCLR), the masked-prediction losses (I-JEPA, iBOT) and the text losses (SimCSE,
ELECTRA) live in the submodules and are re-exported."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from selfsup.losses.clustering import sinkhorn_knopp as sinkhorn_knopp
from selfsup.losses.clustering import swav_loss as swav_loss
from selfsup.losses.distillation import teacher_distribution as teacher_distribution
from selfsup.losses.masked_prediction import ibot_patch_loss as ibot_patch_loss
from selfsup.losses.masked_prediction import ijepa_loss as ijepa_loss
from selfsup.losses.neighbours import nearest_neighbour as nearest_neighbour
from selfsup.losses.neighbours import nnclr_loss as nnclr_loss
from selfsup.losses.precision import upcast as _upcast
from selfsup.losses.text import replaced_token_detection_loss as replaced_token_detection_loss
from selfsup.losses.text import simcse_loss as simcse_loss


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalised temperature-scaled cross-entropy (SimCLR; Chen et al. 2020, Eq. 1).

    ``z1``, ``z2``: N×D projections of two views; row i of each comes from the same image.
    With u = z / ||z|| and s(a, b) = u_a·u_b / τ, the loss of anchor i with positive j is

        ℓ(i, j) = −log( exp s(i, j) / Σ_{k ≠ i} exp s(i, k) ),

    where k runs over the other 2N − 1 embeddings of the batch (the positive and 2N − 2
    negatives). Returns the mean of ℓ over all 2N anchors (both orderings of each pair).
    Computed in float32 or better, whatever the input precision.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be N×D, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(_upcast(torch.cat([z1, z2])), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    # made on the device: a tensor sent from the host would make the step wait (on CUDA)
    positives = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, positives)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al. 2020, Eq. 2): mean over the batch of

        2 − 2 · ⟨p, z⟩ / (‖p‖ · ‖z‖)

    ``p``: N×D online predictions; ``z``: N×D target projections of the other view. The target
    is held fixed by the caller (computed without gradient); the paper symmetrises by adding the
    loss with the views swapped.
    """
    return (2 - 2 * F.cosine_similarity(_upcast(p), _upcast(z), dim=1)).mean()


def simsiam_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's negative cosine similarity D(p, z) = −⟨p, z⟩ / (‖p‖ · ‖z‖), mean over the batch
    (Chen & He 2021, Eq. 1). ``p``, ``z``: N×D. Stop-gradient on ``z`` is the caller's
    (``z.detach()``); the symmetric loss is ½D(p1, z2) + ½D(p2, z1)."""
    return -F.cosine_similarity(_upcast(p), _upcast(z), dim=1).mean()


def _batch_standardise(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-dimension (z − mean) / sqrt(var + eps) over the batch, biased variance: BatchNorm1d
    without affine."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    return m[~torch.eye(m.shape[0], dtype=torch.bool, device=m.device)]


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    """Barlow Twins (Zbontar et al. 2021, Eq. 1-2): with C the D×D cross-correlation of the
    batch-standardised embeddings, C_ij = Σ_b ẑ1_bi ẑ2_bj / N,

        L = Σ_i (1 − C_ii)² + λ Σ_i Σ_{j≠i} C_ij².

    ``z1``, ``z2``: N×D projections of two views. Standardisation as in the official code
    (facebookresearch/barlowtwins): BatchNorm1d without affine, i.e. biased variance, eps 1e-5.
    """
    on_diagonal, off_diagonal = barlow_twins_terms(z1, z2)
    return on_diagonal + lambd * off_diagonal


def barlow_twins_terms(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Barlow Twins' two sums: invariance Σ_i (1 − C_ii)² and redundancy Σ_{i≠j} C_ij² (before λ)."""
    c = cross_correlation(z1, z2)
    return (torch.diagonal(c) - 1).pow(2).sum(), _off_diagonal(c).pow(2).sum()


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Barlow Twins' D×D cross-correlation C_ij = Σ_b ẑ1_bi ẑ2_bj / N of the batch-standardised
    N×D projections ``z1``, ``z2`` (float32 or wider): the identity when the views agree on every
    dimension and the dimensions are decorrelated. The report draws it for Barlow Twins and VICReg."""
    n = z1.shape[0]
    return _batch_standardise(_upcast(z1)).T @ _batch_standardise(_upcast(z2)) / n


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
) -> torch.Tensor:
    """VICReg (Bardes, Ponce & LeCun 2022, Eq. 1-6), as in the official code (facebookresearch/vicreg)::

        invariance  s = mean over N×D of (z1 − z2)²
        variance    v = ½ Σ_{z ∈ z1, z2} mean_j max(0, 1 − sqrt(Var(z_·j) + 1e-4))
        covariance  c = Σ_{z ∈ z1, z2} Σ_{i≠j} Cov(z)_ij² / D
        L = sim_weight · s + var_weight · v + cov_weight · c

    with unbiased variance and covariance over the batch. ``z1``, ``z2``: N×D.
    """
    invariance, variance, covariance = vicreg_terms(z1, z2)
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VICReg's invariance s, variance v and covariance c terms (before their weights)."""
    z1, z2 = _upcast(z1), _upcast(z2)
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)
    variance, covariance = 0.0, 0.0
    for z in (z1, z2):
        centred = z - z.mean(dim=0)
        variance = variance + F.relu(1 - torch.sqrt(centred.var(dim=0) + 1e-4)).mean() / 2
        cov = centred.T @ centred / (n - 1)
        covariance = covariance + _off_diagonal(cov).pow(2).sum() / d
    return invariance, variance, covariance


def margin_contrastive_loss(
    x1: torch.Tensor, x2: torch.Tensor, same: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """Margin contrastive loss of a Siamese pair (Hadsell, Chopra & LeCun 2006): with the Euclidean
    distance d = ‖x1 − x2‖ and y = 1 for a similar pair, 0 for a dissimilar one, the mean over pairs of

        y · d² + (1 − y) · max(0, m − d)².

    ``x1``, ``x2``: N×D embeddings; ``same``: N booleans or 0/1.
    """
    distance = torch.linalg.vector_norm(_upcast(x1) - _upcast(x2), dim=1)
    y = same.to(distance.dtype)
    return (y * distance.pow(2) + (1 - y) * F.relu(margin - distance).pow(2)).mean()


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """Triplet loss (Schroff, Kalenichenko & Philbin 2015): mean over triplets of
    max(0, ‖a − p‖ − ‖a − n‖ + m), Euclidean distances. Each argument is N×D."""
    to_positive = torch.linalg.vector_norm(_upcast(anchor) - _upcast(positive), dim=1)
    to_negative = torch.linalg.vector_norm(_upcast(anchor) - _upcast(negative), dim=1)
    return F.relu(to_positive - to_negative + margin).mean()


def moco_loss(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """InfoNCE of MoCo (He et al. 2020, Eq. 1): for each query q with its key k⁺ and the K queued
    negatives k⁻ (all L2-normalised here),

        −log( exp(q·k⁺/τ) / (exp(q·k⁺/τ) + Σ_{k⁻} exp(q·k⁻/τ)) ),

    mean over the batch. ``q``, ``k``: N×D; ``queue``: K×D. Keys carry no gradient in MoCo
    (the caller computes them with the momentum encoder under no_grad).
    """
    q, k, queue = (
        F.normalize(_upcast(q), dim=1),
        F.normalize(_upcast(k), dim=1),
        F.normalize(_upcast(queue), dim=1),
    )
    positive = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def moco_v3_loss(q: torch.Tensor, k: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """MoCo v3's in-batch contrastive loss (Chen, Xie & He 2021, Alg. 1): with q, k L2-normalised,

        2τ · mean_i −log( exp(q_i·k_i/τ) / Σ_j exp(q_i·k_j/τ) ),

    the keys of the other images in the batch being the negatives; the 2τ factor is the paper's.
    ``q``: N×D queries; ``k``: N×D keys of the other view (from the momentum encoder, no gradient).
    """
    q, k = F.normalize(_upcast(q), dim=1), F.normalize(_upcast(k), dim=1)
    logits = q @ k.T / temperature
    return 2 * temperature * F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def dino_loss(
    student_out: torch.Tensor,
    teacher_out: torch.Tensor,
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """DINO's cross-entropy between teacher and student distributions (Caron et al. 2021, Eq. 1):

        P_t = softmax((t − center) / τ_t),  log P_s = log_softmax(s / τ_s),
        L = mean over pairs (teacher view i, student view j ≠ i) and batch of −Σ_K P_t · log P_s.

    ``student_out``: V_s×N×K logits of all student views, the first V_t of which are the global
    views the teacher also saw; ``teacher_out``: V_t×N×K; ``center``: K (or 1×K). The teacher's
    probabilities carry no gradient.
    """
    teacher = teacher_distribution(teacher_out, center, teacher_temp)
    student = F.log_softmax(_upcast(student_out) / student_temp, dim=-1)
    total, pairs = 0.0, 0
    for i in range(teacher.shape[0]):
        for j in range(student.shape[0]):
            if i == j:
                continue
            total = total + (-(teacher[i] * student[j]).sum(dim=-1)).mean()
            pairs += 1
    return total / pairs


def bits_per_dim(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of discrete data in bits per dimension (sub-pixel).

    ``logits``: N×K×... unnormalised log-probabilities over the K values of each dimension;
    ``targets``: N×... integer values in [0, K). Returns mean_d −log₂ p(x_d | ...) = the mean
    cross-entropy in nats / ln 2; a uniform prediction over 256 values scores exactly 8.
    """
    return F.cross_entropy(_upcast(logits), targets) / math.log(2.0)


def standardize_patches(
    patches: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each patch (last dimension) minus its mean, over √(its unbiased variance + eps), as MAE's
    official code does; also the means and scales, to map predictions back to pixels."""
    mean = patches.mean(dim=-1, keepdim=True)
    scale = (patches.var(dim=-1, keepdim=True) + eps) ** 0.5
    return (patches - mean) / scale, mean, scale


def masked_patch_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    normalize_target: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """MAE's reconstruction loss (He et al. 2022, Sec. 3; official ``forward_loss``).

    ``pred``, ``target``: N×L×P predicted and true pixels of each of L patches; ``mask``: N×L, 1
    where the patch was hidden from the encoder. With ``normalize_target`` each target patch is
    standardised by its own mean and variance (the paper's "normalized pixels"). The loss is the
    mean squared error per patch, averaged over the masked patches only.
    """
    pred, target = _upcast(pred), _upcast(target)
    if normalize_target:
        target = standardize_patches(target, eps)[0]
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()
