"""Optimisers (LARS, SGD, AdamW) and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from selfsup.errors import ConfigError


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman & Ginsburg 2017), as SimCLR's official code uses it.

    For each parameter w with gradient g: g ← g + λw; trust = η·‖w‖/‖g‖ (1 where either norm is 0);
    v ← m·v + lr·trust·g; w ← w − v. Parameter groups with ``lars_exclude=True`` (biases and
    normalisation parameters) get neither weight decay nor the trust ratio.
    """

    def __init__(
        self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001
    ):
        super().__init__(
            params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False)
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["lars_exclude"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(grad)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm)
                    )
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(grad, alpha=group["lr"])
                p.sub_(buffer)
        return loss


def param_groups(
    model: nn.Module, weight_decay: float, bias_lr_scale: float = 1.0, fixed_lr: tuple[nn.Parameter, ...] = ()
) -> list[dict]:
    """Weights with decay; biases and 1-D normalisation parameters without (and excluded from LARS),
    at ``bias_lr_scale`` × the learning rate (Barlow Twins: 0.0048 / 0.2). Parameters in
    ``fixed_lr`` (SimSiam's predictor) keep the peak rate: no warm-up, no decay."""
    fixed = {id(p) for p in fixed_lr}
    groups: dict[tuple[bool, bool], list] = {}
    for param in model.parameters():
        if param.requires_grad:
            groups.setdefault((param.ndim <= 1, id(param) in fixed), []).append(param)
    return [
        dict(
            params=params,
            weight_decay=0.0 if bias else weight_decay,
            lars_exclude=bias,
            lr_scale=bias_lr_scale if bias else 1.0,
            fixed_lr=is_fixed,
        )
        for (bias, is_fixed), params in sorted(groups.items())
    ]


def scaled_lr(base_lr: float, batch_size: int, scaling: str) -> float:
    return base_lr * batch_size / 256 if scaling == "linear" else base_lr


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    eta: float = 0.001,
    bias_lr_scale: float = 1.0,
    fixed_lr: tuple[nn.Parameter, ...] = (),
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, bias_lr_scale, fixed_lr)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta)
    for group in groups:
        group.pop("lars_exclude")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    raise ConfigError(f"unknown optimiser '{name}' (choose from lars, sgd, adamw)")


def optimizer_for(
    model: nn.Module, optim, lr: float, fixed_lr: tuple[nn.Parameter, ...] = ()
) -> torch.optim.Optimizer:
    """:func:`build_optimizer` of the ``optim`` section of a run's config
    (:class:`selfsup.config.OptimConfig`) at the peak rate ``lr``."""
    return build_optimizer(
        model,
        optim.name,
        lr,
        optim.momentum,
        optim.weight_decay,
        optim.lars_eta,
        optim.bias_lr_scale,
        fixed_lr,
        optim.betas,
    )


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float, schedule: str = "cosine") -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up to ``peak_lr`` over
    ``warmup_steps``, then cosine decay to 0 at ``total_steps`` (or constant)."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def clip_gradients(parameters, max_norm: float) -> None:
    """Scale each parameter's gradient down to L2 norm ``max_norm`` where it is larger, one
    parameter at a time (as DINO's official ``clip_gradients``; not one global norm)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads or max_norm <= 0:
        return
    norms = torch._foreach_norm(grads)
    scales = [torch.clamp(max_norm / (norm + 1e-6), max=1.0) for norm in norms]
    torch._foreach_mul_(grads, scales)


def set_lr(optimizer: torch.optim.Optimizer, lr: float, peak_lr: float | None = None) -> None:
    """The scheduled rate ``lr`` for every group (× its ``lr_scale``); ``peak_lr`` for fixed-rate groups."""
    for group in optimizer.param_groups:
        base = peak_lr if group.get("fixed_lr") and peak_lr is not None else lr
        group["lr"] = base * group.get("lr_scale", 1.0)
