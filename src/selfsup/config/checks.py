"""The checks of a resolved configuration: allowed values, positive sizes, probabilities and
ranges, and what the method takes (its modality's backbone, its number of views)."""

from __future__ import annotations

from selfsup.config.sections import TEXT_BACKBONE, Config
from selfsup.errors import ConfigError
from selfsup.models.backbones import BACKBONES, CUSTOM_PREFIX
from selfsup.models.hf_text import is_hf_backbone
from selfsup.models.library_backbones import is_library_backbone

CHOICES = {
    "optim.name": ("lars", "sgd", "adamw"),
    "optim.lr_scaling": ("linear", "none"),
    "optim.schedule": ("cosine", "constant"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.sync_batch_norm": ("auto", "true", "false"),
    "train.compile": ("auto", "true", "false"),
    "model.stem": ("auto", "cifar", "imagenet"),
    "text.tokenizer": ("wordpiece", "bpe", "char"),
    "eval.finetune_optimizer": ("sgd", "adamw"),
    "data.header": ("auto", "true", "false"),
    "data.documents": ("auto", "line", "paragraph"),
}
POSITIVE = (
    "train.epochs",
    "train.batch_size",
    "train.dist_timeout",
    "optim.lr",
    "optim.bias_lr_scale",
    "eval.seeds",
    "eval.knn_k",
    "eval.finetune_batch_size",
    "augment.views",
    "text.vocab_size",
)


def validate(config: Config) -> None:
    """Raise :class:`ConfigError` naming the first option of ``config`` that is not allowed."""
    check_model(config)
    check_values(config)
    check_views(config)
    check_augment(config)


def check_model(config: Config) -> None:
    """The backbone fits the method's modality."""
    text_method = config.modality == "text"
    if text_method and config.model.backbone != TEXT_BACKBONE and not is_hf_backbone(config.model.backbone):
        raise ConfigError(
            f"method '{config.method_name}' learns from text: model.backbone must be {TEXT_BACKBONE} "
            f"or hf:PATH (a Hugging Face checkpoint folder), got '{config.model.backbone}'"
        )
    if (
        not text_method
        and config.model.backbone not in BACKBONES
        and not is_library_backbone(config.model.backbone)
        and not config.model.backbone.startswith(CUSTOM_PREFIX)
    ):
        raise ConfigError(
            f"unknown backbone '{config.model.backbone}' (choose from {', '.join(BACKBONES)}, "
            "timm:NAME or torchvision:NAME"
            + (
                f"; {TEXT_BACKBONE} is for the text methods)"
                if config.model.backbone == TEXT_BACKBONE
                else ")"
            )
        )


def check_values(config: Config) -> None:
    """Choices among allowed values, positive sizes."""
    if config.text.max_length < 3:
        raise ConfigError(f"option 'text.max_length' must be at least 3, got {config.text.max_length}")
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise ConfigError(f"option '{key}' must be one of {', '.join(allowed)}, got '{value}'")
    if config.train.log_every < 0:
        raise ConfigError(
            f"option 'train.log_every' must be 0 (auto) or a number of steps, got {config.train.log_every}"
        )
    for key in POSITIVE:
        section, name = key.split(".")
        if getattr(getattr(config, section), name) <= 0:
            raise ConfigError(f"option '{key}' must be positive")


def check_views(config: Config) -> None:
    """As many views as the method takes; DINO's global views first."""
    views = config.method_views
    if views is not None and (config.augment.views != views or config.augment.local_views):
        raise ConfigError(
            f"method '{config.method_name}' takes exactly {views} view{'s' if views > 1 else ''}: "
            f"augment.views must be {views} and augment.local_views 0 (multi-crop is for dino)"
        )
    global_views = getattr(config.method, "global_views", None)
    if global_views is not None and global_views != config.augment.views:
        raise ConfigError(
            f"method.global_views ({global_views}) must equal augment.views ({config.augment.views}): "
            "the first views are the global crops the teacher sees"
        )


def check_augment(config: Config) -> None:
    """Probabilities in [0, 1], sensible blur, crop scales in (0, 1]."""
    for key in (
        "augment.blur_p",
        "augment.solarize_p",
        "augment.local_blur_p",
        "augment.flip_p",
        "augment.jitter_p",
        "augment.grayscale_p",
    ):
        section, name = key.split(".")
        values = getattr(getattr(config, section), name)
        if not all(0 <= v <= 1 for v in (values if isinstance(values, list) else [values])) or values == []:
            raise ConfigError(f"option '{key}' must be probabilities between 0 and 1, got {values}")
    low, high = config.augment.blur_sigma
    if not 0 < low <= high:
        raise ConfigError(f"option 'augment.blur_sigma' must satisfy 0 < low <= high, got ({low}, {high})")
    if config.augment.blur_kernel < 0 or (config.augment.blur_kernel and config.augment.blur_kernel % 2 == 0):
        raise ConfigError(
            f"option 'augment.blur_kernel' must be 0 (automatic) or odd, got {config.augment.blur_kernel}"
        )
    for key in ("augment.local_views", "augment.local_size"):
        section, name = key.split(".")
        if getattr(getattr(config, section), name) < 0:
            raise ConfigError(f"option '{key}' must be 0 or more")
    for key in ("augment.crop_scale", "augment.local_crop_scale", "eval.finetune_crop_scale"):
        section, name = key.split(".")
        low, high = getattr(getattr(config, section), name)
        if not 0 < low <= high <= 1:
            raise ConfigError(f"option '{key}' must satisfy 0 < low <= high <= 1, got ({low}, {high})")
