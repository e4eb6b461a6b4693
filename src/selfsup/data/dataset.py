"""In-memory data sets: images decoded once into one uint8 N×C×H×W tensor, documents as strings,
and the train/test splits of either."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from selfsup.errors import DataError

UNLABELLED = -1
"""The label of an item without one: negative labels mean unlabelled (STL-10's convention). Such
items are pretrained on; label budgets, held-out test splits and evaluation leave them out."""


MISSING_MARKS = frozenset({"nan", "NaN", "NA", "N/A", "n/a", "null", "NULL"})
"""How spreadsheets and pandas write a missing value ("None"/"none" can be a class: not among them)."""


def marks_unlabelled(label: str) -> bool:
    """Whether a label written as text marks an unlabelled item: empty, a negative integer, or a
    missing-value mark (:data:`MISSING_MARKS`)."""
    return label.strip() in MISSING_MARKS or re.fullmatch(r"\s*(-\d+(\.0*)?)?\s*", label) is not None


class LabelledData:
    """What image and text data sets share: optional labels (int64, N) over ``classes``, where
    :data:`UNLABELLED` (-1) marks an item without a label, and each item's ``item_index``: its
    position in the data as selfsup reads them, counted over all items before any held-out split
    (the training items first), so that an item keeps its number whether labels exist or not
    (None: ``0..N-1``; :class:`DataSplits` sets the test split's)."""

    labels: torch.Tensor | None
    classes: list[str] | None
    item_index: torch.Tensor | None

    def indices(self) -> torch.Tensor:
        """Each item's ``item_index`` (int64, N)."""
        return self.item_index if self.item_index is not None else torch.arange(len(self))

    def _subset_index(self, index: torch.Tensor) -> torch.Tensor:
        return self.indices()[index]

    @property
    def labelled(self) -> bool:
        """Whether any item has a label."""
        return self.labels is not None and bool((self.labels >= 0).any())

    def present_classes(self) -> torch.Tensor:
        """The class indices that label at least one item (sorted)."""
        return (
            torch.unique(self.labels[self.labels >= 0])
            if self.labels is not None
            else torch.zeros(0, dtype=torch.long)
        )

    def labelled_index(self) -> torch.Tensor:
        """Indices of the items that have a label (none without labels)."""
        if self.labels is None:
            return torch.zeros(0, dtype=torch.long)
        return torch.nonzero(self.labels >= 0).flatten()

    @property
    def fully_labelled(self) -> bool:
        """Whether every item has a label (labels exist and none is negative, the mark of an
        unlabelled item)."""
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
    item_index: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"images must be uint8 N×C×H×W, got {self.images.dtype} of shape {tuple(self.images.shape)}"
            )
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

    def subset(self, index: torch.Tensor | np.ndarray) -> ImageDataset:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageDataset(
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            classes=self.classes,
            names=None if self.names is None else [self.names[i] for i in index.tolist()],
            item_index=self._subset_index(index),
        )

    def join(self, other: ImageDataset) -> ImageDataset:
        """This set followed by ``other`` (same image shape, same classes); items of a set without
        labels are unlabelled in the result."""
        if other.images.shape[1:] != self.images.shape[1:]:
            raise DataError(
                f"cannot join images of shape {tuple(other.images.shape[1:])} "
                f"to {tuple(self.images.shape[1:])}"
            )
        labels = None
        if self.labels is not None or other.labels is not None:
            labels = torch.cat(
                [
                    d.labels if d.labels is not None else torch.full((len(d),), UNLABELLED)
                    for d in (self, other)
                ]
            )
        names = self.names + other.names if self.names is not None and other.names is not None else None
        item_index = torch.cat([self.indices(), len(self) + other.indices()])
        return ImageDataset(
            torch.cat([self.images, other.images]), labels, self.classes or other.classes, names, item_index
        )

    @classmethod
    def from_arrays(
        cls, images: np.ndarray | torch.Tensor, labels=None, classes=None, names=None
    ) -> ImageDataset:
        """Build a data set from arrays of shape N×H×W, N×H×W×C or N×C×H×W (C in 1, 3).

        uint8 arrays are taken as they are, other integer arrays holding only 0..255 too, except
        uint16, which is a 16-bit picture (value / 257); float arrays must hold values in [0, 1].
        ``labels`` (any values) name the classes, unless ``classes`` is given, when they index it;
        negative or NaN labels and empty strings mark unlabelled items.
        """
        images = _to_uint8_nchw(np.asarray(images))
        label_tensor = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim != 1:
                raise DataError(f"labels must be one-dimensional, got shape {labels.shape}")
            if classes is None:
                marked = _unlabelled_mask(labels)
                if labels.dtype.kind == "f" and np.all(np.mod(labels[~marked], 1) == 0):
                    labels = np.where(marked, -1, labels).astype(np.int64)  # 0.0, 1.0: classes 0 and 1
                values, inverse = np.unique(labels[~marked], return_inverse=True)
                classes = [str(v.item()) if hasattr(v, "item") else str(v) for v in values]
                labels = np.full(len(labels), UNLABELLED, dtype=np.int64)
                labels[~marked] = inverse
            label_tensor = torch.as_tensor(labels.astype(np.int64))
        return cls(images=images, labels=label_tensor, classes=classes, names=names)


@dataclass
class TextDataset(LabelledData):
    """Documents as strings, optionally labelled (``labels`` int64 of shape N, values in
    ``range(len(classes))``); :func:`selfsup.data.text.load_text` reads them from files."""

    texts: Sequence[str]  # a list, or the memory-mapped Documents of a corpus store
    labels: torch.Tensor | None = None
    classes: list[str] | None = None
    item_index: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise DataError(f"{len(self.labels)} labels for {len(self.texts)} texts")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index) -> TextDataset:
        index = torch.as_tensor(index, dtype=torch.long)
        texts = self.texts
        return TextDataset(
            texts.take(index.numpy()) if hasattr(texts, "take") else [texts[i] for i in index.tolist()],
            None if self.labels is None else self.labels[index],
            self.classes,
            self._subset_index(index),
        )


