"""Few-label evaluation of an encoder: kNN, linear probe, fine-tuning, and two baselines (from
scratch; raw pixels for images, TF-IDF for text).

Every protocol sees the same class-balanced, seeded labelled subsets of the training split and is
scored on the test split; nothing is tuned on the test split.
"""

from __future__ import annotations

import copy
import sys
import time

import numpy as np
import torch

from selfsup.config import EvalConfig
from selfsup.data import DataSplits
from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.budgets import parse_budget, select_labelled
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.finetune import classifier_predict, train_classifier
from selfsup.evaluate.knn import knn_predict
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.tfidf import tfidf_features, tfidf_probe
from selfsup.models.encoder import Encoder
from selfsup.models.text import TextEncoder

PROTOCOLS = {
    "knn": "SSL + kNN",
    "linear": "SSL + linear",
    "finetune": "SSL + fine-tune",
    "scratch": "from scratch",
    "pixels": "raw pixels + linear",
    "tfidf": "TF-IDF + logistic",
}
IMAGE_ONLY, TEXT_ONLY = {"pixels"}, {"tfidf"}


def check_protocols(protocols: list[str]) -> None:
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ConfigError(f"unknown protocol '{unknown[0]}' (choose from {', '.join(PROTOCOLS)})")


def evaluate_encoder(
    encoder: Encoder | TextEncoder,
    splits: DataSplits,
    config: EvalConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> dict:
    """Score ``encoder`` under each protocol, label budget and seed of ``config``.

    Returns ``{"results": [{"protocol", "labels", "mean", "std", "seeds", "accuracies", ...}], ...}``;
    ``std`` is the sample standard deviation over seeds (0 for one seed).
    """
    check_protocols(config.protocols)
    budgets = [parse_budget(b) for b in config.labels]
    train, test = splits.train, splits.test
    if not train.labelled:
        raise DataError(f"{splits.source} has no labels to evaluate with; pass a labelled --data")
    classes = train.present_classes()
    if len(classes) < 2:
        raise DataError(
            f"{splits.source}: the training labels hold one class ('{train.classes[int(classes[0])]}'); "
            "it cannot be evaluated (kNN, probes and classifiers need at least 2 classes)"
        )
    if test is None or not test.labelled:
        raise DataError(
            f"{splits.source} has no labelled test images or texts to score on; pass a labelled --data"
        )
    if len(test.labelled_index()) < len(test):  # unlabelled test items cannot be scored
        test = test.subset(test.labelled_index())
    text = isinstance(encoder, TextEncoder)
    wrong = set(config.protocols) & (IMAGE_ONLY if text else TEXT_ONLY)
    if wrong:
        raise ConfigError(
            f"protocol '{sorted(wrong)[0]}' is for {'images' if text else 'text'}; "
            f"this encoder was trained on {'text' if text else 'images'}"
        )
    train_inputs, test_inputs = encoder.inputs(train), encoder.inputs(test)
    if not text:
        if train.images.shape[1:] != test.images.shape[1:]:
            raise DataError(f"{splits.source}: train and test images differ in shape")
        expected = (encoder.spec["in_channels"],)
        if train.images.shape[1:2] != expected or min(train.images.shape[2:]) != encoder.spec["image_size"]:
            raise DataError(
                f"{splits.source} has images of shape {tuple(train.images.shape[1:])}, but the encoder "
                f"was trained on {encoder.spec['in_channels']}-channel images of side {encoder.spec['image_size']}"
            )
    num_classes = train.num_classes
    subsets = {
        (b.text, s): select_labelled(train.labels, b, seed=s) for b in budgets for s in range(config.seeds)
    }
    encoder = encoder.to(device).eval()

    needed = torch.unique(torch.cat(list(subsets.values())))
    position = torch.full((len(train),), -1, dtype=torch.long)
    position[needed] = torch.arange(len(needed))
    frozen = {"knn", "linear"} & set(config.protocols)
    if frozen:
        started = time.perf_counter()
        train_features = extract_features(encoder, train_inputs[needed], device, amp_dtype)
        test_features = extract_features(encoder, test_inputs, device, amp_dtype)
        _say(
            progress,
            f"features of {len(needed)} labelled + {len(test)} test items in {time.perf_counter() - started:.1f}s",
        )
    if "tfidf" in config.protocols:
        tfidf_train, tfidf_test = tfidf_features(train.texts, test.texts)
    test_labels = test.labels

    rows = []
    for protocol in config.protocols:
        for budget in budgets:
            started = time.perf_counter()
            accuracies, details = [], []
            for seed in range(config.seeds):
                index = subsets[(budget.text, seed)]
                y = train.labels[index]
                extra = {}
                if protocol == "knn":
                    predicted = knn_predict(
                        train_features[position[index]],
                        y,
                        test_features,
                        num_classes,
                        k=config.knn_k,
                        temperature=config.knn_temperature,
                    )
                elif protocol == "linear":
                    predicted, extra = linear_probe(train_features[position[index]], y, test_features, seed)
                elif protocol == "pixels":
                    predicted, extra = linear_probe(
                        _pixels(train.images[index]), y, _pixels(test.images), seed
                    )
                elif protocol == "tfidf":
                    predicted, extra = tfidf_probe(tfidf_train[index.numpy()], y, tfidf_test, seed)
                else:
                    start = copy.deepcopy(encoder) if protocol == "finetune" else _fresh_like(encoder, seed)
                    model = train_classifier(
                        start, train_inputs[index], y, num_classes, config, device, amp_dtype, seed
                    )
                    predicted = classifier_predict(model, test_inputs, device, amp_dtype)
                accuracies.append(float((predicted == test_labels).float().mean()))
                details.append(extra)
            rows.append(_row(protocol, budget.text, accuracies, len(subsets[(budget.text, 0)]), details))
            _say(
                progress,
                f"{PROTOCOLS[protocol]:<20} {budget.text:>9}: {rows[-1]['mean']:.4f} ± {rows[-1]['std']:.4f} "
                f"({config.seeds} seeds, {time.perf_counter() - started:.1f}s)",
            )
    return {
        "results": rows,
        "data": splits.source,
        "test_images": len(test),
        "note": splits.note,
        "knn": {"k": config.knn_k, "temperature": config.knn_temperature},
    }


def _pixels(images: torch.Tensor) -> torch.Tensor:
    return images.reshape(len(images), -1).float() / 255.0


def _fresh_like(encoder: Encoder | TextEncoder, seed: int) -> Encoder | TextEncoder:
    torch.manual_seed(seed)
    return encoder.fresh()


def _row(protocol: str, labels: str, accuracies: list[float], labelled: int, details: list[dict]) -> dict:
    row = {
        "protocol": protocol,
        "labels": labels,
        "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
        "seeds": len(accuracies),
        "accuracies": accuracies,
        "labelled_images": labelled,
    }
    if any(details):
        row["probe"] = details
    return row


def result_grid(results: list[dict]) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    """The label budgets and protocols of evaluation ``results`` (in order of appearance) and each
    (protocol, budget)'s ``mean ± std``."""
    budgets = list(dict.fromkeys(r["labels"] for r in results))
    protocols = list(dict.fromkeys(r["protocol"] for r in results))
    return (
        budgets,
        protocols,
        {(r["protocol"], r["labels"]): f"{r['mean']:.3f} ± {r['std']:.3f}" for r in results},
    )


def format_table(evaluation: dict) -> str:
    """One row per protocol, one column per label budget: ``mean ± std``."""
    rows = evaluation["results"]
    budgets, protocols, cell = result_grid(rows)
    width = max(len(PROTOCOLS[p]) for p in protocols)
    lines = [f"{'protocol':<{width}}  " + "  ".join(f"{b:>13}" for b in budgets)]
    for p in protocols:
        lines.append(
            f"{PROTOCOLS[p]:<{width}}  " + "  ".join(f"{cell.get((p, b), '-'):>13}" for b in budgets)
        )
    seeds = rows[0]["seeds"] if rows else 0
    lines.append(f"(test accuracy, mean ± std over {seeds} seeds of the labelled subset)")
    return "\n".join(lines)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)
