"""What a run ran on: the machine, and the peak memory of this process."""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path

import torch

# the instruction sets that choose PyTorch's, oneDNN's and MKL's kernels (and so speed and the last
# bits of fp32 results)
KERNEL_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_tile",
    "asimd",
    "sve",
)


def machine_info() -> dict:
    """The CPU's model, the flags of :data:`KERNEL_FLAGS` it has, the kernels ATen chose
    (``ATEN_CPU_CAPABILITY`` and the CPU decide), cores and threads, Python, PyTorch, platform, and
    the GPU if any: what a figure is quoted with."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("model name") and cpu in (platform.processor(), platform.machine()):
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith(("flags", "Features")) and not flags:
            flags = set(line.split(":", 1)[1].split())
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    info = {
        "cpu": cpu,
        "cpu_flags": [flag for flag in KERNEL_FLAGS if flag in flags],
        "aten_cpu_capability": capability,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": bool(flags & {"amx_bf16", "avx512_bf16"}),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes; macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
