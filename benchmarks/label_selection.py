"""Which items to label: every strategy side by side, on the digits, CIFAR-10 and AG News.

    python benchmarks/label_selection.py [--presets digits,cifar,ag_news] [--seeds 5] [--pretrain]
    python benchmarks/label_selection.py --scale 200000      # seconds and peak RSS of each strategy
    python benchmarks/label_selection.py --readme            # the README's table of the results
    python benchmarks/label_selection.py --purity            # how well the features cluster by class
    python benchmarks/label_selection.py --picture docs/pictures/digits_picks.png

For each data set, the encoder of the run named below (``--pretrain`` trains it where it is
missing, with that benchmark's settings) embeds the labelled training items: the pool a simulated
labeller labels. At each budget, each strategy picks its items (5 seeds), and selfsup's linear
probe and kNN trained on exactly those items are scored on the test split
(:func:`selfsup.evaluate.evaluate_encoder`, the harness of ``selfsup evaluate --labels N
--strategy S``). Class-balanced picks of the same count (budget / classes a class, where it
divides), which need the labels first, are shown for comparison.

* digits: the demo's run (``selfsup demo``: SimCLR, small CNN, 1,347 training digits);
* cifar: the run of ``benchmarks/cifar_simclr_cpu.py`` (SimCLR, ResNet-18, 10 epochs on the 50,000
  training images), budgets also 250 and 500;
* ag_news: the ``causal_lm`` run of the README's AG News table (``benchmarks/text_methods.py``,
  12 epochs; its document embeddings had the best probe there).

``--scale N`` times each strategy (budget 100) on N synthetic items of 512 features (a mixture of
Gaussians, L2-normalised), each in a fresh process: wall seconds and peak RSS (``ru_maxrss``).

Writes ``benchmarks/results/label_selection.json`` (or ``label_selection_scale.json``) with the
machine, and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DATASETS = ROOT.parent / "shared" / "datasets"
STRATEGIES = ["typiclust", "probcover", "kcenter", "random"]
PRESETS = {
    "digits": {
        "run": ROOT / "runs" / "demo",
        "method": "simclr",
        "data": "digits",
        "overrides": [],
        "budgets": [10, 20, 50, 100],
    },
    "cifar": {
        "run": ROOT / "runs" / "bench-cifar-simclr-cpu",
        "method": "simclr",
        "data": str(DATASETS / "cifar10-jpeg.tar.gz"),
        # benchmarks/cifar_simclr_cpu.py's defaults
        "overrides": [
            "model.backbone=resnet18",
            "model.stem=imagenet",
            "train.epochs=10",
            "train.batch_size=256",
            "optim.warmup_epochs=1",
        ],
        "budgets": [10, 20, 50, 100, 250, 500],
    },
    "ag_news": {
        "run": ROOT / "runs" / "bench-ag_news_test-causal_lm-12",
        "method": "causal_lm",
        "data": str(DATASETS / "ag_news_test.csv"),
        "overrides": ["train.epochs=12"],
        "budgets": [10, 20, 50, 100],
    },
}
GOALS = {  # points TypiClust must gain over random (the goals), at these budgets
    "digits": (15, [20]),
    "cifar": (10, [20, 50, 100]),
    "ag_news": (0, [20, 50, 100]),  # the same direction
}


def evaluate_preset(name: str, seeds: int, pretrain: bool, strategies: list[str] = STRATEGIES) -> dict:
    from selfsup import api
    from selfsup.config import EvalConfig
    from selfsup.evaluate import evaluate_encoder
    from selfsup.runs import load_encoder, load_run_config, load_splits
    from selfsup.train.device import resolve_device, resolve_precision

    preset = PRESETS[name]
    run = preset["run"]
    if not (run / "encoder.json").exists():
        if not pretrain:
            raise SystemExit(
                f"{run} is missing: pass --pretrain to train it ({preset['method']} on {preset['data']})"
            )
        started = time.perf_counter()
        api.pretrain(preset["method"], preset["data"], out=run, overrides=preset["overrides"], overwrite=True)
        print(f"pretrained {run} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    config = load_run_config(run)
    splits = load_splits(config)
    classes = len(splits.train.present_classes())
    budgets = [str(b) for b in preset["budgets"]]
    balanced = [f"{b // classes}/class" for b in preset["budgets"] if b % classes == 0]
    device = resolve_device("auto")
    started = time.perf_counter()
    evaluation = evaluate_encoder(
        load_encoder(run, device),
        splits,
        EvalConfig(
            labels=budgets + (balanced if strategies == STRATEGIES else []),
            strategies=strategies,
            seeds=seeds,
            protocols=["linear", "knn"],
        ),
        device,
        resolve_precision(config.train.precision, device),
    )
    from machine import machine_info

    return {
        "machine": machine_info(),  # per data set: each may be measured on another day's machine
        "run": str(run),
        "data": splits.source,
        "pool": len(splits.train.labelled_index()),
        "test": evaluation["test_images"],
        "classes": classes,
        "seconds": time.perf_counter() - started,
        "results": evaluation["results"],
        "goal": goal(name, evaluation["results"], classes),
    }


def goal(name: str, results: list[dict], classes: int) -> dict:
    """TypiClust's gain over random (points of linear-probe accuracy) at the goal's budgets."""
    points, budgets = GOALS[name]
    linear = {(r["labels"], r["strategy"]): r["mean"] for r in results if r["protocol"] == "linear"}
    gains = {str(b): 100 * (linear[(str(b), "typiclust")] - linear[(str(b), "random")]) for b in budgets}
    return {"points_over_random": points, "gains": gains, "met": all(g >= points for g in gains.values())}


def table(name: str, found: dict) -> str:
    rows = [r for r in found["results"]]
    budgets = list(dict.fromkeys(r["labels"] for r in rows if r["strategy"] != "class-balanced"))
    lines = [f"{name}: pool {found['pool']} labelled training items, test {found['test']}"]
    for protocol in ("linear", "knn"):
        lines.append(f"| {protocol} | " + " | ".join(budgets) + " |")
        lines.append("|" + " --- |" * (len(budgets) + 1))
        for strategy in STRATEGIES + ["class-balanced"]:
            cells = []
            for budget in budgets:
                match = [
                    r
                    for r in rows
                    if r["protocol"] == protocol
                    and r["strategy"] == strategy
                    and (r["labels"] == budget or r["labels"] == f"{int(budget) // found['classes']}/class")
                    and (strategy != "class-balanced" or int(budget) % found["classes"] == 0)
                ]
                cells.append(f"{match[0]['mean']:.3f} ± {match[0]['std']:.3f}" if match else "—")
            lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


NAMES = {"digits": "digits", "cifar": "CIFAR-10", "ag_news": "AG News"}


def readme_table(result: dict) -> str:
    """The README's table: a row per data set and budget, the linear probe's mean ± std (5 seeds)
    under each strategy, the best of each row in bold."""
    header = ["data", "labels", *STRATEGIES, "class-balanced"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name in PRESETS:
        if name not in result:
            continue
        found = result[name]
        linear = [r for r in found["results"] if r["protocol"] == "linear"]
        for budget in dict.fromkeys(r["labels"] for r in linear if r["strategy"] != "class-balanced"):
            balanced = (
                f"{int(budget) // found['classes']}/class" if int(budget) % found["classes"] == 0 else None
            )
            cells = {}
            for strategy in STRATEGIES + ["class-balanced"]:
                wanted = balanced if strategy == "class-balanced" else budget
                match = [r for r in linear if r["strategy"] == strategy and r["labels"] == wanted]
                cells[strategy] = match[0] if match else None
            best = max(cells[s]["mean"] for s in STRATEGIES if cells[s])
            row = [NAMES[name], budget]
            for strategy, cell in cells.items():
                text = f"{cell['mean']:.3f} ± {cell['std']:.3f}" if cell else "—"
                row.append(
                    f"**{text}**" if cell and strategy in STRATEGIES and cell["mean"] == best else text
                )
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def pool_features(name: str):
    """The preset's run's data splits, the features (N×D numpy) of every training item, and the
    rows of the labelled ones (the pool the strategies pick from, numpy)."""
    from selfsup.evaluate.features import extract_features
    from selfsup.runs import load_encoder, load_run_config, load_splits

    run = PRESETS[name]["run"]
    splits = load_splits(load_run_config(run))
    encoder = load_encoder(run, "cpu")
    features = extract_features(encoder, encoder.inputs(splits.train), "cpu", None).numpy()
    return splits, features, splits.train.labelled_index().numpy()


def cluster_purity(name: str) -> dict:
    """How well the encoder's features cluster by class, what TypiClust's picks rely on: k-means
    (as TypiClust clusters, seed 0) into as many clusters as classes and into 100, on the preset's
    labelled training pool; the share of items in their cluster's majority class."""
    import numpy as np

    from selfsup.labelling.strategies import cluster, l2_normalise

    splits, features, pool = pool_features(name)
    features = l2_normalise(features[pool])
    labels = splits.train.labels[pool].numpy()
    classes = len(np.unique(labels))
    purity = {}
    for clusters in (classes, 100):
        assigned = cluster(features, clusters, 0)
        majority = sum(np.bincount(labels[assigned == c]).max() for c in np.unique(assigned))
        purity[str(clusters)] = majority / len(labels)
    return {"clusters_by_class_purity": purity, "chance": float(np.bincount(labels).max() / len(labels))}


