"""One supervised training routine for both fine-tuning a pretrained encoder and training from scratch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

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
) -> Classifier:
    """Train encoder + linear head with cross-entropy on the labelled images (or token ids).

    SGD (momentum 0.9, Nesterov) or AdamW (``finetune_optimizer``) with a 10% linear warm-up then
    cosine decay, for ``finetune_epochs`` passes (at least ``finetune_min_steps`` steps);
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
    steps_per_epoch = math.ceil(len(images) / batch_size)
    total = max(config.finetune_min_steps, config.finetune_epochs * steps_per_epoch)
    optimizer = build_optimizer(
        model, config.finetune_optimizer, config.finetune_lr, 0.9, config.finetune_weight_decay
    )
    if config.finetune_optimizer == "sgd":
        for group in optimizer.param_groups:
            group["nesterov"] = True
    augmenter = ViewAugmenter(
        AugmentConfig(
            views=1,
            crop_scale=config.finetune_crop_scale,
            flip_p=0.5 if config.finetune_flip else 0.0,
            jitter_p=0.0,
            grayscale_p=0.0,
        )
    )
    generator = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    images, labels = images.to(device), labels.to(device)
    model.train()
    order, position = torch.randperm(len(images), generator=order_gen), 0
    guard = BatchNormGuard(
        model,
        batch_size,
        lambda layer, values, least: (
            f"fine-tuning (or training from scratch) on {len(images)} labelled images: BatchNorm layer '{layer}' would "
            f"normalise {values} value{'s' if values > 1 else ''} per channel in a batch of {batch_size} (it needs "
            f"{MIN_BATCH_NORM_VALUES} or more); "
            + (
                f"set eval.finetune_batch_size={least} or more"
                if least <= len(images)
                else f"give a label budget of at least {least} images, or use knn/linear"
            )
        ),
    )
    for step in range(total):
        if position + batch_size > len(images):
            order, position = torch.randperm(len(images), generator=order_gen), 0
        index = order[position : position + batch_size].to(device)
        position += batch_size
        set_lr(optimizer, lr_at(step, total, max(1, total // 10), config.finetune_lr))
        if text:
            view = trim_padding(images[index])
        else:
            (view,) = augmenter(images[index], generator)
            view = view.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            logits = model(view)
        guard.remove()
        loss = F.cross_entropy(logits.float(), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def classifier_predict(
    model: Classifier, images: torch.Tensor, device: torch.device, amp_dtype: torch.dtype | None
) -> torch.Tensor:
    return extract_features(model, images, device, amp_dtype).argmax(dim=1)
