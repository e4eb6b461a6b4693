"""Choices made for speed on the device at hand, at the start of a run, on its own model and first
batch: ``train.compile`` (``torch.compile`` of the method's modules, with a fallback to eager
mode) and ``train.precision=auto`` by timing bf16 autocast against fp32 (TF32 on a GPU), on a
GPU and on a CPU that computes bf16 natively (AVX-512 BF16 or AMX: on one Intel Xeon bf16 was
1.3× slower than fp32 for the demo, on an AMD EPYC faster; no flag tells which).

The measured choice is cached per machine and model (:func:`speed_key`: CPU or GPU model, kernel
flags and the variables that choose kernels, PyTorch, threads, the model's parameters and the
batch's shapes) in ``$SELFSUP_CACHE_DIR/speed.json``, so a second run of the same setting does
not pay again; a resumed run keeps the choice its checkpoint recorded.

Both use *dry steps*: forward and backward passes whose every trace is undone (gradients, the
buffers such as BatchNorm's running statistics, the random number generators), so a run with
these choices trains exactly as one without them, and a resumed run as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from selfsup import distributed
from selfsup.atomic import write_text
from selfsup.data.loaders import cache_dir
from selfsup.train.device import autocast, cpu_has_native_bf16
from selfsup.train.machine import machine_info

PRECISIONS = {"bf16": torch.bfloat16, "fp32": None}
BACKEND = "inductor"  # torch.compile's backend (the tests use TorchDynamo's "eager")
SPEED_CACHE = "speed.json"
KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS")
clock = time.perf_counter  # what dry steps are timed with (the tests set their own)


@dataclass
class SpeedChoices:
    """What :func:`choose` decided: the autocast dtype, the step times it measured for each
    candidate precision (seconds, median), whether the modules are compiled and how long their
    compilation took (seconds, the dry step included)."""

    amp_dtype: torch.dtype | None
    step_seconds: dict[str, float] = field(default_factory=dict)
    compiled: list[torch.nn.Module] = field(default_factory=list)
    compile_seconds: float = 0.0
    source: str = ""  # where the precision came from: "measured", "cache" or "checkpoint"
    measure_seconds: float = 0.0  # what deciding cost (the dry steps), 0 when it came from elsewhere

    def summary(self) -> dict:
        precision = next((k for k, v in PRECISIONS.items() if v == self.amp_dtype), str(self.amp_dtype))
        return {
            "precision": precision,
            "step_seconds": self.step_seconds,
            "precision_from": self.source,
            "measure_seconds": self.measure_seconds,
            "compiled": bool(self.compiled),
            "compile_seconds": self.compile_seconds,
        }


def wants_compile(setting: str, device: torch.device) -> bool:
    """``train.compile``: ``true``, or ``auto`` on CUDA (on the CPU the compilation, about a minute
    for a ResNet, is not recovered by a CPU run's gain; benchmarks/step_overhead.py)."""
    return setting == "true" or (setting == "auto" and device.type == "cuda")


def measures_precision(setting: str, device: torch.device) -> bool:
    """``train.precision=auto`` is measured where bf16 is a candidate: a GPU with bf16, a CPU
    that computes it natively (elsewhere bf16 is emulated, always slower: fp32 without timing)."""
    if setting != "auto":
        return False
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()


def speed_key(method: torch.nn.Module, views: list[torch.Tensor], inputs: dict, device) -> str:
    """What decides which precision is faster, hashed: the machine (CPU model and kernel flags, the
    GPU, PyTorch, the thread count, the variables that choose kernels), the model (its class and
    every parameter's name and shape) and the batch (each view's shape, dtype and memory format)."""
    machine = machine_info()
    facts = {
        "machine": [machine["cpu"], machine["cpu_flags"], machine["aten_cpu_capability"], machine.get("gpu")],
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "variables": {name: os.environ.get(name) for name in KERNEL_VARIABLES},
        "model": [type(method).__name__] + [[n, list(p.shape)] for n, p in method.named_parameters()],
        "views": [
            [list(v.shape), str(v.dtype), v.is_contiguous(memory_format=torch.channels_last)] for v in views
        ],
        "inputs": sorted(inputs),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def _cache_path() -> Path:
    return cache_dir() / SPEED_CACHE


def _read_cache() -> dict:
    """The speed cache's entries; empty where there is none or it cannot be read."""
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def cached_choice(key: str) -> dict | None:
    """The precision and step times measured before for ``key``, or None."""
    return _read_cache().get(key)


def remember_choice(key: str, entry: dict) -> None:
    """Add ``entry`` under ``key`` to the cache; a cache that cannot be written is skipped (the next
    run measures again)."""
    cache = _read_cache()
    cache[key] = entry
    try:
        _cache_path().parent.mkdir(parents=True, exist_ok=True)
        write_text(_cache_path(), json.dumps(cache, indent=1))
    except OSError:
        pass


@contextlib.contextmanager
def no_trace(method: torch.nn.Module, device: torch.device):
    """Undo on exit what forward and backward passes change: the gradients (set to None), the
    buffers, and the global random number generators (CPU and ``device``)."""
    buffers = [b.detach().clone() for b in method.buffers()]
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for saved, buffer in zip(buffers, method.buffers()):
                buffer.copy_(saved)
        method.zero_grad(set_to_none=True)


def dry_step(method, views: list[torch.Tensor], inputs: dict, amp_dtype, device) -> None:
    """One forward and backward pass of ``method`` on ``views`` (``inputs``: its other keyword
    arguments, e.g. progress and labels); no optimiser step."""
    with autocast(device, amp_dtype):
        output = method(views, **inputs)
    output.loss.backward()


def time_steps(method, views, inputs, amp_dtype, device, repeats: int = 3) -> float:
    """Median seconds of ``repeats`` dry steps after one unmeasured one (the device synchronised
    around each)."""

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    dry_step(method, views, inputs, amp_dtype, device)
    times = []
    for _ in range(repeats):
        synchronize()
        started = clock()
        dry_step(method, views, inputs, amp_dtype, device)
        synchronize()
        times.append(clock() - started)
    return statistics.median(times)


def compile_modules(method: torch.nn.Module, backend=None) -> list[torch.nn.Module]:
    """``torch.compile`` each child module of ``method`` that holds parameters (the encoder, the
    heads, momentum copies), in place: their state-dict keys, and so checkpoints and the saved
    encoder, stay those of the eager modules. The loss and the method's own logic stay eager
    (their Python state, e.g. the training progress, would make every step a new graph)."""
    compiled = [child for child in method.children() if any(True for _ in child.parameters())]
    for child in compiled:
        child.compile(backend=backend or BACKEND)
    return compiled


def uncompile(modules: list[torch.nn.Module]) -> None:
    """Back to eager mode: after a failed compilation, and once training is over (the held-out
    evaluation's batches and modes would only cost new compilations)."""
    for module in modules:
        # set by nn.Module.compile, which has no public inverse
        module._compiled_call_impl = None


def choose(
    method,
    views,
    inputs: dict,
    amp_dtype,
    device,
    precision: str,
    compile_setting: str,
    backend=None,
    recorded: dict | None = None,
) -> SpeedChoices:
    """The run's precision and compilation, decided with dry steps on ``views`` (a first batch's
    views; ``inputs`` the method's other keyword arguments: progress, labels). ``amp_dtype`` is the
    precision resolved without measuring; with ``precision=auto`` where bf16 is a candidate
    (:func:`measures_precision`) the faster of bf16 and fp32 (with TF32 matrix products on a GPU)
    is taken instead: from ``recorded`` (a resumed run's choice), else the cache, else measured
    and cached. ``amp_dtype`` None (a correctness guard chose fp32) is kept whatever the timing.
    Under torchrun, rank 0's choice is every process's. A compilation that fails warns and leaves
    the modules eager; nothing else is caught."""
    choices = SpeedChoices(amp_dtype)
    measure = measures_precision(precision, device) and amp_dtype is not None
    with no_trace(method, device):
        if measure and recorded and recorded.get("precision") in PRECISIONS:
            choices.amp_dtype = PRECISIONS[recorded["precision"]]
            choices.step_seconds, choices.source = dict(recorded.get("step_seconds", {})), "checkpoint"
        elif measure:
            key = speed_key(method, views, inputs, device)
            entry = distributed.broadcast_object(cached_choice(key) if distributed.is_main() else None)
            if entry is not None and entry.get("precision") in PRECISIONS:
                choices.step_seconds, choices.source = entry["step_seconds"], "cache"
                fastest = entry["precision"]
            else:
                started = time.perf_counter()
                if device.type == "cuda":
                    torch.backends.cuda.matmul.allow_tf32 = True
                    torch.backends.cudnn.allow_tf32 = True
                for name, dtype in PRECISIONS.items():
                    choices.step_seconds[name] = time_steps(method, views, inputs, dtype, device)
                fastest = distributed.broadcast_object(
                    min(choices.step_seconds, key=choices.step_seconds.get)
                )
                choices.source, choices.measure_seconds = "measured", time.perf_counter() - started
                if distributed.is_main():
                    remember_choice(key, {"precision": fastest, "step_seconds": choices.step_seconds})
            choices.amp_dtype = PRECISIONS[fastest]
        if wants_compile(compile_setting, device):
            started = time.perf_counter()
            choices.compiled = compile_modules(method, backend)
            try:
                dry_step(method, views, inputs, choices.amp_dtype, device)
            except Exception as exc:  # noqa: BLE001 - any failure of the compiler: train eagerly
                if not is_compile_error(exc):
                    raise
                uncompile(choices.compiled)
                choices.compiled = []
                first_line = (str(exc).strip().splitlines() or [""])[0][:200]
                warnings.warn(
                    f"torch.compile failed ({type(exc).__name__}: {first_line}); training continues "
                    "without it (train.compile=false skips the attempt)",
                    stacklevel=2,
                )
            choices.compile_seconds = time.perf_counter() - started
    return choices


def is_compile_error(exc: BaseException) -> bool:
    """An exception raised by TorchDynamo or TorchInductor (including a failed C++ or Triton
    build), as opposed to one of the model's own errors."""
    return type(exc).__module__.startswith(("torch._dynamo", "torch._inductor"))


def report(choices: SpeedChoices) -> None:
    """One line on stderr (rank 0) saying what was decided and why."""
    if not distributed.is_main() or not (choices.step_seconds or choices.compiled):
        return
    parts = []
    if choices.step_seconds:
        times = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in choices.step_seconds.items())
        where = {"cache": "measured before on this machine", "checkpoint": "the run's own choice"}
        source = f"; {where[choices.source]}" if choices.source in where else ""
        parts.append(f"precision {choices.summary()['precision']} (a step: {times}{source})")
    if choices.compiled:
        parts.append(f"torch.compile on ({choices.compile_seconds:.0f} s to compile)")
    print("selfsup: " + "; ".join(parts), file=sys.stderr)
