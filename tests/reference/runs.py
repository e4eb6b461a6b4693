"""The reference runs that pin the training loop's numbers: 3 epochs of SimCLR, BYOL, MoCo v2,
DINO, MAE and MLM (with next-sentence prediction, for its loss terms) on tiny data, on the CPU in
float32 with a fixed seed. MLM uses the character tokenizer: Hugging Face's WordPiece trainer
numbers its vocabulary in an order that changes from one process to the next. ``losses.json``
holds what the loop wrote before its redesign (issue 17), on an AVX-512 machine;
``tests/test_reference.py`` checks that the loop still writes the same, within :func:`tolerance`.

Why a tolerance, and why this one. MKL, oneDNN and ATen's vectorised kernels sum in an order that
depends on the CPU's instruction set (AVX-512, AVX2, none), so float32 results differ at about
1e-7 relative per operation; a few of them move a decision the loop takes on a float (a crop
rounded to a pixel, say), and from there the run differs at about 1e-5 to 1e-4. Measured against
``losses.json`` (2026-12-07, 2-core AMD EPYC with AVX2 only): its own kernels (``avx2``) differ by
at most 3.3e-5 in a loss and 1.1e-4 in an effective rank; ATen without vectorisation
(``ATEN_CPU_CAPABILITY=default``, oneDNN at SSE4.1, MKL at SSE4.2) by at most 8e-6. The relative
tolerance :data:`TOLERANCE` is 1e-3: nine times the largest of those. Other architectures (ARM's
NEON, 128 bits wide like SSE) sum in yet other orders but by the same mechanism, so they should
fall in the same range; ``make test`` reruns these runs without vectorisation to cover an order
unlike this machine's. A real change is far outside it: a NT-Xent temperature of 0.55 instead of
0.5 moves the SimCLR run by up to 8e-3, and the learning rate is computed, not measured, so it
is compared to 1e-12 (a schedule off by one step moves it by 0.15);
``test_the_tolerance_still_catches_a_change_in_a_loss_or_a_schedule`` checks both.

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
TOLERANCE = 1e-3
"""Relative difference allowed in a measured number (see the module docstring)."""
EXACT = {"lr": 1e-12}
"""Numbers computed without the kernels, compared (almost) exactly."""

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


def tolerance(where: str) -> float:
    """The relative tolerance of the number at ``where`` (e.g. ``simclr.history[2].lr``)."""
    return EXACT.get(where.rpartition(".")[2], TOLERANCE)


def differences(expected, actual, where: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected`` by more than :func:`tolerance` (relative,
    absolute near 0)."""
    if isinstance(expected, dict):
        if set(expected) != set(actual):
            return [f"{where}: keys {sorted(set(expected) ^ set(actual))} differ"]
        return [d for key in expected for d in differences(expected[key], actual[key], f"{where}.{key}")]
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} items expected, got {len(actual)}"]
        return [
            d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{where}[{i}]")
        ]
    if isinstance(expected, float) or isinstance(actual, float):
        if math.isnan(expected) and math.isnan(actual):
            return []
        if abs(expected - actual) > tolerance(where) * max(1.0, abs(expected)):
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
