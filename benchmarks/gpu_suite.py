"""The prepared GPU suite: everything selfsup measures on one GPU, in about 8 minutes, one command.

  (a) SimCLR, ResNet-18 with the CIFAR stem, on the shared CIFAR-10 JPEGs: seconds per step and
      per two-view epoch (50,000 images; from 10 measured steps after a warm-up epoch of as
      many) at batch 512 and 1024, fp32 (TF32 matrix products) and bf16 autocast,
      ``torch.compile`` off and on, with the compile time and the peak GPU memory;
  (c) one short epoch of every method, image and text, on the device (each CUDA path run once;
      SyncBatchNorm needs two processes, which one GPU cannot host under NCCL);
  (d) the SimCLR augmentation on the device: selfsup's batched pipeline against torchvision
      ``transforms.v2`` image by image on the device and kornia's batched augmentations (when
      installed);
  (b) last, with the time left of ``--budget`` seconds: SimCLR with the fastest setting of (a) on
      the full training set, its cosine schedule set to the epochs that fit, with kNN (k 200) on
      the test split every ``--knn-every`` epochs. The goal to beat: lightly's 200-epoch kNN 0.848.

``--smoke`` runs every part on the CPU with tiny settings (the digits, two steps, a tiny corpus,
TorchDynamo's "eager" backend for compile), so the test suite keeps the script working where no
GPU is.

    python benchmarks/gpu_suite.py [--data ../shared/datasets/cifar10-jpeg.tar.gz] [--budget 480]
    python benchmarks/gpu_suite.py --smoke --out /tmp/gpu_suite_smoke.json

Writes benchmarks/results/gpu_suite.json (or ``--out``) and prints each part as it ends.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
CIFAR = DATASETS / "cifar10-jpeg.tar.gz"
AG_NEWS = DATASETS / "ag_news_test.csv"
TEXT_SMOKE = [
    "model.width=32",
    "model.depth=1",
    "text.vocab_size=200",
    "text.max_length=32",
    "train.batch_size=8",
]
TEXT_FULL = ["text.max_length=64", "train.batch_size=64"]
PIXEL_MODELS = ("pixelcnn", "pixelrnn")


def peak_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def epoch_grid(args, device, tmp: Path) -> list[dict]:
    """Part (a): per-step and per-epoch times of each (batch, precision, compile) setting."""
    from selfsup.data.dataset import train_subset
    from selfsup.runs import resolve
    from selfsup.train import run_pretraining

    rows = []
    for batch in args.grid_batches:
        for precision in ("fp32", "bf16"):
            for compiled in ("false", "true"):
                overrides = [
                    f"train.batch_size={batch}",
                    f"train.precision={precision}",
                    f"train.compile={compiled}",
                    f"train.device={device.type}",
                    "train.epochs=2",
                    *args.image_overrides,
                ]
                config, splits = resolve("simclr", args.data, overrides=overrides)
                full_steps = len(splits.train) // batch
                subset = train_subset(splits, batch * args.grid_steps)
                reset_peak(device)
                result = run_pretraining(config, subset, tmp / "grid", overwrite=True, progress=False)
                step_seconds = result.history[-1]["seconds"] / args.grid_steps
                rows.append(
                    {
                        "batch": batch,
                        "precision": precision,
                        "compile": compiled == "true",
                        "seconds_per_step": step_seconds,
                        "seconds_per_epoch": step_seconds * full_steps,
                        "images_per_s": batch / step_seconds,
                        "compile_seconds": result.speed.get("compile_seconds"),
                        "peak_gpu_mb": peak_memory_mb(device),
                    }
                )
                print("(a)", json.dumps(rows[-1]), flush=True)
    return rows


def every_method(args, device, tmp: Path) -> list[dict]:
    """Part (c): one short epoch of every method on the device."""
    from selfsup import api
    from selfsup.data.dataset import train_subset
    from selfsup.methods import METHODS
    from selfsup.runs import resolve
    from selfsup.train import run_pretraining

    rows = []
    for name, info in METHODS.items():
        text = info.build.modality == "text"
        overrides = [f"train.device={device.type}", "train.epochs=1", "train.pictures=0"]
        if text:
            data, overrides = str(args.text_data), overrides + (TEXT_SMOKE if args.smoke else TEXT_FULL)
        else:
            data = args.data
            overrides += (
                smoke_overrides(name) if args.smoke else ["train.batch_size=256", *args.image_overrides]
            )
            if name in PIXEL_MODELS and not args.smoke:
                overrides = [*overrides, "train.batch_size=64"]
        started = time.perf_counter()
        reset_peak(device)
        try:
            if text:
                result = api.pretrain(
                    name, data, out=str(tmp / name), overrides=overrides, progress=False, report=False
                )
            else:
                config, splits = resolve(name, data, overrides=overrides)
                subset = train_subset(splits, args.method_images)
                result = run_pretraining(config, subset, tmp / name, overwrite=True, progress=False)
            row = {"method": name, "loss": result.final_loss, "finite": math.isfinite(result.final_loss)}
            row["images_per_s"] = result.history[-1]["images_per_s"]
        except Exception as exc:  # noqa: BLE001 - the suite reports every method, failed or not
            row = {"method": name, "error": f"{type(exc).__name__}: {exc}"[:300], "finite": False}
        row.update(seconds=time.perf_counter() - started, peak_gpu_mb=peak_memory_mb(device))
        rows.append(row)
        print("(c)", json.dumps(row), flush=True)
    return rows


def smoke_overrides(method: str) -> list[str]:
    """The test suite's tiny settings of each image method (tests/test_methods.py)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_methods import tiny_for

    return [*tiny_for(method), "train.batch_size=128"]


