"""The sections of a run's configuration as plain dataclasses, and :class:`Config` holding them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from selfsup.augment import AugmentConfig

CONFIG_FILE = "config.yaml"
"""Where a run directory holds its resolved configuration."""

TEXT_BACKBONE = "transformer"  # the text methods' model (selfsup.models.text)


@dataclass
class DataConfig:
    spec: str = "digits"
    image_size: int | None = None  # resize and centre-crop every image to this square size
    skip_bad_images: bool = False
    max_pixels: int = 178_956_970  # larger images are refused (skipped with skip_bad_images); Pillow's limit
    store: str = (
        "auto"  # folders, archives, tables: raw (uint8 pixels), jpeg (compressed), auto: jpeg from 160 px
    )
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
    quoting: str = "auto"  # CSV/TSV: fields in "quotes" (true), quotes are text (false), auto: as the file is

    def text_options(self) -> dict:
        return dict(
            text_column=self.text_column,
            label_column=self.label_column,
            header=self.header,
            documents=self.documents,
            line_break=self.line_break,
            quoting=self.quoting,
        )


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    stem: str = "auto"  # ResNets: auto (CIFAR stem up to 64 px), cifar, imagenet
    # small_cnn: channels of the first block; vit, transformer: token dimension;
    # pixel models: feature channels
    width: int = 32
    depth: int = 0  # vit, transformer: blocks; gated_pixelcnn / row_lstm: layers; 0 = the backbone's default
    patch_size: int = 0  # vit: patch side in pixels; 0 = 4 for images of side 32 or more, else 2
    weights: str = ""  # start from these weights: a state dict file (torchvision, timm, ...) or a selfsup run


@dataclass
class TextConfig:
    tokenizer: str = (
        "wordpiece"  # wordpiece (BERT), bpe (byte-level, GPT-2/BART), char (one token per character)
    )
    vocab_size: int = 8000  # at most this many tokens (char: every character of the corpus)
    lowercase: bool = True
    strip_accents: bool = False  # remove accents and combining marks (BERT strips them when it lower-cases)
    max_unknown: float = 0.1  # stop before training where more of the sampled tokens are [UNK]
    max_length: int = 128  # tokens per document (longer ones are cut) or per block when packed
    pack: bool = False  # train on the corpus as one stream cut into max_length blocks (language models)
    tokenizer_sample: int = (
        100_000_000  # characters of the corpus (spread through it) the tokenizer learns from; 0: all
    )


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
    # stop after this many steps (0: no limit), mid-epoch if need be; the learning-rate schedule
    # spans the steps trained (a corpus of any size: a bounded run)
    max_steps: int = 0
    batch_size: int = 512
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda
    # auto (where bf16 is native, a GPU's or AMX / AVX-512 BF16: the faster of bf16 and fp32, timed
    # at the start; fp32 elsewhere), fp32, bf16, fp16
    precision: str = "auto"
    channels_last: bool = True
    # steps between reads of the loss from the device (each read waits for it): 0 = auto, every
    # step on the CPU (a NaN is caught before the weights change), every 25 on a GPU
    log_every: int = 0
    # torch.compile the method's modules: auto = on CUDA (measured faster there), not on the CPU
    # (its compile time is not recovered in a CPU run; benchmarks/step_overhead.py)
    compile: str = "auto"
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
    strategies: list[str] = field(default_factory=lambda: ["random"])  # how count budgets pick their items
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
    # passes over every training item when fit's unlabelled stage trains the encoder (propagate or
    # self-train after finetune, distill): finetune_epochs passes over 50,000 items is days on a CPU
    semi_epochs: int = 10


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
    # not saved: what the method takes (set from its class by selfsup.methods.recipes)
    modality: str = field(default="image", repr=False)
    method_views: int | None = field(default=2, repr=False)
    # not saved: which keys the user set (config file, overrides, flags), and what selfsup changed
    # to fit the run
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
