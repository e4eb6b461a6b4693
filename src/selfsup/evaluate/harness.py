"""Few-label evaluation of an encoder: kNN, linear probe, fine-tuning, and two baselines (from
scratch; raw pixels for images, TF-IDF for text).

Every protocol sees the same seeded labelled subsets of the training split (a count of items
drawn at random or picked by a strategy, class-balanced budgets, or the items of a labels file)
and is scored on the test split; nothing is tuned on the test split.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.config import EvalConfig
from selfsup.data import DataSplits, ImageDataset, TextDataset
from selfsup.data.dataset import Rows
from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.budgets import CLASS_BALANCED, Budget, check_count, parse_budget, select_labelled
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.finetune import classifier_predict, train_classifier
from selfsup.evaluate.knn import knn_predict
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.tfidf import tfidf_features, tfidf_probe
from selfsup.models.encoder import Encoder
from selfsup.models.text import BaseTextEncoder

PROTOCOLS = {
    "knn": "SSL + kNN",
    "linear": "SSL + linear",
    "finetune": "SSL + fine-tune",
    "scratch": "from scratch",
    "pixels": "raw pixels + linear",
    "tfidf": "TF-IDF + logistic",
}
FROZEN = {"knn", "linear"}  # the protocols on features of the frozen encoder


def check_protocols(protocols: list[str]) -> None:
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ConfigError(f"unknown protocol '{unknown[0]}' (choose from {', '.join(PROTOCOLS)})")


@dataclass(frozen=True)
class EvalModality:
    """What the evaluation does differently for images and for text: the baseline without any
    pretraining (its protocol; its inputs of the training and test split, made once; its
    predictions from the labelled training items ``index``) and the check that the data fit the
    encoder (beyond the encoder's own, in ``encoder.inputs``)."""

    name: str  # what messages call the data
    baseline: str
    baseline_inputs: Callable[[Any, Any], tuple[Any, Any]]
    baseline_predict: Callable[[Any, torch.Tensor, torch.Tensor, Any, int], tuple[torch.Tensor, dict]]
    check_data: Callable[[Encoder | BaseTextEncoder, DataSplits, Any], None]


def _pixels(images) -> torch.Tensor:
    """Each image's pixels as one row in [0, 1] (a stored split is read here: ``images[:]``)."""
    images = images if isinstance(images, torch.Tensor) else images[:]
    return images.reshape(len(images), -1).float() / 255.0


def _pixels_predict(train_images, index, labels, test_images, seed) -> tuple[torch.Tensor, dict]:
    return linear_probe(_pixels(train_images[index]), labels, _pixels(test_images), seed)


def _tfidf_predict(train_rows, index, labels, test_rows, seed) -> tuple[torch.Tensor, dict]:
    return tfidf_probe(train_rows[index.numpy()], labels, test_rows, seed)


def _check_images(encoder: Encoder, splits: DataSplits, test: ImageDataset) -> None:
    train = splits.train
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"{splits.source}: train and test images differ in shape")
    expected = (encoder.spec["in_channels"],)
    if train.images.shape[1:2] != expected or min(train.images.shape[2:]) != encoder.spec["image_size"]:
        raise DataError(
            f"{splits.source} has images of shape {tuple(train.images.shape[1:])}, but the encoder "
            f"was trained on {encoder.spec['in_channels']}-channel images "
            f"of side {encoder.spec['image_size']}"
        )


def _check_text(encoder: BaseTextEncoder, splits: DataSplits, test: TextDataset) -> None:
    """Nothing beyond ``encoder.inputs``, which refuses data that are not text."""


MODALITIES = {
    "images": EvalModality(
        name="images",
        baseline="pixels",
        baseline_inputs=lambda train, test: (train.images, test.images),
        baseline_predict=_pixels_predict,
        check_data=_check_images,
    ),
    "text": EvalModality(
        name="text",
        baseline="tfidf",
        baseline_inputs=lambda train, test: tfidf_features(train.texts, test.texts),
        baseline_predict=_tfidf_predict,
        check_data=_check_text,
    ),
}
"""Each modality's :class:`EvalModality`, by the name of the data an encoder was trained on."""


def modality_of(encoder: Encoder | BaseTextEncoder, protocols: list[str]) -> EvalModality:
    """The :class:`EvalModality` of ``encoder``; raises :class:`ConfigError` where ``protocols``
    name another modality's baseline."""
    modality = MODALITIES["text" if isinstance(encoder, BaseTextEncoder) else "images"]
    others = {m.baseline: m for m in MODALITIES.values() if m is not modality}
    wrong = sorted(set(protocols) & set(others))
    if wrong:
        raise ConfigError(
            f"protocol '{wrong[0]}' is for {others[wrong[0]].name}; "
            f"this encoder was trained on {modality.name}"
        )
    return modality