def picture(out: Path, budget: int = 20) -> None:
    """The README's picture: the digits TypiClust picks (top row) and random ones (bottom row),
    ``budget`` each, seed 0, from the training pool of the digits preset's run."""
    import numpy as np
    from PIL import Image

    from selfsup.labelling.strategies import pick

    splits, features, pool = pool_features("digits")
    side, scale_by = 8, 4
    sheet = Image.new("L", (budget * (side * scale_by + 2), 2 * (side * scale_by + 2)), 255)
    for row, strategy in enumerate(("typiclust", "random")):
        picked = pool[pick(strategy, features[pool], budget, seed=0).rows]
        for column, item in enumerate(picked):
            pixels = splits.train.images[int(item), 0].numpy().astype(np.uint8)
            tile = Image.fromarray(255 - pixels).resize((side * scale_by,) * 2, Image.NEAREST)
            sheet.paste(tile, (column * (side * scale_by + 2), row * (side * scale_by + 2)))
    sheet.save(out)
    print(f"wrote {out}")


def scale(items: int) -> dict:
    """Each strategy, budget 100, on ``items`` synthetic items, each in a fresh process."""
    rows = {}
    for strategy in STRATEGIES:
        out = subprocess.run(
            [sys.executable, __file__, "--one-scale", strategy, "--items", str(items)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[strategy] = json.loads(out.stdout.strip().splitlines()[-1])
        row = rows[strategy]
        print(
            f"{strategy:10s} {row['seconds']:7.1f} s  peak RSS {row['peak_rss_mb']:6.0f} MB "
            f"({row['peak_rss_mb_before_picking']:.0f} MB with the features made, before picking)"
        )
    return rows


def one_scale(strategy: str, items: int) -> None:
    import numpy as np

    from selfsup.labelling.strategies import pick

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((100, 512), dtype=np.float32)
    features = centres[rng.integers(0, 100, items)]
    features += 0.5 * rng.standard_normal((items, 512), dtype=np.float32)  # float32 throughout:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the data's own peak, apart
    started = time.perf_counter()
    picked = pick(strategy, features, 100, seed=0)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    features_mb = features.nbytes / 2**20
    facts = {"seconds": seconds, "peak_rss_mb": peak, "peak_rss_mb_before_picking": before}
    print(json.dumps(facts | {"features_mb": features_mb, "note": picked.note}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="digits,cifar,ag_news")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--pretrain", action="store_true", help="train the runs that are missing")
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help="run these again, keeping the other strategies' rows of the results file",
    )
    parser.add_argument("--scale", type=int, help="time the strategies on this many synthetic items")
    parser.add_argument(
        "--out", type=Path, help="results file (default benchmarks/results/label_selection.json)"
    )
    parser.add_argument("--purity", action="store_true", help="add the clusters' class purity to the results")
    parser.add_argument("--readme", action="store_true", help="print the README's table of the results")
    parser.add_argument("--picture", type=Path, help="write the README's picture of the digits picks here")
    parser.add_argument("--one-scale", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_scale:
        one_scale(args.one_scale, args.items)
        return
    if args.purity:
        out = args.out or ROOT / "benchmarks" / "results" / "label_selection.json"
        result = json.loads(out.read_text())
        for name in args.presets.split(","):
            result[name]["cluster_purity"] = cluster_purity(name)
            print(name, result[name]["cluster_purity"])
        out.write_text(json.dumps(result, indent=1) + "\n")
        return
    if args.picture:
        picture(args.picture)
        return
    if args.readme:
        print(
            readme_table(json.loads((ROOT / "benchmarks" / "results" / "label_selection.json").read_text()))
        )
        return
    from machine import machine_info

    if args.scale:
        result = {
            "machine": machine_info(),
            "items": args.scale,
            "dim": 512,
            "budget": 100,
            "rows": scale(args.scale),
        }
        out = ROOT / "benchmarks" / "results" / "label_selection_scale.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
    else:
        out = args.out or ROOT / "benchmarks" / "results" / "label_selection.json"
        for name in args.presets.split(","):
            # read again before each write: another data set may have been saved meanwhile
            strategies = args.strategies.split(",")
            found = evaluate_preset(name, args.seeds, args.pretrain, strategies)
            result = json.loads(out.read_text()) if out.exists() else {}
            if strategies != STRATEGIES:  # rows of these strategies replace theirs in the last run
                kept = [r for r in result[name]["results"] if r["strategy"] not in strategies]
                found["results"] = kept + found["results"]
                found["goal"] = goal(name, found["results"], found["classes"])
                found["rerun"] = {"strategies": strategies, "machine": found["machine"]}
                found["machine"] = result[name]["machine"]
            print(table(name, found))
            print(f"goal: {found['goal']}")
            result |= {"seeds": args.seeds, name: found}
            out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
