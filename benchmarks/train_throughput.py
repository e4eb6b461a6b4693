"""Training-step throughput of backbones on this machine: fp32 vs bf16 autocast vs channels_last.

One training step = forward, cross-entropy on a linear head, backward and an SGD step on a batch of
random images. Each setting runs a warm-up step, then STEPS timed steps; the median is reported.
All settings run side by side in one process, so their ratios are comparable.

    python benchmarks/train_throughput.py [--steps 5] [--batch 128] [--device cpu]

Writes benchmarks/results/train_throughput_<device>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from machine import machine_info
from selfsup.models import build_backbone
from selfsup.train.device import autocast

SETTINGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
MODELS = [  # (name, backbone, stem, image side, channels, width)
    ("ResNet-18, CIFAR stem, 32×32", "resnet18", "cifar", 32, 3, 32),
    ("ResNet-18, ImageNet stem, 32×32", "resnet18", "imagenet", 32, 3, 32),
    ("small_cnn w64, 32×32", "small_cnn", "auto", 32, 3, 64),
    ("small_cnn w32, 8×8 (digits)", "small_cnn", "auto", 8, 1, 32),
]


def time_steps(
    backbone: str,
    stem: str,
    side: int,
    channels: int,
    width: int,
    precision: str,
    channels_last: bool,
    batch: int,
    steps: int,
    device: torch.device,
) -> list[float]:
    torch.manual_seed(0)
    net = build_backbone(backbone, channels, side, stem=stem, width=width)
    head = torch.nn.Linear(net.out_dim, 10)
    model = torch.nn.Sequential(net, head).to(device)
    images = torch.rand(batch, channels, side, side, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = torch.bfloat16 if precision == "bf16" else None
    times = []
    for step in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast(device, dtype):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step > 0:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="all", help="comma-separated indices into MODELS, or all")
    args = parser.parse_args()
    device = torch.device(args.device)
    chosen = MODELS if args.models == "all" else [MODELS[int(i)] for i in args.models.split(",")]
    rows = []
    print(f"| model | precision | channels_last | images/s (median of {args.steps}) | vs fp32 |")
    print("| --- | --- | --- | --- | --- |")
    for name, backbone, stem, side, channels, width in chosen:
        base = None
        for precision, channels_last in SETTINGS:
            times = time_steps(
                backbone,
                stem,
                side,
                channels,
                width,
                precision,
                channels_last,
                args.batch,
                args.steps,
                device,
            )
            rate = args.batch / statistics.median(times)
            base = base or rate
            rows.append(
                {
                    "model": name,
                    "precision": precision,
                    "channels_last": channels_last,
                    "images_per_s": rate,
                    "step_seconds": times,
                    "speedup_vs_fp32": rate / base,
                }
            )
            print(f"| {name} | {precision} | {channels_last} | {rate:.1f} | {rate / base:.2f}× |", flush=True)
    out = Path(__file__).parent / "results" / f"train_throughput_{device.type}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "batch": args.batch,
                "steps": args.steps,
                "what": "forward + backward + SGD step of backbone + linear head on random images",
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
