"""Training in several processes (``torchrun``): the process group, gathers of the global batch with
gradients, global BatchNorm, and the helpers that keep one process's results equal to many.

The convention every method follows: the mean over processes of each process's loss is the loss
of the global batch, and DistributedDataParallel averages the gradients over processes. Losses
of single examples (BYOL, MAE, language models) need nothing more; losses that couple the examples
of a batch (NT-Xent negatives, Barlow Twins' cross-correlation, VICReg's variance and covariance,
MoCo v3's in-batch keys, Siamese negative mining) gather the embeddings of all processes with
:func:`gather` and compute the global loss in every process. ``gather`` sums the gradients of
every process in its backward pass, so after DDP's average each process holds exactly the
gradient one process with the whole batch would have (tested on 2 CPU processes, gloo).

Outside ``torchrun`` (or with one process) every function here is the identity or a no-op.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from selfsup.errors import ConfigError, TrainingError


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or with its environment) in a group of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank: from the process group, or from torchrun's environment before it exists."""
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Only the process of rank 0 writes files and prints."""
    return rank() == 0


def setup(device: torch.device, timeout_s: float) -> torch.device:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on the CPU; every
    collective fails after ``timeout_s`` seconds instead of waiting for a dead peer forever) and
    return the device of this process (``cuda:LOCAL_RANK`` on GPUs)."""
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(
                backend,
                timeout=datetime.timedelta(seconds=timeout_s),
                device_id=device if device.type == "cuda" else None,
            )
        except dist.DistError as exc:
            raise TrainingError(
                f"process {os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')} could not join "
                f"the others at {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} "
                f"within train.dist_timeout={timeout_s:g} s: {first_line(exc)}"
            ) from None
    return device


def shutdown() -> None:
    """Leave the process group (also after a failed collective, so that the process exits cleanly)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


PEER_FAILURE_MARKS = (
    "gloo",
    "NCCL",
    "ProcessGroup",
    "pair closure",
    "Connection closed",
    "Connection reset",
    "Timed out",
)
"""Words of the errors a collective raises when a peer is gone (gloo's are plain RuntimeErrors,
some without its name, e.g. "Application timeout caused pair closure")."""


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed collective: a peer that died (closed connection) or hung (timeout)."""
    if isinstance(exc, dist.DistError):
        return True
    message = str(exc)
    return isinstance(exc, RuntimeError) and any(word in message for word in PEER_FAILURE_MARKS)


def peer_failure(exc: BaseException, where: str) -> TrainingError:
    return TrainingError(
        f"process {rank()} of {world_size()} lost the others {where}: {first_line(exc)}. Another "
        "process failed, was killed or hung past train.dist_timeout; its own log says why"
    )


def check_batch(batch_size: int) -> int:
    """The per-process share of the global ``batch_size``."""
    world = world_size()
    if batch_size % world:
        raise ConfigError(
            f"the batch size is the global batch and must divide evenly over the {world} processes; "
            f"got {batch_size} (try {batch_size - batch_size % world or world})"
        )
    return batch_size // world