@dataclass(frozen=True)
class Subset:
    """The labelled training items one protocol trains on: their rows of the training split and
    their labels (the data's, or a labels file's)."""

    index: torch.Tensor
    labels: torch.Tensor


Key = tuple[str, str, int]
"""A subset's budget (as written), strategy and seed."""


def evaluate_encoder(
    encoder: Encoder | BaseTextEncoder,
    splits: DataSplits,
    config: EvalConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    progress: bool = True,
    labelled=None,
) -> dict:
    """Score ``encoder`` under each protocol, label budget, strategy and seed of ``config`` or, with
    ``labelled`` (:class:`selfsup.labelling.labels.Labels`), on exactly those labels.

    Returns ``{"results": [{"protocol", "labels", "strategy", "mean", "std", "seeds", "accuracies",
    ...}], ...}``; ``std`` is the sample standard deviation over seeds (0 for one seed).
    """
    from selfsup.labelling.strategies import STRATEGIES
    from selfsup.train.machine import return_freed_memory

    if getattr(encoder, "spec", {}).get("modality") == "text":  # texts of many lengths grow the heap
        return_freed_memory()
    check_protocols(config.protocols)
    unknown = [s for s in config.strategies if s not in STRATEGIES]
    if unknown:
        raise ConfigError(f"unknown strategy '{unknown[0]}' (choose from {', '.join(STRATEGIES)})")
    budgets = [parse_budget(b) for b in config.labels] if labelled is None else []
    test = _labelled_test(splits, given=labelled is not None)
    modality = modality_of(encoder, config.protocols)
    train_inputs, test_inputs = encoder.inputs(splits.train), encoder.inputs(test)
    modality.check_data(encoder, splits, test)
    inputs = _Inputs(
        encoder=encoder.to(device).eval(),
        modality=modality,
        train=splits.train,
        test=test,
        train_inputs=train_inputs,
        test_inputs=test_inputs,
        config=config,
        device=device,
        amp_dtype=amp_dtype,
    )
    subsets = _subsets(inputs, budgets, labelled, progress)
    inputs.prepare(subsets, progress)
    columns = list(dict.fromkeys((key[0], key[1]) for key in subsets))
    rows = [
        _protocol_row(inputs, protocol, budget, strategy, subsets, progress)
        for protocol in config.protocols
        for budget, strategy in columns
    ]
    return {
        "results": rows,
        "data": splits.source,
        "test_images": len(test),
        "note": splits.note,
        "knn": {"k": config.knn_k, "temperature": config.knn_temperature},
    }


def _labelled_test(splits: DataSplits, given: bool = False) -> ImageDataset | TextDataset:
    """The test split's labelled items; raises :class:`DataError` where the test split has no
    labels to score with or, unless the labels are ``given`` (a labels file), the training split
    none to train with or one class alone."""
    train, test = splits.train, splits.test
    if not given and not train.labelled:
        raise DataError(f"{splits.source} has no labels to evaluate with; pass a labelled --data")
    classes = train.present_classes()
    if not given and len(classes) < 2:
        raise DataError(
            f"{splits.source}: the training labels hold one class ('{train.classes[int(classes[0])]}'); "
            "it cannot be evaluated (kNN, probes and classifiers need at least 2 classes)"
        )
    if test is None or not test.labelled:
        raise DataError(
            f"{splits.source} has no labelled test split to score on (--labelled scores on the data's "
            "held-out labelled items); pass a labelled --data"
        )
    if len(test.labelled_index()) < len(test):  # unlabelled test items cannot be scored
        test = test.subset(test.labelled_index())
    return test


