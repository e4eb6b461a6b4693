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


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
LARGE_BLOCK = 1 << 20
"""Bytes from which an allocation gets its own memory map (see :func:`return_freed_memory`)."""


def return_freed_memory(threshold: int | None = None) -> bool:
    """Make glibc give every allocation of ``threshold`` bytes or more (default
    ``$SELFSUP_MMAP_THRESHOLD``, else :data:`LARGE_BLOCK`; 0 leaves glibc's own policy) its own
    memory map, returned to the system when freed. Returns whether it was set (False off glibc,
    e.g. macOS or musl, and for 0).

    glibc starts with a 128 kB threshold and raises it, up to 32 MB, each time a mapped block is
    freed; from then on a tensor below that size comes from the heap of whichever thread allocated
    it and stays there once freed. A text run's batches differ in length, so each step's tensors
    differ in size and the heaps keep growing: one MLM epoch on AG News peaked at 2.5 GB (the
    model and its optimiser hold 60 MB), 1.5 GB with a fixed threshold, which turns off that
    adjustment. Process-wide; selfsup sets it where a text run or a text encoder's evaluation
    starts. Not for images: their tensors keep one size, the heap serves them again, and fresh
    mappings made the demo's epoch 1.28× slower (benchmarks/cpu_choices.py)."""
    import ctypes
    import ctypes.util

    if threshold is None:
        threshold = int(os.environ.get("SELFSUP_MMAP_THRESHOLD", LARGE_BLOCK))
    if threshold <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(threshold)))
