"""Starting from pretrained weights in a local file (``model.weights=PATH``): a state dict saved by
torchvision, timm or any PyTorch code (``.pt``/``.pth``/``.bin``/``.safetensors``), or a selfsup
run directory (its ``encoder.safetensors``). Nothing is downloaded.

The keys are matched to the backbone after the prefixes that wrappers add are taken off
(``module.`` of DistributedDataParallel, ``backbone.`` of lightly and of selfsup's encoder); the
weights of the classifier the backbone does not have (``fc``, ``classifier``, ``head``, ``heads``)
are left out. Any other key that is missing, left over or of another shape is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from selfsup.errors import ConfigError

CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.", "heads.", "last_linear.")
WRAPPER_PREFIXES = ("module.", "backbone.", "net.", "encoder.")


def load_weights(backbone: nn.Module, path: str | Path) -> None:
    """Copy the weights of ``path`` into ``backbone`` (a library backbone's model inside its
    feature wrapper). Raises :class:`ConfigError` for a missing or unreadable file, or keys that do
    not match (missing, left over, or of another shape: e.g. ImageNet weights into the CIFAR stem)."""
    state = _read(Path(path).expanduser())
    target = getattr(backbone, "net", backbone)  # timm:/torchvision: models sit inside _Features
    own = target.state_dict()
    state = _strip(state, own)
    extra = [k for k in state if k not in own]
    dropped = [k for k in extra if k.startswith(CLASSIFIER_PREFIXES)]
    extra = [k for k in extra if k not in dropped]
    missing = [k for k in own if k not in state]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or extra or shapes:
        parts = [
            f"{label} ({len(keys)}): {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("not in the model", extra), ("other shapes", shapes))
            if keys
        ]
        hint = (
            " (ImageNet weights need model.stem=imagenet)"
            if any(s.startswith("conv1.") for s in shapes)
            else ""
        )
        raise ConfigError(f"model.weights={path} does not fit the backbone: {'; '.join(parts)}{hint}")
    target.load_state_dict({k: state[k] for k in own}, strict=True)


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.is_dir():
        path = path / "encoder.safetensors"  # a selfsup run
    if not path.is_file():
        raise ConfigError(f"model.weights: no such file {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch and safetensors raise many types for a bad file
        raise ConfigError(f"model.weights: cannot read {path} ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model", "encoder"):  # checkpoints that wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.weights: {path} holds no state dict of tensors")
    return {k: v for k, v in state.items() if k not in ("mean", "std")}  # selfsup's normalisation


def _strip(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state without the wrapper prefixes its keys share where the model's keys have none."""
    changed = True
    while changed and state:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in own):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state
