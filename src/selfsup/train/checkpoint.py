"""Atomic checkpoints: written to a temporary file, then renamed over the old one."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from selfsup.atomic import write_file
from selfsup.config import CONFIG_FILE, read_yaml, schedule_keys
from selfsup.errors import SelfsupError

CHECKPOINT_FILE = "checkpoint.pt"
RESUME_FIXED = ("method.", "model.", "text.", "optim.name", "data.spec", "data.image_size")
"""Options a resumed run must share with its checkpoint: its data, and what shapes the model, the
tokenizer or the optimiser's state. The others (epochs, learning rate, batch size, ...) may change, and so may
the schedules in epochs (``method.*_epochs``), which are fitted to ``train.epochs``."""


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` so that a reader sees either the old checkpoint or the whole new one, never
    a torn file (:func:`selfsup.atomic.write_file`); raises :class:`~selfsup.atomic.WriteError`
    for a failed write, the old checkpoint left as it was."""
    write_file(path, lambda handle: torch.save(state, handle), needed=tensor_bytes(state))


def tensor_bytes(value) -> int:
    """The bytes of the tensors in ``value`` (nested dicts, lists and tuples): about what
    ``torch.save`` writes of it."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable files
        raise SelfsupError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None


def check_resumable(state: dict, config, run_dir: Path) -> None:
    """Raise :class:`SelfsupError` naming every option of :data:`RESUME_FIXED` whose value in
    ``config`` (a :class:`selfsup.config.Config`) differs from the checkpoint's run. The settings
    come from the checkpoint (``config``) or, for checkpoints without them, ``RUN_DIR/config.yaml``."""
    saved = state.get("config")
    if saved is None and (Path(run_dir) / CONFIG_FILE).exists():
        saved = read_yaml(Path(run_dir) / CONFIG_FILE)
    if state.get("method") != config.method_name:
        raise SelfsupError(
            f"{run_dir} holds a {state.get('method')} run, not {config.method_name}: "
            "pass --method " + str(state.get("method")) + " to resume it"
        )
    saved = saved or {"model": {"backbone": state.get("backbone")}}
    old, new = (_flatten(settings) for settings in (saved, config.to_dict()))
    for settings in (old, new):  # runs of older versions saved the path as typed, relative to where they ran
        if settings.get("data.spec") not in (None, "digits"):
            settings["data.spec"] = os.path.abspath(os.path.expanduser(settings["data.spec"]))
    differ = [
        key
        for key in sorted(set(old) & set(new))  # an option one side lacks came with another version
        if key.startswith(RESUME_FIXED)
        and not key.endswith("_epochs")  # schedules follow train.epochs
        and old[key] != new[key]
    ]
    if differ:
        changes = ", ".join(f"{key} {new[key]!r} (the checkpoint's: {old[key]!r})" for key in differ)
        raise SelfsupError(
            f"cannot resume {run_dir} with other model settings: {changes}; resume with the run's own "
            "settings, or start a new run with --out"
        )


def keep_schedules(state: dict, config) -> list[str]:
    """A resumed run keeps the schedules in epochs that its checkpoint ran with (a warm-up fitted to
    a shorter first run is not stretched to the longer one, which would warm up again) unless the
    user set them now; ``config`` takes them. Returns a line for each one kept."""
    saved = _flatten(state.get("config") or {})
    notes = []
    for key in schedule_keys(config):
        section, name = key.split(".")
        target = config.method if section == "method" else getattr(config, section)
        if key in config.user_keys or key not in saved or saved[key] == getattr(target, name):
            continue
        notes.append(f"{key}: {saved[key]:g} as the checkpoint's run had it (not {getattr(target, name):g})")
        setattr(target, name, saved[key])
    return notes


def _flatten(settings: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = list(value) if isinstance(value, tuple) else value
    return out
