"""The one training loop every method runs through.

data (uint8, in memory) -> augment on the device -> method(views) -> loss -> optimiser step.
Each epoch draws its data order and augmentations from generators seeded by (seed, epoch), so a
run resumed from a checkpoint continues exactly as an uninterrupted one would.

Under ``torchrun`` the same loop runs in every process with DistributedDataParallel: the batch
size is the global batch; every process draws the same data order and the augmentation
parameters of the whole global batch and takes its own share of both, so the images and their
views do not depend on the number of processes (:mod:`selfsup.distributed`). Only the process of
rank 0 writes files and prints.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from selfsup import distributed
from selfsup.augment import ViewAugmenter
from selfsup.augment.ops import BatchShard
from selfsup.config import Config, save_config
from selfsup.data import DataSplits, TextDataset
from selfsup.data.tokenizer import (
    TOKENIZER_FILE,
    load_tokenizer,
    pack_documents,
    save_tokenizer,
    train_tokenizer,
    trim_padding,
)
from selfsup.errors import ConfigError, DataError, SelfsupError, TrainingError
from selfsup.jsonfile import to_json
from selfsup.methods import Method, get_method
from selfsup.models.backbones import resnet_last_stage_input_side
from selfsup.models.encoder import Encoder, channel_stats, model_input, save_encoder
from selfsup.models.text import TextEncoder
from selfsup.train.batch_guard import MIN_BATCH_NORM_VALUES, BatchNormGuard, check_batch_floor
from selfsup.train.checkpoint import (
    CHECKPOINT_FILE,
    check_resumable,
    keep_schedules,
    load_checkpoint,
    save_checkpoint,
)
from selfsup.train.device import autocast, resolve_device, resolve_precision
from selfsup.train.machine import machine_info, peak_memory_mb
from selfsup.train.monitors import collapse_message, collapse_metrics
from selfsup.train.optim import build_optimizer, clip_gradients, lr_at, scaled_lr, set_lr

METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"


@dataclass
class PretrainResult:
    run_dir: Path
    epochs: int
    final_loss: float
    seconds: float
    history: list[dict] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)  # the pretext task's own, on the test split
    saved: bool = True  # False in the torchrun processes other than rank 0, which write nothing


def epoch_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """A distinct, reproducible seed for each (run seed, epoch, random stream, process rank)."""
    return (seed * 1_000_003 + epoch * 7_919 + stream + rank * 2**40) % (2**63)


def build_encoder(config: Config, images: torch.Tensor) -> Encoder:
    mean, std = channel_stats(images)
    return Encoder(
        config.model.backbone,
        in_channels=images.shape[1],
        image_size=min(images.shape[2:]),
        mean=mean,
        std=std,
        stem=config.model.stem,
        width=config.model.width,
        depth=config.model.depth,
        patch_size=config.model.patch_size,
    )


def pretrain(
    config: Config,
    splits: DataSplits,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict, Method], None] | None = None,
) -> PretrainResult:
    """Pretrain ``config.method_name`` on ``splits.train`` and save everything in ``run_dir``.

    Writes ``config.yaml``, one JSON line per epoch in ``metrics.jsonl``, ``checkpoint.pt`` after
    every epoch (atomically), and at the end ``encoder.safetensors`` + ``encoder.json``.
    ``on_epoch_end(record, method)`` receives each epoch's metrics dict and the method (its
    ``encoder`` included) after the epoch's checkpoint is written, in every process; an exception
    there stops the run. Under torchrun, a peer that fails or hangs past ``train.dist_timeout``
    ends the run with a :class:`TrainingError` in the others.
    """
    device = distributed.setup(resolve_device(config.train.device), config.train.dist_timeout)
    run_files = [Path(run_dir) / name for name in ("config.yaml", METRICS_FILE)]
    before = {path: path.read_bytes() for path in run_files if path.exists()} if distributed.is_main() else {}
    fresh = distributed.is_main() and not Path(run_dir).exists()
    try:
        return _pretrain(
            config,
            splits,
            run_dir,
            device,
            resume,
            overwrite,
            progress and distributed.is_main(),
            on_epoch_end,
        )
    except (ConfigError, DataError):
        # refused on its first step (a batch too small for BatchNorm): leave the directory as it was
        if fresh and not (Path(run_dir) / CHECKPOINT_FILE).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        for path, content in before.items():
            path.write_bytes(content)
        raise
    except Exception as exc:
        if distributed.active() and distributed.is_peer_failure(exc):
            raise distributed.peer_failure(exc, "during training") from None
        raise


def _pretrain(
    config: Config,
    splits: DataSplits,
    run_dir: str | Path,
    device: torch.device,
    resume: bool,
    overwrite: bool,
    progress: bool,
    on_epoch_end: Callable[[dict, Method], None] | None,
) -> PretrainResult:
    main = distributed.is_main()
    run_dir = Path(distributed.broadcast_object(str(run_dir)))  # rank 0's: the default name holds the time
    checkpoint_path = run_dir / CHECKPOINT_FILE
    has_checkpoint = distributed.broadcast_object(checkpoint_path.exists())
    if has_checkpoint and not resume and not overwrite:
        raise SelfsupError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
        )

    data = splits.train
    tc = config.train
    method_class = get_method(config.method_name).build
    text = isinstance(data, TextDataset)
    if (method_class.modality == "text") != text:
        raise DataError(
            f"method '{config.method_name}' learns from {method_class.modality}s, and {config.data.spec} "
            f"holds {'texts' if text else 'images'}"
            + (" (text corpora: .txt, .csv, .tsv)" if not text else "")
        )
    amp_dtype = resolve_precision(tc.precision, device)
    if (
        not text
        and amp_dtype == torch.bfloat16
        and device.type == "cpu"
        and config.model.backbone.startswith("resnet")
    ):
        side = min(data.images.shape[2:])
        if config.augment.local_views:
            side = min(side, config.augment.local_side(side))
        if resnet_last_stage_input_side(side, config.model.stem) == 1:
            # PyTorch 2.14's CPU bf16 convolution leaves the weight gradient of the taps that only see
            # padding (should be 0) as garbage (inf/NaN) when a 3×3 convolution runs on a 1×1 map
            # (benchmarks/bf16_conv_grad.py)
            if distributed.is_main():
                warnings.warn(
                    f"training in float32: views of {side} px reach ResNet's last stage as 1×1 maps, where "
                    "bf16 convolutions on the CPU compute wrong weight gradients (PyTorch 2.14); "
                    "larger views (augment.local_size) keep bf16"
                )
            amp_dtype = None
    torch.manual_seed(tc.seed)

    if text:
        tokenizer = None
        if main:
            tokenizer = load_tokenizer(run_dir) if resume and (run_dir / TOKENIZER_FILE).exists() else None
            if tokenizer is None:
                tokenizer = train_text_tokenizer(config, data.texts)
        # trained once, by rank 0: HF's trainer is not deterministic (hash-map order), so one vocabulary for all
        encoder, inputs, test_inputs = build_text_inputs(
            config, splits, distributed.broadcast_object(tokenizer)
        )
    else:
        encoder, inputs = build_encoder(config, data.images), data.images
        test_inputs = splits.test.images if splits.test is not None else None
    if tc.batch_size > len(inputs):
        unit = ("blocks of text" if config.text.pack else "texts") if text else "images"
        raise ConfigError(
            f"batch size {tc.batch_size} is larger than the training data ({len(inputs)} {unit}); "
            f"pass --batch-size {len(inputs)} or less"
        )
    world, rank = distributed.world_size(), distributed.rank()
    local_batch = distributed.check_batch(tc.batch_size)
    check_batch_floor(
        config.method_name, method_class.batch_floor(config.method), tc.batch_size, local_batch, world
    )
    method = method_class(encoder, config.method).to(device)
    if world > 1 and (
        tc.sync_batch_norm == "true" or (tc.sync_batch_norm == "auto" and method.global_batch_norm)
    ):
        method = distributed.convert_sync_batch_norm(method, device)
    if tc.channels_last and not text:
        method = method.to(memory_format=torch.channels_last)
    model = method
    if world > 1:
        # benign: a 1×1 kernel has one memory layout under two sets of strides, and a masked one's
        # gradient (PixelCNN) comes with the other set; DDP then copies it instead of viewing it
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        model = torch.nn.parallel.DistributedDataParallel(
            method,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=method.skips_parameters,
        )
    peak_lr = scaled_lr(config.optim.lr, tc.batch_size, config.optim.lr_scaling)
    optimizer = build_optimizer(
        method,
        config.optim.name,
        peak_lr,
        config.optim.momentum,
        config.optim.weight_decay,
        config.optim.lars_eta,
        config.optim.bias_lr_scale,
        method.fixed_lr_parameters(),
        config.optim.betas,
    )
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    augmenter = ViewAugmenter(config.augment)

    steps_per_epoch = len(inputs) // tc.batch_size
    total_steps = tc.epochs * steps_per_epoch
    method.set_steps_per_epoch(steps_per_epoch)

    if method.needs_labels and not data.fully_labelled:
        raise DataError(
            f"method '{config.method_name}' as configured learns from labels, and "
            f"{config.data.spec} has unlabelled training images"
        )
    writer = (
        tensorboard_writer(run_dir) if tc.tensorboard and main else None
    )  # after every configuration check
    if main:
        run_dir.mkdir(
            parents=True, exist_ok=True
        )  # only now: a configuration error leaves no empty run behind
    start_epoch, history = 0, []
    if resume and has_checkpoint:
        # rank 0 reads it (its file system); a checkpoint does not depend on the number of processes
        state = distributed.broadcast_object(load_checkpoint(checkpoint_path) if main else None)
        check_resumable(state, config, run_dir)
        for note in keep_schedules(state, config):
            if main:
                print(f"selfsup: {note}", file=sys.stderr)
        try:
            method.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            why = next(
                (line for line in lines if line.startswith(("size mismatch", "Missing", "Unexpected"))),
                lines[-1],
            )
            raise SelfsupError(
                f"{checkpoint_path} does not fit this model ({why}); resume with the run's own data "
                "and settings"
            ) from None
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"])
        history = distributed.broadcast_object(read_history(run_dir, start_epoch) if main else None)
    elif resume and main:
        print(f"selfsup: no checkpoint in {run_dir}; starting from epoch 1", file=sys.stderr)
    if main:
        _write_history(run_dir, history)
        save_config(config, run_dir / "config.yaml")
        if text:
            save_tokenizer(encoder.tokenizer, run_dir)

    warmup_steps = min(total_steps, round(config.optim.warmup_epochs * steps_per_epoch))
    lengths = (inputs != 0).sum(dim=1) if text else None
    inputs = inputs.to(device)
    labels = data.labels.to(device) if method.needs_labels else None
    guard = BatchNormGuard(
        model,
        tc.batch_size,
        lambda layer, values, least: (
            f"batch size {tc.batch_size} is too small for {config.method_name} with this model: its BatchNorm layer "
            f"'{layer}' would normalise {values} value{'s' if values > 1 else ''} per channel (it needs "
            f"{MIN_BATCH_NORM_VALUES} or more to pass a gradient); use --batch-size {-(-least // world) * world} or more"
        ),
        world,
    )
    started = time.perf_counter()
    for epoch in range(start_epoch, tc.epochs):
        method.train()
        torch.manual_seed(epoch_seed(tc.seed, epoch, 0, rank))  # each process its own stream (masks, noise)
        order_gen = torch.Generator().manual_seed(epoch_seed(tc.seed, epoch, 1))
        order = torch.randperm(len(inputs), generator=order_gen)
        if text and not config.text.pack:
            order = group_by_length(order, lengths, tc.batch_size, order_gen)
        aug_gen = torch.Generator(device=device).manual_seed(epoch_seed(tc.seed, epoch, 2))
        shard = BatchShard(aug_gen, tc.batch_size, rank * local_batch) if world > 1 else aug_gen
        epoch_start = time.perf_counter()
        loss_sum, term_sums, monitors, warning, lr = 0.0, {}, {}, None, 0.0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{tc.epochs}",
            disable=not progress,
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        for step_in_epoch in bar:
            step = epoch * steps_per_epoch + step_in_epoch
            lr = lr_at(step, total_steps, warmup_steps, peak_lr, config.optim.schedule)
            set_lr(optimizer, lr, peak_lr)
            start = (
                step_in_epoch * tc.batch_size + rank * local_batch
            )  # this process's share of the global batch
            index = order[start : start + local_batch].to(device)
            if text:
                views = [trim_padding(inputs[index])]
            else:
                views = augmenter(inputs[index], shard)
                if tc.channels_last:
                    views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            with autocast(device, amp_dtype):
                out = model(views, labels=labels[index]) if labels is not None else model(views)
            guard.remove()  # the first forward pass did not raise: the shapes are fine
            loss = out["loss"]
            loss_value = distributed.mean_over_processes(loss.detach()).item()  # the global batch's loss
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"loss became {loss_value} at epoch {epoch + 1}, step {step_in_epoch + 1}; stopped. "
                    + (
                        f"The last good checkpoint (epoch {epoch}) is {checkpoint_path}. "
                        if epoch > 0
                        else ""
                    )
                    + "Try a lower optim.lr or train.precision=fp32."
                )
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if config.optim.clip_grad > 0:
                    scaler.unscale_(optimizer)
                    clip_gradients(method.parameters(), config.optim.clip_grad)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if config.optim.clip_grad > 0:
                    clip_gradients(method.parameters(), config.optim.clip_grad)
                optimizer.step()
            method.after_step(step, total_steps)
            loss_sum += loss_value
            for key, value in out.items():  # the loss's terms (VICReg, Barlow Twins, MLM + NSP), per epoch
                if key.endswith("_loss") and value.dim() == 0:
                    term_sums[key] = (
                        term_sums.get(key, 0.0) + distributed.mean_over_processes(value.detach()).item()
                    )
            if step_in_epoch == steps_per_epoch - 1:
                out = {key: distributed.gather(value) for key, value in out.items() if value.dim() > 0}
                monitors = collapse_metrics(out)  # of the global batch
                monitors.update(
                    {f"{name}_dim": out[name].shape[1] for name in ("embedding", "projection") if name in out}
                )
                warning = collapse_message(out, monitors, tc.collapse_threshold)
            seen = (step_in_epoch + 1) * tc.batch_size
            bar.set_postfix(
                loss=f"{loss_value:.4f}",
                lr=f"{lr:.3g}",
                img_s=f"{seen / (time.perf_counter() - epoch_start):.0f}",
            )
        bar.close()
        seconds = time.perf_counter() - epoch_start
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / steps_per_epoch,
            **{key: value / steps_per_epoch for key, value in term_sums.items()},
            "lr": lr,
            "images_per_s": steps_per_epoch * tc.batch_size / seconds,
            "seconds": seconds,
            **monitors,
        }
        history.append(record)
        state = {
            "epoch": epoch + 1,
            "method": config.method_name,
            "backbone": config.model.backbone,
            "config": config.to_dict(),
            "model": method.state_dict(),
            "optimizer": optimizer.state_dict(),
        }
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        if main:
            save_checkpoint(state, checkpoint_path)
            with open(run_dir / METRICS_FILE, "a") as handle:
                handle.write(to_json(record) + "\n")
        if writer is not None:
            for key, value in record.items():
                if key != "epoch" and not key.endswith("_dim"):
                    writer.add_scalar(key, value, epoch + 1)
            writer.flush()
        if progress:
            print(
                f"epoch {epoch + 1}/{tc.epochs}  loss {record['loss']:.4f}  lr {lr:.4g}  "
                f"{record['images_per_s']:.0f} img/s  {seconds:.1f}s",
                file=sys.stderr,
            )
        if warning:
            if tc.stop_on_collapse:
                raise TrainingError(
                    f"{warning} at epoch {epoch + 1}; stopped (train.stop_on_collapse). "
                    f"The checkpoint of this epoch is {checkpoint_path}."
                )
            if main:
                warnings.warn(f"{warning} at epoch {epoch + 1} (train.stop_on_collapse=true stops the run)")
        if on_epoch_end is not None:
            on_epoch_end(record, method)

    guard.remove()  # where no step ran (a finished run resumed)
    if writer is not None:
        writer.close()
    final_loss = history[-1]["loss"] if history else math.nan
    if not main:
        return PretrainResult(
            run_dir, tc.epochs, final_loss, time.perf_counter() - started, history, saved=False
        )
    test_labels = splits.test.labels if test_inputs is not None and method.needs_labels else None
    held_out = held_out_results(
        method,
        test_inputs,
        test_labels,
        run_dir,
        device,
        amp_dtype,
        tc.pictures,
        tc.seed,
        batch_size=64 if text else 256,
    )  # text: logits over the vocabulary for every token
    final_encoder = method.encoder.to("cpu", memory_format=torch.contiguous_format).eval()
    shape = {"texts": len(data)} if text else {"image_shape": list(data.images.shape[1:])}
    save_encoder(
        final_encoder,
        run_dir,
        extra={
            "method": config.method_name,
            "data": splits.source,
            "epochs": tc.epochs,
            "classes": data.classes,
            **shape,
        },
    )
    seconds = time.perf_counter() - started
    (run_dir / RUN_FILE).write_text(
        to_json(
            {
                "seconds": seconds,
                "peak_memory_mb": peak_memory_mb(),
                "machine": machine_info(),
                "data": splits.source,
                "train_items": len(data),
                "test_items": len(splits.test) if splits.test is not None else 0,
                "processes": world,
                "device": str(device),
                "precision": str(amp_dtype or "float32").replace("torch.", ""),
                "finished": datetime.now().isoformat(timespec="seconds"),
            },
            indent=2,
        )
    )
    return PretrainResult(run_dir, tc.epochs, final_loss, seconds, history, held_out)


@torch.no_grad()
def held_out_results(
    method: Method,
    inputs: torch.Tensor | None,
    labels: torch.Tensor | None,
    run_dir: Path,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    pictures: int,
    seed: int,
    batch_size: int = 256,
) -> dict[str, float]:
    """The method's own metrics on the whole test split (bits/dim, reconstruction error, perplexity:
    see ``Method.test_metrics``), saved as ``test_metrics.json``, and its examples of ``pictures``
    test items (``Method.pictures``): PNG grids, or text files for text. ``inputs`` are the test
    split's stored inputs (uint8 images or token ids), ``labels`` its labels where the method needs
    them; nothing without a test split."""
    from selfsup.report import save_image_grid

    if (
        inputs is None
        or len(inputs) == 0
        or (method.needs_labels and (labels is None or bool((labels < 0).any())))
    ):
        return {}
    method.eval()
    sums: dict[str, float] = {}
    if type(method).test_metrics is not Method.test_metrics:  # the joint-embedding methods have none
        for start in range(0, len(inputs), batch_size):
            batch = model_input(inputs[start : start + batch_size], device)
            batch_labels = labels[start : start + batch_size].to(device) if labels is not None else None
            with autocast(device, amp_dtype):
                for key, value in method.test_metrics(batch, batch_labels).items():
                    sums[key] = sums.get(key, 0.0) + value * len(batch)
    metrics = (
        method.derived_metrics({key: value / len(inputs) for key, value in sums.items()}) if sums else {}
    )
    if metrics:
        (run_dir / "test_metrics.json").write_text(to_json(metrics, indent=2))
    if pictures > 0:
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(inputs), generator=generator)[:pictures]
        batch = model_input(inputs[chosen], device)
        with autocast(device, amp_dtype):
            examples = method.pictures(
                batch, generator, labels[chosen].to(device) if labels is not None else None
            )
        for name, content in examples.items():
            if content and isinstance(content[0], str):
                (run_dir / f"{name}.txt").write_text("\n".join(content) + "\n")
            else:
                save_image_grid(content, run_dir / f"{name}.png")
    return metrics


def tensorboard_writer(run_dir: Path):
    """A TensorBoard writer of the epoch metrics in ``RUN_DIR/tensorboard`` (train.tensorboard)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs the tensorboard package: pip install 'selfsup[tensorboard]'"
        ) from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def group_by_length(
    order: torch.Tensor,
    lengths: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    batches_per_group: int = 50,
) -> torch.Tensor:
    """A data order whose batches hold texts of similar length (less padding to compute on): within
    each run of ``batches_per_group`` batches of the random ``order`` the texts are sorted by length,
    then the batches are shuffled (fairseq's and Hugging Face's length grouping)."""
    group = batch_size * batches_per_group
    order = torch.cat([part[torch.argsort(lengths[part], stable=True)] for part in order.split(group)])
    count = len(order) // batch_size
    batches = order[: count * batch_size].view(count, batch_size)[torch.randperm(count, generator=generator)]
    return torch.cat([batches.flatten(), order[count * batch_size :]])


