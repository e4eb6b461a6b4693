"""In-memory image data: every image decoded once into one uint8 N×C×H×W tensor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from selfsup.errors import DataError


class LabelledData:
    """What image and text data sets share: optional labels (int64, N) over ``classes``."""

    labels: torch.Tensor | None
    classes: list[str] | None

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    @property
    def fully_labelled(self) -> bool:
        """Whether every item has a label (labels exist and none is negative, the mark of an unlabelled item)."""
        return self.labels is not None and not bool((self.labels < 0).any())

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 0


@dataclass
class ImageDataset(LabelledData):
    """A set of equally sized images, optionally labelled.

    ``images`` is uint8 of shape N×C×H×W (C is 1 or 3); ``labels`` is int64 of shape N
    with values in ``range(len(classes))``, or None for unlabelled data; ``names`` are
    the file names (or None where the images came without any).
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    classes: list[str] | None = None
    names: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"images must be uint8 N×C×H×W, got {self.images.dtype} of shape {tuple(self.images.shape)}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(f"{len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, index: torch.Tensor | np.ndarray) -> "ImageDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageDataset(
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            classes=self.classes,
            names=None if self.names is None else [self.names[i] for i in index.tolist()],
        )

    @classmethod
    def from_arrays(cls, images: np.ndarray | torch.Tensor, labels=None, classes=None, names=None) -> "ImageDataset":
        """Build a data set from arrays of shape N×H×W, N×H×W×C or N×C×H×W (C in 1, 3).

        uint8 arrays are taken as they are; float arrays must hold values in [0, 1].
        """
        images = _to_uint8_nchw(np.asarray(images))
        label_tensor = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim != 1:
                raise DataError(f"labels must be one-dimensional, got shape {labels.shape}")
            if classes is None:
                values, labels = np.unique(labels, return_inverse=True)
                classes = [str(v) for v in values]
            label_tensor = torch.as_tensor(labels.astype(np.int64))
        return cls(images=images, labels=label_tensor, classes=classes, names=names)


@dataclass
class DataSplits:
    """The training split (for pretraining and labelled subsets) and the held-out test split
    (:class:`ImageDataset` or :class:`selfsup.data.text.TextDataset`)."""

    train: "ImageDataset | TextDataset"
    test: "ImageDataset | TextDataset | None"
    source: str
    note: str = ""


def _to_uint8_nchw(array: np.ndarray) -> torch.Tensor:
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif not (array.ndim == 4 and array.shape[1] in (1, 3)):
        raise DataError(f"images must have shape N×H×W, N×H×W×C or N×C×H×W with C in (1, 3), got {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise DataError(f"images must be uint8, or floats in [0, 1]; got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise DataError("float images must hold values in [0, 1]")
        array = np.round(array * 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(array))


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a seeded, class-stratified train/test split (each class split in the same proportion)."""
    generator = torch.Generator().manual_seed(seed)
    train_parts, test_parts = [], []
    for value in torch.unique(labels):
        members = torch.nonzero(labels == value).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = int(round(len(members) * test_fraction)) if len(members) > 1 else 0
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    return torch.sort(torch.cat(train_parts)).values, torch.sort(torch.cat(test_parts)).values


def train_subset(splits: DataSplits, count: int, seed: int = 0) -> DataSplits:
    """A class-balanced, seeded subset of ``count`` training images with the same test split, e.g. to
    pretrain on part of a large set (the test split serves the generative methods' test metrics)."""
    keep, _ = stratified_split(splits.train.labels, 1 - count / len(splits.train), seed=seed)
    return DataSplits(splits.train.subset(keep), splits.test, source=f"{splits.source} (train subset of {len(keep)})")
