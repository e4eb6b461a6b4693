"""SimCLR on the shared CIFAR-10 JPEGs on a CPU in about 20 minutes, then few-label evaluation.

Pretrains on a class-balanced subset of the training split (all 50,000 images are too many for
20 minutes on 2 cores), with the SimCLR CIFAR-10 recipe (recipes/simclr.yaml: augmentations,
temperature 0.5, LARS, warm-up + cosine) except for the backbone, batch size and epochs given here.
Then kNN and the linear probe at 1% and 10% of the training labels (full 50,000-image split,
class-balanced, 3 seeds), against the same backbone trained from scratch on the same labelled
subsets and a linear model on raw pixels; scored on the 10,000 test images.

    python benchmarks/cifar_simclr_cpu.py [--data ../shared/datasets/cifar10-jpeg.tar.gz]

Writes benchmarks/results/cifar_simclr_cpu.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from machine import machine_info
from selfsup.api import peak_memory_mb, resolve
from selfsup.data.dataset import train_subset
from selfsup.evaluate import evaluate_encoder, format_table
from selfsup.models import load_encoder
from selfsup.train import run_pretraining
from selfsup.train.device import resolve_device, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument(
        "--subset",
        type=int,
        default=50000,
        help="pretraining images (class-balanced subset of the training split)",
    )
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument(
        "--stem", default="imagenet", help="ResNet stem: cifar (paper) or imagenet (5× faster here)"
    )
    parser.add_argument("--width", type=int, default=64, help="small_cnn width")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--scratch-epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-cifar-simclr-cpu"))
    parser.add_argument("--result", default="cifar_simclr_cpu", help="name of the results file")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args()

    overrides = [
        f"model.backbone={args.backbone}",
        f"model.stem={args.stem}",
        f"model.width={args.width}",
        f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch_size}",
        "optim.warmup_epochs=1",
        "eval.labels=[0.01,0.1]",
        f"eval.seeds={args.seeds}",
        "eval.protocols=[knn,linear,scratch,pixels]",
        f"eval.finetune_epochs={args.scratch_epochs}",
        f"train.device={args.device}",
    ]
    config, splits = resolve("simclr", args.data, overrides=overrides)
    pretrain_splits = train_subset(splits, args.subset)

    started = time.perf_counter()
    result = run_pretraining(config, pretrain_splits, args.out, overwrite=True)
    pretrain_seconds = time.perf_counter() - started

    device = resolve_device(config.train.device)
    started = time.perf_counter()
    evaluation = evaluate_encoder(
        load_encoder(args.out, device),
        splits,
        config.eval,
        device,
        resolve_precision(config.train.precision, device),
    )
    eval_seconds = time.perf_counter() - started
    print(format_table(evaluation))
    print(
        f"pretraining {pretrain_seconds:.0f} s ({args.epochs} epochs of {len(pretrain_splits.train)} images, "
        f"{result.history[-1]['images_per_s']:.0f} images/s), evaluation {eval_seconds:.0f} s"
    )

    out = ROOT / "benchmarks" / "results" / f"{args.result}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "args": vars(args),
                "config": config.to_dict(),
                "pretrain_seconds": pretrain_seconds,
                "eval_seconds": eval_seconds,
                "peak_memory_mb": peak_memory_mb(),
                "history": result.history,
                "evaluation": evaluation,
            },
            indent=2,
        )
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
