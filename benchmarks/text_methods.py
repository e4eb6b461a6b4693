"""The text methods side by side: masked LM, BART and causal LM on AG News; the causal LM on tiny-shakespeare.

ag_news      The 7,600 labelled AG News items (../shared/datasets/ag_news_test.csv) split 80/20,
             stratified, seed 0 (selfsup's split of a labelled corpus without a test split): each
             method pretrains with its recipe on the 6,080 training texts (labels hidden), then
             kNN, linear probe, fine-tuning and the same transformer from scratch with 10 and 100
             labels per class (3 seeds each), beside TF-IDF + logistic regression on the same
             labelled subsets. Each method runs in its own process (its own wall time and peak
             memory). Writes benchmarks/results/text_ag_news.json, with the BART run's
             reconstructions of noised held-out texts.
shakespeare  A character-level causal LM on tiny-shakespeare (its last 10% of paragraphs held out;
             the recipe's 4×256 transformer on 256-character blocks, batch 64, lr 1e-3, 8 epochs):
             validation perplexity and nats per character, size and training time. Writes
             benchmarks/results/text_shakespeare.json with a sample.

    python benchmarks/text_methods.py --task ag_news [--methods mlm,bart,causal_lm] [--epochs N] [--name NAME]
    python benchmarks/text_methods.py --task shakespeare [--epochs N]

Prints markdown tables.
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
DATASETS = ROOT.parent / "shared" / "datasets"
AG_NEWS = DATASETS / "ag_news_test.csv"
SHAKESPEARE = DATASETS / "tinyshakespeare.txt"
BUDGETS = ["10/class", "100/class"]
SHAKESPEARE_OVERRIDES = [
    "text.tokenizer=char",
    "text.lowercase=false",
    "text.pack=true",
    "text.max_length=256",
    "train.batch_size=64",
    "optim.lr=1e-3",
    "optim.betas=[0.9,0.99]",
    "train.pictures=2",
    "method.sample_tokens=300",
]
SHAKESPEARE_EPOCHS = 8  # about 10 minutes here


def run_one(method: str, data: str, epochs: int | None, overrides: list[str], protocols: list[str]) -> dict:
    from selfsup import api

    started = time.perf_counter()
    out = ROOT / "runs" / f"bench-{Path(data).stem}-{method}-{epochs or 'recipe'}"
    result = api.pretrain(
        method, data, out=out, epochs=epochs, overrides=overrides, overwrite=True, progress=False
    )
    row = {
        "method": method,
        "epochs": result.epochs,
        "pretrain_seconds": result.seconds,
        "final": result.history[-1],
        "test_metrics": result.test_metrics,
        "overrides": overrides,
    }
    meta = json.loads((out / "encoder.json").read_text())
    from selfsup.api import load_method

    model, config = load_method(out, "cpu")
    row["parameters"] = sum(p.numel() for p in model.parameters())
    row["encoder"] = meta["encoder"]
    row["recipe"] = config.recipe
    if protocols:
        evaluation = api.evaluate(out, labels=BUDGETS, seeds=3, protocols=protocols, progress=False)
        row["results"] = evaluation["results"]
    for name in ("reconstructions", "samples", "fill_in"):
        if (out / f"{name}.txt").exists():
            row[name] = (out / f"{name}.txt").read_text()
    row["wall_seconds"] = time.perf_counter() - started
    row["peak_memory_mb"] = api.peak_memory_mb()
    return row


def in_subprocess(arguments: list[str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__] + arguments, capture_output=True, text=True)
    if done.returncode != 0:
        error = (
            done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit code {done.returncode}"
        )
        print(f"FAILED: {error}", file=sys.stderr, flush=True)
        return {"error": error, "wall_seconds": time.perf_counter() - started}
    return json.loads(done.stdout.strip().splitlines()[-1])


def cell(row: dict, protocol: str, labels: str) -> str:
    r = next((r for r in row.get("results", []) if r["protocol"] == protocol and r["labels"] == labels), None)
    return f"{r['mean']:.3f} ± {r['std']:.3f}" if r else "—"


def ag_news(methods: list[str], epochs: int | None) -> dict:
    rows = []
    for i, method in enumerate(methods):
        protocols = ["knn", "linear", "finetune", "scratch"] + (["tfidf"] if i == 0 else [])
        row = in_subprocess(
            ["--one", method, "--data", str(AG_NEWS), "--protocols", ",".join(protocols)]
            + (["--epochs", str(epochs)] if epochs else [])
        )
        row.setdefault("method", method)
        rows.append(row)
        print(f"{method}: {row['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
    print(
        "| method | "
        + " | ".join(
            f"{p} {b.split('/')[0]}" for p in ("kNN", "linear", "fine-tune", "scratch") for b in BUDGETS
        )
        + " | pretraining | wall time | peak memory |"
    )
    print("| --- " * 12 + "|")
    for row in rows:
        if "error" in row:
            print(f"| {row['method']} | failed: {row['error']} |")
            continue
        cells = [cell(row, p, b) for p in ("knn", "linear", "finetune", "scratch") for b in BUDGETS]
        print(
            f"| {row['method']} | "
            + " | ".join(cells)
            + f" | {row['epochs']} epochs, {row['pretrain_seconds']:.0f} s"
            f" | {row['wall_seconds']:.0f} s | {row['peak_memory_mb']:.0f} MB |"
        )
    baseline = next((r for r in rows if any(x["protocol"] == "tfidf" for x in r.get("results", []))), None)
    if baseline:
        print(
            "\n| TF-IDF + logistic regression | "
            + " | ".join(cell(baseline, "tfidf", b) for b in BUDGETS)
            + " |"
        )
    print(
        "\n| method | parameters | pretext metric on the test split | seconds per epoch |"
        "\n| --- | --- | --- | --- |"
    )
    for row in rows:
        if "error" not in row:
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in row["test_metrics"].items())
            print(
                f"| {row['method']} | {row['parameters'] / 1e6:.2f} M | {metrics} | "
                f"{row['final']['seconds']:.1f} |"
            )
    return {"data": str(AG_NEWS), "budgets": BUDGETS, "methods": methods, "rows": rows}


def shakespeare(epochs: int | None) -> dict:
    row = in_subprocess(
        [
            "--one",
            "causal_lm",
            "--data",
            str(SHAKESPEARE),
            "--protocols",
            "",
            "--overrides",
            " ".join(SHAKESPEARE_OVERRIDES),
            "--epochs",
            str(epochs or SHAKESPEARE_EPOCHS),
        ]
    )
    if "error" not in row:
        metrics = row["test_metrics"]
        print(
            "| model | parameters | training | validation nats/char | perplexity (per char) |"
            "\n| --- | --- | --- | --- | --- |"
        )
        print(
            f"| causal LM, characters, {row['encoder']['depth']}×{row['encoder']['dim']}, "
            f"{row['encoder']['max_length']}-char blocks | {row['parameters'] / 1e6:.2f} M | "
            f"{row['epochs']} epochs, "
            f"{row['pretrain_seconds']:.0f} s | {metrics['nats_per_char']:.3f} | "
            f"{metrics['perplexity']:.2f} |"
        )
        print(row.get("samples", ""))
    return {"data": str(SHAKESPEARE), "rows": [row]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["ag_news", "shakespeare"], default="ag_news")
    parser.add_argument("--methods", default="mlm,bart,causal_lm")
    parser.add_argument("--epochs", type=int, help="override the recipes' epochs")
    parser.add_argument(
        "--name", help="results file name (default text_<task>), e.g. for a run with other epochs"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--protocols", default="", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        protocols = [p for p in args.protocols.split(",") if p]
        print(json.dumps(run_one(args.one, args.data, args.epochs, args.overrides.split(), protocols)))
        return
    started = time.strftime("%Y-%m-%d %H:%M")
    result = (
        ag_news(args.methods.split(","), args.epochs) if args.task == "ag_news" else shakespeare(args.epochs)
    )
    out = ROOT / "benchmarks" / "results" / f"{args.name or 'text_' + args.task}.json"
    out.write_text(
        json.dumps({"machine": machine_info(), "started": started, "epochs": args.epochs, **result}, indent=2)
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