class Rows:
    """Rows ``index`` of ``items`` (a tensor, a memory-mapped store, compressed images), read only
    when a slice or an index of it is asked for: ``Rows(images, index)[a:b]`` is
    ``images[index[a:b]]``, while ``images[index]`` would read every row at once."""

    def __init__(self, items, index: torch.Tensor):
        self.items, self.index = items, torch.as_tensor(index, dtype=torch.long)
        self.shape = torch.Size((len(self.index), *items.shape[1:]))
        self.dtype = items.dtype

    def __len__(self) -> int:
        return len(self.index)

    def dim(self) -> int:
        return len(self.shape)

    def __getitem__(self, rows):
        return self.items[self.index[rows]]


@dataclass
class DataSplits:
    """The training split (for pretraining and labelled subsets) and the held-out test split
    (:class:`ImageDataset` or :class:`TextDataset`)."""

    train: ImageDataset | TextDataset
    test: ImageDataset | TextDataset | None
    source: str
    note: str = ""
    unused: str = ""  # what the source held that is not used (:class:`selfsup.data.layout.Unused`), or ""

    def __post_init__(self) -> None:
        """A test split read as its own (not held out of the training items) comes after them."""
        if self.test is not None and self.test.item_index is None:
            after = int(self.train.indices().max()) + 1 if len(self.train) else 0
            self.test.item_index = after + torch.arange(len(self.test))

    def describe(self) -> str:
        """One line on what was found: items per split, labelled share, classes, item shape."""
        unit = "texts" if hasattr(self.train, "texts") else "images"
        parts = [f"{self.source}: train {_count(self.train, unit)}"]
        if self.test is not None:
            parts.append(f"test {_count(self.test, unit)}")
        if self.train.classes:
            counts = torch.bincount(
                torch.cat(
                    [
                        d.labels[d.labels >= 0]
                        for d in (self.train, self.test)
                        if d is not None and d.labels is not None
                    ]
                ),
                minlength=len(self.train.classes),
            ).tolist()
            listed = ", ".join(f"{c} {n}" for c, n in zip(self.train.classes[:10], counts))
            more = f", … ({len(self.train.classes) - 10} more)" if len(self.train.classes) > 10 else ""
            parts.append(
                f"{len(self.train.classes)} class{'es' if len(self.train.classes) != 1 else ''} "
                f"({listed}{more})"
            )
        if unit == "images":
            parts.append("×".join(str(s) for s in self.train.images.shape[1:]) + " uint8")
        return "; ".join(parts)


