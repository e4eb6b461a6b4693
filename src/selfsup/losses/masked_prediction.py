"""Masked-prediction losses in representation space: I-JEPA's regression of the target encoder's
patch features and iBOT's masked-patch self-distillation (its [CLS] part is DINO's loss,
:func:`selfsup.losses.dino_loss`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.losses.distillation import teacher_distribution
from selfsup.losses.precision import upcast


def ijepa_loss(pred: torch.Tensor, target: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """I-JEPA's prediction loss (Assran et al. 2023, Sec. 3): with s_y the target encoder's
    features of the target patches, layer-normalised over the feature dimension (no affine, eps
    1e-5; ``normalize``), and ŝ_y the predictor's outputs at the same patches,

        L = mean over all predicted tokens t of ‖ŝ_y(t) − LN(s_y(t))‖²₂,

    the paper's average L2 distance (Eq. 1 sums over the patches of each of the M blocks and
    averages over blocks; here every block has as many patches, so this is that loss divided by
    the block size). The official code (facebookresearch/ijepa ``train.py``) regresses with
    ``F.smooth_l1_loss`` averaged over every feature instead.

    ``pred``: ...×T×D predictions; ``target``: the same shape, the target encoder's features
    (held fixed by the caller: computed without gradient). Computed in float32 or better.
    """
    if pred.shape != target.shape or pred.dim() < 2:
        raise ValueError(
            f"pred and target must have the same shape ...×T×D, "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    target = upcast(target)
    if normalize:
        target = F.layer_norm(target, target.shape[-1:])
    return (upcast(pred) - target).pow(2).sum(dim=-1).mean()


def ibot_patch_loss(
    student_patch_logits: torch.Tensor,
    teacher_patch_logits: torch.Tensor,
    mask: torch.Tensor,
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.07,
) -> torch.Tensor:
    """iBOT's masked-image-modelling loss (Zhou et al. 2022, Eq. 2; official bytedance/ibot
    ``iBOTLoss``): the student, shown a view with the patches ``m_i = 1`` replaced by a mask
    token, matches the teacher's centred, sharpened distribution of the unmasked view at those
    patches:

        P_t = softmax((t − center) / τ_t),  log P_s = log_softmax(s / τ_s),
        ℓ_n = Σ_i m_ni · (−Σ_K P_t,ni · log P_s,ni) / max(1, Σ_i m_ni),
        L = mean over images n of ℓ_n

    (an image with no masked patch counts as 0, as in the official code).

    ``student_patch_logits``, ``teacher_patch_logits``: N×L×K logits of the L patch tokens of N
    images (the same view); ``mask``: N×L, 1/True = masked in the student's input; ``center``:
    K (or 1×K), the teacher's patch centre. The teacher's probabilities carry no gradient.
    """
    if student_patch_logits.shape != teacher_patch_logits.shape or student_patch_logits.dim() != 3:
        raise ValueError(
            f"student and teacher patch logits must both be N×L×K, got {tuple(student_patch_logits.shape)} "
            f"and {tuple(teacher_patch_logits.shape)}"
        )
    if tuple(mask.shape) != tuple(student_patch_logits.shape[:2]):
        raise ValueError(
            f"mask must be N×L = {tuple(student_patch_logits.shape[:2])} (one flag per patch), "
            f"got {tuple(mask.shape)}"
        )
    teacher = teacher_distribution(teacher_patch_logits, center, teacher_temp)
    student = F.log_softmax(upcast(student_patch_logits) / student_temp, dim=-1)
    per_patch = -(teacher * student).sum(dim=-1)
    weight = mask.to(per_patch.dtype)
    return ((per_patch * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)).mean()
