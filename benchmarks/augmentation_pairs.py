"""SimCLR's augmentation-pair study (Chen et al. 2020, Fig. 5) with `selfsup ablate --pairs`.

Each augmentation alone and every pair of them, all others off, both branches augmented; each run
pretrains SimCLR with its recipe (but ``--epochs``) and is scored with kNN and the linear probe.

    python benchmarks/augmentation_pairs.py [--pairs crop,color,...] [--epochs 100] [--seeds 3]

On the built-in 8×8 digits with simclr_small: crop, color, blur, solarize and flip (grayscale is
left out: on grey images it changes nothing); 1, 5 and 10 labels per class. Writes
benchmarks/results/augmentation_pairs_digits.json and .png (the heat map).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
PAIRS = "crop,color,blur,solarize,flip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default=PAIRS, help=f"augmentations (default {PAIRS})")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    from selfsup import api

    out = ROOT / "runs" / "augmentation-pairs-digits"
    started = time.perf_counter()
    study = api.ablate(
        "simclr",
        "digits",
        pairs=args.pairs.split(","),
        out=out,
        epochs=args.epochs,
        seeds=args.seeds,
        progress=False,
    )
    results = ROOT / "benchmarks" / "results"
    name = "augmentation_pairs_digits"
    shutil.copy(study["figure"], results / f"{name}.png")
    saved = {k: v for k, v in study.items() if k not in ("file", "report", "figure")}
    saved |= {"machine": machine_info(), "wall_seconds": time.perf_counter() - started}
    (results / f"{name}.json").write_text(json.dumps(saved, indent=2, default=str))
    print(study["table"])
    print(f"{time.perf_counter() - started:.0f} s; saved {results / name}.json and .png")


if __name__ == "__main__":
    main()