def _count(data: LabelledData, unit: str) -> str:
    labelled = len(data.labelled_index())
    items = f"{len(data)} {unit if len(data) != 1 else unit[:-1]}"
    if data.labels is None or labelled == 0:
        return items + " (unlabelled)"
    if labelled == len(data):
        return items
    return f"{items} ({labelled} labelled, {len(data) - labelled} unlabelled)"


def _unlabelled_mask(labels: np.ndarray) -> np.ndarray:
    """Which labels mark an unlabelled item: negative or NaN numbers, empty strings."""
    if labels.dtype.kind in "iu":
        return labels < 0
    if labels.dtype.kind == "f":
        return np.isnan(labels) | (labels < 0)
    if labels.dtype.kind in "US":
        return np.array([marks_unlabelled(str(v)) for v in labels], dtype=bool)
    return np.zeros(len(labels), dtype=bool)


def _to_uint8_nchw(array: np.ndarray) -> torch.Tensor:
    """Images N×C×H×W uint8 from the layouts and value ranges :meth:`ImageDataset.from_arrays` takes."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif not (array.ndim == 4 and array.shape[1] in (1, 3)):
        raise DataError(
            f"images must have shape N×H×W, N×H×W×C or N×C×H×W with C in (1, 3), got {array.shape}"
        )
    if array.dtype == np.bool_:  # a binary picture, as a 1-bit image file shows it
        array = array.astype(np.uint8) * 255
    if array.dtype == np.uint8 or array.size == 0:
        return torch.from_numpy(np.ascontiguousarray(array.astype(np.uint8, copy=False)))
    low, high = array.min(), array.max()
    if array.dtype == np.uint16:
        if high <= 255:
            warnings.warn(
                f"uint16 images read as 16-bit pictures (value / 257), but none is above {high}: they look "
                "nearly black; if they are 8-bit pictures, save them as uint8"
            )
        array = np.round(array / 257.0).astype(np.uint8)
    elif array.dtype.kind in "iu" and low >= 0 and high <= 255:
        array = array.astype(np.uint8)
    elif array.dtype.kind == "f":
        if np.isnan(array).any() or low < 0 or high > 1:
            raise DataError(
                f"float images must hold values in [0, 1], got [{low:g}, {high:g}]"
                + (" and NaN" if np.isnan(array).any() else "")
                + "; divide 0..255 values by 255"
            )
        array = np.round(array * 255).astype(np.uint8)
    else:
        raise DataError(
            f"images of dtype {array.dtype} must hold values in 0..255 (they span {low}..{high}); "
            "give uint8, uint16 (16 bits) or floats in [0, 1]"
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def stratified_split(
    labels: torch.Tensor, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
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


def held_out_split(
    labels: torch.Tensor, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`stratified_split` of the labelled items; every unlabelled item stays in the training part."""
    labelled = torch.nonzero(labels >= 0).flatten()
    train_part, test_part = stratified_split(labels[labelled], test_fraction, seed)
    unlabelled = torch.nonzero(labels < 0).flatten()
    return torch.sort(torch.cat([labelled[train_part], unlabelled])).values, labelled[test_part]


def train_subset(splits: DataSplits, count: int, seed: int = 0) -> DataSplits:
    """A class-balanced, seeded subset of ``count`` training images with the same test split, e.g. to
    pretrain on part of a large set (the test split serves the generative methods' test metrics)."""
    keep, _ = stratified_split(splits.train.labels, 1 - count / len(splits.train), seed=seed)
    return DataSplits(
        splits.train.subset(keep), splits.test, source=f"{splits.source} (train subset of {len(keep)})"
    )
