"""Data sets: images decoded once into uint8 tensors (digits, folders, archives, arrays) and text corpora."""

from selfsup.data.dataset import DataSplits, ImageDataset
from selfsup.data.loaders import load_data
from selfsup.data.text import TextDataset

__all__ = ["DataSplits", "ImageDataset", "TextDataset", "load_data"]
