"""Training: the loop, optimisers and schedules, checkpoints, device and precision."""

from selfsup.train.loop import PretrainResult, pretrain

__all__ = ["PretrainResult", "pretrain"]
