"""The registry of pretext-task methods."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from selfsup.errors import ConfigError
from selfsup.methods.autoencoder import DAEParams, DenoisingAutoencoder
from selfsup.methods.autoregressive import PixelCNN, PixelParams, PixelRNN
from selfsup.methods.barlow_twins import BarlowTwins, BarlowTwinsParams
from selfsup.methods.base import Method
from selfsup.methods.byol import BYOL, BYOLParams
from selfsup.methods.dino import DINO, DINOParams
from selfsup.methods.mae import MAE, MAEParams
from selfsup.methods.moco import MoCoV2, MoCoV2Params, MoCoV3, MoCoV3Params
from selfsup.methods.siamese import Siamese, SiameseParams
from selfsup.methods.simclr import SimCLR, SimCLRParams
from selfsup.methods.simsiam import SimSiam, SimSiamParams
from selfsup.methods.text import BART, BARTParams, CausalLM, CausalLMParams, MaskedLM, MaskedLMParams
from selfsup.methods.vicreg import VICReg, VICRegParams


@dataclass(frozen=True)
class MethodInfo:
    name: str
    family: str
    paper: str
    params: type
    build: Callable[[Any, Any], Method]


METHODS: dict[str, MethodInfo] = {
    "pixelcnn": MethodInfo(
        "pixelcnn",
        "auto-regressive",
        "van den Oord et al. 2016, Conditional Image Generation with PixelCNN Decoders (Gated PixelCNN)",
        PixelParams,
        PixelCNN,
    ),
    "pixelrnn": MethodInfo(
        "pixelrnn",
        "auto-regressive",
        "van den Oord, Kalchbrenner & Kavukcuoglu 2016, Pixel Recurrent Neural Networks (Row LSTM)",
        PixelParams,
        PixelRNN,
    ),
    "dae": MethodInfo(
        "dae",
        "auto-encoder",
        "Vincent et al. 2008, Extracting and Composing Robust Features with Denoising Autoencoders",
        DAEParams,
        DenoisingAutoencoder,
    ),
    "mae": MethodInfo(
        "mae",
        "auto-encoder (masked)",
        "He et al. 2022, Masked Autoencoders Are Scalable Vision Learners",
        MAEParams,
        MAE,
    ),
    "causal_lm": MethodInfo(
        "causal_lm",
        "auto-regressive (text)",
        "Radford et al. 2018, Improving Language Understanding by Generative Pre-Training (GPT)",
        CausalLMParams,
        CausalLM,
    ),
    "mlm": MethodInfo(
        "mlm",
        "auto-encoder (masked LM, text)",
        "Devlin et al. 2019, BERT: Pre-training of Deep Bidirectional Transformers",
        MaskedLMParams,
        MaskedLM,
    ),
    "bart": MethodInfo(
        "bart",
        "auto-encoder (denoising seq2seq, text)",
        "Lewis et al. 2020, BART: Denoising Sequence-to-Sequence Pre-training",
        BARTParams,
        BART,
    ),
    "siamese": MethodInfo(
        "siamese",
        "Siamese, contrastive (classic)",
        "Bromley et al. 1993; Hadsell, Chopra & LeCun 2006 (margin loss); Schroff et al. 2015 (triplet)",
        SiameseParams,
        Siamese,
    ),
    "simclr": MethodInfo(
        "simclr",
        "Siamese, contrastive",
        "Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations",
        SimCLRParams,
        SimCLR,
    ),
    "moco_v2": MethodInfo(
        "moco_v2",
        "Siamese, contrastive",
        "Chen et al. 2020, Improved Baselines with Momentum Contrastive Learning",
        MoCoV2Params,
        MoCoV2,
    ),
    "moco_v3": MethodInfo(
        "moco_v3",
        "Siamese, contrastive",
        "Chen, Xie & He 2021, An Empirical Study of Training Self-Supervised Vision Transformers",
        MoCoV3Params,
        MoCoV3,
    ),
    "byol": MethodInfo(
        "byol", "Siamese, non-contrastive", "Grill et al. 2020, Bootstrap Your Own Latent", BYOLParams, BYOL
    ),
    "dino": MethodInfo(
        "dino",
        "Siamese, non-contrastive (self-distillation)",
        "Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers",
        DINOParams,
        DINO,
    ),
    "simsiam": MethodInfo(
        "simsiam",
        "Siamese, non-contrastive",
        "Chen & He 2021, Exploring Simple Siamese Representation Learning",
        SimSiamParams,
        SimSiam,
    ),
    "barlow_twins": MethodInfo(
        "barlow_twins",
        "Siamese, non-contrastive",
        "Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
        BarlowTwinsParams,
        BarlowTwins,
    ),
    "vicreg": MethodInfo(
        "vicreg",
        "Siamese, non-contrastive",
        "Bardes, Ponce & LeCun 2022, VICReg: Variance-Invariance-Covariance Regularization",
        VICRegParams,
        VICReg,
    ),
}


def get_method(name: str) -> MethodInfo:
    if name not in METHODS:
        raise ConfigError(
            f"unknown method '{name}' (choose from {', '.join(METHODS)}; see `selfsup methods`)"
        )
    return METHODS[name]


__all__ = ["METHODS", "Method", "MethodInfo", "get_method"]
