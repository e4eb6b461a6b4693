"""Every image method on the built-in digits, each with its `_small` recipe, evaluated alike.

For each method: pretraining with its recipe, then kNN and the linear probe at 1, 5 and 10 labels per
class (3 seeds), beside the from-scratch and raw-pixel baselines (the same for every method, run once
with the first). Each method runs in its own process so that its wall time and peak memory are its own.

    python benchmarks/methods_digits.py [--epochs N] [--methods simclr,byol,...]

Writes benchmarks/results/methods_digits.json and prints a markdown table.
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


def run_one(method: str, epochs: int | None, baselines: bool) -> dict:
    from selfsup import api

    started = time.perf_counter()
    out = ROOT / "runs" / f"bench-digits-{method}"
    result = api.pretrain(method, "digits", out=out, epochs=epochs, overwrite=True, progress=False)
    protocols = ["knn", "linear"] + (["scratch", "pixels"] if baselines else [])
    evaluation = api.evaluate(out, seeds=3, protocols=protocols, progress=False)
    return {"method": method, "epochs": result.epochs, "pretrain_seconds": result.seconds,
            "wall_seconds": time.perf_counter() - started, "peak_memory_mb": api.peak_memory_mb(),
            "final": result.history[-1], "results": evaluation["results"]}


def main() -> None:
    from selfsup.methods import METHODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--baselines", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.epochs, args.baselines)))
        return
    rows = []
    for i, method in enumerate(args.methods.split(",")):
        command = [sys.executable, __file__, "--one", method] + (["--baselines"] if i == 0 else [])
        if args.epochs:
            command += ["--epochs", str(args.epochs)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{method}: {rows[-1]['wall_seconds']:.0f} s", file=sys.stderr, flush=True)

    def cell(row, protocol, labels):
        r = next(r for r in row["results"] if r["protocol"] == protocol and r["labels"] == labels)
        return f"{r['mean']:.3f} ± {r['std']:.3f}"

    budgets = ["1/class", "5/class", "10/class"]
    print("| method | kNN " + " | kNN ".join(b.split("/")[0] for b in budgets) + " | linear "
          + " | linear ".join(b.split("/")[0] for b in budgets) + " | wall time | peak memory |")
    print("| --- " * 9 + "|")
    for row in rows:
        print(f"| {row['method']} | " + " | ".join(cell(row, "knn", b) for b in budgets) + " | "
              + " | ".join(cell(row, "linear", b) for b in budgets)
              + f" | {row['wall_seconds']:.0f} s | {row['peak_memory_mb']:.0f} MB |")
    print("\n| baseline (same labelled subsets) | 1/class | 5/class | 10/class |\n| --- | --- | --- | --- |")
    for protocol, name in (("scratch", "from scratch"), ("pixels", "raw pixels + linear")):
        print(f"| {name} | " + " | ".join(cell(rows[0], protocol, b) for b in budgets) + " |")
    out = ROOT / "benchmarks" / "results" / "methods_digits.json"
    out.write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
