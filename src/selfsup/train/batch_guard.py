"""Batches too small to learn from, refused before they waste a run.

Two kinds: the loss's own floor (NT-Xent needs other images as negatives; Barlow Twins
standardises each feature over the batch), which each method states
(:meth:`selfsup.methods.Method.batch_floor`) and :func:`check_batch_floor` checks before training;
and BatchNorm's, which depends on the model and the image size, so :class:`BatchNormGuard` checks
it on the first training forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn
from torch.nn.modules.batchnorm import SyncBatchNorm, _BatchNorm

from selfsup.distributed import GlobalBatchNorm
from selfsup.errors import ConfigError
from selfsup.methods.base import BatchFloor

MIN_BATCH_NORM_VALUES = 3
"""Values per channel a BatchNorm layer needs in training: with 1 PyTorch stops with a bare
error; with 2 every normalised value is ±1 whatever the input, so no gradient passes the layer and
the layers below it stop learning without any error."""


def check_batch_floor(
    method: str, floor: BatchFloor | None, batch_size: int, local_batch: int, processes: int
) -> None:
    """Raise :class:`ConfigError` where the global batch (or, for a per-process floor, each
    process's share) is below ``floor``."""
    if floor is None:
        return
    batch = local_batch if floor.per_process else batch_size
    if batch < floor.size:
        share = f" ({local_batch} per process)" if floor.per_process and processes > 1 else ""
        least = floor.size * (processes if floor.per_process else 1)
        raise ConfigError(
            f"batch size {batch_size}{share} is too small for {method}: {floor.reason}; "
            f"use --batch-size {least} or more"
        )


class BatchNormGuard:
    """Forward pre-hooks on every BatchNorm layer of ``model`` that raise :class:`ConfigError` when,
    in training mode, a layer would normalise fewer than :data:`MIN_BATCH_NORM_VALUES` values per
    channel (the batch × the positions of its feature map; × ``processes`` where the layer
    normalises over all processes). ``message(layer, values, least_batch)`` words the error,
    ``least_batch`` being the smallest batch the layer would accept (BatchNorm's input grows in
    proportion to the batch). Call :meth:`remove` after the first forward pass: shapes do not
    change after it."""

    def __init__(
        self, model: nn.Module, batch_size: int, message: Callable[[str, int, int], str], processes: int = 1
    ):
        self.handles = []
        for name, module in model.named_modules():
            if isinstance(module, _BatchNorm):
                synced = isinstance(module, (SyncBatchNorm, GlobalBatchNorm))
                self.handles.append(
                    module.register_forward_pre_hook(
                        self._hook(name, batch_size, message, processes if synced else 1)
                    )
                )

    @staticmethod
    def _hook(name: str, batch_size: int, message: Callable[[str, int, int], str], processes: int):
        def check(module: nn.Module, inputs) -> None:
            x = inputs[0]
            if not module.training or x.dim() < 2:
                return
            values = x.numel() // x.shape[1] * processes
            if values < MIN_BATCH_NORM_VALUES:
                least = math.ceil(batch_size * MIN_BATCH_NORM_VALUES / max(values, 1))
                raise ConfigError(message(name.removeprefix("module."), values, least))

        return check

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
