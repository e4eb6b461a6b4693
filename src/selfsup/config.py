"""Typed run configuration: recipe YAML -> user YAML -> key=value overrides -> CLI flags."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfsup.augment import AugmentConfig
from selfsup.augment.presets import PRESETS
from selfsup.errors import ConfigError
from selfsup.methods import get_method
from selfsup.models.backbones import BACKBONES

TEXT_BACKBONE = "transformer"  # the text methods' model (selfsup.models.text)

RECIPES_DIR = Path(__file__).parent / "recipes"
SMALL_IMAGE_MAX_SIDE = 16  # data at or below this side use the method's `_small` recipe


@dataclass
class DataConfig:
    spec: str = "digits"
    image_size: int | None = None  # resize and centre-crop every image to this square size
    skip_bad_images: bool = False
    # text corpora (.txt, .csv, .tsv): see selfsup.data.text.load_text
    text_column: str = (
        "auto"  # CSV column name(s) or 0-based index(es), comma-separated; auto: all but the label
    )
    label_column: str = (
        "auto"  # CSV column name or index; auto: a column named label/class/..., none: unlabelled
    )
    header: str = "auto"  # whether the CSV's first row names the columns: auto, true, false
    documents: str = "auto"  # .txt: line (one document per line), paragraph (blank-line separated), auto
    line_break: str = "\\"  # the mark that stands for a line break inside a CSV field (AG News: a backslash)

    def text_options(self) -> dict:
        return dict(
            text_column=self.text_column,
            label_column=self.label_column,
            header=self.header,
            documents=self.documents,
            line_break=self.line_break,
        )


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    stem: str = "auto"  # ResNets: auto (CIFAR stem up to 64 px), cifar, imagenet
    width: int = 32  # small_cnn: channels of the first block; vit, transformer: token dimension; pixel models: feature channels
    depth: int = 0  # vit, transformer: blocks; gated_pixelcnn / row_lstm: layers; 0 = the backbone's default
    patch_size: int = 0  # vit: patch side in pixels; 0 = 4 for images of side 32 or more, else 2


@dataclass
class TextConfig:
    tokenizer: str = (
        "wordpiece"  # wordpiece (BERT), bpe (byte-level, GPT-2/BART), char (one token per character)
    )
    vocab_size: int = 8000  # at most this many tokens (char: every character of the corpus)
    lowercase: bool = True
    max_length: int = 128  # tokens per document (longer ones are cut) or per block when packed
    pack: bool = False  # train on the corpus as one stream cut into max_length blocks (language models)


@dataclass
class OptimConfig:
    name: str = "lars"  # lars, sgd, adamw
    lr: float = 1.0  # base learning rate; with lr_scaling=linear the rate used is lr × batch_size / 256
    lr_scaling: str = "linear"  # linear, none
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 10.0
    schedule: str = "cosine"  # cosine (after linear warm-up), constant
    lars_eta: float = 0.001
    bias_lr_scale: float = 1.0  # learning rate of biases and norm parameters relative to the weights'
    betas: tuple[float, float] = (0.9, 0.999)  # adamw (MAE: 0.9, 0.95)
    clip_grad: float = 0.0  # > 0: clip each parameter's gradient to this L2 norm (DINO: 3.0)


@dataclass
class TrainConfig:
    epochs: int = 1000
    batch_size: int = 512
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda
    precision: str = "auto"  # auto (bf16 on CUDA and on CPUs with AMX or AVX-512 BF16), fp32, bf16, fp16
    channels_last: bool = True
    collapse_threshold: float = 0.05  # warn when an embedding std falls below this × 1/√d
    stop_on_collapse: bool = False
    pictures: int = 8  # test images in the picture grids some methods save at the end (0: none)
    # several processes (torchrun): BatchNorm over the global batch where the method's paper does
    # (auto), always (true) or never (false); seconds a collective waits for a peer before failing
    sync_batch_norm: str = "auto"
    dist_timeout: float = 600.0
    tensorboard: bool = (
        False  # also log the epoch metrics for TensorBoard in RUN_DIR/tensorboard (extra: tensorboard)
    )


@dataclass
class EvalConfig:
    labels: list[str] = field(default_factory=lambda: ["0.01", "0.1"])
    seeds: int = 3
    protocols: list[str] = field(default_factory=lambda: ["knn", "linear", "scratch", "pixels"])
    knn_k: int = 200
    knn_temperature: float = 0.1
    finetune_epochs: int = 100  # passes over the labelled subset, at least finetune_min_steps steps
    finetune_min_steps: int = 100
    finetune_batch_size: int = 256
    finetune_lr: float = 0.05
    finetune_weight_decay: float = 5e-4
    finetune_crop_scale: tuple[float, float] = (0.5, 1.0)
    finetune_flip: bool = True
    finetune_optimizer: str = "sgd"  # sgd (Nesterov momentum 0.9), adamw (transformers)


@dataclass
class Config:
    recipe: str = ""
    source: str = ""
    method: Any = None  # the method's own params dataclass; `name` lives in method_name
    method_name: str = "simclr"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    text: TextConfig = field(default_factory=TextConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # not saved: which keys the user set (config file, overrides, flags), and what selfsup changed to fit the run
    user_keys: set[str] = field(default_factory=set, repr=False)
    adjustments: list[str] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        out = {"recipe": self.recipe, "source": self.source, "method": {"name": self.method_name}}
        out["method"].update(_plain(dataclasses.asdict(self.method)))
        for name in SECTIONS:
            out[name] = _plain(dataclasses.asdict(getattr(self, name)))
        return out


SECTIONS = ("data", "model", "augment", "text", "optim", "train", "eval")


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def recipe_path(method: str, small_images: bool) -> Path:
    get_method(method)
    small = RECIPES_DIR / f"{method}_small.yaml"
    return small if small_images and small.exists() else RECIPES_DIR / f"{method}.yaml"


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    return loaded


def build_config(
    method: str,
    *,
    small_images: bool,
    config_file: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    flags: dict[str, Any] | None = None,
    fit: bool = True,
) -> Config:
    """Resolve a run's configuration: the method's recipe (``_small`` variant for small images),
    then the user's YAML file, then ``key=value`` overrides, then explicit CLI flags; with ``fit``,
    its schedules are then fitted to its length (:func:`fit_schedules`)."""
    info = get_method(method)
    recipe = recipe_path(method, small_images)
    config = Config(recipe=recipe.name, method=info.params(), method_name=method)
    apply_mapping(config, read_yaml(recipe), str(recipe))
    config.user_keys.clear()  # from here on, what the user sets
    if config_file:
        apply_mapping(config, read_yaml(config_file), str(config_file))
    apply_overrides(config, overrides, flags)
    if fit:
        fit_schedules(config)
    return config


def schedule_keys(config: Config) -> list[str]:
    """The options that give the length of a schedule in epochs: the learning-rate warm-up and
    every ``method.*_epochs`` (DINO's teacher-temperature warm-up and frozen last layer, ...)."""
    return ["optim.warmup_epochs"] + [
        f"method.{f.name}" for f in dataclasses.fields(config.method) if f.name.endswith("_epochs")
    ]


def fit_schedules(config: Config) -> None:
    """Check every schedule measured in epochs against the run's length (``train.epochs``).

    A recipe's schedule that takes more than half the run (e.g. 10 warm-up epochs in an 8-epoch
    first try, whose learning rate would otherwise climb for the whole run and never decay) is
    shortened to half the run, and the change is noted in ``config.adjustments``; the saved
    ``config.yaml`` holds the value used. One the user set that would not end before the run does
    is refused with a :class:`ConfigError`.
    """
    epochs = config.train.epochs
    for key in schedule_keys(config):
        section, name = key.split(".")
        target = config.method if section == "method" else getattr(config, section)
        value = getattr(target, name)
        if key in config.user_keys:
            if value >= epochs:
                raise ConfigError(
                    f"option '{key}' = {value:g} does not end within the run's {epochs} "
                    f"epoch{'s' if epochs != 1 else ''}; "
                    f"set it below {epochs} (e.g. {epochs / 2:g}) or train longer"
                )
        elif value > epochs / 2:
            setattr(target, name, epochs / 2)
            config.adjustments.append(
                f"{key}: the recipe's {value:g} epochs do not fit a run of {epochs} "
                f"epoch{'s' if epochs != 1 else ''}; "
                f"{epochs / 2:g} used (half the run)"
            )


def apply_overrides(config: Config, overrides=(), flags: dict[str, Any] | None = None) -> None:
    """Apply ``key=value`` overrides, then the CLI flags that were given (not None); then validate."""
    for item in overrides:
        key, value = parse_override(item)
        set_value(config, key, value, origin=f"override '{item}'")
    for key, value in (flags or {}).items():
        if value is not None:
            set_value(config, key, value, origin=f"option for {key}")
    validate(config)


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value (e.g. optim.lr=0.5)")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_mapping(config: Config, mapping: dict, origin: str) -> None:
    for section, values in mapping.items():
        if section in ("recipe",):
            continue
        if section == "source":
            config.source = str(values)
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section '{section}' must be a mapping")
        items = sorted(
            values.items(), key=lambda item: item[0] != "preset"
        )  # a preset first, then its overrides
        for key, value in items:
            if section == "method" and key == "name":
                if value != config.method_name:
                    raise ConfigError(
                        f"{origin}: method '{value}' does not match the chosen method '{config.method_name}'"
                    )
                continue
            set_value(config, f"{section}.{key}", value, origin=origin)


def preset_config(name: str) -> AugmentConfig:
    """A fresh augmentation configuration from the preset ``name``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown augmentation preset '{name}' (choose from {', '.join(PRESETS)})")
    values = {key: list(value) if isinstance(value, list) else value for key, value in PRESETS[name].items()}
    return AugmentConfig(**values, preset=name)


def set_value(config: Config, key: str, value: Any, origin: str) -> None:
    if key == "augment.preset":
        config.augment = preset_config(str(value))
        return
    section, _, name = key.partition(".")
    target = (
        config.method
        if section == "method"
        else getattr(config, section, None)
        if section in SECTIONS
        else None
    )
    fields = {f.name: f for f in dataclasses.fields(target)} if target is not None else {}
    if name not in fields:
        known = (
            ", ".join(f"{section}.{f}" for f in fields)
            if fields
            else "sections " + ", ".join(("method",) + SECTIONS)
        )
        raise ConfigError(f"unknown option '{key}' in {origin} (known: {known})")
    hints = typing.get_type_hints(type(target))
    setattr(target, name, _coerce(value, hints[name], key))
    config.user_keys.add(key)


def _coerce(value: Any, hint, key: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        return _coerce(value, hint, key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple:
            if len(value) != len(args):
                raise ConfigError(f"option '{key}' needs {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        return [_coerce(v, args[0], key) for v in value]
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, float) and not value.is_integer() or isinstance(value, bool):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if isinstance(value, (list, tuple)):  # [title,description], as list options are written
                return ",".join(str(v) for v in value)
            return str(value).lower() if isinstance(value, bool) else str(value)  # YAML's true for "true"
    except (TypeError, ValueError):
        raise ConfigError(
            f"option '{key}' expects {getattr(hint, '__name__', hint)}, got {value!r}"
        ) from None
    return value


CHOICES = {
    "optim.name": ("lars", "sgd", "adamw"),
    "optim.lr_scaling": ("linear", "none"),
    "optim.schedule": ("cosine", "constant"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.sync_batch_norm": ("auto", "true", "false"),
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
    text_method = getattr(get_method(config.method_name).build, "modality", "image") == "text"
    if text_method and config.model.backbone != TEXT_BACKBONE:
        raise ConfigError(
            f"method '{config.method_name}' learns from text: model.backbone must be {TEXT_BACKBONE}, "
            f"got '{config.model.backbone}'"
        )
    if not text_method and config.model.backbone not in BACKBONES:
        raise ConfigError(
            f"unknown backbone '{config.model.backbone}' (choose from {', '.join(BACKBONES)}"
            + (
                f"; {TEXT_BACKBONE} is for the text methods)"
                if config.model.backbone == TEXT_BACKBONE
                else ")"
            )
        )
    if config.text.max_length < 3:
        raise ConfigError(f"option 'text.max_length' must be at least 3, got {config.text.max_length}")
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            raise ConfigError(f"option '{key}' must be one of {', '.join(allowed)}, got '{value}'")
    for key in POSITIVE:
        section, name = key.split(".")
        if getattr(getattr(config, section), name) <= 0:
            raise ConfigError(f"option '{key}' must be positive")
    views = get_method(config.method_name).build.views
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


def load_run_config(run_dir: Path) -> Config:
    """The resolved configuration a run wrote to ``RUN_DIR/config.yaml``."""
    data = read_yaml(Path(run_dir) / "config.yaml")
    method = data.get("method", {}).get("name")
    if method is None:
        raise ConfigError(f"{run_dir}/config.yaml names no method")
    config = Config(recipe=data.get("recipe", ""), method=get_method(method).params(), method_name=method)
    apply_mapping(config, data, f"{run_dir}/config.yaml")
    return config


def save_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
