"""Backbones, heads and the saved encoder."""

from selfsup.models.backbones import BACKBONES, build_backbone
from selfsup.models.encoder import Encoder, load_encoder, save_encoder

__all__ = ["BACKBONES", "build_backbone", "Encoder", "load_encoder", "save_encoder"]
