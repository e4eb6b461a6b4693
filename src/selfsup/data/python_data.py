"""Data handed over in Python (``api.pretrain(method, data)``): a tensor or NumPy array of images,
a pair ``(images, labels)``, or any ``torch.utils.data.Dataset`` (map-style) of images or
``(image, label)`` pairs, such as torchvision's data sets.

They are read once into memory as uint8 images (see :meth:`ImageDataset.from_arrays` for the
layouts and value ranges taken: N×H×W, N×H×W×C or N×C×H×W; uint8, or floats in [0, 1]; a data set's
items may be PIL images, arrays or tensors, C×H×W as ``ToTensor`` gives them). A set larger than
memory belongs in a folder, archive or table given by path, which selfsup stores on disk.
"""

from __future__ import annotations

import numpy as np
import torch

from selfsup.data.dataset import DataSplits, ImageDataset
from selfsup.errors import DataError


def python_splits(data, finish) -> DataSplits:
    """The splits of ``data`` (see the module's docstring); ``finish`` holds out a labelled test
    share as a folder's loading does (``loaders._finish``). Raises :class:`DataError` for another
    type, an empty data set, or items of different sizes."""
    source = f"<{type(data).__name__}>"
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = data
        return finish({"train": ImageDataset.from_arrays(_array(images), _array(labels))}, source)
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return finish({"train": ImageDataset.from_arrays(_array(data))}, source)
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise DataError(
            f"data must be a path, 'digits', a tensor or array of images, (images, labels), "
            f"or a map-style torch Dataset; got {type(data).__name__}"
        )
    if len(data) == 0:
        raise DataError(f"{source} is empty")
    images, labels = [], []
    for i in range(len(data)):
        item = data[i]
        image, label = item if isinstance(item, (tuple, list)) and len(item) == 2 else (item, None)
        array = _array(image)
        if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
            array = array.transpose(1, 2, 0)  # C×H×W (ToTensor) -> H×W×C, as PIL images come
        if images and array.shape != images[0].shape:
            raise DataError(
                f"{source}: item {i} has shape {array.shape}, item 0 {images[0].shape}; resize them"
            )
        images.append(array)
        labels.append(label)
    return finish({"train": _labelled(np.stack(images), labels, getattr(data, "classes", None))}, source)


def _labelled(images: np.ndarray, labels: list, classes) -> ImageDataset:
    """Integer labels index the data set's ``classes`` where it has them; other labels (names)
    name the classes; None marks an unlabelled item."""
    if all(label is None for label in labels):
        return ImageDataset.from_arrays(images)
    if all(isinstance(label, (int, np.integer)) or label is None for label in labels):
        values = np.asarray([-1 if label is None else int(label) for label in labels])
        if classes and values.max() < len(classes):
            return ImageDataset.from_arrays(images, values, classes=list(classes))
        return ImageDataset.from_arrays(images, values)
    return ImageDataset.from_arrays(
        images, np.asarray(["" if label is None else str(label) for label in labels])
    )


def _array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
