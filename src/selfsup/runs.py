"""A run's configuration and data: resolved for a new run (:func:`resolve`), or read back from a
finished run's directory; what the api and the report both need.

A run directory holds ``config.yaml`` (the resolved configuration), ``metrics.jsonl`` (one record
per epoch), ``encoder.safetensors`` with its metadata, ``checkpoint.pt`` (the whole method),
``run.json`` (data, machine, wall time), and after an evaluation ``eval.json``; some methods add
``test_metrics.json`` and pictures. Nothing here writes; with ``progress``, what was found is
printed on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from selfsup import distributed
from selfsup.config import CONFIG_FILE, Config
from selfsup.data import DataSplits, ImageDataset, load_data
from selfsup.errors import SelfsupError
from selfsup.methods import Method, get_method
from selfsup.methods.recipes import SMALL_IMAGE_MAX_SIDE, build_config, load_run_config
from selfsup.models.encoder import load_encoder
from selfsup.train import read_history
from selfsup.train.checkpoint import CHECKPOINT_FILE, load_checkpoint
from selfsup.train.device import resolve_device
from selfsup.train.held_out import RUN_FILE, TEST_METRICS_FILE

EVAL_FILE = "eval.json"

__all__ = [
    "CONFIG_FILE",
    "EVAL_FILE",
    "RUN_FILE",
    "TEST_METRICS_FILE",
    "check_run_dir",
    "load_encoder",
    "load_method",
    "load_run_config",
    "load_splits",
    "read_history",
    "read_record",
    "resolve",
    "run_precision",
    "small_images",
]


def check_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path. Raises :class:`SelfsupError` where it holds no ``config.yaml``."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise SelfsupError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    return run_dir


def read_record(run_dir: str | Path, name: str) -> Any:
    """The content of the JSON file ``name`` of the run (e.g. :data:`EVAL_FILE`); None without it."""
    path = Path(run_dir) / name
    return json.loads(path.read_text()) if path.exists() else None


def run_precision(run_dir: str | Path, config: Config, device) -> torch.dtype | None:
    """The autocast dtype (None: float32) a run's evaluation, selection and task model compute
    in. With ``train.precision=auto``, the one its pretraining measured faster
    (:mod:`selfsup.train.speed`, recorded in ``run.json``) where that ran on this kind of CPU (its
    model and kernel flags) and device; else :func:`~selfsup.train.device.resolve_precision`'s."""
    from selfsup.train.device import resolve_precision
    from selfsup.train.machine import machine_info
    from selfsup.train.speed import PRECISIONS

    resolved = resolve_precision(config.train.precision, device)
    record = read_record(run_dir, RUN_FILE) or {}
    chosen = (record.get("speed") or {}).get("precision")
    if config.train.precision != "auto" or resolved is None or chosen not in PRECISIONS:
        return resolved
    here, there = machine_info(), record.get("machine") or {}
    same = [here.get(k) for k in ("cpu", "cpu_flags", "gpu")] == [
        there.get(k) for k in ("cpu", "cpu_flags", "gpu")
    ]
    return PRECISIONS[chosen] if same and record.get("device") == str(device) else resolved


def load_splits(config: Config, progress: bool = False) -> DataSplits:
    """The data of a configuration (``data.spec``, read as ``data.*`` says), as
    :func:`selfsup.data.load_data` returns them; with ``progress``, print what was found (splits,
    classes, shape) and how it was read. Raises :class:`selfsup.errors.DataError` (a
    :class:`SelfsupError`) where they cannot be read, e.g. a run's data that moved."""
    splits = load_data(
        config.data.spec,
        image_size=config.data.image_size,
        skip_bad_images=config.data.skip_bad_images,
        text_options=config.data.text_options(),
        store=config.data.store,
        max_pixels=config.data.max_pixels,
    )
    if progress and distributed.is_main():
        print(f"selfsup: data {splits.describe()}", file=sys.stderr)
        if splits.note:
            print(f"selfsup: {splits.note}", file=sys.stderr)
    return splits


def small_images(splits: DataSplits) -> bool:
    """Whether the data take the methods' ``_small`` recipes (small images; never text)."""
    return isinstance(splits.train, ImageDataset) and max(splits.train.image_size) <= SMALL_IMAGE_MAX_SIDE


def resolve(
    method: str,
    data: str,
    *,
    config: str | None = None,
    overrides=(),
    flags: dict | None = None,
    progress: bool = False,
) -> tuple[Config, DataSplits]:
    """The data of a new run of ``method`` on ``data`` (``digits`` or a path) and its full
    configuration: the data's image size picks the recipe, then the YAML file ``config``, the
    ``key=value`` ``overrides`` and the ``flags`` (``{"train.epochs": 5}``; None: not given) apply.
    A data path is recorded absolute, so that the run's data are found from anywhere. With
    ``progress``, print what was found and how the schedules were fitted. Raises
    :class:`SelfsupError` (a ``ConfigError`` or ``DataError``) naming the option or file at fault."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        flags = {
            "data.spec": os.path.abspath(path) if data != "digits" and path.exists() else str(data),
            **(flags or {}),
        }
        data_config = build_config(
            method, small_images=False, config_file=config, overrides=overrides, flags=flags, fit=False
        )  # only how to read the data: the recipe depends on it
        splits = load_splits(data_config, progress)
    else:  # from Python: read once; the run records its type, and evaluating it needs --data
        splits = load_data(data)
        flags = {**(flags or {}), "data.spec": splits.source}
    resolved = build_config(
        method, small_images=small_images(splits), config_file=config, overrides=overrides, flags=flags
    )
    if progress and distributed.is_main():
        for adjustment in resolved.adjustments:
            print(f"selfsup: {adjustment}", file=sys.stderr)
    return resolved, splits


def load_method(run_dir: str | Path, device: str | None = None) -> tuple[Method, Config]:
    """The whole trained method of a run (encoder, heads, decoder) from its last checkpoint, in eval
    mode on ``device`` (``auto``, ``cpu`` or ``cuda``; default auto), with its configuration: what
    ``denoise``, ``generate`` and the report's cross-correlation need beyond the encoder. Raises
    :class:`SelfsupError` where the run has no checkpoint or no encoder."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_FILE).exists():
        raise SelfsupError(
            f"no checkpoint in {run_dir} (expected {CHECKPOINT_FILE}; did the pretraining run?)"
        )
    config = load_run_config(run_dir)
    torch_device = resolve_device(device or "auto")
    method = get_method(config.method_name).build(load_encoder(run_dir), config.method)
    method.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_FILE)["model"])
    return method.to(torch_device).eval(), config