@dataclass
class _Inputs:
    """What the protocols draw on: the encoder (in eval mode, on ``device``), the training and
    (labelled) test split and the encoder's inputs of both; after :meth:`prepare`, the frozen
    encoder's features (of the labelled training items: item i in row ``position[i]``) and the
    baseline's inputs, where the protocols need them."""

    encoder: Encoder | BaseTextEncoder
    modality: EvalModality
    train: ImageDataset | TextDataset
    test: ImageDataset | TextDataset
    train_inputs: torch.Tensor
    test_inputs: torch.Tensor
    config: EvalConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    position: torch.Tensor | None = None
    train_features: torch.Tensor | None = None
    test_features: torch.Tensor | None = None
    pool: torch.Tensor | None = None
    pool_features: torch.Tensor | None = None
    baseline_train: Any = None
    baseline_test: Any = None

    def classes(self) -> list[str]:
        """The classes the labels index: the training split's, or the test split's where the
        training items come without labels (labels given by a file)."""
        return self.train.classes or self.test.classes or []

    def pool_of_features(self, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The labelled training items (the pool a strategy picks from, as a labeller would be
        simulated) and their features, extracted once."""
        if self.pool is None:
            started = time.perf_counter()
            self.pool = self.train.labelled_index()
            self.pool_features = extract_features(
                self.encoder, Rows(self.train_inputs, self.pool), self.device, self.amp_dtype
            )
            _say(
                progress,
                f"features of {len(self.pool)} training items in {time.perf_counter() - started:.1f}s",
            )
        return self.pool, self.pool_features

    def prepare(self, subsets: dict[Key, Subset], progress: bool) -> None:
        """Make once what every budget and seed shares: features and the baseline's inputs."""
        if self.pool is not None:  # every subset is drawn from the pool, whose features exist
            needed, self.train_features = self.pool, self.pool_features
        else:
            needed = torch.unique(torch.cat([subset.index for subset in subsets.values()]))
        self.position = torch.full((len(self.train),), -1, dtype=torch.long)
        self.position[needed] = torch.arange(len(needed))
        if FROZEN & set(self.config.protocols):
            started = time.perf_counter()
            if self.train_features is None:  # a batch at a time from the store, never all in memory
                self.train_features = extract_features(
                    self.encoder, Rows(self.train_inputs, needed), self.device, self.amp_dtype
                )
            self.test_features = extract_features(self.encoder, self.test_inputs, self.device, self.amp_dtype)
            _say(
                progress,
                f"features of {len(needed)} labelled + {len(self.test)} test items "
                f"in {time.perf_counter() - started:.1f}s",
            )
        if self.modality.baseline in self.config.protocols:
            self.baseline_train, self.baseline_test = self.modality.baseline_inputs(self.train, self.test)


def _subsets(inputs: _Inputs, budgets: list[Budget], labelled, progress: bool) -> dict[Key, Subset]:
    """Each budget's subsets, one per strategy (class-balanced budgets: one) and seed, or the one
    subset of a labels file (``labelled``)."""
    from selfsup.labelling.strategies import pick, random_picks

    train, config = inputs.train, inputs.config
    if labelled is not None:
        name = f"{len(labelled)} ({Path(labelled.source).name})"
        return {
            (name, "labels file", 0): Subset(torch.as_tensor(labelled.rows), _file_labels(labelled, inputs))
        }
    subsets = {}
    for budget in budgets:
        for strategy in [CLASS_BALANCED] if budget.balanced else config.strategies:
            for seed in range(config.seeds):
                if strategy == CLASS_BALANCED:
                    index = select_labelled(train.labels, budget, seed)
                else:  # as `selfsup select` picks: from the labelled training items (the labeller simulated)
                    pool = train.labelled_index()
                    check_count(budget, len(pool))
                    if strategy == "random":  # no features needed
                        picked = random_picks(np.empty((len(pool), 0)), budget.count, seed=seed)
                    else:
                        pool, features = inputs.pool_of_features(progress)
                        picked = pick(strategy, features.numpy(), budget.count, seed=seed)
                    index = torch.sort(pool[torch.as_tensor(picked.rows)]).values
                subsets[(budget.text, strategy, seed)] = Subset(index, train.labels[index])
    return subsets


def _file_labels(labelled, inputs: _Inputs) -> torch.Tensor:
    """The class indices (of the classes the test split is scored in) of a labels file's class
    names; raises :class:`DataError` for a name the data's labelled test split cannot be scored
    against."""
    from selfsup.labelling.labels import class_indices

    classes = inputs.classes()
    unknown = sorted(set(labelled.names) - set(classes))
    if unknown:
        raise DataError(
            f"{labelled.source}: label(s) {', '.join(repr(u) for u in unknown[:5])} are not classes of the "
            f"data ({', '.join(classes)}), whose test split scores them"
        )
    return class_indices(labelled.names, classes)


def _protocol_row(
    inputs: _Inputs,
    protocol: str,
    budget: str,
    strategy: str,
    subsets: dict[Key, Subset],
    progress: bool,
) -> dict:
    """The result row of ``protocol`` at ``budget`` by ``strategy``: its test accuracy on each
    seed's subset."""
    started = time.perf_counter()
    accuracies, details = [], []
    seeds = [key[2] for key in subsets if key[:2] == (budget, strategy)]
    for seed in seeds:
        predicted, extra = _predict(inputs, protocol, subsets[(budget, strategy, seed)], seed)
        accuracies.append(float((predicted == inputs.test.labels).float().mean()))
        details.append(extra)
    row = _row(
        protocol, budget, strategy, accuracies, len(subsets[(budget, strategy, seeds[0])].index), details
    )
    _say(
        progress,
        f"{PROTOCOLS[protocol]:<20} {budget_column(row):>16}: {row['mean']:.4f} ± {row['std']:.4f} "
        f"({len(seeds)} seed{'s' if len(seeds) != 1 else ''}, {time.perf_counter() - started:.1f}s)",
    )
    return row


def _predict(inputs: _Inputs, protocol: str, subset: Subset, seed: int) -> tuple[torch.Tensor, dict]:
    """The test split's predicted labels by ``protocol`` from the labelled training items of
    ``subset``, and what the probe chose (its C; empty for the others)."""
    config, index, y = inputs.config, subset.index, subset.labels
    if protocol == "knn":
        features = inputs.train_features[inputs.position[index]]
        predicted = knn_predict(
            features,
            y,
            inputs.test_features,
            len(inputs.classes()),
            k=config.knn_k,
            temperature=config.knn_temperature,
        )
        return predicted, {}
    if protocol == "linear":
        return linear_probe(inputs.train_features[inputs.position[index]], y, inputs.test_features, seed)
    if protocol == inputs.modality.baseline:
        return inputs.modality.baseline_predict(inputs.baseline_train, index, y, inputs.baseline_test, seed)
    encoder = inputs.encoder
    start = copy.deepcopy(encoder) if protocol == "finetune" else _fresh_like(encoder, seed)
    model = train_classifier(
        start,
        inputs.train_inputs[index],
        y,
        len(inputs.classes()),
        config,
        inputs.device,
        inputs.amp_dtype,
        seed,
    )
    return classifier_predict(model, inputs.test_inputs, inputs.device, inputs.amp_dtype), {}


def _fresh_like(encoder: Encoder | BaseTextEncoder, seed: int) -> Encoder | BaseTextEncoder:
    torch.manual_seed(seed)
    return encoder.fresh()


def _row(
    protocol: str, labels: str, strategy: str, accuracies: list[float], labelled: int, details: list[dict]
) -> dict:
    row = {
        "protocol": protocol,
        "labels": labels,
        "strategy": strategy,
        "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0,
        "seeds": len(accuracies),
        "accuracies": accuracies,
        "labelled_images": labelled,
    }
    if any(details):
        row["probe"] = details
    return row


def budget_column(row: dict) -> str:
    """What a result row's column is called: its budget, and the strategy that drew a count of
    items (``20 typiclust``)."""
    strategy = row.get("strategy", CLASS_BALANCED)
    return row["labels"] if strategy in (CLASS_BALANCED, "labels file") else f"{row['labels']} {strategy}"


def result_grid(results: list[dict]) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    """The label budgets (:func:`budget_column`) and protocols of evaluation ``results`` (in order
    of appearance) and each (protocol, budget)'s ``mean ± std``."""
    budgets = list(dict.fromkeys(budget_column(r) for r in results))
    protocols = list(dict.fromkeys(r["protocol"] for r in results))
    return (
        budgets,
        protocols,
        {(r["protocol"], budget_column(r)): f"{r['mean']:.3f} ± {r['std']:.3f}" for r in results},
    )


def format_table(evaluation: dict) -> str:
    """One row per protocol, one column per label budget: ``mean ± std``."""
    rows = evaluation["results"]
    budgets, protocols, cell = result_grid(rows)
    width = max(len(PROTOCOLS[p]) for p in protocols)
    widths = [max(13, len(b)) for b in budgets]
    lines = [f"{'protocol':<{width}}  " + "  ".join(f"{b:>{w}}" for b, w in zip(budgets, widths))]
    for p in protocols:
        cells = [f"{cell.get((p, b), '-'):>{w}}" for b, w in zip(budgets, widths)]
        lines.append(f"{PROTOCOLS[p]:<{width}}  " + "  ".join(cells))
    seeds = rows[0]["seeds"] if rows else 0
    lines.append(
        f"(test accuracy, mean ± std over {seeds} seed{'s' if seeds != 1 else ''} of the labelled subset)"
    )
    return "\n".join(lines)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)
