"""SimCLR's augmentation-pair study (Chen et al. 2020, Fig. 5) with `selfsup ablate --pairs`.

Each augmentation alone and every pair of them, all others off, both branches augmented; each run
pretrains SimCLR with its recipe (but ``--epochs``) and is scored with kNN and the linear probe.

    python benchmarks/augmentation_pairs.py [--preset digits|cifar] [--pairs crop,color,...]
                                            [--epochs N] [--seeds 3]

digits  the built-in 8×8 digits with simclr_small, 100 epochs: crop, color, blur, solarize and flip
        (grayscale is left out: on grey images it changes nothing); 1, 5 and 10 labels per class.
        Writes benchmarks/results/augmentation_pairs_digits.json and .png (the heat map).
cifar   the shared CIFAR-10 JPEGs with simclr.yaml sized as benchmarks/methods.py's cifar preset
        (ResNet-18 with the ImageNet stem, batch 256, 1 warm-up epoch) on a class-balanced subset
        of 5,000 training images for 10 epochs: crop, color, blur and flip; kNN and linear at 1%
        and 10% of the 50,000 training labels. Writes augmentation_pairs_cifar_subset.json/.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from machine import machine_info
from methods import PRESETS as METHOD_PRESETS

ROOT = Path(__file__).resolve().parents[1]
_CIFAR = METHOD_PRESETS["cifar"]  # the methods table's sizing of the CIFAR-10 recipes for a CPU
PRESETS = {
    "digits": {"data": "digits", "pairs": "crop,color,blur,solarize,flip", "epochs": 100, "subset": None},
    "cifar": {
        "data": _CIFAR["data"],
        "pairs": "crop,color,blur,flip",
        "epochs": 10,
        "subset": 5000,
        "labels": _CIFAR["budgets"],
        "overrides": _CIFAR["overrides"] + _CIFAR["resnet_overrides"],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    parser.add_argument("--pairs", help="augmentations (default: the preset's)")
    parser.add_argument("--epochs", type=int, help="default: the preset's")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    from selfsup import api

    name = "augmentation_pairs_" + ("digits" if args.preset == "digits" else "cifar_subset")
    out = ROOT / "runs" / name.replace("_", "-")
    started = time.perf_counter()
    study = api.ablate(
        "simclr",
        preset["data"],
        pairs=(args.pairs or preset["pairs"]).split(","),
        out=out,
        epochs=args.epochs or preset["epochs"],
        labels=preset.get("labels"),
        seeds=args.seeds,
        subset=preset["subset"],
        overrides=preset.get("overrides", []),
        progress=False,
    )
    results = ROOT / "benchmarks" / "results"
    shutil.copy(study["figure"], results / f"{name}.png")
    saved = {k: v for k, v in study.items() if k not in ("file", "report", "figure")}
    saved |= {"machine": machine_info(), "wall_seconds": time.perf_counter() - started}
    (results / f"{name}.json").write_text(json.dumps(saved, indent=2, default=str))
    print(study["table"])
    print(f"{time.perf_counter() - started:.0f} s; saved {results / name}.json and .png")


if __name__ == "__main__":
    main()
