"""Step overhead: selfsup's training epoch against a bare loop of the same model, side by side.

For each workload the run is built as ``selfsup pretrain`` builds it (recipe, precision,
channels_last, optimiser), then, alternately, ``--repeats`` times:

  - bare: the views of every step made beforehand (not timed), then for each step the method's
    forward under the run's autocast, ``zero_grad``, backward and the optimiser step; nothing else;
  - selfsup: ``train_one_epoch`` with the default callbacks of a run without a progress bar: the
    batch's gathering, the augmentation, forward, the loss log, backward, the optimiser, the
    method's ``after_step`` and the callbacks' step hooks;
  - the augmentation alone (the views of the same batches), to show what the difference is made of.

Both time the same number of steps on the same batches and model. The goal is selfsup ≤ 1.10×
the bare loop. Workloads: SimCLR with ResNet-18 (CIFAR stem) on a class-balanced subset of the
shared CIFAR-10 JPEGs, and SimCLR with the small CNN on scikit-learn's digits (the digits recipe).
``--compile`` adds the bare loop with the modules compiled by TorchInductor (its compile time and
step time), the measurement behind ``train.compile=auto`` being off on the CPU.

    python benchmarks/step_overhead.py [--workloads cifar,digits] [--repeats 5] [--compile]
        [--name step_overhead]

Writes benchmarks/results/<name>.json and prints a markdown table. Run it with PYTHONPATH pointing
at another checkout's ``src`` to measure that version (the "before" of a change).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
WORKLOADS = {
    # name: (data, batch, steps per epoch, overrides)
    "cifar": ("cifar", 256, 6, ["model.backbone=resnet18"]),
    "digits": ("digits", 256, 5, []),
}


def build(workload: str):
    from selfsup.data.dataset import train_subset
    from selfsup.runs import resolve
    from selfsup.train import build_run

    data, batch, steps, extra = WORKLOADS[workload]
    overrides = [f"train.batch_size={batch}", "train.device=cpu", "train.epochs=1000", *extra]
    config, splits = resolve("simclr", str(CIFAR) if data == "cifar" else data, overrides=overrides)
    if data == "cifar":
        splits = train_subset(splits, batch * steps)
    run = build_run(config, splits, Path("/nonexistent/step-overhead"), torch.device("cpu"), False, False)
    assert run.steps_per_epoch == steps, (run.steps_per_epoch, steps)
    return run


def batches(run, epoch: int) -> list[torch.Tensor]:
    order = run.order(epoch)
    return [run.inputs[run.share(order, k)] for k in range(run.steps_per_epoch)]


def time_augmentation(run, epoch: int) -> float:
    inputs, generator = batches(run, epoch), run.augment_generator(epoch)
    started = time.perf_counter()
    for batch in inputs:
        run.modality.views(batch, generator)
    return time.perf_counter() - started


def time_bare(run, epoch: int) -> float:
    from selfsup.train.device import autocast

    generator = run.augment_generator(epoch)
    views = [run.modality.views(batch, generator) for batch in batches(run, epoch)]
    run.method.train()
    started = time.perf_counter()
    for step_views in views:
        with autocast(run.device, run.amp_dtype):
            output = run.method(step_views)
        run.optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        run.optimizer.step()
    return time.perf_counter() - started


def time_selfsup(run, epoch: int) -> float:
    from selfsup.train import default_callbacks, train_one_epoch

    started = time.perf_counter()
    train_one_epoch(run, epoch, default_callbacks(run.config, progress=False))
    return time.perf_counter() - started


def measure(workload: str, repeats: int, compile_: bool) -> dict:
    run = build(workload)
    steps = run.steps_per_epoch
    time_bare(run, 0), time_selfsup(run, 0)  # warm-up: allocator, thread pools, first-call costs
    series = {"bare": [], "selfsup": [], "augmentation": []}
    for epoch in range(1, repeats + 1):
        series["selfsup"].append(time_selfsup(run, epoch) / steps)
        series["bare"].append(time_bare(run, epoch) / steps)
        series["augmentation"].append(time_augmentation(run, epoch) / steps)
    row = {
        "workload": workload,
        "backbone": run.config.model.backbone,
        "batch": run.config.train.batch_size,
        "steps_per_epoch": steps,
        "precision": str(run.amp_dtype),
        "seconds_per_step": series,
        **{f"median_{k}": statistics.median(v) for k, v in series.items()},
    }
    row["overhead"] = row["median_selfsup"] / row["median_bare"]
    if compile_:
        from selfsup.train import speed

        started = time.perf_counter()
        speed.compile_modules(run.method, "inductor")
        time_bare(run, repeats + 1)  # compiles forward and backward
        row["compile_seconds"] = time.perf_counter() - started
        compiled = [time_bare(run, repeats + 2 + k) / steps for k in range(repeats)]
        row["seconds_per_step"]["bare_compiled"] = compiled
        row["median_bare_compiled"] = statistics.median(compiled)
        gain = row["median_bare"] - row["median_bare_compiled"]
        row["steps_to_recover_compile"] = row["compile_seconds"] / gain if gain > 0 else None
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="cifar,digits")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--name", default="step_overhead")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    for workload in args.workloads.split(","):
        rows.append(measure(workload, args.repeats, args.compile))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "seconds_per_step"}), flush=True)
    import selfsup

    result = {
        "machine": machine_info(),
        "selfsup_source": str(Path(selfsup.__file__).parent),
        "compared": "per step, medians of --repeats epochs: selfsup's train_one_epoch vs a bare "
        "forward+backward+optimiser loop on pre-made views, same run (model, batch, precision, "
        "optimiser), alternately in one process",
        "repeats": args.repeats,
        "rows": rows,
    }
    out = ROOT / "benchmarks" / "results" / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n| workload | bare s/step | selfsup s/step | augmentation s/step | selfsup / bare |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['workload']} ({row['backbone']}, batch {row['batch']}) | {row['median_bare']:.4f} | "
            f"{row['median_selfsup']:.4f} | {row['median_augmentation']:.4f} | {row['overhead']:.3f} |"
        )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
