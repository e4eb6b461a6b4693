"""Training in 1 process and in 2 (torchrun, gloo) on this CPU, side by side in one run: the
parity of one step of every method, then time per step and the loss curves of whole runs, for the
same global batch, seed and data.

Parity: tests/distributed_worker.py's step of every method (small CNN on 8×8 inputs, global batch
16) in 2 processes against 1 process with the whole batch: the relative difference of the loss and
the largest gradient difference over the largest gradient.

Two workloads, each pretrained alternately with 1 process (all cores) and 2 processes (torchrun's
default of 1 thread each), ``--repeats`` times:

- SimCLR, small CNN (width 32), scikit-learn's digits (1,437 training images), batch 256;
- SimCLR, ResNet-18 (ImageNet stem, global BatchNorm), a class-balanced subset of the shared
  CIFAR-10 training JPEGs at 32×32, batch 256 (skipped when the tarball is absent).

Each workload also runs once in 2 processes with BatchNorm per process (``train.sync_batch_norm=false``)
to show what the global BatchNorm costs.

Time per step = the loop's own seconds per epoch (augmentation, forward, backward, optimiser and
every collective; not the checkpoint) / steps per epoch; the first epoch is warm-up and left out;
medians over the other epochs and the repeats. The loss columns give the largest relative
difference per epoch between the 1- and 2-process runs of the first repeat, beside the same
difference between 1 process with all threads and 1 process with 1 thread: the size of the drift
that summing in another order alone causes (fp32 and bf16 runs: see ``--precision``).

    python benchmarks/distributed_cpu.py [--repeats 2] [--data ../shared/datasets/cifar10-jpeg.tar.gz]

Writes benchmarks/results/distributed_cpu.json; its last line is the 2-process / 1-process ratio
of the time per step of each workload.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
RESULTS = Path(__file__).resolve().parent / "results"

WORKLOADS = {
    "digits_small_cnn": {
        "data": "digits",
        "subset": 0,
        "epochs": 6,
        "overrides": ["model.backbone=small_cnn", "model.width=32"],
    },
    "cifar_resnet18": {
        "data": "cifar",
        "subset": 2560,
        "epochs": 4,
        "overrides": ["model.backbone=resnet18", "model.stem=imagenet"],
    },
}


def worker(args: argparse.Namespace) -> None:
    """One pretraining (in each torchrun process, or alone)."""
    from selfsup import distributed
    from selfsup.api import resolve
    from selfsup.data.dataset import train_subset
    from selfsup.train import run_pretraining

    work = WORKLOADS[args.workload]
    overrides = work["overrides"] + [
        f"train.epochs={work['epochs']}",
        "train.batch_size=256",
        "optim.warmup_epochs=1",
        f"train.precision={args.precision}",
        "train.pictures=0",
        f"train.sync_batch_norm={args.sync_batch_norm}",
    ]
    config, splits = resolve(
        "simclr", args.data if work["data"] == "cifar" else "digits", overrides=overrides
    )
    if work["subset"]:
        splits = train_subset(splits, work["subset"])
    try:
        run_pretraining(config, splits, args.out, overwrite=True, progress=False)
    finally:
        distributed.shutdown()


def parity(out: Path) -> dict:
    """One step of every method in 2 processes against 1 (the cases of tests/test_distributed.py)."""
    sys.path.insert(0, str(TESTS))
    import torch

    import distributed_worker as worker

    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(TESTS / "distributed_worker.py"),
            "methods",
            str(out / "steps.pt"),
        ],
        check=True,
        cwd=TESTS,
    )
    two = torch.load(out / "steps.pt", weights_only=False)
    rows = {}
    for case in [*worker.CASES, *worker.EXTRA_CASES]:
        one = worker.run_case(case)
        scale = max(g.abs().max().item() for g in one["grads"].values() if g is not None)
        grad = max(
            (two[case]["grads"][n] - g).abs().max().item() for n, g in one["grads"].items() if g is not None
        )
        rows[case] = {
            "loss_relative_difference": abs(two[case]["loss"] - one["loss"]) / abs(one["loss"]),
            "gradient_max_difference_over_max_gradient": grad / scale,
        }
        print(
            f"  {case:28s} loss {rows[case]['loss_relative_difference']:.1e}   gradients "
            f"{rows[case]['gradient_max_difference_over_max_gradient']:.1e}"
        )
    return rows


def run(
    workload: str,
    processes: int,
    out: Path,
    args: argparse.Namespace,
    threads: int | None = None,
    sync_batch_norm: str = "auto",
) -> list[dict]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        workload,
        "--out",
        str(out),
        "--data",
        args.data,
        "--precision",
        args.precision,
        "--sync-batch-norm",
        sync_batch_norm,
    ]
    if processes > 1:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
        ] + command[1:]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record["wall_s"] = wall
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument(
        "--precision", default="fp32", help="fp32 (default: parity to rounding) or auto (bf16 here)"
    )
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-distributed"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sync-batch-norm", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.workload = args.worker
        worker(args)
        return

    workloads = [w for w in WORKLOADS if WORKLOADS[w]["data"] != "cifar" or Path(args.data).exists()]
    results = {
        "machine": machine_info(),
        "precision": args.precision,
        "repeats": args.repeats,
        "global_batch": 256,
        "method": "simclr",
        "workloads": {},
    }
    print("one step, 2 processes × 8 against 1 process × 16 (relative differences):")
    results["parity_one_step"] = parity(Path(args.out) / "parity")
    for workload in workloads:
        runs: dict[int, list[list[dict]]] = {1: [], 2: []}
        for repeat in range(args.repeats):
            for processes in (1, 2):  # alternated, so drifts of the machine hit both alike
                out = Path(args.out) / f"{workload}-{processes}p-{repeat}"
                runs[processes].append(run(workload, processes, out, args))
        one_thread = run(workload, 1, Path(args.out) / f"{workload}-1p-1thread", args, threads=1)
        local_bn = run(workload, 2, Path(args.out) / f"{workload}-2p-local-bn", args, sync_batch_norm="false")
        steps = {"digits_small_cnn": 1437 // 256, "cifar_resnet18": WORKLOADS[workload]["subset"] // 256}[
            workload
        ]
        step_s = {
            p: statistics.median(r["seconds"] / steps for records in runs[p] for r in records[1:])
            for p in (1, 2)
        }
        local_bn_s = statistics.median(r["seconds"] / steps for r in local_bn[1:])
        loss_diff = [
            abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(runs[1][0], runs[2][0], strict=True)
        ]
        order_diff = [
            abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(runs[1][0], one_thread, strict=True)
        ]
        results["workloads"][workload] = {
            "epochs": WORKLOADS[workload]["epochs"],
            "steps_per_epoch": steps,
            "step_seconds_1_process": step_s[1],
            "step_seconds_2_processes": step_s[2],
            "ratio_2_over_1": step_s[2] / step_s[1],
            "step_seconds_2_processes_per_process_batch_norm": local_bn_s,
            "step_seconds_1_process_1_thread": statistics.median(
                r["seconds"] / steps for r in one_thread[1:]
            ),
            "loss_1_process": [r["loss"] for r in runs[1][0]],
            "loss_2_processes": [r["loss"] for r in runs[2][0]],
            "loss_1_process_1_thread": [r["loss"] for r in one_thread],
            "loss_max_relative_difference": max(loss_diff),
            "loss_max_relative_difference_1_thread_vs_all": max(order_diff),
            "embedding_rank_1_process": [r["embedding_rank"] for r in runs[1][0]],
            "embedding_rank_2_processes": [r["embedding_rank"] for r in runs[2][0]],
            "wall_seconds": {p: [records[0]["wall_s"] for records in runs[p]] for p in (1, 2)},
        }
        print(
            f"{workload}: {step_s[1]:.3f} s/step with 1 process, {step_s[2]:.3f} s/step with 2 "
            f"(×{step_s[2] / step_s[1]:.2f}; {local_bn_s:.3f} with BatchNorm per process); "
            f"loss curves differ by at most {max(loss_diff):.1e} (relative; "
            f"1 process with 1 thread instead of all: {max(order_diff):.1e})"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distributed_cpu.json").write_text(json.dumps(results, indent=2))
    print(
        "2 processes / 1 process, time per step: "
        + ", ".join(f"{w} {r['ratio_2_over_1']:.2f}" for w, r in results["workloads"].items())
    )


if __name__ == "__main__":
    main()
