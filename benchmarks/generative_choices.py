"""The measurements behind three choices for the generative methods on the digits, side by side in
one run, each scored by kNN (k 20, cosine) with all 1,347 training labels on the 450 test digits:

* dae: the corruption of the `dae_small` recipe (60 epochs each): Gaussian σ 0.3, salt-and-pepper
  20%, pixels masked 50% and 25%, 2×2 patches masked 50%;
* mae, tiny model (width 32, 2 blocks, decoder 32 × 1; the real-data test's model): kNN at
  initialisation and after 4, 10, 30 and 100 epochs (its features first get worse);
* mae, `mae_small` recipe for 100 epochs at the recipe's rate 1e-3 and at 3e-4.

    python benchmarks/generative_choices.py

Writes benchmarks/results/generative_choices_digits.json.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path

import torch

from machine import machine_info
from selfsup import api, load_encoder
from selfsup.data import load_data
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.knn import knn_predict

ROOT = Path(__file__).resolve().parents[1]
TINY_MAE = [
    "model.width=32",
    "model.depth=2",
    "method.decoder_dim=32",
    "method.decoder_depth=1",
    "train.batch_size=128",
    "optim.warmup_epochs=1",
]


def knn_all_labels(run_dir: Path, splits) -> float:
    encoder = load_encoder(run_dir)
    train = extract_features(encoder, splits.train.images, torch.device("cpu"))
    test = extract_features(encoder, splits.test.images, torch.device("cpu"))
    return float(
        (knn_predict(train, splits.train.labels, test, 10, k=20) == splits.test.labels).float().mean()
    )


def run(method: str, epochs: int, overrides: list[str], splits, tmp: Path) -> dict:
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = api.pretrain(
            method,
            "digits",
            out=tmp,
            epochs=epochs,
            overrides=overrides + ["train.pictures=0"],
            progress=False,
            overwrite=True,
        )
    row = {
        "method": method,
        "epochs": epochs,
        "overrides": overrides,
        "knn_all_labels": knn_all_labels(tmp, splits),
        "test_metrics": result.test_metrics,
        "seconds": time.perf_counter() - started,
        "collapse_warnings": sum("collapse" in str(w.message) for w in caught),
    }
    print(
        f"{method:4s} {epochs:4d} epochs {' '.join(overrides):80s} kNN {row['knn_all_labels']:.3f} "
        f"{row['test_metrics']} ({row['seconds']:.0f} s, {row['collapse_warnings']} collapse warnings)",
        flush=True,
    )
    return row


def main() -> None:
    splits = load_data("digits")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for noise in (
            ["method.noise=gaussian", "method.noise_std=0.3"],
            ["method.noise=salt_pepper"],
            ["method.noise=mask", "method.mask_ratio=0.5"],
            ["method.noise=mask", "method.mask_ratio=0.25"],
            ["method.noise=mask", "method.mask_ratio=0.5", "method.mask_patch=2"],
        ):
            rows.append(run("dae", 60, noise, splits, tmp))
        rows.append(run("mae", 1, TINY_MAE + ["optim.lr=1e-12"], splits, tmp))  # (almost) the initialisation
        for epochs in (4, 10, 30, 100):
            rows.append(run("mae", epochs, TINY_MAE, splits, tmp))
        for lr in ("1e-3", "3e-4"):
            rows.append(run("mae", 100, [f"optim.lr={lr}"], splits, tmp))
    out = ROOT / "benchmarks" / "results" / "generative_choices_digits.json"
    out.write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
