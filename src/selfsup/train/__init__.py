"""Training: setup (:mod:`.run`), the loop and its step (:mod:`.loop`), callbacks, optimisers and
schedules, checkpoints, device and precision."""

from selfsup.train.callbacks import Callback, read_history
from selfsup.train.loop import PretrainResult, default_callbacks, fit, run_pretraining, step, train_one_epoch
from selfsup.train.run import Run, build_run

__all__ = [
    "Callback",
    "PretrainResult",
    "Run",
    "build_run",
    "default_callbacks",
    "fit",
    "run_pretraining",
    "read_history",
    "step",
    "train_one_epoch",
]
