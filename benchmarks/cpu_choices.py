"""Speed choices on the CPU at hand, measured on the demo: precision and thread count.

    python benchmarks/cpu_choices.py [--epochs 11] [--threads 1,2,4]

Side by side in one run, each in a fresh process with a fresh speed cache, on the demo's recipe
(SimCLR, digits; ``selfsup demo``'s settings):

1. ``train.precision`` fp32, bf16 and auto: the median epoch time over ``--epochs`` epochs (the
   first left out: it pays for allocation and kernel selection); what ``auto`` chose, its step
   times and what deciding cost (``measure_seconds``) as a share of the whole ``selfsup demo``,
   which is timed too;
2. the intra-op thread count (``OMP_NUM_THREADS``, which PyTorch follows): each of ``--threads``
   at the precision ``auto`` chose, against PyTorch's default (the physical cores);
3. the allocation policy: glibc's own (``SELFSUP_MMAP_THRESHOLD=0``) against selfsup's fixed
   1 MB mmap threshold (:func:`selfsup.train.machine.return_freed_memory`), which bounds text
   runs' memory: what it costs an image run.

Goals (issue 33): ``auto`` within 5% of the fastest setting; deciding ≤ 3% of the demo's time.
Writes ``benchmarks/results/cpu_choices.json`` with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def pretrain(out: Path, epochs: int, overrides: list[str], env: dict) -> dict:
    """One demo-recipe run in its own process: its epochs' seconds and what it chose."""
    selfsup = str(Path(sys.executable).parent / "selfsup")
    command = [selfsup, "pretrain", "--method", "simclr", "--data", "digits", "--epochs", str(epochs)]
    command += ["--out", str(out), "--quiet", "--overwrite", *overrides]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    seconds = [r["seconds"] for r in history]
    record = json.loads((out / "run.json").read_text())
    return {
        "wall_seconds": time.perf_counter() - started,
        "median_epoch_seconds": statistics.median(seconds[1:] or seconds),
        "epoch_seconds": seconds,
        "precision": record["precision"],
        "speed": record.get("speed"),
        "threads": record["machine"]["torch_threads"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=11)
    parser.add_argument("--threads", default=None, help="thread counts (default: 1, the cores, twice them)")
    args = parser.parse_args()
    from machine import machine_info

    cores = len(os.sched_getaffinity(0))
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cores, 2 * cores})
    result = {"machine": machine_info(), "recipe": "selfsup demo (SimCLR on digits)", "epochs": args.epochs}
    with tempfile.TemporaryDirectory(prefix="cpu-choices-") as tmp:
        base = {**os.environ, "SELFSUP_REPORT": "0"}
        base.pop("OMP_NUM_THREADS", None)
        base.pop("SELFSUP_MMAP_THRESHOLD", None)
        precisions = {}
        for precision in ("fp32", "bf16", "auto"):
            env = {**base, "SELFSUP_CACHE_DIR": str(Path(tmp) / f"cache-{precision}")}
            precisions[precision] = pretrain(
                Path(tmp) / precision, args.epochs, [f"train.precision={precision}"], env
            )
            print(precision, json.dumps(precisions[precision]), flush=True)
        fastest = min(("fp32", "bf16"), key=lambda p: precisions[p]["median_epoch_seconds"])
        auto = precisions["auto"]
        result["precision"] = precisions
        result["fastest"] = fastest
        result["auto_chose"] = auto["speed"]["precision"] if auto.get("speed") else auto["precision"]
        result["auto_over_fastest"] = (
            auto["median_epoch_seconds"] / precisions[fastest]["median_epoch_seconds"]
        )

        env = {**base, "SELFSUP_CACHE_DIR": str(Path(tmp) / "cache-demo")}
        selfsup = str(Path(sys.executable).parent / "selfsup")
        started = time.perf_counter()
        done = subprocess.run(
            [selfsup, "demo", "--out", str(Path(tmp) / "demo"), "--quiet"],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        demo = json.loads((Path(tmp) / "demo" / "run.json").read_text())
        measure = (demo.get("speed") or {}).get("measure_seconds", 0.0)
        result["demo"] = {
            "wall_seconds": time.perf_counter() - started,
            "pretrain_seconds": demo["seconds"],
            "precision": demo["precision"],
            "speed": demo.get("speed"),
            "measure_share": measure / (time.perf_counter() - started),
        }
        print("demo", json.dumps(result["demo"]), flush=True)

        chosen = result["auto_chose"]
        result["threads"] = {}
        for count in threads:
            env = {
                **base,
                "OMP_NUM_THREADS": str(count),
                "SELFSUP_CACHE_DIR": str(Path(tmp) / f"cache-t{count}"),
            }
            run = pretrain(Path(tmp) / f"t{count}", args.epochs, [f"train.precision={chosen}"], env)
            result["threads"][str(count)] = run
            print("threads", count, run["median_epoch_seconds"], flush=True)
        result["default_threads"] = cores
        # the allocation policy (train.machine.return_freed_memory) against glibc's own
        result["allocation"] = {}
        for name, threshold in (("glibc default", "0"), ("selfsup 1 MB mmap threshold", None)):
            env = {**base, "SELFSUP_CACHE_DIR": str(Path(tmp) / f"cache-a{len(result['allocation'])}")}
            if threshold is not None:
                env["SELFSUP_MMAP_THRESHOLD"] = threshold
            run = pretrain(
                Path(tmp) / f"a{len(result['allocation'])}", args.epochs, [f"train.precision={chosen}"], env
            )
            result["allocation"][name] = run
            print("allocation", name, run["median_epoch_seconds"], flush=True)
        result["fastest_threads"] = min(
            result["threads"], key=lambda t: result["threads"][t]["median_epoch_seconds"]
        )
    out = ROOT / "benchmarks" / "results" / "cpu_choices.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
