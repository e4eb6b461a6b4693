"""The one training loop every method runs through: :func:`run_pretraining` builds the run
(:func:`selfsup.train.run.build_run`), then :func:`fit` calls :func:`train_one_epoch` for each
epoch, which calls :func:`step` for each batch; callbacks (:mod:`selfsup.train.callbacks`) do
everything else: files, checkpoints, monitors, progress, held-out results and the encoder.

data (uint8, on the device) -> modality's views -> method(views) -> MethodOutput -> loss ->
optimiser step -> method.after_step(output) -> callbacks. Each epoch draws its data order and
augmentations from generators seeded by (seed, epoch), so a run resumed from a checkpoint
continues exactly as an uninterrupted one would.

Under ``torchrun`` the same loop runs in every process with DistributedDataParallel: the batch
size is the global batch; every process draws the same data order and the augmentation
parameters of the whole global batch and takes its own share of both, so the images and their
views do not depend on the number of processes (:mod:`selfsup.distributed`). Only the process of
rank 0 writes files and prints.
"""

from __future__ import annotations

import functools
import math
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from selfsup import distributed
from selfsup.config import CONFIG_FILE, Config
from selfsup.data import DataSplits
from selfsup.errors import ConfigError, DataError, TrainingError
from selfsup.methods import Method, Progress
from selfsup.train import speed
from selfsup.train.callbacks import (
    METRICS_FILE,
    Callback,
    Checkpoint,
    CollapseGuard,
    CollapseMetrics,
    EpochHook,
    ProgressBar,
    RunFiles,
    StepEnd,
    TensorBoard,
)
from selfsup.train.checkpoint import CHECKPOINT_FILE
from selfsup.train.device import autocast, resolve_device
from selfsup.train.held_out import EncoderExport, HeldOutResults
from selfsup.train.machine import return_freed_memory
from selfsup.train.optim import clip_gradients, set_lr
from selfsup.train.run import Run, build_run, epoch_seed


@dataclass
class PretrainResult:
    run_dir: Path
    epochs: int
    final_loss: float
    seconds: float
    history: list[dict] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)  # the pretext task's own, on the test split
    saved: bool = True  # False in the torchrun processes other than rank 0, which write nothing
    speed: dict = field(default_factory=dict)  # what selfsup.train.speed chose, where it ran


def run_pretraining(
    config: Config,
    splits: DataSplits,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict, Method], None] | None = None,
    callbacks: list[Callback] | None = None,
) -> PretrainResult:
    """Pretrain ``config.method_name`` on ``splits.train`` and save everything in ``run_dir``.

    Writes ``config.yaml``, one JSON line per epoch in ``metrics.jsonl``, ``checkpoint.pt`` after
    every epoch (atomically), and at the end ``encoder.safetensors`` + ``encoder.json``.
    ``on_epoch_end(record, method)`` receives each epoch's metrics dict and the method (its
    ``encoder`` included) after the epoch's checkpoint is written, in every process; an exception
    there stops the run. ``callbacks`` are called after the default ones
    (:func:`default_callbacks`). A run refused before its first epoch ends (e.g. a batch too small
    for BatchNorm, found on the first step) leaves ``run_dir`` as it was. Under torchrun, a peer
    that fails or hangs past ``train.dist_timeout`` ends the run with a :class:`TrainingError` in
    the others.
    """
    if hasattr(splits.train, "texts"):  # the heap would keep every batch length's blocks (train.machine)
        return_freed_memory()
    device = distributed.setup(resolve_device(config.train.device), config.train.dist_timeout)
    run, files = None, {}
    try:
        # rank 0's: the default name holds the time
        run_dir = Path(distributed.broadcast_object(str(run_dir)))
        files = _snapshot(run_dir)
        run = build_run(config, splits, run_dir, device, resume, overwrite)
        shown = progress and distributed.is_main()
        return fit(run, default_callbacks(config, shown, on_epoch_end) + list(callbacks or []))
    except (ConfigError, DataError):
        if run is None or run.epochs_trained == 0:  # refused before learning: leave the directory
            _restore_snapshot(run_dir, files)
        raise
    except Exception as exc:
        if distributed.active() and distributed.is_peer_failure(exc):
            raise distributed.peer_failure(exc, "during training") from None
        raise


