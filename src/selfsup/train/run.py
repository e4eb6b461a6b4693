"""Setup: everything a training run holds before its first step (:class:`Run`), made by
:func:`build_run` from a configuration and the data, and nothing else.

The order of the steps is part of the result: the seed is set after the precision is chosen and
before the encoder is built, and every check that can refuse the run happens before the run
directory is made.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from selfsup import distributed
from selfsup.augment.ops import BatchShard
from selfsup.config import Config
from selfsup.data import DataSplits
from selfsup.errors import ConfigError, DataError, SelfsupError
from selfsup.methods import Method, Progress, get_method
from selfsup.train.batch_guard import MIN_BATCH_NORM_VALUES, BatchNormGuard, check_batch_floor
from selfsup.train.callbacks import read_history, restored_history
from selfsup.train.checkpoint import CHECKPOINT_FILE, check_resumable, keep_schedules, load_checkpoint
from selfsup.train.device import resolve_precision
from selfsup.train.modality import Modality, modality_of
from selfsup.train.optim import lr_at, optimizer_for, scaled_lr


@dataclass
class Run:
    """What setup makes and every epoch and step uses.

    ``method`` is the bare method (its state is checkpointed), ``model`` what the step calls (the
    method, or DistributedDataParallel around it). ``inputs`` are the stored training inputs, on
    the host (uint8 images or token ids, often memory-mapped; each batch is sent to the device),
    ``labels`` theirs where the method needs them, on the device.
    ``lr_schedule[k]`` is the learning rate of step k, computed once (DINO's ``main_dino.py``
    does the same). ``scaler`` is a GradScaler enabled only for float16.
    """

    config: Config
    splits: DataSplits
    run_dir: Path
    device: torch.device
    amp_dtype: torch.dtype | None
    modality: Modality
    method: Method
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    inputs: torch.Tensor
    labels: torch.Tensor | None
    test_inputs: torch.Tensor | None
    peak_lr: float
    lr_schedule: list[float]
    steps_per_epoch: int
    guard: BatchNormGuard
    start_epoch: int = 0
    epochs_trained: int = 0  # in this call (a resumed run starts at start_epoch)
    history: list[dict] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    speed: dict = field(default_factory=dict)  # the precision and compilation chosen (train.speed)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    @property
    def local_batch(self) -> int:
        return self.config.train.batch_size // distributed.world_size()

    @property
    def total_steps(self) -> int:
        return len(self.lr_schedule)

    @property
    def epochs(self) -> int:
        """Epochs the run trains: ``train.epochs``, fewer where ``train.max_steps`` ends it sooner."""
        if not self.steps_per_epoch:
            return self.config.train.epochs
        return -(-self.total_steps // self.steps_per_epoch)

    def steps_in(self, epoch: int) -> int:
        """Steps of ``epoch``: all of them, but for a last epoch that ``train.max_steps`` cuts."""
        return max(0, min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch))

    def progress(self, epoch: int, step_in_epoch: int) -> Progress:
        return Progress(epoch * self.steps_per_epoch + step_in_epoch, self.total_steps, self.steps_per_epoch)

    def order(self, epoch: int) -> torch.Tensor:
        """The data order of ``epoch``: a permutation drawn from (seed, epoch), the same in every
        process, arranged by the modality (text: batches of similar lengths)."""
        generator = torch.Generator().manual_seed(epoch_seed(self.config.train.seed, epoch, 1))
        return self.modality.batch_order(torch.randperm(len(self.inputs), generator=generator), generator)

    def share(self, order: torch.Tensor, step_in_epoch: int) -> torch.Tensor:
        """This process's share of the global batch ``step_in_epoch`` of ``order``: the processes
        read disjoint rows of the same store."""
        start = step_in_epoch * self.config.train.batch_size + distributed.rank() * self.local_batch
        return order[start : start + self.local_batch]

    def augment_generator(self, epoch: int):
        """The augmentation generator of ``epoch``: the same draws for the global batch in every
        process, each process taking its share (:class:`BatchShard`)."""
        tc = self.config.train
        generator = torch.Generator(device=self.device).manual_seed(epoch_seed(tc.seed, epoch, 2))
        world = distributed.world_size()
        return (
            BatchShard(generator, tc.batch_size, distributed.rank() * self.local_batch)
            if world > 1
            else generator
        )


def epoch_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """A distinct, reproducible seed for each (run seed, epoch, random stream, process rank)."""
    return (seed * 1_000_003 + epoch * 7_919 + stream + rank * 2**40) % (2**63)


def build_run(
    config: Config, splits: DataSplits, run_dir: Path, device: torch.device, resume: bool, overwrite: bool
) -> Run:
    """Check the run, build its method, optimiser and schedules, and restore its checkpoint when
    resuming. Raises :class:`SelfsupError` (an existing run without ``resume`` or ``overwrite``, a
    checkpoint that does not fit), :class:`DataError` (data the method cannot learn from) or
    :class:`ConfigError` (a batch the data or the loss cannot fill), all before the run directory
    is made."""
    has_checkpoint = distributed.broadcast_object((run_dir / CHECKPOINT_FILE).exists())
    if has_checkpoint and not resume and not overwrite:
        raise SelfsupError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    modality = modality_of(config, splits)
    amp_dtype = modality.precision(resolve_precision(config.train.precision, device), device, splits)
    torch.manual_seed(config.train.seed)
    prepared = modality.prepare(splits, run_dir if resume else None)
    _check_batch(config, len(prepared.train), modality)
    method, model = _build_method(config, prepared.encoder, device, modality)
    steps_per_epoch = len(prepared.train) // config.train.batch_size
    peak_lr = scaled_lr(config.optim.lr, config.train.batch_size, config.optim.lr_scaling)
    if method.needs_labels and not splits.train.fully_labelled:
        raise DataError(
            f"method '{config.method_name}' as configured learns from labels, and "
            f"{config.data.spec} has unlabelled training images"
        )
    run = Run(
        config=config,
        splits=splits,
        run_dir=run_dir,
        device=device,
        amp_dtype=amp_dtype,
        modality=modality,
        method=method,
        model=model,
        optimizer=optimizer_for(method, config.optim, peak_lr, method.fixed_lr_parameters()),
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        inputs=prepared.train,
        labels=splits.train.labels if method.needs_labels else None,
        test_inputs=prepared.test,
        peak_lr=peak_lr,
        lr_schedule=[],  # after the checkpoint, which may restore the schedules' lengths
        steps_per_epoch=steps_per_epoch,
        guard=_guard(config, model),
    )
    if resume and has_checkpoint:
        restore(run)
    elif resume and distributed.is_main():
        print(f"selfsup: no checkpoint in {run_dir}; starting from epoch 1", file=sys.stderr)
    run.lr_schedule = lr_schedule(config, steps_per_epoch, peak_lr)
    # the inputs stay where they are (a memory-mapped store may exceed the device's memory): each
    # batch is gathered on the host and sent (:func:`selfsup.train.loop.gather`); compressed images
    # are decoded on the GPU where there is one
    if device.type == "cuda" and hasattr(run.inputs, "decode_on"):
        run.inputs = run.inputs.decode_on(device)
    run.labels = run.labels.to(device) if run.labels is not None else None
    return run


def lr_schedule(config: Config, steps_per_epoch: int, peak_lr: float) -> list[float]:
    """The learning rate of every step of the run: linear warm-up, then cosine decay (or constant),
    over ``train.epochs`` or ``train.max_steps``, whichever ends first."""
    total_steps = config.train.epochs * steps_per_epoch
    if config.train.max_steps:
        total_steps = min(total_steps, config.train.max_steps)
    warmup_steps = min(total_steps, round(config.optim.warmup_epochs * steps_per_epoch))
    return [
        lr_at(step, total_steps, warmup_steps, peak_lr, config.optim.schedule) for step in range(total_steps)
    ]


def _check_batch(config: Config, items: int, modality: Modality) -> None:
    batch_size = config.train.batch_size
    if batch_size > items:
        raise ConfigError(
            f"batch size {batch_size} is larger than the training data ({items} {modality.unit}); "
            f"pass --batch-size {items} or less"
        )
    local_batch = distributed.check_batch(batch_size)
    floor = get_method(config.method_name).build.batch_floor(config.method)
    check_batch_floor(config.method_name, floor, batch_size, local_batch, distributed.world_size())


def _build_method(
    config: Config, encoder, device: torch.device, modality: Modality
) -> tuple[Method, torch.nn.Module]:
    """The method on ``device`` (SyncBatchNorm, channels_last where they apply), and the module
    the step calls: the method, or DistributedDataParallel around it in several processes."""
    tc = config.train
    method = get_method(config.method_name).build(encoder, config.method).to(device)
    world = distributed.world_size()
    if world > 1 and (
        tc.sync_batch_norm == "true" or (tc.sync_batch_norm == "auto" and method.global_batch_norm)
    ):
        method = distributed.convert_sync_batch_norm(method, device)
    if modality.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if world == 1:
        return method, method
    # benign: a 1×1 kernel has one memory layout under two sets of strides, and a masked one's
    # gradient (PixelCNN) comes with the other set; DDP then copies it instead of viewing it
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    model = torch.nn.parallel.DistributedDataParallel(
        method,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=method.skips_parameters,
    )
    return method, model


def _guard(config: Config, model: torch.nn.Module) -> BatchNormGuard:
    """A check, on the first forward pass, that no BatchNorm layer normalises too few values."""
    batch_size, world = config.train.batch_size, distributed.world_size()

    def message(layer: str, values: int, least: int) -> str:
        return (
            f"batch size {batch_size} is too small for {config.method_name} with this model: its "
            f"BatchNorm layer '{layer}' would normalise {values} value{'s' if values > 1 else ''} per "
            f"channel (it needs {MIN_BATCH_NORM_VALUES} or more to pass a gradient); use --batch-size "
            f"{-(-least // world) * world} or more"
        )

    return BatchNormGuard(model, batch_size, message, world)


def restore(run: Run) -> None:
    """Load the run's checkpoint into its method, optimiser and scaler, and its history; rank 0
    reads it (its file system) and shares it: a checkpoint does not depend on the process count."""
    main = distributed.is_main()
    state = distributed.broadcast_object(load_checkpoint(run.checkpoint_path) if main else None)
    check_resumable(state, run.config, run.run_dir)
    for note in keep_schedules(state, run.config):
        if main:
            print(f"selfsup: {note}", file=sys.stderr)
    try:
        run.method.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        why = next(
            (line for line in lines if line.startswith(("size mismatch", "Missing", "Unexpected"))), lines[-1]
        )
        raise SelfsupError(
            f"{run.checkpoint_path} does not fit this model ({why}); "
            "resume with the run's own data and settings"
        ) from None
    if run.scaler.is_enabled() and "scaler" in state:
        run.scaler.load_state_dict(state["scaler"])
    run.start_epoch = int(state["epoch"])
    run.speed = dict(state.get("speed") or {})
    saved = state.get("history")  # checkpoints of older versions hold none: the metrics file then
    history = None
    if main:
        history = restored_history(saved) if saved is not None else read_history(run.run_dir, run.start_epoch)
    run.history = distributed.broadcast_object(history)
