"""One supervised training routine for both fine-tuning a pretrained encoder and training from scratch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from selfsup.augment import AugmentConfig, ViewAugmenter
from selfsup.config import EvalConfig
from selfsup.data.tokenizer import trim_padding
from selfsup.evaluate.features import extract_features
from selfsup.train.batch_guard import MIN_BATCH_NORM_VALUES, BatchNormGuard
from selfsup.train.device import autocast
from selfsup.train.optim import build_optimizer, lr_at, set_lr


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, num_classes)
        self.out_dim = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))


def train_classifier(
    encoder: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    config: EvalConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    seed: int,
    weights: torch.Tensor | None = None,
    progress: bool = False,
    epochs: int | None = None,
) -> Classifier:
    """Train encoder + linear head with cross-entropy on the labelled images (or token ids).
    ``labels``: class indices N, or class probabilities N×K (soft targets, as distillation's);
    ``weights``: each item's weight in the loss (default 1).

    SGD (momentum 0.9, Nesterov) or AdamW (``finetune_optimizer``) with a 10% linear warm-up then
    cosine decay, for ``finetune_epochs`` passes (``epochs`` where given; at least
    ``finetune_min_steps`` steps);
    augmentation of images: random resized crop (``finetune_crop_scale``) and, if
    ``finetune_flip``, horizontal flip; none for text. Whether ``encoder`` is pretrained or freshly
    initialised is the only difference between the ``finetune`` and ``scratch`` protocols.
    """
    torch.manual_seed(seed)
    text = images.dtype != torch.uint8
    model = Classifier(encoder, num_classes).to(device)
    if not text:
        model = model.to(memory_format=torch.channels_last)
    batch_size = min(config.finetune_batch_size, len(images))
    passes = config.finetune_epochs if epochs is None else epochs
    total = max(config.finetune_min_steps, passes * math.ceil(len(images) / batch_size))
    optimizer = _optimizer(model, config)
    views = _view_maker(config, text, torch.Generator(device=device).manual_seed(seed))
    order_gen = torch.Generator().manual_seed(seed)
    images, labels = images.to(device), labels.to(device)
    model.train()
    batches = _batch_indices(len(images), batch_size, total, order_gen)
    guard = _batch_norm_guard(model, batch_size, len(images))
    weights = weights.to(device) if weights is not None else None
    for step, index in enumerate(
        tqdm(batches, total=total, desc="training", disable=not progress, leave=False)
    ):
        index = index.to(device)
        set_lr(optimizer, lr_at(step, total, max(1, total // 10), config.finetune_lr))
        with autocast(device, amp_dtype):
            logits = model(views(images[index]))
        guard.remove()
        if weights is None:
            loss = F.cross_entropy(logits.float(), labels[index])
        else:
            losses = F.cross_entropy(logits.float(), labels[index], reduction="none")
            loss = (losses * weights[index]).sum() / weights[index].sum().clamp_min(1e-12)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def _optimizer(model: nn.Module, config: EvalConfig) -> torch.optim.Optimizer:
    """``finetune_optimizer`` (momentum 0.9; Nesterov for SGD) at ``finetune_lr``."""
    optimizer = build_optimizer(
        model, config.finetune_optimizer, config.finetune_lr, 0.9, config.finetune_weight_decay
    )
    if config.finetune_optimizer == "sgd":
        for group in optimizer.param_groups:
            group["nesterov"] = True
    return optimizer


def _view_maker(
    config: EvalConfig, text: bool, generator: torch.Generator
) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the classifier sees of a batch: token ids without the padding columns all rows share,
    or one augmented view of the images (crop and flip; channels-last)."""
    if text:
        return trim_padding
    augmenter = ViewAugmenter(
        AugmentConfig(
            views=1,
            crop_scale=config.finetune_crop_scale,
            flip_p=0.5 if config.finetune_flip else 0.0,
            jitter_p=0.0,
            grayscale_p=0.0,
        )
    )

    def view(images: torch.Tensor) -> torch.Tensor:
        (augmented,) = augmenter(images, generator)
        return augmented.contiguous(memory_format=torch.channels_last)

    return view


def _batch_indices(
    count: int, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``steps`` batches of indices into ``count`` items: consecutive slices of a random order,
    drawn again when too few items are left for a full batch."""
    order, position = torch.randperm(count, generator=generator), 0
    for _ in range(steps):
        if position + batch_size > count:
            order, position = torch.randperm(count, generator=generator), 0
        yield order[position : position + batch_size]
        position += batch_size


def _batch_norm_guard(model: nn.Module, batch_size: int, labelled: int) -> BatchNormGuard:
    """A :class:`BatchNormGuard` whose error says which setting to change."""
    return BatchNormGuard(
        model,
        batch_size,
        lambda layer, values, least: (
            f"fine-tuning (or training from scratch) on {labelled} labelled images: "
            f"BatchNorm layer '{layer}' would normalise {values} value{'s' if values > 1 else ''} "
            f"per channel in a batch of {batch_size} (it needs {MIN_BATCH_NORM_VALUES} or more); "
            + (
                f"set eval.finetune_batch_size={least} or more"
                if least <= labelled
                else f"give a label budget of at least {least} images, or use knn/linear"
            )
        ),
    )


def classifier_predict(
    model: Classifier, images: torch.Tensor, device: torch.device, amp_dtype: torch.dtype | None
) -> torch.Tensor:
    return extract_features(model, images, device, amp_dtype).argmax(dim=1)