def _snapshot(run_dir: Path) -> dict:
    """What rank 0 finds in ``run_dir`` before a run starts: whether it exists, and its config and
    metrics files' content (a run refused on its first step puts them back)."""
    if not distributed.is_main():
        return {}
    saved = {p: p.read_bytes() for p in (run_dir / CONFIG_FILE, run_dir / METRICS_FILE) if p.exists()}
    return {"fresh": not run_dir.exists(), "files": saved}


def _restore_snapshot(run_dir: Path, snapshot: dict) -> None:
    if snapshot.get("fresh") and not (run_dir / CHECKPOINT_FILE).exists():
        shutil.rmtree(run_dir, ignore_errors=True)
    for path, content in snapshot.get("files", {}).items():
        path.write_bytes(content)


def default_callbacks(config: Config, progress: bool, on_epoch_end=None) -> list[Callback]:
    """The callbacks of a run, in order; the ones that write are rank 0's only. The order matters:
    :class:`CollapseMetrics` adds the monitors to the epoch's record before it is written, and
    :class:`CollapseGuard` acts on them only once the epoch is saved. ``progress``: a progress bar
    (rank 0 only)."""
    main = distributed.is_main()
    monitor = CollapseMetrics()
    callbacks: list[Callback] = [monitor]
    if main:
        callbacks += [Checkpoint(), RunFiles()]  # an epoch is listed once its checkpoint is saved
        if config.train.tensorboard:
            callbacks.append(TensorBoard())
    if progress:
        callbacks.append(ProgressBar())
    callbacks.append(CollapseGuard(monitor))
    if on_epoch_end is not None:
        callbacks.append(EpochHook(on_epoch_end))
    if main:
        callbacks += [HeldOutResults(), EncoderExport()]
    return callbacks


def fit(run: Run, callbacks: list[Callback]) -> PretrainResult:
    """Train ``run`` from its start epoch to ``train.epochs``, calling ``callbacks``' hooks."""
    if distributed.is_main():
        run.run_dir.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves no empty directory
    for callback in callbacks:
        callback.on_fit_start(run)
    run.started = time.perf_counter()
    compiled = choose_speed(run)
    for epoch in range(run.start_epoch, run.epochs):
        for callback in callbacks:
            callback.on_epoch_start(run, epoch)
        record = train_one_epoch(run, epoch, callbacks)
        run.history.append(record)
        run.epochs_trained += 1
        for callback in callbacks:
            callback.on_epoch_end(run, record)
    run.guard.remove()  # where no step ran (a finished run resumed)
    speed.uncompile(compiled)
    for callback in callbacks:
        callback.on_fit_end(run)
    final_loss = run.history[-1]["loss"] if run.history else math.nan
    seconds = time.perf_counter() - run.started
    saved = distributed.is_main()
    return PretrainResult(
        run.run_dir,
        run.epochs,
        final_loss,
        seconds,
        run.history,
        run.test_metrics,
        saved=saved,
        speed=run.speed,
    )


def choose_speed(run: Run) -> list[torch.nn.Module]:
    """Compile the method's modules (``train.compile``) and measure the precision
    (``train.precision=auto`` where bf16 is a candidate) on dry steps of the first batch
    (:mod:`selfsup.train.speed`; a resumed run keeps its checkpoint's choice); does nothing where
    neither applies or no step is left to train. Returns the compiled modules."""
    tc = run.config.train
    needed = speed.wants_compile(tc.compile, run.device) or speed.measures_precision(tc.precision, run.device)
    if not needed or run.start_epoch >= run.epochs or not run.steps_per_epoch:
        return []
    index, batch = gather(run, run.share(run.order(run.start_epoch), 0)).arrived()
    views = run.modality.views(batch, torch.Generator(device=run.device).manual_seed(tc.seed))
    inputs = {"progress": run.progress(run.start_epoch, 0)}
    if run.labels is not None:
        inputs["labels"] = run.labels[index]
    choices = speed.choose(
        run.method, views, inputs, run.amp_dtype, run.device, tc.precision, tc.compile, recorded=run.speed
    )
    run.amp_dtype, run.speed = choices.amp_dtype, choices.summary()
    speed.report(choices)
    return choices.compiled


