"""Every image method on one data set, each with its recipe, evaluated alike, side by side.

For each method: pretraining with its recipe (plus the overrides below), then kNN and the linear
probe at the label budgets of the preset (3 seeds), beside the from-scratch and raw-pixel baselines
(the same for every method, run once with the first). Each method runs in its own process, one after
the other, so that its wall time and peak memory are its own.

Presets:
  digits  the built-in 8×8 digits with each method's `_small` recipe as it is; 1, 5 and 10 labels
          per class. Writes benchmarks/results/methods_digits.json.
  cifar   a class-balanced subset of the shared CIFAR-10 JPEGs (default 10,000 training images) with
          each method's CIFAR-10 recipe, but sized for a CPU: ResNet-18 with the ImageNet stem (5×
          faster here than the CIFAR stem) where the recipe has a ResNet, batch 256, 15 epochs, 1
          warm-up epoch, DINO and iBOT with 4,096 prototypes, smaller MAE/I-JEPA/iBOT/PixelCNN/
          PixelRNN models (below); kNN and linear at 1% and 10% of the 50,000 training labels,
          scored on the 10,000 test images. Writes benchmarks/results/methods_cifar_subset.json.

Methods with a pretext metric of their own (bits/dim of the pixel models, reconstruction error of
the auto-encoders) add it, measured on the whole test split, in a second table.

    python benchmarks/methods.py --preset digits [--epochs N] [--methods simclr,byol,...]
    python benchmarks/methods.py --preset cifar [--data PATH] [--subset N] [--epochs N]

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"

PRESETS = {
    "digits": {"data": "digits", "budgets": ["1/class", "5/class", "10/class"], "overrides": [], "subset": 0},
    "cifar": {
        "data": str(CIFAR),
        "budgets": ["0.01", "0.1"],
        "subset": 10000,
        "epochs": 15,
        "overrides": [
            "train.batch_size=256",
            "optim.warmup_epochs=1",
            "eval.labels=[0.01,0.1]",
            "eval.finetune_epochs=15",
        ],
        "resnet_overrides": ["model.backbone=resnet18", "model.stem=imagenet"],
        # DINO: solo-learn's 4,096 prototypes for CIFAR; BatchNorm in the head, as on the digits,
        # because the official head without it NaN'd at epoch 2 (bf16, no clipping) and, with
        # the official gradient clipping, sat at the uniform distribution (measured)
        "method_overrides": {
            "dino": ["method.out_dim=4096", "method.head_batch_norm=true"],
            # sized to the CPU (measured): ViT 192 wide but 6 blocks; pixel models 64 wide
            "mae": ["model.depth=6", "optim.warmup_epochs=2"],
            "pixelcnn": ["model.width=64", "model.depth=8", "train.batch_size=64"],
            "pixelrnn": ["model.width=64", "model.depth=4", "train.batch_size=64"],
            # the ViT methods at MAE's depth; iBOT's heads at DINO's 4,096 prototypes with
            # BatchNorm, for the reason above (its digits recipe needed it too), 512 wide: its
            # head runs on every patch token, and at 2,048 wide an epoch took 325 s (measured)
            "ijepa": ["model.depth=6", "method.predictor_depth=4"],
            "ibot": [
                "model.depth=6",
                "method.out_dim=4096",
                "method.patch_out_dim=4096",
                "method.hidden_dim=512",
                "method.head_batch_norm=true",
            ],
        },
    },
}


def run_one(method: str, preset: dict, data: str, subset: int, epochs: int | None, baselines: bool) -> dict:
    from selfsup import api
    from selfsup.data.dataset import train_subset
    from selfsup.train import run_pretraining

    started = time.perf_counter()
    out = ROOT / "runs" / f"bench-{Path(data).name.split('.')[0]}-{method}"
    from selfsup.methods.recipes import build_config

    resnet = build_config(method, small_images=False).model.backbone.startswith("resnet")
    overrides = (
        preset["overrides"]
        + (preset.get("resnet_overrides", []) if resnet else [])
        + preset.get("method_overrides", {}).get(method, [])
    )
    config, splits = api.resolve(method, data, overrides=overrides, flags={"train.epochs": epochs})
    if subset and subset < len(splits.train):
        splits = train_subset(splits, subset)
    result = run_pretraining(config, splits, out, overwrite=True, progress=False)
    protocols = ["knn", "linear"] + (["scratch", "pixels"] if baselines else [])
    evaluation = api.evaluate(out, data=data, seeds=3, protocols=protocols, progress=False)
    return {
        "method": method,
        "recipe": config.recipe,
        "epochs": result.epochs,
        "pretrain_images": len(splits.train),
        "pretrain_seconds": result.seconds,
        "wall_seconds": time.perf_counter() - started,
        "peak_memory_mb": api.peak_memory_mb(),
        "overrides": overrides,
        "final": result.history[-1],
        "test_metrics": result.test_metrics,
        "results": evaluation["results"],
    }


def save(
    out: Path, preset: str, data: str, subset: int, epochs, previous: dict | None, rows: list, started: str
) -> list:
    """Write this invocation's ``rows`` to ``out`` (after the ``previous`` file's rows of other
    methods, where appending), in the registry's order; returns every row written."""
    from selfsup.methods import METHODS

    invocations = [
        {"started": started, "methods": [r["method"] for r in rows], "subset": subset, "epochs": epochs}
    ]
    every = list(rows)
    if previous is not None:
        names = {r["method"] for r in rows}
        every = [r for r in previous["rows"] if r["method"] not in names] + every
        earlier = previous.get("invocations", [{"methods": [r["method"] for r in previous["rows"]]}])
        invocations = earlier + invocations
    order = list(METHODS)
    every.sort(key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))
    record = {
        "machine": machine_info(),
        "preset": preset,
        "data": data,
        "subset": subset,
        "epochs": epochs,
        "invocations": invocations,
        "rows": every,
    }
    out.write_text(json.dumps(record, indent=2))
    return every


