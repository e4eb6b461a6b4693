"""Data sets decoded once into uint8 tensors: digits, image folders, archives, numpy arrays."""

from selfsup.data.dataset import DataSplits, ImageDataset
from selfsup.data.loaders import load_data

__all__ = ["DataSplits", "ImageDataset", "load_data"]
