"""The losses of the text methods: the language models' cross-entropy over predicted tokens
(BERT, BART, the causal LM), SimCSE's in-batch contrastive loss and ELECTRA's replaced-token
detection."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.data.tokenizer import IGNORE
from selfsup.distributed import global_mean
from selfsup.losses.precision import upcast


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) over the targets that are not ``IGNORE``; logits …×V, targets …."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE
    )


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss: the mean cross-entropy over the predicted tokens (not ``IGNORE``) of the
    global batch, whatever their number in each process (:func:`selfsup.distributed.global_mean`)."""
    flat = targets.reshape(-1)
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), flat, ignore_index=IGNORE, reduction="sum"
    )
    return global_mean(total, (flat != IGNORE).sum())


def simcse_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Unsupervised SimCSE's training objective (Gao, Yao & Chen 2021, Eq. 1).

    ``z1``, ``z2``: N×D embeddings of the same N sentences, passed twice through the encoder with
    different dropout masks; row i of ``z2`` is the positive of row i of ``z1`` and the other rows
    of ``z2`` are its in-batch negatives. With sim(a, b) = aᵀb / (‖a‖·‖b‖) and τ the temperature,

        ℓ_i = −log( exp(sim(z1_i, z2_i)/τ) / Σ_{j=1..N} exp(sim(z1_i, z2_j)/τ) ).

    Returns the mean of ℓ_i over the N anchors; one direction only (``z1`` anchors, ``z2`` the
    candidates), as the paper's formula and princeton-nlp/SimCSE. Computed in float32 or better.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be N×D, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    u1, u2 = F.normalize(upcast(z1), dim=1), F.normalize(upcast(z2), dim=1)
    logits = u1 @ u2.T / temperature
    return F.cross_entropy(logits, torch.arange(len(z1), device=z1.device))


def replaced_token_detection_loss(
    logits: torch.Tensor, replaced: torch.Tensor, padding_mask: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """ELECTRA's discriminator loss (Clark, Luong, Le & Manning 2020, Sec. 2, L_Disc).

    ``logits``: N×L, the discriminator's logit that each token was replaced; ``replaced``: N×L
    (bool or 0/1), 1 where the corrupted token differs from the original (a generator sample equal
    to the original counts as original); ``padding_mask``: N×L bool, True at padding, which does
    not count. With σ the logistic function and T the set of non-padding tokens::

        L_Disc = (1/|T|) Σ_{t∈T} −[ y_t log σ(x_t) + (1 − y_t) log(1 − σ(x_t)) ].

    ``reduction="sum"`` returns the sum over T instead of the mean (for a mean over the global
    batch of several processes). ELECTRA's total loss is L_MLM + λ·L_Disc (λ = 50). Computed in
    float32 or better.
    """
    if logits.shape != replaced.shape or logits.shape != padding_mask.shape or logits.dim() != 2:
        raise ValueError(
            f"logits, replaced and padding_mask must all be N×L, got {tuple(logits.shape)}, "
            f"{tuple(replaced.shape)} and {tuple(padding_mask.shape)}"
        )
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    keep = ~padding_mask.bool()
    x = upcast(logits)[keep]
    total = F.binary_cross_entropy_with_logits(x, replaced[keep].to(x.dtype), reduction="sum")
    return total if reduction == "sum" else total / keep.sum().clamp_min(1)
