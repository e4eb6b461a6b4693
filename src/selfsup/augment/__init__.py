"""Batched augmentation on the training device, each image with its own random parameters."""

from selfsup.augment.pipeline import AugmentConfig, ViewAugmenter

__all__ = ["AugmentConfig", "ViewAugmenter"]