def train_one_epoch(run: Run, epoch: int, callbacks: list[Callback]) -> dict:
    """One pass over the training data in the epoch's order; returns the epoch's record: mean
    loss and loss terms (of the global batch), last learning rate, speed and time."""
    tc = run.config.train
    run.method.train()
    torch.manual_seed(epoch_seed(tc.seed, epoch, 0, distributed.rank()))  # each process its own stream
    order, generator = run.order(epoch), run.augment_generator(epoch)
    started = time.perf_counter()
    log, lr = LossLog(log_interval(run)), 0.0

    # where gathering costs something (decoding compressed images, sending to a GPU) the next batch
    # is gathered while this one trains; the order is fixed in advance, so this changes no number.
    # Slicing an uint8 tensor on the CPU (2 ms for 256 images of 96 px from a memory-mapped store)
    # costs less than handing it over between threads (the digits demo ran slower with the thread)
    ahead = run.device.type == "cuda" or not isinstance(run.inputs, torch.Tensor)
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="selfsup-gather") if ahead else _Inline() as pool
    ):
        steps = run.steps_in(epoch)
        upcoming = pool.submit(gather, run, run.share(order, 0)) if steps else None
        for step_in_epoch in range(steps):
            index, batch = upcoming.result().arrived()
            if step_in_epoch + 1 < steps:
                upcoming = pool.submit(gather, run, run.share(order, step_in_epoch + 1))
            outcome = step(run, index, generator, run.progress(epoch, step_in_epoch), batch, log)
            lr = outcome.lr
            for callback in callbacks:
                callback.on_step_end(run, outcome)
    seconds = time.perf_counter() - started
    count = steps
    return {
        "epoch": epoch + 1,
        "loss": log.loss_sum / count,
        **{k: v / count for k, v in log.term_sums.items()},
        "lr": lr,
        "images_per_s": count * tc.batch_size / seconds,
        "seconds": seconds,
    }


def log_interval(run: Run) -> int:
    """Steps between two reads of the losses from the device (``train.log_every``; 0: every step
    on the CPU, where the step is synchronous anyway and a NaN is then caught before the weights
    change, and every 25 steps elsewhere, where a read stalls the device's queue)."""
    every = run.config.train.log_every
    return every if every > 0 else (1 if run.device.type == "cpu" else 25)


class LossLog:
    """The loss and loss terms of each step, kept on the device until they are read: every
    ``every`` steps and at the last step of the epoch, all the steps since the last read are
    averaged over the processes in one collective and copied to the host in one transfer.

    The sums are those of the global batch's values step by step, added in step order in Python
    floats, so the epoch's record does not depend on ``every``. A non-finite loss raises
    :class:`TrainingError` at the read that sees it, naming the step where it appeared; with
    ``every = 1`` that is before the step's backward pass."""

    def __init__(self, every: int = 1):
        self.every = every
        self.pending: list[tuple[Progress, tuple[str, ...], torch.Tensor]] = []
        self.loss_sum, self.term_sums = 0.0, {}

    def add(self, progress: Progress, output) -> None:
        terms = output.terms
        values = torch.stack([output.loss.detach().float(), *(v.detach().float() for v in terms.values())])
        self.pending.append((progress, tuple(terms), values))

    def due(self, progress: Progress) -> bool:
        position = progress.step % progress.steps_per_epoch + 1
        last = position == progress.steps_per_epoch or progress.step + 1 == progress.total_steps
        return position % self.every == 0 or last

    def read(self, run: Run) -> float:
        """Add the pending steps to the sums (a host synchronisation); returns the last step's loss."""
        flat = distributed.mean_over_processes(torch.cat([values for _, _, values in self.pending]))
        flat, start, loss = flat.tolist(), 0, math.nan
        for progress, keys, _ in self.pending:
            loss, terms = flat[start], flat[start + 1 : start + 1 + len(keys)]
            start += 1 + len(keys)
            if not math.isfinite(loss):
                raise TrainingError(non_finite_message(run, progress, loss))
            self.loss_sum += loss
            for key, value in zip(keys, terms):
                self.term_sums[key] = self.term_sums.get(key, 0.0) + value
        self.pending.clear()
        return loss


