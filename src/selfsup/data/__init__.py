"""Data sets: images decoded once into uint8 tensors (digits, folders, archives, arrays) and text corpora."""

from selfsup.data.dataset import DataSplits, ImageDataset, TextDataset
from selfsup.data.loaders import load_data

__all__ = ["DataSplits", "ImageDataset", "TextDataset", "load_data"]