def _all_gather(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` concatenated along dimension 0, in rank order (no gradient)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


class _Gather(torch.autograd.Function):
    """All-gather along dimension 0 whose backward sums the incoming gradients of all processes
    and returns this process's rows (each process computed its loss from the whole gathered batch)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rows = len(x)
        return _all_gather(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather(x: torch.Tensor) -> torch.Tensor:
    """The rows of ``x`` from every process, in rank order (the global batch), with gradients
    flowing back to each process's own rows. Every process must pass the same shape."""
    if not active():
        return x
    return _Gather.apply(x) if x.requires_grad else _all_gather(x)


@torch.no_grad()
def own_share(x: torch.Tensor, n: int, dim: int = 0) -> torch.Tensor:
    """This process's ``n`` rows along ``dim`` of ``x``, something drawn or computed for the global
    batch of world_size·n rows in rank order (the order :func:`gather` assembles)."""
    return x.narrow(dim, rank() * n, n)


def mean_over_processes(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over processes (no gradient): logged losses, DINO's centre."""
    if not active():
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / dist.get_world_size()


def global_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """This process's share of a mean over all processes' items: ``total`` (a sum over this
    process's items, with gradient) divided by the mean item count per process, so that the mean
    over processes is Σ totals / Σ counts (token losses, where each process has its own number of
    predicted tokens). One process: ``total / count``."""
    count = count.detach().to(total.dtype)
    return total / mean_over_processes(count).clamp_min(1)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` in every process (picklable objects: paths, checkpoints, tokenizers)."""
    if not active():
        return obj
    holder = [obj if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class _GlobalBatchNormFunction(torch.autograd.Function):
    """Batch normalisation with the statistics of all processes' inputs (SyncBatchNorm's algorithm
    on any backend). Forward: each process's per-channel mean and variance, gathered with the counts
    and combined (Chan et al.'s parallel variance), then PyTorch's fused normalisation with them.
    Backward: the two per-channel sums of the gradient that BatchNorm's backward needs, Σdy and
    Σdy·(x − μ), are summed over processes, so each process gets the gradient of the sum of all
    processes' losses with respect to its own inputs (the convention of :func:`gather`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, stats_out: list):
        dims = [0] + list(range(2, x.dim()))
        var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
        count = torch.full((1,), x.numel() / x.shape[1], dtype=torch.float32, device=x.device)
        stats = _all_gather(torch.cat([mean, var, count])[None])
        channels = len(mean)
        means, variances, counts = stats[:, :channels], stats[:, channels : 2 * channels], stats[:, -1:]
        total = counts.sum()
        mean = (means * counts).sum(dim=0) / total
        var = ((variances + (means - mean) ** 2) * counts).sum(dim=0) / total
        stats_out[:] = [mean, var, total]
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.total = float(total)
        return F.batch_norm(x, mean, var, weight, bias, training=False, eps=eps)

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, invstd = ctx.saved_tensors
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        grad_f = grad.float()
        centred = x.float() - mean.view(shape)
        sums = torch.cat([grad_f.sum(dim=dims), (grad_f * centred).sum(dim=dims)])
        local_dy, local_dy_xmu = sums.clone().chunk(2)
        dist.all_reduce(sums)
        sum_dy, sum_dy_xmu = sums.chunk(2)
        scale = invstd if weight is None else invstd * weight.float()
        grad_input = None
        if ctx.needs_input_grad[
            0
        ]:  # (dy − Σdy/N − (x − μ)·invstd²·Σdy(x − μ)/N)·invstd·γ, in place in ``centred``
            grad_input = centred.mul_((-(invstd**2) * sum_dy_xmu / ctx.total).view(shape)).add_(grad_f)
            grad_input = grad_input.sub_((sum_dy / ctx.total).view(shape)).mul_(scale.view(shape)).to(x.dtype)
        grad_weight = (
            (local_dy_xmu * invstd).to(weight.dtype)
            if weight is not None and ctx.needs_input_grad[1]
            else None
        )
        grad_bias = local_dy.to(weight.dtype) if weight is not None and ctx.needs_input_grad[2] else None
        return grad_input, grad_weight, grad_bias, None, None


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on any backend (torch's
    ``SyncBatchNorm`` runs on GPUs only): the output and its gradients equal BatchNorm over all
    processes' inputs (:class:`_GlobalBatchNormFunction`). One process, or eval mode: BatchNorm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N×C...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        self._check_input_dim(x)
        stats: list = []
        out = _GlobalBatchNormFunction.apply(x, self.weight, self.bias, self.eps, stats)
        if self.track_running_stats:
            mean, var, total = stats
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return out


def convert_sync_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every BatchNorm layer normalising over the global batch: torch's
    ``SyncBatchNorm`` on CUDA (its fused kernels), :class:`GlobalBatchNorm` elsewhere. Parameters
    and statistics are kept (the same tensors)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_global_batch_norm(module)


def _to_global_batch_norm(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        converted.weight, converted.bias = module.weight, module.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(converted, name, getattr(module, name))
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, _to_global_batch_norm(child))
    return module