class _Inline:
    """An executor that runs each task at once, in the calling thread."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, *args) -> Future:
        future = Future()
        future.set_result(fn(*args))
        return future


@dataclass
class Gathered:
    """A batch's training items ``index`` and their stored inputs ``batch``, on the run's device;
    on a GPU, made on a side stream and ``ready`` once that stream's copies are done."""

    index: torch.Tensor
    batch: torch.Tensor
    ready: torch.cuda.Event | None = None

    def arrived(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``index`` and ``batch`` for the current (compute) stream: it waits for the copies on
        the device, the host does not wait."""
        if self.ready is not None:
            stream = torch.cuda.current_stream()
            stream.wait_event(self.ready)
            for tensor in (self.index, self.batch):
                tensor.record_stream(stream)  # their memory is not reused before the step is done
        return self.index, self.batch


def gather(run: Run, index: torch.Tensor) -> Gathered:
    """The stored inputs ``index`` (a host tensor) and ``index`` itself on the run's device: read
    (and decoded) on the host; on a GPU, sent from pinned memory on a side stream, so that the copy
    (or a decoding on the GPU) overlaps the step before it."""
    if run.device.type != "cuda":
        return Gathered(index, run.inputs[index].to(run.device))
    stream = _side_stream(run.device)
    with torch.cuda.stream(stream):
        moved = [
            t.pin_memory().to(run.device, non_blocking=True) if t.device.type == "cpu" else t
            for t in (index, run.inputs[index])
        ]
        ready = torch.cuda.Event()
        ready.record(stream)
    return Gathered(*moved, ready)


@functools.cache
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device)


def step(
    run: Run,
    index: torch.Tensor,
    generator,
    progress: Progress,
    batch: torch.Tensor | None = None,
    log: LossLog | None = None,
) -> StepEnd:
    """One optimiser step on the training items ``index`` (this process's share of the batch;
    ``batch``: their inputs, gathered already by :func:`gather`): views, forward, the loss kept
    in ``log`` (read every step without one), backward (scaled for fp16), gradient clipping, the
    optimiser, then the method's ``after_step``. Nothing in it waits for the device except the
    reads of ``log``. Raises :class:`TrainingError` on a NaN or infinite loss at the read that
    sees it (:class:`LossLog`): every step on the CPU, before the weights change."""
    lr = run.lr_schedule[progress.step]
    set_lr(run.optimizer, lr, run.peak_lr)
    if batch is None:
        index, batch = gather(run, index.cpu()).arrived()
    views = run.modality.views(batch, generator)
    labels = {"labels": run.labels[index]} if run.labels is not None else {}
    with autocast(run.device, run.amp_dtype):
        output = run.model(views, progress=progress, **labels)
    run.guard.remove()  # the first forward pass did not raise: the shapes are fine
    log = log if log is not None else LossLog()
    log.add(progress, output)
    loss = log.read(run) if log.due(progress) else None  # the global batch's loss, where read
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(output.loss).backward()
    if run.config.optim.clip_grad > 0:
        run.scaler.unscale_(run.optimizer)
        clip_gradients(run.method.parameters(), run.config.optim.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.method.after_step(output, progress)
    return StepEnd(output, progress, loss, lr)


def non_finite_message(run: Run, progress: Progress, loss: float) -> str:
    epoch, step_in_epoch = divmod(progress.step, progress.steps_per_epoch)
    saved = f"The last good checkpoint (epoch {epoch}) is {run.checkpoint_path}. " if epoch > 0 else ""
    return (
        f"loss became {loss} at epoch {epoch + 1}, step {step_in_epoch + 1}; stopped. "
        + saved
        + "Try a lower optim.lr or train.precision=fp32."
    )
