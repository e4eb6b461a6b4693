"""The reference runs that pin the training loop's numbers: 3 epochs of SimCLR, BYOL, MoCo v2,
DINO, MAE and MLM (with next-sentence prediction, for its loss terms) on tiny data, on the CPU in
float32 with a fixed seed. MLM uses the character tokenizer: Hugging Face's WordPiece trainer
numbers its vocabulary in an order that changes from one process to the next. ``losses.json``
holds what the loop wrote before its redesign (issue 17); ``tests/test_reference.py`` checks that
the loop still writes the same to 1e-6.

    python tests/reference/runs.py   # rewrite losses.json (only when a change of numbers is meant)
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import torch

REFERENCE = Path(__file__).with_name("losses.json")
TIMING = ("seconds", "images_per_s")
"""Fields of metrics.jsonl that measure the machine, not the run."""

COMMON = [
    "train.device=cpu",
    "train.precision=fp32",
    "train.seed=3",
    "train.pictures=2",
    "optim.warmup_epochs=1",
]
RUNS: dict[str, list[str]] = {
    "simclr": ["model.width=8", "method.proj_dim=16", "train.batch_size=256"],
    "byol": ["model.width=8", "method.proj_dim=16", "train.batch_size=256"],
    "moco_v2": ["model.width=8", "method.proj_dim=16", "train.batch_size=256", "method.queue_size=512"],
    "dino": ["model.width=8", "train.batch_size=256"],
    "mae": [
        "model.width=32",
        "model.depth=2",
        "method.decoder_dim=32",
        "method.decoder_depth=1",
        "train.batch_size=256",
    ],
    "mlm": [
        "model.width=32",
        "model.depth=1",
        "text.tokenizer=char",
        "text.max_length=24",
        "train.batch_size=16",
        "method.next_sentence=true",
    ],
}
EPOCHS = 3
SENTENCES = [
    "The cat sat on the mat.",
    "Stocks fell sharply today!",
    "Is the game on tonight?",
    "Rain is expected tomorrow.",
    "The team won the cup.",
    "Oil prices rose again.",
]


def text_corpus(folder: Path) -> str:
    """A small labelled CSV of short news-like texts."""
    rows = [
        f'"{1 + i % 2}","' + " ".join(SENTENCES[(i + k) % 6] for k in range(1 + i % 3)) + '"\n'
        for i in range(96)
    ]
    path = folder / "news.csv"
    path.write_text("".join(rows))
    return str(path)


def run(method: str, folder: Path) -> dict:
    """The per-epoch records (timings left out) and held-out metrics of one reference run."""
    from selfsup import api

    data = text_corpus(folder) if method == "mlm" else "digits"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order on any machine of this kind
    try:
        result = api.pretrain(
            method,
            data,
            out=folder / method,
            epochs=EPOCHS,
            overrides=COMMON + RUNS[method],
            progress=False,
            report=False,
        )
    finally:
        torch.set_num_threads(threads)
    history = [{k: v for k, v in record.items() if k not in TIMING} for record in result.history]
    return {"history": history, "test_metrics": result.test_metrics}


def differences(expected, actual, where: str = "", tolerance: float = 1e-6) -> list[str]:
    """Where ``actual`` differs from ``expected`` by more than ``tolerance`` (relative, absolute near 0)."""
    if isinstance(expected, dict):
        if set(expected) != set(actual):
            return [f"{where}: keys {sorted(set(expected) ^ set(actual))} differ"]
        return [
            d
            for key in expected
            for d in differences(expected[key], actual[key], f"{where}.{key}", tolerance)
        ]
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} items expected, got {len(actual)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual))
            for d in differences(e, a, f"{where}[{i}]", tolerance)
        ]
    if isinstance(expected, float) or isinstance(actual, float):
        if math.isnan(expected) and math.isnan(actual):
            return []
        if abs(expected - actual) > tolerance * max(1.0, abs(expected)):
            return [f"{where}: expected {expected!r}, got {actual!r}"]
        return []
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        reference = {method: run(method, Path(folder)) for method in RUNS}
    REFERENCE.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {REFERENCE}", file=sys.stderr)


if __name__ == "__main__":
    main()
