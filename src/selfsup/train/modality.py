"""What differs between images and text in training, behind one interface: how the stored inputs
and the encoder are built, how a batch becomes the method's views, the order of batches, and the
precision the hardware trains them in. The loop and the step never branch on the modality.

This lives in ``train`` rather than ``data`` because it builds encoders (``models``) and needs a
method's encoder options (``methods``), both above ``data`` in the import order.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from selfsup import distributed
from selfsup.augment import ViewAugmenter
from selfsup.config import Config
from selfsup.data import DataSplits, TextDataset
from selfsup.data.tokenizer import (
    TOKENIZER_FILE,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
    trim_padding,
)
from selfsup.data.tokens import check_known_tokens, packed_ids, row_lengths, sample_texts
from selfsup.errors import ConfigError, DataError
from selfsup.methods import get_method
from selfsup.models.backbones import resnet_last_stage_input_side
from selfsup.models.encoder import Encoder, channel_stats
from selfsup.models.hf_text import HFTextEncoder, is_hf_backbone
from selfsup.models.library_backbones import feature_dim, is_library_backbone
from selfsup.models.text import BaseTextEncoder, TextEncoder
from selfsup.models.weights import load_weights


@dataclass
class Inputs:
    """What a modality prepares for training: the encoder, the stored training inputs (uint8
    images N×C×H×W or token ids N×L) and the test split's (or None)."""

    encoder: torch.nn.Module
    train: torch.Tensor
    test: torch.Tensor | None


