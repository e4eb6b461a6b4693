"""benchmarks/gpu_suite.py --smoke: every part of the prepared GPU suite, on the CPU with tiny
settings, so that the script a GPU session runs once cannot break unseen."""

import json
import math
from pathlib import Path

import torch

from selfsup.methods import METHODS
from selfsup.train import speed

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_gpu_suite_runs_every_part_in_smoke_mode(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(speed, "BACKEND", speed.BACKEND)  # the suite sets "eager"; restored after
    import gpu_suite

    out = tmp_path / "suite.json"
    try:
        gpu_suite.main(["--smoke", "--out", str(out)])
    finally:
        torch._dynamo.reset()
    result = json.loads(out.read_text())
    grid = result["a_epoch_grid"]
    assert {(row["precision"], row["compile"]) for row in grid} == {
        (p, c) for p in ("fp32", "bf16") for c in (False, True)
    }
    assert all(row["seconds_per_step"] > 0 and row["seconds_per_epoch"] > 0 for row in grid)
    assert all(row["compile_seconds"] > 0 for row in grid if row["compile"])
    methods = result["c_every_method"]
    assert [row["method"] for row in methods] == list(METHODS)
    assert all(row["finite"] for row in methods), [row for row in methods if not row["finite"]]
    assert {row["pipeline"] for row in result["d_augmentation"]} >= {
        "selfsup (batched)",
        "torchvision v2 (per image)",
    }
    long_run = result["b_long_run"]
    assert (
        long_run["epochs"]
        and 0 <= long_run["best_knn"] <= 1
        and math.isfinite(long_run["epochs"][-1]["loss"])
    )
