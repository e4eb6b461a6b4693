"""Device and precision choices: CUDA when present; bf16 autocast where the device computes it natively."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from selfsup.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device '{name}' (choose from auto, cpu, cuda)")
    return torch.device(name)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes in bf16 natively: AMX tiles (Intel, /proc/cpuinfo flag ``amx_bf16``)
    or AVX-512 BF16 (Intel and AMD, flag ``avx512_bf16``)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return False
    flags = cpuinfo.read_text()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain float32.

    ``auto`` is bf16 where bf16 is a candidate: CUDA (fp16 on GPUs without bf16) and CPUs with
    native bf16 (AMX or AVX-512 BF16); a run then times it against fp32 on its own model and keeps
    the faster (:mod:`selfsup.train.speed`: on one Intel Xeon bf16 was 1.3× slower for the demo,
    on an AMD EPYC faster). fp32 elsewhere (bf16 emulated is always slower).
    """
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
