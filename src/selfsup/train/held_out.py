"""What a finished run leaves besides its checkpoint: the method's own metrics and pictures on
the test split, and the encoder with a summary of the run (``run.json``). Both are callbacks that
act at the end of training, in the process of rank 0."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import torch

from selfsup import distributed
from selfsup.atomic import write_text
from selfsup.data.pictures import save_image_grid
from selfsup.jsonfile import to_json
from selfsup.methods import PICTURES, TEST_METRICS, Method
from selfsup.models.encoder import model_input, save_encoder
from selfsup.train.callbacks import Callback
from selfsup.train.device import autocast
from selfsup.train.machine import machine_info, peak_memory_mb

RUN_FILE = "run.json"
TEST_METRICS_FILE = "test_metrics.json"


class HeldOutResults(Callback):
    """``test_metrics.json`` and the method's pictures (:func:`held_out_results`); the metrics are
    kept in ``run.test_metrics``."""

    def on_fit_end(self, run) -> None:
        config, splits = run.config, run.splits
        labels = splits.test.labels if run.test_inputs is not None and run.method.needs_labels else None
        run.test_metrics = held_out_results(
            run.method,
            run.test_inputs,
            labels,
            run.run_dir,
            run.device,
            run.amp_dtype,
            config.train.pictures,
            config.train.seed,
            batch_size=run.modality.eval_batch_size,
        )


class EncoderExport(Callback):
    """``encoder.safetensors`` + ``encoder.json`` (the encoder alone, on the CPU), and ``run.json``:
    wall time, peak memory, machine, data, processes, device and precision."""

    def on_fit_end(self, run) -> None:
        config, splits = run.config, run.splits
        encoder = run.method.encoder.to("cpu", memory_format=torch.contiguous_format).eval()
        extra = {
            "method": config.method_name,
            "data": splits.source,
            "epochs": config.train.epochs,
            "classes": splits.train.classes,
            **run.modality.encoder_metadata(splits),
        }
        save_encoder(encoder, run.run_dir, extra=extra)
        summary = {
            "seconds": time.perf_counter() - run.started,
            "peak_memory_mb": peak_memory_mb(),
            "machine": machine_info(),
            "data": splits.source,
            "train_items": len(splits.train),
            "test_items": len(splits.test) if splits.test is not None else 0,
            "processes": distributed.world_size(),
            "device": str(run.device),
            "precision": str(run.amp_dtype or "float32").replace("torch.", ""),
            "speed": run.speed,  # how the precision was chosen, the step times measured
            "finished": datetime.now().isoformat(timespec="seconds"),
        }
        write_text(run.run_dir / RUN_FILE, to_json(summary, indent=2))


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
    if (
        inputs is None
        or len(inputs) == 0
        or (method.needs_labels and (labels is None or bool((labels < 0).any())))
    ):
        return {}
    method.eval()
    metrics = average_test_metrics(method, inputs, labels, device, amp_dtype, batch_size)
    if metrics:
        write_text(run_dir / TEST_METRICS_FILE, to_json(metrics, indent=2))
    if pictures > 0 and PICTURES in method.offers:
        save_pictures(method, inputs, labels, run_dir, device, amp_dtype, pictures, seed)
    return metrics


def average_test_metrics(method, inputs, labels, device, amp_dtype, batch_size: int) -> dict[str, float]:
    """``Method.test_metrics`` averaged over ``inputs`` in batches, then ``derived_metrics``."""
    if TEST_METRICS not in method.offers:
        return {}
    sums: dict[str, float] = {}
    for start in range(0, len(inputs), batch_size):
        batch = model_input(inputs[start : start + batch_size], device)
        batch_labels = labels[start : start + batch_size].to(device) if labels is not None else None
        with autocast(device, amp_dtype):
            for key, value in method.test_metrics(batch, batch_labels).items():
                sums[key] = sums.get(key, 0.0) + value * len(batch)
    return method.derived_metrics({key: value / len(inputs) for key, value in sums.items()}) if sums else {}


def save_pictures(method, inputs, labels, run_dir: Path, device, amp_dtype, pictures: int, seed: int) -> None:
    """The method's pictures of ``pictures`` test items drawn with ``seed``: NAME.png or NAME.txt."""
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(inputs), generator=generator)[:pictures]
    batch = model_input(inputs[chosen], device)
    with autocast(device, amp_dtype):
        examples = method.pictures(
            batch, generator, labels[chosen].to(device) if labels is not None else None
        )
    for name, content in examples.items():
        if content and isinstance(content[0], str):
            write_text(run_dir / f"{name}.txt", "\n".join(content) + "\n")
        else:
            save_image_grid(content, run_dir / f"{name}.png")
