"""Fitting the task model from a few labels and the unlabelled rest (``selfsup fit``).

Two stages. First the labelled items alone, by a protocol: ``linear`` (a logistic regression on
the frozen encoder's features, its C cross-validated on the labels) or ``finetune`` (encoder and
head trained together, :func:`selfsup.evaluate.finetune.train_classifier`); ``auto`` chooses by
cross-validation on the labels, never on a test split. Then the unlabelled training items
(:mod:`selfsup.task.semi`): ``propagate`` (label spreading, then the head on every item weighted
by its spread label's certainty), ``self-train`` (pseudo-labels above a threshold, seen through
the run's augmentations, a few rounds) or ``distill`` (a student learns the teacher's class
probabilities on every item, plus the labelled loss), or ``none``.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from selfsup.config import EvalConfig
from selfsup.data.dataset import Rows
from selfsup.errors import ConfigError
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.finetune import train_classifier
from selfsup.evaluate.linear import choose_c, fit_logistic, stratified_folds
from selfsup.models.classifier import LinearHead, TaskModel
from selfsup.task.semi import confident, label_spreading

PROTOCOLS = ("auto", "linear", "finetune")
SEMI = ("propagate", "self-train", "distill", "none")
SELF_TRAIN_ROUNDS = 3
SELF_TRAIN_THRESHOLD = 0.9
"""Self-training: pseudo-labels of this probability or more, for this many rounds (FixMatch's
threshold is 0.95 with strong augmentation at every step; a few rounds of a frozen head take
more items at 0.9)."""


@dataclass
class Labelled:
    """The labelled training items: their rows of the training split and class indices."""

    rows: torch.Tensor
    labels: torch.Tensor
    classes: list[str]


@dataclass
class Fitting:
    """What fitting draws on: the encoder, the training split's inputs, the evaluation settings
    (fine-tuning's optimiser and schedule), the device and precision, the seed."""

    encoder: nn.Module
    inputs: torch.Tensor
    config: EvalConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    seed: int
    progress: bool
    augment: object = None  # the run's image augmentations (self-training's views), or None for text
    notes: list[str] = field(default_factory=list)
    _features: torch.Tensor | None = None

    def say(self, message: str) -> None:
        self.notes.append(message)
        if self.progress:
            print(f"selfsup: {message}", file=sys.stderr)

    def features(self) -> torch.Tensor:
        """The frozen encoder's features of every training item (extracted once)."""
        if self._features is None:
            started = time.perf_counter()
            self._features = extract_features(self.encoder, self.inputs, self.device, self.amp_dtype)
            self.say(
                f"features of {len(self.inputs)} training items in {time.perf_counter() - started:.0f} s"
            )
        return self._features


def linear_head(features: torch.Tensor, labels: torch.Tensor, classes: int, seed: int, weights=None, c=None):
    """A :class:`LinearHead` fitted on ``features`` (standardised on them) with ``labels`` (and
    sample ``weights``); C cross-validated on them unless given. Returns the head and its C."""
    features = features.float()
    if c is None:
        c, _ = choose_c(features, labels, classes, seed)
    mean = features.mean(dim=0)
    std = features.std(dim=0).clamp_min(1e-6) if len(features) > 1 else torch.ones(features.shape[1])
    weight, bias = fit_logistic((features - mean) / std, labels, c, classes, weights=weights)
    return LinearHead.fitted(weight, bias, mean, std), c


def finetuned(
    fitting: Fitting, rows, labels, classes: int, weights=None, encoder=None, semi: bool = False
) -> TaskModel:
    """Encoder (``fitting.encoder`` copied, or ``encoder``) and head trained on the training items
    ``rows`` with ``labels`` (indices or probabilities): ``finetune_epochs`` passes over labelled
    items alone, ``semi_epochs`` where the unlabelled items join them (``semi``)."""
    start = copy.deepcopy(fitting.encoder) if encoder is None else encoder
    model = train_classifier(
        start,
        Rows(fitting.inputs, rows)[:]
        if not isinstance(fitting.inputs, torch.Tensor)
        else fitting.inputs[rows],
        labels,
        classes,
        fitting.config,
        fitting.device,
        fitting.amp_dtype,
        fitting.seed,
        weights=weights,
        progress=fitting.progress,
        epochs=fitting.config.semi_epochs if semi else None,
    )
    head = LinearHead(model.head.in_features, classes)
    with torch.no_grad():
        head.linear.weight.copy_(model.head.weight)
        head.linear.bias.copy_(model.head.bias)
    return TaskModel(model.encoder.cpu(), head, [])


def cross_validate(
    fitting: Fitting, labelled: Labelled, protocol: str, semi: str
) -> tuple[float | None, str]:
    """Accuracy of ``protocol`` (with ``semi`` where it is ``propagate`` on a linear head: the
    other stages cost a training each fold) over stratified folds of the labelled items, and how
    it was computed; None where the labels are too few to fold."""
    folds, how = stratified_folds(labelled.labels.numpy(), fitting.seed)
    if folds is None:
        return None, how
    if semi != "none" and not (semi == "propagate" and protocol == "linear"):
        how += f", before {semi}"
    correct = 0
    for fit, held in folds:
        fit_rows, held_rows = labelled.rows[fit], labelled.rows[held]
        part = Labelled(fit_rows, labelled.labels[fit], labelled.classes)
        model = first_stage(fitting, part, protocol, quiet=True)
        if semi == "propagate" and protocol == "linear":
            model = propagate(fitting, part, model, quiet=True)
        probabilities = predict_rows(fitting, model, held_rows)
        correct += int((probabilities.argmax(dim=1) == labelled.labels[held]).sum())
    return correct / sum(len(held) for _, held in folds), how


def choose_protocol(fitting: Fitting, labelled: Labelled) -> tuple[str, str]:
    """``linear`` or ``finetune`` for ``auto``: the better cross-validated accuracy on the labels
    (linear where they are too few to fold, or equal); with why."""
    linear, how = cross_validate(fitting, labelled, "linear", "none")
    if linear is None:
        return "linear", f"linear: {how}"
    tuned, _ = cross_validate(fitting, labelled, "finetune", "none")
    if tuned > linear:
        return "finetune", f"finetune: {tuned:.3f} against linear {linear:.3f} by {how} on the labels"
    return "linear", f"linear: {linear:.3f} against finetune {tuned:.3f} by {how} on the labels"


def first_stage(fitting: Fitting, labelled: Labelled, protocol: str, quiet: bool = False) -> TaskModel:
    """The model of the labelled items alone."""
    classes = len(labelled.classes)
    if protocol == "linear":
        head, c = linear_head(fitting.features()[labelled.rows], labelled.labels, classes, fitting.seed)
        if not quiet:
            fitting.say(f"linear head on {len(labelled.rows)} labelled items (C {c:g})")
        return TaskModel(fitting.encoder, head, labelled.classes)
    model = finetuned(fitting, labelled.rows, labelled.labels, classes)
    if not quiet:
        fitting.say(f"encoder and head fine-tuned on {len(labelled.rows)} labelled items")
    model.classes = labelled.classes
    return model


def propagate(fitting: Fitting, labelled: Labelled, model: TaskModel, quiet: bool = False) -> TaskModel:
    """Label spreading over every training item, then the head (linear: on the frozen features;
    finetune: encoder and head) trained on every item, weighted by its spread label's certainty."""
    classes = len(labelled.classes)
    features = fitting.features() if model.encoder is fitting.encoder else predict_features(fitting, model)
    probabilities, weights = label_spreading(features, labelled.rows, labelled.labels, classes)
    targets = probabilities.argmax(dim=1)
    targets[labelled.rows] = labelled.labels
    if not quiet:
        sure = float((weights >= 0.5).float().mean())
        fitting.say(f"labels spread to {len(features)} items ({sure:.0%} with certainty 0.5 or more)")
    if model.encoder is fitting.encoder:
        _, c = linear_head(features[labelled.rows], labelled.labels, classes, fitting.seed)
        head, _ = linear_head(features, targets, classes, fitting.seed, weights=weights, c=c)
        return TaskModel(fitting.encoder, head, labelled.classes)
    every = torch.arange(len(features))
    trained = finetuned(fitting, every, targets, classes, weights=weights, semi=True)
    trained.classes = labelled.classes
    return trained


def self_train(fitting: Fitting, labelled: Labelled, model: TaskModel, protocol: str) -> TaskModel:
    """:data:`SELF_TRAIN_ROUNDS` rounds: the unlabelled items the model predicts with probability
    ≥ :data:`SELF_TRAIN_THRESHOLD` join the labelled ones with their predicted class, seen through
    the run's augmentations (a linear head: the features of one augmented view of each, drawn
    anew each round; texts: the encoder's dropout on), and the model is trained again."""
    classes = len(labelled.classes)
    unlabelled = torch.from_numpy(np.setdiff1d(np.arange(len(fitting.inputs)), labelled.rows.numpy()))
    for round_ in range(SELF_TRAIN_ROUNDS):
        probabilities = predict_rows(fitting, model, unlabelled)
        rows, pseudo = confident(probabilities, SELF_TRAIN_THRESHOLD)
        rows = unlabelled[rows]
        fitting.say(f"self-training round {round_ + 1}: {len(rows)} pseudo-labels of {len(unlabelled)} items")
        all_rows = torch.cat([labelled.rows, rows])
        all_labels = torch.cat([labelled.labels, pseudo])
        if protocol == "linear":
            features = torch.cat(
                [fitting.features()[labelled.rows], augmented_features(fitting, rows, round_)]
            )
            head, _ = linear_head(features, all_labels, classes, fitting.seed)
            model = TaskModel(fitting.encoder, head, labelled.classes)
        else:
            model = finetuned(fitting, all_rows, all_labels, classes, semi=True)  # with its crop and flip
            model.classes = labelled.classes
    return model


def distill(
    fitting: Fitting, labelled: Labelled, teacher: TaskModel, student_encoder: nn.Module
) -> TaskModel:
    """SimCLRv2's distillation: the student (``student_encoder`` and a new head) learns the
    teacher's class probabilities (temperature 1) on every training item, and the labelled items'
    classes, in one loss; trained as fine-tuning is."""
    classes = len(labelled.classes)
    targets = predict_rows(fitting, teacher, torch.arange(len(fitting.inputs)))
    targets[labelled.rows] = torch.nn.functional.one_hot(labelled.labels, classes).float()
    fitting.say(f"distilling the teacher's probabilities on {len(targets)} items into the student")
    student = finetuned(
        fitting, torch.arange(len(targets)), targets, classes, encoder=student_encoder, semi=True
    )
    student.classes = labelled.classes
    return student


@torch.no_grad()
def predict_rows(fitting: Fitting, model: TaskModel, rows: torch.Tensor) -> torch.Tensor:
    """Class probabilities of the training items ``rows``."""
    if model.encoder is fitting.encoder:
        return torch.softmax(model.head(fitting.features()[rows]), dim=1)
    return extract_features(
        model.to(fitting.device), Rows(fitting.inputs, rows), fitting.device, fitting.amp_dtype
    )


@torch.no_grad()
def predict_features(fitting: Fitting, model: TaskModel) -> torch.Tensor:
    """A fine-tuned model's encoder's features of every training item."""
    return extract_features(
        model.encoder.to(fitting.device), fitting.inputs, fitting.device, fitting.amp_dtype
    )


@torch.no_grad()
def augmented_features(fitting: Fitting, rows: torch.Tensor, round_: int) -> torch.Tensor:
    """The frozen encoder's features of one view of each of the items ``rows``: augmented by the
    run's pipeline (images), or with dropout on (texts, SimCSE's views)."""
    if len(rows) == 0:
        return torch.zeros(0, fitting.features().shape[1])
    generator = torch.Generator(device=fitting.device).manual_seed(fitting.seed + round_)
    encoder, parts = fitting.encoder, []
    if fitting.augment is None:
        encoder.train()
    try:
        for start in range(0, len(rows), 256):
            batch = Rows(fitting.inputs, rows)[start : start + 256].to(fitting.device)
            if fitting.augment is not None:
                batch = fitting.augment.view(batch, generator)
            else:
                from selfsup.data.tokenizer import trim_padding

                batch = trim_padding(batch).long()
            parts.append(encoder(batch).float().cpu())
    finally:
        encoder.eval()
    return torch.cat(parts)


def check_choices(protocol: str, semi: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got '{protocol}'")
    if semi not in SEMI:
        raise ConfigError(f"--semi must be one of {', '.join(SEMI)}, got '{semi}'")
