"""Weight gradients of a 3×3 convolution (stride 2, padding 1) on 1×1 maps, bf16 autocast against
float32, on the CPU: the PyTorch bug behind DINO's NaN on 32-px images (its 14-px local crops reach
ResNet-18's last stage as 1×1 maps) and the reason the training loop falls back to float32 there.

For several batch sizes, in contiguous and channels_last memory, it prints the relative error of the
bf16 weight gradient against float32 and the largest gradient in the kernel taps that only see
padding (exactly 0 in float32). Writes benchmarks/results/bf16_conv_grad.json.

    python benchmarks/bf16_conv_grad.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for memory in ("contiguous", "channels_last"):
        for batch in (256, 512, 1024, 2048):
            x = torch.randn(batch, 256, 1, 1)
            conv = torch.nn.Conv2d(256, 512, 3, stride=2, padding=1, bias=False)
            conv(x).square().sum().backward()
            reference = conv.weight.grad.clone()
            conv.zero_grad()
            if memory == "channels_last":
                conv = conv.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = conv(x)
            y.float().square().sum().backward()
            grad = conv.weight.grad
            padding_taps = grad.clone()
            padding_taps[:, :, 1, 1] = 0
            row = {
                "memory": memory,
                "batch": batch,
                "relative_error": ((grad - reference).norm() / reference.norm()).item(),
                "largest_padding_tap_gradient": padding_taps.abs().max().item(),
                "non_finite": int((~torch.isfinite(grad)).sum()),
            }
            rows.append(row)
            print(
                f"{memory:14s} batch {batch:5d}: relative error {row['relative_error']:.3g}, "
                f"largest gradient of a padding-only tap {row['largest_padding_tap_gradient']:.3g} "
                "(should be 0), "
                f"non-finite {row['non_finite']}"
            )
    out = ROOT / "benchmarks" / "results" / "bf16_conv_grad.json"
    out.write_text(
        json.dumps({"machine": machine_info(), "torch": torch.__version__, "rows": rows}, indent=2)
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