class Modality:
    """The interface; :class:`Images` and :class:`Text` implement it."""

    name = ""
    unit = "items"  # what one training input is called in messages
    channels_last = False
    eval_batch_size = 256  # inputs per forward pass in the held-out metrics

    def __init__(self, config: Config):
        self.config = config

    def prepare(self, splits: DataSplits, resume_dir=None) -> Inputs:
        """The encoder and the stored inputs of ``splits``."""
        raise NotImplementedError

    def precision(self, amp_dtype: torch.dtype | None, device: torch.device, splits: DataSplits):
        """The autocast dtype to train ``splits`` in, from the one the device offers (``amp_dtype``);
        warns when it falls back to float32."""
        return amp_dtype

    def batch_order(self, order: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The epoch's data order from a random permutation ``order`` of the inputs :meth:`prepare`
        returned (default: as it is)."""
        return order

    def views(self, batch: torch.Tensor, generator) -> list[torch.Tensor]:
        """The method's views of a batch of stored inputs."""
        raise NotImplementedError

    def save(self, encoder, run_dir) -> None:
        """Write what the run directory needs beyond the config (the tokenizer). Default: nothing."""

    def encoder_metadata(self, splits: DataSplits) -> dict:
        """What ``encoder.json`` records of the training data (image shape, or number of texts)."""
        return {}


def build_encoder(config: Config, images: torch.Tensor) -> Encoder:
    """The image encoder of ``config.model`` for ``images`` (uint8 N×C×H×W), normalised by their
    per-channel mean and std."""
    mean, std = channel_stats(images)
    m = config.model
    side = min(images.shape[2:])
    encoder = Encoder(
        m.backbone,
        in_channels=images.shape[1],
        image_size=side,
        input_size=list(images.shape[2:]),
        mean=mean,
        std=std,
        stem=m.stem,
        width=m.width,
        depth=m.depth,
        patch_size=m.patch_size,
    )
    if m.weights:
        load_weights(encoder.backbone, m.weights)
    height, width = images.shape[2:]
    if height != width:  # backbones are built for a side: a ViT's positions take square images only
        hint = "pass data.image_size=N to resize and centre-crop them to N×N"
        feature_dim(encoder.backbone, m.backbone, images.shape[1], (height, width), hint)
    if is_library_backbone(m.backbone) and config.augment.local_views:  # the small views must fit too
        local = config.augment.local_side(side)
        feature_dim(encoder.backbone, m.backbone, images.shape[1], local, "set augment.local_size larger")
    return encoder


class Images(Modality):
    """Images: views drawn by the batched augmentation pipeline on the training device."""

    name, unit = "image", "images"

    def __init__(self, config: Config):
        super().__init__(config)
        self.augmenter = ViewAugmenter(config.augment)
        self.channels_last = config.train.channels_last

    def prepare(self, splits: DataSplits, resume_dir=None) -> Inputs:
        test = splits.test.images if splits.test is not None else None
        return Inputs(build_encoder(self.config, splits.train.images), splits.train.images, test)

    def precision(self, amp_dtype, device, splits):
        config = self.config
        if (
            amp_dtype != torch.bfloat16
            or device.type != "cpu"
            or not config.model.backbone.startswith("resnet")
        ):
            return amp_dtype
        side = min(splits.train.images.shape[2:])
        if config.augment.local_views:
            side = min(side, config.augment.local_side(side))
        if resnet_last_stage_input_side(side, config.model.stem) != 1:
            return amp_dtype
        # PyTorch 2.14's CPU bf16 convolution leaves the weight gradient of the taps that only see
        # padding (should be 0) as garbage (inf/NaN) when a 3×3 convolution runs on a 1×1 map
        # (benchmarks/bf16_conv_grad.py)
        if distributed.is_main():
            warnings.warn(
                f"training in float32: views of {side} px reach ResNet's last stage as 1×1 maps, where "
                "bf16 convolutions on the CPU compute wrong weight gradients (PyTorch 2.14); "
                "larger views (augment.local_size) keep bf16"
            )
        return None

    def views(self, batch, generator):
        views = self.augmenter(batch, generator)
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views

    def encoder_metadata(self, splits):
        return {"image_shape": list(splits.train.images.shape[1:])}


class Text(Modality):
    """Text: token ids, one view per batch (the method noises or masks it), batches of similar
    lengths unless the corpus is packed into blocks."""

    name = "text"
    eval_batch_size = 64  # logits over the whole vocabulary for every token

    def __init__(self, config: Config):
        super().__init__(config)
        self.unit = "blocks of text" if config.text.pack else "texts"
        self.lengths: torch.Tensor | None = None

    def prepare(self, splits: DataSplits, resume_dir=None) -> Inputs:
        tokenizer = None
        if is_hf_backbone(self.config.model.backbone):  # the checkpoint's own tokenizer
            encoder, train, test = build_text_inputs(self.config, splits)
            self.lengths = row_lengths(train)
            return Inputs(encoder, train, test)
        if distributed.is_main():
            if resume_dir is not None and (resume_dir / TOKENIZER_FILE).exists():
                tokenizer = load_tokenizer(resume_dir)
            if tokenizer is None:
                tokenizer = train_text_tokenizer(self.config, splits.train.texts)
        # trained once, by rank 0: HF's trainer is not deterministic (hash-map order), so one
        # vocabulary for all
        encoder, train, test = build_text_inputs(self.config, splits, distributed.broadcast_object(tokenizer))
        self.lengths = row_lengths(train)
        return Inputs(encoder, train, test)

    def batch_order(self, order, generator):
        if self.config.text.pack:
            return order
        return group_by_length(order, self.lengths, self.config.train.batch_size, generator)

    def views(self, batch, generator):
        return [trim_padding(batch).long()]

    def save(self, encoder, run_dir):
        if not is_hf_backbone(self.config.model.backbone):  # an hf: run saves it with the model
            save_tokenizer(encoder.tokenizer, run_dir)

    def encoder_metadata(self, splits):
        return {"texts": len(splits.train)}


def modality_of(config: Config, splits: DataSplits) -> Modality:
    """The modality of ``splits``; raises :class:`selfsup.errors.DataError` when the method
    learns from the other one."""
    text = isinstance(splits.train, TextDataset)
    wanted = get_method(config.method_name).build.modality
    if (wanted == "text") != text:
        hint = (
            "" if text else " (text corpora: .txt, .csv, .tsv, .jsonl, .parquet, each also .gz but Parquet)"
        )
        raise DataError(
            f"method '{config.method_name}' learns from {wanted}s, and {config.data.spec} "
            f"holds {'texts' if text else 'images'}" + hint
        )
    return Text(config) if text else Images(config)


def group_by_length(
    order: torch.Tensor,
    lengths: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    batches_per_group: int = 50,
) -> torch.Tensor:
    """A data order whose batches hold texts of similar length (less padding to compute on): within
    each run of ``batches_per_group`` batches of the random ``order`` the texts are sorted by length,
    then the batches are shuffled (fairseq's and Hugging Face's length grouping)."""
    group = batch_size * batches_per_group
    order = torch.cat([part[torch.argsort(lengths[part], stable=True)] for part in order.split(group)])
    count = len(order) // batch_size
    batches = order[: count * batch_size].view(count, batch_size)[torch.randperm(count, generator=generator)]
    return torch.cat([batches.flatten(), order[count * batch_size :]])


def train_text_tokenizer(config: Config, texts: Sequence[str]):
    """The tokenizer of ``config.text`` trained on a sample of ``texts`` (``text.tokenizer_sample``
    characters, spread through the corpus)."""
    tc = config.text
    sample = sample_texts(texts, tc.tokenizer_sample)
    return train_tokenizer(sample, tc.tokenizer, tc.vocab_size, tc.lowercase, tc.strip_accents)


def build_text_inputs(
    config: Config, splits: DataSplits, tokenizer=None
) -> tuple[BaseTextEncoder, torch.Tensor, torch.Tensor | None]:
    """The text encoder of ``config`` (its tokenizer trained on the training texts unless given) and
    the token ids of the training and test splits: documents, or blocks of the packed corpus."""
    tc = config.text
    options = get_method(config.method_name).build.encoder_options(config.method)
    if is_hf_backbone(config.model.backbone):
        path = config.model.backbone[len("hf:") :]
        encoder = HFTextEncoder.from_checkpoint(path, options.get("causal", False), tc.max_length)
        tokenizer = encoder.tokenizer
        advice = f"the tokenizer of {path} does not know this text's words; use a checkpoint of its language"
    else:
        if tokenizer is None:
            tokenizer = train_text_tokenizer(config, splits.train.texts)
        advice = "text.tokenizer=bpe (byte-level) never gives it"
        width = config.model.width
        encoder = TextEncoder(
            tokenizer.get_vocab_size(),
            width,
            config.model.depth or 4,
            max(1, width // 64),
            tc.max_length,
            tokenizer_kind=tc.tokenizer,
            **options,
        ).attach_tokenizer(tokenizer)

    check_known_tokens(tokenizer, splits.train.texts, tc.max_unknown, advice)

    def tokens(dataset: TextDataset) -> torch.Tensor:
        return (
            packed_ids(tokenizer, dataset.texts, encoder.max_length) if tc.pack else encoder.inputs(dataset)
        )

    test = None
    if splits.test is not None:
        try:
            test = tokens(splits.test)
        except ConfigError:  # too little held-out text for one packed block: no test metrics
            test = None
    return encoder, tokens(splits.train), test
