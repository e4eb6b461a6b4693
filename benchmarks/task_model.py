"""The task model from a few labels and the unlabelled rest, side by side.

    python benchmarks/task_model.py [--presets digits,cifar,ag_news] [--seeds 3]
    python benchmarks/task_model.py --readme digits      # the README's table of the results

Uses the runs of ``benchmarks/label_selection.py`` (``--pretrain`` there trains them). For each
data set the labels are picked by a strategy and read from the data (the labeller simulated, as
``selfsup fit --budget N --strategy S`` does); every configuration is fitted by the functions
``selfsup fit`` runs (:mod:`selfsup.task.fit`), on features embedded once per run, and scored on
the test split:

* digits, in full: TypiClust and random picks of 10, 20 and 100; protocols ``linear`` and
  ``finetune`` (and what ``auto`` chose; not timed on the larger sets, where its cross-validation
  costs five fine-tunings), each with ``--semi none``, ``propagate``, ``self-train``
  and ``distill``; beside them the same backbone trained from scratch and a linear model on raw
  pixels on the same labels;
* cifar (250, 100 labels) and ag_news (200, 40): ``linear`` + ``propagate`` at every budget with
  every seed; at the first budget with one seed, the linear head with every stage and
  ``finetune`` alone; scratch and pixels / TF-IDF.

Mean ± std over ``--seeds``; wall seconds of each fit; the process's peak RSS (run one preset per
process for each its own). Writes ``benchmarks/results/task_model.json`` with the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

PLANS = {
    "digits": {"budgets": [10, 20, 100], "strategies": ["typiclust", "random"], "full": True},
    "cifar": {"budgets": [250, 100], "strategies": ["typiclust"], "full": False},
    "ag_news": {"budgets": [200, 40], "strategies": ["typiclust"], "full": False},
}
STAGES = ["none", "propagate", "self-train", "distill"]
SEMI_EPOCHS = {"cifar": 2}  # passes of the stages that train on every item (eval.semi_epochs; default 10):
# CIFAR-10's 50,000 images ten times through a ResNet-18 is about 10 minutes a stage on 2 cores
GOALS = {
    "digits": "≥ 0.95 test accuracy from 20 labels",
    "cifar": "from 250 labels ≥ 15 points above training from scratch on the same labels",
    "ag_news": "from 40 labels ≥ 10 points above TF-IDF on the same labels",
}


def run_preset(name: str, seeds: int) -> dict:
    from label_selection import PRESETS
    from selfsup.augment import ViewAugmenter
    from selfsup.data import ImageDataset
    from selfsup.evaluate.finetune import classifier_predict, train_classifier
    from selfsup.evaluate.linear import linear_probe
    from selfsup.evaluate.tfidf import tfidf_features, tfidf_probe
    from selfsup.labelling.labels import class_indices, class_order
    from selfsup.labelling.strategies import pick
    from selfsup.runs import load_encoder, load_run_config, load_splits
    from selfsup.task import fit as task
    from selfsup.train.device import resolve_device, resolve_precision

    plan, run = PLANS[name], PRESETS[name]["run"]
    config = load_run_config(run)
    if name in SEMI_EPOCHS:
        config.eval.semi_epochs = SEMI_EPOCHS[name]
    splits = load_splits(config)
    device = resolve_device("auto")
    precision = resolve_precision(config.train.precision, device)
    encoder = load_encoder(run, device)
    images = isinstance(splits.train, ImageDataset)
    fitting = task.Fitting(
        encoder,
        encoder.inputs(splits.train),
        config.eval,
        device,
        precision,
        0,
        False,
        ViewAugmenter(config.augment) if images else None,
    )
    test = splits.test.subset(splits.test.labelled_index())
    test_inputs = encoder.inputs(test)
    pool = splits.train.labelled_index()
    rows = []
    if not images:
        baseline_train, baseline_test = tfidf_features(splits.train.texts, test.texts)

    def record(strategy, budget, seed, protocol, semi, accuracy, seconds, **extra):
        rows.append(
            {"strategy": strategy, "budget": budget, "seed": seed, "protocol": protocol, "semi": semi}
            | {"accuracy": accuracy, "seconds": seconds}
            | extra
        )
        print(
            f"{name} {strategy} {budget} seed {seed} {protocol} {semi}: {accuracy:.4f} ({seconds:.0f} s)",
            flush=True,
        )

    for budget_at, budget in enumerate(plan["budgets"]):
        for strategy in plan["strategies"]:
            for seed in range(seeds):
                fitting.seed = seed
                picked = pick(strategy, fitting.features()[pool].numpy(), budget, seed=seed)
                labelled_rows = torch.sort(pool[torch.as_tensor(picked.rows)]).values
                names = [splits.train.classes[int(c)] for c in splits.train.labels[labelled_rows]]
                classes = class_order(names)  # as `selfsup fit` orders a labels file's classes
                labelled = task.Labelled(labelled_rows, class_indices(names, classes), classes)
                position = {c: i for i, c in enumerate(classes)}
                truth = torch.tensor([position.get(test.classes[int(c)], -1) for c in test.labels])
                if plan["full"]:
                    combos = [(protocol, semi) for protocol in ("linear", "finetune") for semi in STAGES]
                elif budget_at == 0 and seed == 0:  # each stage once, and fine-tuning
                    combos = [("linear", semi) for semi in STAGES] + [("finetune", "none")]
                else:
                    combos = [("linear", "propagate")]
                for protocol, semi in combos:
                    started = time.perf_counter()
                    model = task.first_stage(fitting, labelled, protocol, quiet=True)
                    if semi == "propagate":
                        model = task.propagate(fitting, labelled, model, quiet=True)
                    elif semi == "self-train":
                        model = task.self_train(fitting, labelled, model, protocol)
                    elif semi == "distill":
                        model = task.distill(fitting, labelled, model, load_encoder(run, device))
                    predicted = _predict(model, test_inputs, fitting)
                    accuracy = float((predicted == truth).float().mean())
                    record(strategy, budget, seed, protocol, semi, accuracy, time.perf_counter() - started)
                    fitting.notes.clear()
                if plan["full"]:  # auto cross-validates fine-tuning: five trainings a choice
                    started = time.perf_counter()
                    chosen, why = task.choose_protocol(fitting, labelled)
                    record(
                        strategy,
                        budget,
                        seed,
                        "auto",
                        "—",
                        float("nan"),
                        time.perf_counter() - started,
                        chose=chosen,
                        why=why,
                    )
                if plan["full"] or seed == 0:
                    started = time.perf_counter()
                    torch.manual_seed(seed)
                    scratch = train_classifier(
                        encoder.fresh(),
                        fitting.inputs[labelled.rows],
                        labelled.labels,
                        len(classes),
                        config.eval,
                        device,
                        precision,
                        seed,
                    )
                    accuracy = float(
                        (classifier_predict(scratch, test_inputs, device, precision) == truth).float().mean()
                    )
                    record(strategy, budget, seed, "scratch", "none", accuracy, time.perf_counter() - started)
                    started = time.perf_counter()
                    if images:
                        pixels = fitting.inputs[labelled.rows].reshape(len(labelled.rows), -1).float() / 255
                        test_pixels = test_inputs[:].reshape(len(test_inputs), -1).float() / 255
                        predicted, _ = linear_probe(pixels, labelled.labels, test_pixels, seed)
                        baseline = "pixels"
                    else:
                        predicted, _ = tfidf_probe(
                            baseline_train[labelled.rows.numpy()], labelled.labels, baseline_test, seed
                        )
                        baseline = "tfidf"
                    accuracy = float((predicted == truth).float().mean())
                    record(strategy, budget, seed, baseline, "none", accuracy, time.perf_counter() - started)
    return {
        "run": str(run),
        "data": splits.source,
        "test": len(test),
        "rows": rows,
        "summary": summarise(rows),
    }


@torch.no_grad()
def _predict(model, inputs, fitting) -> torch.Tensor:
    from selfsup.evaluate.features import extract_features

    if model.encoder is fitting.encoder:
        features = extract_features(fitting.encoder, inputs, fitting.device, fitting.amp_dtype)
        return model.head(features).argmax(dim=1)
    return extract_features(model.to(fitting.device), inputs, fitting.device, fitting.amp_dtype).argmax(dim=1)


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["budget"], row["protocol"], row["semi"]), []).append(row)
    out = []
    for (strategy, budget, protocol, semi), members in groups.items():
        accuracies = [m["accuracy"] for m in members if m["accuracy"] == m["accuracy"]]
        entry = {
            "strategy": strategy,
            "budget": budget,
            "protocol": protocol,
            "semi": semi,
            "seeds": len(members),
        }
        entry["seconds"] = statistics.median(m["seconds"] for m in members)
        if accuracies:
            entry["mean"] = statistics.mean(accuracies)
            entry["std"] = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        if protocol == "auto":
            entry["chose"] = sorted({m["chose"] for m in members})
        out.append(entry)
    return out


def readme_table(found: dict) -> str:
    """A row per strategy and budget, a column per protocol and stage (then scratch and the
    baseline): test accuracy, mean ± std over the seeds; the best of each row in bold."""
    summary = [e for e in found["summary"] if "mean" in e]
    columns = list(dict.fromkeys((e["protocol"], e["semi"]) for e in summary))
    names = [
        p if semi == "none" and p in ("scratch", "pixels", "tfidf") else f"{p} + {semi}"
        for p, semi in columns
    ]
    lines = ["| labels | " + " | ".join(names) + " |", "|" + " --- |" * (len(columns) + 1)]
    for strategy, budget in dict.fromkeys((e["strategy"], e["budget"]) for e in summary):
        cells = {
            (e["protocol"], e["semi"]): e
            for e in summary
            if (e["strategy"], e["budget"]) == (strategy, budget)
        }
        best = max(e["mean"] for e in cells.values())
        row = []
        for column in columns:
            e = cells.get(column)
            text = f"{e['mean']:.3f} ± {e['std']:.3f}" if e else "—"
            row.append(f"**{text}**" if e and e["mean"] == best else text)
        lines.append(f"| {budget} {strategy} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="digits,cifar,ag_news")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--readme", help="print the README's table of this data set's results")
    parser.add_argument("--note", help="recorded with the results, e.g. what else shared the machine")
    args = parser.parse_args()
    if args.readme:
        print(
            readme_table(
                json.loads((ROOT / "benchmarks" / "results" / "task_model.json").read_text())[args.readme]
            )
        )
        return
    from machine import machine_info

    out = ROOT / "benchmarks" / "results" / "task_model.json"
    result = json.loads(out.read_text()) if out.exists() else {}
    for name in args.presets.split(","):
        started = time.perf_counter()
        result[name] = run_preset(name, args.seeds)
        result[name]["wall_seconds"] = time.perf_counter() - started
        result[name]["goal"] = GOALS[name]
        result[name]["machine"] = machine_info()
        # the process's peak up to here: one preset per process gives each its own
        result[name]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result[name]["semi_epochs"] = SEMI_EPOCHS.get(name)
        if args.note:
            result[name]["note"] = args.note
        out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