def augmentation(args, device) -> list[dict]:
    """Part (d): two SimCLR views per second, selfsup against torchvision per image and kornia,
    all on the device."""
    from augment_throughput import kornia_runner, selfsup_runner, time_runs

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.aug_batch * 4, 3, 32, 32), dtype=torch.uint8, generator=generator)
    runners = {
        "selfsup (batched)": selfsup_runner(images, args.aug_batch, args.aug_batches, device),
        "torchvision v2 (per image)": torchvision_on_device(images, args.aug_batch, args.aug_batches, device),
    }
    try:
        runners["kornia (batched)"] = kornia_runner(images, args.aug_batch, args.aug_batches, device)
    except ImportError:
        pass
    rows = []
    for name, run in runners.items():
        run()  # warm-up
        seconds = statistics.median(time_runs(run, args.repeats))
        rows.append({"pipeline": name, "images_per_s": args.aug_batch * args.aug_batches / seconds})
        print("(d)", json.dumps(rows[-1]), flush=True)
    return rows


def torchvision_on_device(images: torch.Tensor, batch: int, batches: int, device: torch.device):
    """torchvision's ``transforms.v2`` SimCLR pipeline applied image by image on the device (its
    random parameters are drawn per call, so per-image views need a call per image)."""
    import torchvision.transforms.v2 as T

    transform = T.Compose(
        [
            T.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToDtype(torch.float32, scale=True),
        ]
    )
    data = images.to(device)

    def run():
        for i in range(batches):
            start = (i * batch) % (len(data) - batch + 1)
            for image in data[start : start + batch]:
                transform(image), transform(image)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


def long_run(args, device, grid: list[dict], seconds_left: float, tmp: Path) -> dict:
    """Part (b): the fastest setting of the grid, as many epochs as fit in ``seconds_left``."""
    from gpu_cifar10 import train_with_knn
    from selfsup.runs import resolve

    fastest = min(grid, key=lambda row: row["seconds_per_epoch"])
    knn_seconds = 2.0 if device.type == "cuda" else 0.5  # per measurement, a guess refined by the run
    per_epoch = fastest["seconds_per_epoch"] + knn_seconds / args.knn_every
    epochs = max(1, min(args.max_epochs, int((seconds_left - (fastest["compile_seconds"] or 0)) / per_epoch)))
    overrides = [
        f"train.batch_size={fastest['batch']}",
        f"train.precision={fastest['precision']}",
        f"train.compile={str(fastest['compile']).lower()}",
        f"train.device={device.type}",
        f"train.epochs={epochs}",
        *args.image_overrides,
    ]
    config, splits = resolve("simclr", args.data, overrides=overrides)
    reset_peak(device)
    rows, stopped = train_with_knn(config, splits, tmp / "long", seconds_left, args.knn_every)
    knn = [row["knn"] for row in rows if "knn" in row]
    return {
        "setting": {k: fastest[k] for k in ("batch", "precision", "compile")},
        "planned_epochs": epochs,
        "epochs": rows,
        "stopped": stopped,
        "best_knn": max(knn) if knn else None,
        "seconds": rows[-1]["elapsed"] if rows else 0.0,
        "peak_gpu_mb": peak_memory_mb(device),
    }


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(CIFAR))
    parser.add_argument("--text-data", default=str(AG_NEWS))
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole suite")
    parser.add_argument("--knn-every", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny settings on the CPU (the test suite's)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_suite.json"))
    args = parser.parse_args(argv)
    args.grid_batches, args.grid_steps, args.method_images = [512, 1024], 10, 2048
    args.aug_batch, args.aug_batches, args.repeats, args.max_epochs = 512, 10, 3, 1000
    args.image_overrides = ["model.backbone=resnet18", "model.stem=cifar"]
    if args.smoke:
        args.data, args.budget, args.knn_every = "digits", 60.0, 1
        args.grid_batches, args.grid_steps, args.method_images = [64], 2, 256
        args.aug_batch, args.aug_batches, args.repeats, args.max_epochs = 8, 1, 1, 2
        args.image_overrides = ["model.width=8", "method.proj_dim=16", "optim.warmup_epochs=0"]
    return args


def main(argv=None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # "fp32" below is fp32 storage, TF32 products
        torch.backends.cudnn.allow_tf32 = True
    else:
        from selfsup.train import speed

        speed.BACKEND = "eager"  # the graph capture without Inductor's minutes of C++ compilation
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.smoke:
            lines = [
                f"document {i} says {' '.join(['word'] * (i % 7 + 3))} about topic {i % 4}" for i in range(64)
            ]
            args.text_data = tmp / "corpus.txt"
            args.text_data.write_text("\n".join(lines) + "\n")
        result = {"machine": machine_info(), "smoke": args.smoke, "budget_seconds": args.budget}
        result["a_epoch_grid"] = epoch_grid(args, device, tmp)
        result["c_every_method"] = every_method(args, device, tmp)
        result["d_augmentation"] = augmentation(args, device)
        seconds_left = args.budget - (time.perf_counter() - started) - 10
        if seconds_left > (5 if args.smoke else 60):
            result["b_long_run"] = long_run(args, device, result["a_epoch_grid"], seconds_left, tmp)
            print(
                "(b)",
                json.dumps({k: v for k, v in result["b_long_run"].items() if k != "epochs"}),
                flush=True,
            )
        else:
            result["b_long_run"] = {"skipped": f"{seconds_left:.0f} s left of the budget"}
    result["seconds"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {args.out} after {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