def train_text_tokenizer(config: Config, texts: list[str]):
    """The tokenizer of ``config.text`` trained on ``texts``."""
    return train_tokenizer(texts, config.text.tokenizer, config.text.vocab_size, config.text.lowercase)


def build_text_inputs(
    config: Config, splits: DataSplits, tokenizer=None
) -> tuple[TextEncoder, torch.Tensor, torch.Tensor | None]:
    """The text encoder of ``config`` (its tokenizer trained on the training texts unless given) and
    the token ids of the training and test splits: documents, or blocks of the packed corpus."""
    tc = config.text
    if tokenizer is None:
        tokenizer = train_text_tokenizer(config, splits.train.texts)
    width = config.model.width
    options = get_method(config.method_name).build.encoder_options(config.method)
    encoder = TextEncoder(
        tokenizer.get_vocab_size(),
        width,
        config.model.depth or 4,
        max(1, width // 64),
        tc.max_length,
        tokenizer_kind=tc.tokenizer,
        **options,
    ).attach_tokenizer(tokenizer)

    def tokens(dataset: TextDataset) -> torch.Tensor:
        return pack_documents(tokenizer, dataset.texts, tc.max_length) if tc.pack else encoder.inputs(dataset)

    test = None
    if splits.test is not None:
        try:
            test = tokens(splits.test)
        except ConfigError:  # too little held-out text for one packed block: no test metrics
            test = None
    return encoder, tokens(splits.train), test


def read_history(run_dir: Path, upto_epoch: int | None = None) -> list[dict]:
    """The epoch records of ``RUN_DIR/metrics.jsonl`` (up to ``upto_epoch``); none without the file.
    A value the file holds as null (a NaN when it was written) is read as NaN."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    records = [
        {key: math.nan if value is None else value for key, value in json.loads(line).items()}
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    return [r for r in records if upto_epoch is None or r["epoch"] <= upto_epoch]


def _write_history(run_dir: Path, history: list[dict]) -> None:
    (run_dir / METRICS_FILE).write_text("".join(to_json(r) + "\n" for r in history))
