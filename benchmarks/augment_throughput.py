"""Two SimCLR views of 32×32 images per second: selfsup's batched pipeline against torchvision
per image in a DataLoader, and against kornia's batched augmentations, side by side in one run.

All three make the `simclr_cifar` preset's views (random resized crop 0.08-1, flip, colour jitter
0.4/0.4/0.4/0.1 with p 0.8, grayscale 0.2) from the same uint8 images, batch 256:

* selfsup: ``ViewAugmenter`` on a uint8 N×C×H×W batch on the device;
* torchvision: ``transforms.v2`` on one image at a time in a ``DataLoader`` with 2 worker
  processes (lightly's and solo-learn's way), collated into float batches;
* kornia: ``AugmentationSequential`` on the float batch on the device (``pip install kornia``;
  skipped when absent).

Each is timed over ``--batches`` batches, ``--repeats`` times after a warm-up; the median is
reported. Also the largest difference of each colour operation from torchvision's functional one
on the same factors (selfsup's, and kornia's torchvision-style functions), and on the CPU the cost
of the element-wise steps the pipeline's design avoids or uses (``primitive_costs``). Writes
benchmarks/results/augment_throughput_<device>.json; the last line is the ratio.

    pip install kornia   # optional, the benchmark's environment only
    python benchmarks/augment_throughput.py [--data ../shared/datasets/cifar10-jpeg.tar.gz] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def load_images(data: str, count: int) -> tuple[torch.Tensor, str]:
    if Path(data).exists():
        from selfsup.data import load_data

        images = load_data(data).train.images[:count]
        return images, f"{data} ({len(images)} training images)"
    generator = torch.Generator().manual_seed(0)
    return torch.randint(
        0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator
    ), "random uint8 32×32"


def time_runs(run, repeats: int) -> list[float]:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def selfsup_runner(images: torch.Tensor, batch: int, batches: int, device: torch.device):
    from selfsup.augment import ViewAugmenter
    from selfsup.config import preset_config

    augmenter = ViewAugmenter(preset_config("simclr_cifar"))
    data = images.to(device)
    generator = torch.Generator(device=device).manual_seed(0)

    def run():
        for i in range(batches):
            start = (i * batch) % (len(data) - batch + 1)
            augmenter(data[start : start + batch], generator)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        import torchvision.transforms.v2 as T

        self.images = images
        self.transform = T.Compose(
            [
                T.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.ToDtype(torch.float32, scale=True),
            ]
        )

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        return self.transform(image), self.transform(image)


def torchvision_runner(images: torch.Tensor, batch: int, batches: int, workers: int):
    loader = torch.utils.data.DataLoader(
        TwoViews(images),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )

    def run():
        done = 0
        while done < batches:
            for _ in loader:
                done += 1
                if done == batches:
                    break

    return run


def kornia_runner(images: torch.Tensor, batch: int, batches: int, device: torch.device):
    import kornia.augmentation as K

    pipeline = K.AugmentationSequential(
        K.RandomResizedCrop((32, 32), scale=(0.08, 1.0)),
        K.RandomHorizontalFlip(),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        K.RandomGrayscale(p=0.2),
    ).to(device)
    data = images.to(device)

    def run():
        with torch.no_grad():
            for i in range(batches):
                start = (i * batch) % (len(data) - batch + 1)
                x = data[start : start + batch].float() / 255
                pipeline(x), pipeline(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


def colour_errors() -> dict:
    """Largest absolute difference from torchvision's functional colour operations on the same
    per-image factors (float images in [0, 1])."""
    import torchvision.transforms.v2.functional as TF

    from selfsup.augment import ops

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 32, 32, generator=generator)
    factor = 0.5 + torch.rand(32, generator=generator)
    shift = 0.2 * torch.rand(32, generator=generator) - 0.1
    cases = {
        "brightness": (
            ops.adjust_brightness,
            TF.adjust_brightness,
            "adjust_brightness_accumulative",
            factor,
            1.0,
        ),
        "contrast": (
            ops.adjust_contrast,
            TF.adjust_contrast,
            "adjust_contrast_with_mean_subtraction",
            factor,
            1.0,
        ),
        "saturation": (
            ops.adjust_saturation,
            TF.adjust_saturation,
            "adjust_saturation_with_gray_subtraction",
            factor,
            1.0,
        ),
        "hue": (ops.adjust_hue, TF.adjust_hue, "adjust_hue", shift, 2 * math.pi),
    }
    errors = {}
    for name, (ours, theirs, kornia_name, values, kornia_scale) in cases.items():
        reference = torch.stack([theirs(img, float(v)) for img, v in zip(x, values)])
        errors[name] = {"selfsup": float((ours(x, values) - reference).abs().max())}
        try:
            import kornia.enhance

            errors[name]["kornia"] = float(
                (getattr(kornia.enhance, kornia_name)(x, values * kornia_scale) - reference).abs().max()
            )
        except ImportError:
            pass
    return errors


def primitive_costs(repeats: int = 50) -> dict:
    """Milliseconds (median) of the element-wise steps the pipeline's design rests on, on one
    256×3×32×32 float batch: choosing pixels with a bool mask (torch.where) against multiplying by
    the same mask as uint8 and by a float, and the luma of the batch as fresh temporaries against
    one buffer updated in place."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(256, 3, 32, 32, generator=generator)
    mask = x > 0.5
    r, g, b = x.unbind(1)
    steps = {
        "float multiply": lambda: x * 0.5,
        "torch.where with a bool mask": lambda: torch.where(mask, x, 0.0),
        "multiply by the mask as uint8": lambda: x * mask.view(torch.uint8),
        "luma, temporaries": lambda: 0.2989 * r + 0.587 * g + 0.114 * b,
        "luma, in place": lambda: torch.mul(r, 0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114),
    }
    return {name: 1000 * statistics.median(time_runs(step, repeats)) for name, step in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=str(CIFAR), help="CIFAR-10 archive/folder (random images when absent)"
    )
    parser.add_argument("--images", type=int, default=10240)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for torchvision")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (for selfsup and kornia)")
    args = parser.parse_args()
    device = torch.device(args.device)
    images, source = load_images(args.data, args.images)
    per_run = args.batch_size * args.batches

    tv_name = f"torchvision (DataLoader, {args.workers} workers)"
    runners = {
        "selfsup": selfsup_runner(images, args.batch_size, args.batches, device),
        tv_name: torchvision_runner(images, args.batch_size, args.batches, args.workers),
    }
    try:
        runners["kornia"] = kornia_runner(images, args.batch_size, args.batches, device)
    except ImportError:
        print("kornia is not installed: skipped (pip install kornia)")
    results = {}
    for name, run in runners.items():
        times = time_runs(run, args.repeats)
        rate = per_run / statistics.median(times)
        results[name] = {"images_per_s": rate, "seconds": times}
        print(f"{name:<36} {rate:>9.0f} images/s (two views each; median of {args.repeats})", flush=True)
    costs = primitive_costs() if device.type == "cpu" else {}
    for name, ms in costs.items():
        print(f"{name:<36} {ms:.3f} ms per 256×3×32×32 batch")
    errors = colour_errors()
    for name, error in errors.items():
        print(
            f"max |difference| from torchvision, {name}: "
            + ", ".join(f"{k} {v:.1e}" for k, v in error.items())
        )
    summary = {
        "selfsup_vs_torchvision": results["selfsup"]["images_per_s"] / results[tv_name]["images_per_s"]
    }
    if "kornia" in results:
        summary["selfsup_vs_kornia"] = results["selfsup"]["images_per_s"] / results["kornia"]["images_per_s"]
    out = ROOT / "benchmarks" / "results" / f"augment_throughput_{device.type}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "args": vars(args),
                "images": source,
                "device": str(device),
                "results": results,
                "primitive_ms": costs,
                "colour_max_abs_difference_from_torchvision": errors,
                **summary,
            },
            indent=2,
        )
    )
    print(f"saved {out}")
    print(
        f"selfsup / torchvision: {summary['selfsup_vs_torchvision']:.1f}×"
        + (
            f"; selfsup / kornia: {summary['selfsup_vs_kornia']:.1f}×"
            if "selfsup_vs_kornia" in summary
            else ""
        )
    )


if __name__ == "__main__":
    main()