def main() -> None:
    from selfsup.methods import METHODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    parser.add_argument("--data", help="data path (cifar preset: the CIFAR-10 archive or folder)")
    parser.add_argument(
        "--subset", type=int, help="pretraining images (class-balanced subset of the training split)"
    )
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs")
    image_methods = [name for name, info in METHODS.items() if info.build.modality == "image"]
    parser.add_argument("--methods", default=",".join(image_methods), help="default: every image method")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--baselines", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--append",
        action="store_true",
        help="add these methods' rows to the existing results file (replacing rows of the same "
        "method), e.g. to finish a run that was interrupted; the file records each invocation",
    )
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    data = args.data or preset["data"]
    subset = preset["subset"] if args.subset is None else args.subset
    epochs = args.epochs or preset.get("epochs")
    if args.one:
        print(json.dumps(run_one(args.one, preset, data, subset, epochs, args.baselines)))
        return
    result_name = "methods_digits" if args.preset == "digits" else "methods_cifar_subset"
    out = ROOT / "benchmarks" / "results" / f"{result_name}.json"
    previous = json.loads(out.read_text()) if args.append and out.exists() else None
    rows, started_at = [], time.strftime("%Y-%m-%d %H:%M")
    for i, method in enumerate(args.methods.split(",")):
        command = [
            sys.executable,
            __file__,
            "--one",
            method,
            "--preset",
            args.preset,
            "--data",
            data,
            "--subset",
            str(subset),
        ] + (["--baselines"] if i == 0 and previous is None else [])
        if epochs:
            command += ["--epochs", str(epochs)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:  # recorded, and the other methods still run
            error = (
                done.stderr.strip().splitlines()[-1]
                if done.stderr.strip()
                else f"exit code {done.returncode}"
            )
            rows.append({"method": method, "error": error, "wall_seconds": time.perf_counter() - started})
            print(f"{method}: FAILED ({error})", file=sys.stderr, flush=True)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{method}: {rows[-1]['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
        # saved after every method, so that an invocation stopped part-way keeps what it finished
        save(out, args.preset, data, subset, epochs, previous, rows, started_at)
    rows = save(out, args.preset, data, subset, epochs, previous, rows, started_at)

    def cell(row, protocol, labels):
        if "error" in row:
            return "failed"
        r = next(r for r in row["results"] if r["protocol"] == protocol and r["labels"] == labels)
        return f"{r['mean']:.3f} ± {r['std']:.3f}"

    budgets = preset["budgets"]
    names = [b.split("/")[0] if "/" in b else f"{float(b):.0%}" for b in budgets]
    print(
        "| method | "
        + " | ".join(f"kNN {n}" for n in names)
        + " | "
        + " | ".join(f"linear {n}" for n in names)
        + " | wall time | peak memory |"
    )
    print("| --- " * (2 * len(budgets) + 3) + "|")
    for row in rows:
        print(
            f"| {row['method']} | "
            + " | ".join(cell(row, "knn", b) for b in budgets)
            + " | "
            + " | ".join(cell(row, "linear", b) for b in budgets)
            + f" | {row['wall_seconds']:.0f} s | "
            + (f"{row['peak_memory_mb']:.0f} MB |" if row.get("peak_memory_mb") else "not recorded |")
        )
    print(
        "\n| baseline (same labelled subsets) | "
        + " | ".join(names)
        + " |\n| --- " * 1
        + "| --- " * len(budgets)
        + "|"
    )
    with_baselines = next(r for r in rows if any(x["protocol"] == "scratch" for x in r.get("results", [])))
    for protocol, name in (("scratch", "from scratch"), ("pixels", "raw pixels + linear")):
        print(f"| {name} | " + " | ".join(cell(with_baselines, protocol, b) for b in budgets) + " |")
    pretext = [r for r in rows if r.get("test_metrics")]
    if pretext:
        print("\n| method | pretext metric on the test split | seconds per epoch |\n| --- | --- | --- |")
        for row in pretext:
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in row["test_metrics"].items())
            print(f"| {row['method']} | {metrics} | {row['final']['seconds']:.1f} |")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
