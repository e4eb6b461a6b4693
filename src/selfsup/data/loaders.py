"""Read a data spec (``digits`` or a path) into :class:`DataSplits`, decoding each image once.

Folders and archives are decoded into a uint8 tensor and cached on disk
(``$SELFSUP_CACHE_DIR``, default ``~/.cache/selfsup``), so a second run does not decode again.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selfsup.data.dataset import DataSplits, ImageDataset, stratified_split
from selfsup.data.text import is_text_path, load_text
from selfsup.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SPLIT_NAMES = {"train": "train", "test": "test", "val": "test", "valid": "test", "validation": "test"}
HELD_OUT_FRACTION = 0.2  # share of a labelled data set without a test split that is held out for evaluation
HELD_OUT_SEED = 0
CACHE_FORMAT = 1


def load_data(spec: str, *, image_size: int | None = None, skip_bad_images: bool = False,
              cache: bool = True, text_options: dict | None = None) -> DataSplits:
    """Load ``digits``, an ImageFolder directory, a .tar/.tar.gz of one, a .npy/.npz file, or a text
    corpus (.txt, .csv, .tsv: see :func:`selfsup.data.text.load_text`, which takes ``text_options``).

    A folder or archive with ``train/`` and ``test/`` (or ``val/``) sub-folders gives those
    splits; otherwise a labelled set is split 80/20 (stratified, seed 0) so that evaluation
    never sees training images. Sub-folder names are the labels; a flat folder is unlabelled.
    ``image_size`` resizes (shorter side) and centre-crops every image to that square size.
    """
    if spec == "digits":
        return load_digits()
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"data path not found: {spec}")
    name = path.name.lower()
    if is_text_path(name):
        return load_text(path, held_out_seed=HELD_OUT_SEED, held_out_fraction=HELD_OUT_FRACTION, **(text_options or {}))
    if name.endswith((".npy", ".npz")):
        return _finish(_load_arrays(path), spec)
    if path.is_dir() or name.endswith((".tar", ".tar.gz", ".tgz")):
        return _load_cached(path, image_size=image_size, skip_bad_images=skip_bad_images, cache=cache)
    raise DataError(f"unsupported data file: {spec} (expected a folder, .tar, .tar.gz, .tgz, .npy, .npz, "
                    ".txt, .csv, .tsv or 'digits')")


def load_digits() -> DataSplits:
    """scikit-learn's 1,797 8×8 grey digits, 16 grey levels scaled to 0..255; fixed stratified 75/25 split."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    full = ImageDataset(images, labels, classes=[str(i) for i in range(10)])
    train_idx, test_idx = stratified_split(labels, test_fraction=0.25, seed=HELD_OUT_SEED)
    return DataSplits(full.subset(train_idx), full.subset(test_idx), source="digits")


def _finish(splits: dict[str, ImageDataset], source: str) -> DataSplits:
    train, test = splits.get("train"), splits.get("test")
    if train is None:
        raise DataError(f"{source}: no training images found")
    if test is None and train.labelled:
        train_idx, test_idx = stratified_split(train.labels, HELD_OUT_FRACTION, HELD_OUT_SEED)
        note = f"no test split in {source}: held out {len(test_idx)} images (20%, stratified, seed 0) for evaluation"
        return DataSplits(train.subset(train_idx), train.subset(test_idx), source=source, note=note)
    return DataSplits(train, test, source=source)


def _load_arrays(path: Path) -> dict[str, ImageDataset]:
    try:
        if path.suffix == ".npy":
            return {"train": ImageDataset.from_arrays(np.load(path, allow_pickle=False))}
        with np.load(path, allow_pickle=False) as arrays:
            keys = set(arrays.files)
            if "images" in keys:
                return {"train": ImageDataset.from_arrays(arrays["images"], arrays["labels"] if "labels" in keys else None)}
            if "train_images" in keys:
                out = {}
                for split in ("train", "test"):
                    if f"{split}_images" in keys:
                        labels = arrays[f"{split}_labels"] if f"{split}_labels" in keys else None
                        out[split] = ImageDataset.from_arrays(arrays[f"{split}_images"], labels)
                _share_classes(out)
                return out
            raise DataError(f"{path}: an .npz needs 'images' (and optionally 'labels'), "
                            f"or 'train_images'/'test_images'; found {sorted(keys)}")
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read arrays from {path}: {exc}") from None


def _share_classes(splits: dict[str, ImageDataset]) -> None:
    """Re-index labels of all splits over the union of their classes, so class i means the same everywhere."""
    labelled = [d for d in splits.values() if d.labelled]
    if not labelled:
        return
    union = sorted({c for d in labelled for c in d.classes}, key=lambda c: (len(c), c) if c.isdigit() else (0, c))
    position = {c: i for i, c in enumerate(union)}
    for data in labelled:
        remap = torch.tensor([position[c] for c in data.classes])
        data.labels = remap[data.labels]
        data.classes = union


# ---- folders and archives -------------------------------------------------------------------------

def _cache_key(path: Path, image_size: int | None, skip_bad_images: bool) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{path.resolve()}|{image_size}|{skip_bad_images}".encode())
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for file in sorted(files):
                stat = os.stat(os.path.join(root, file))
                digest.update(f"{os.path.relpath(os.path.join(root, file), path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    else:
        stat = path.stat()
        digest.update(f"{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def cache_dir() -> Path:
    return Path(os.environ.get("SELFSUP_CACHE_DIR", Path.home() / ".cache" / "selfsup"))


def _load_cached(path: Path, *, image_size: int | None, skip_bad_images: bool, cache: bool) -> DataSplits:
    cache_file = cache_dir() / f"{_cache_key(path, image_size, skip_bad_images)}.pt"
    if cache and cache_file.exists():
        stored = torch.load(cache_file, weights_only=True)
        splits = {name: ImageDataset(**fields) for name, fields in stored["splits"].items()}
        return _finish(splits, str(path))
    entries = _folder_entries(path) if path.is_dir() else _archive_entries(path)
    splits = _decode_layout(entries, str(path), image_size=image_size, skip_bad_images=skip_bad_images)
    if cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
        torch.save({"splits": {name: vars(d) for name, d in splits.items()}}, tmp)
        os.replace(tmp, cache_file)
    return _finish(splits, str(path))


def _folder_entries(path: Path) -> list[tuple[str, bytes]]:
    entries = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for file in sorted(files):
            if Path(file).suffix.lower() in IMAGE_SUFFIXES and not file.startswith("."):
                full = Path(root) / file
                entries.append((full.relative_to(path).as_posix(), full.read_bytes()))
    if not entries:
        raise DataError(f"no images found in folder {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return entries


def _archive_entries(path: Path) -> list[tuple[str, bytes]]:
    entries = []
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                name = member.name.lstrip("./")
                if member.isfile() and Path(name).suffix.lower() in IMAGE_SUFFIXES and not Path(name).name.startswith("."):
                    entries.append((name, archive.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read archive {path}: {exc}") from None
    if not entries:
        raise DataError(f"no images found in archive {path}")
    entries.sort()
    return entries


def _strip_wrapper(parts_list: list[list[str]]) -> list[list[str]]:
    """Drop a single top-level folder that merely wraps a train/test layout (common in archives)."""
    while all(len(p) > 2 for p in parts_list) and len({p[0] for p in parts_list}) == 1 \
            and any(p[1].lower() in SPLIT_NAMES for p in parts_list):
        parts_list = [p[1:] for p in parts_list]
    return parts_list


def _decode_layout(entries: list[tuple[str, bytes]], source: str, *, image_size: int | None,
                   skip_bad_images: bool) -> dict[str, ImageDataset]:
    parts_list = _strip_wrapper([name.split("/") for name, _ in entries])
    has_splits = any(len(p) > 1 and p[0].lower() in SPLIT_NAMES for p in parts_list)
    grouped: dict[str, list[tuple[list[str], str, bytes]]] = {}
    for parts, (name, data) in zip(parts_list, entries):
        split = "train"
        if has_splits:
            if len(parts) < 2 or parts[0].lower() not in SPLIT_NAMES:
                continue
            split, parts = SPLIT_NAMES[parts[0].lower()], parts[1:]
        grouped.setdefault(split, []).append((parts, name, data))
    decoded = {split: _decode_split(items, source, image_size, skip_bad_images) for split, items in grouped.items()}
    _share_classes(decoded)
    sizes = {d.image_size for d in decoded.values()}
    channels = {d.channels for d in decoded.values()}
    if len(sizes) > 1:
        raise DataError(f"{source}: splits have different image sizes {sorted(sizes)}; pass data.image_size=N to resize")
    if len(channels) > 1:
        for name, data in decoded.items():
            if data.channels == 1:
                decoded[name] = ImageDataset(data.images.expand(-1, 3, -1, -1).contiguous(), data.labels, data.classes, data.names)
    return decoded


def _decode_split(items, source: str, image_size: int | None, skip_bad_images: bool) -> ImageDataset:
    labelled = [(p, n, d) for p, n, d in items if len(p) >= 2]
    flat = [(p, n, d) for p, n, d in items if len(p) < 2]
    if labelled and flat:
        warnings.warn(f"{source}: ignored {len(flat)} images lying beside the class folders (e.g. {flat[0][1]})")
        items = labelled

    def decode(item):
        _, name, data = item
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                grey = image.mode in ("L", "1", "I", "I;16", "F")
                image = image.convert("L" if grey else "RGB")
                if image_size is not None:
                    image = _resize_center_crop(image, image_size)
                return np.asarray(image)
        except Exception as exc:  # PIL raises many types for corrupt or truncated files
            if skip_bad_images:
                return None
            raise DataError(f"corrupt or truncated image: {source}/{name} ({type(exc).__name__}: {exc}); "
                            "pass --skip-bad-images to skip such files") from None

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        arrays = list(pool.map(decode, items))
    bad = [item[1] for item, array in zip(items, arrays) if array is None]
    if bad:
        warnings.warn(f"{source}: skipped {len(bad)} corrupt image(s), first: {bad[0]}")
    kept = [(item, array) for item, array in zip(items, arrays) if array is not None]
    if not kept:
        raise DataError(f"{source}: no readable images")
    shapes = {array.shape[:2] for _, array in kept}
    if len(shapes) > 1:
        raise DataError(f"{source}: images have different sizes ({len(shapes)} sizes, e.g. {sorted(shapes)[:3]}); "
                        "pass data.image_size=N to resize and centre-crop them to N×N")
    rgb = any(array.ndim == 3 for _, array in kept)
    stack = np.stack([np.repeat(a[..., None], 3, axis=2) if rgb and a.ndim == 2 else a for _, a in kept])
    names = [item[1] for item, _ in kept]
    if labelled:
        class_names = [item[0][0] for item, _ in kept]
        classes = sorted(set(class_names))
        index = {c: i for i, c in enumerate(classes)}
        return ImageDataset.from_arrays(stack, np.array([index[c] for c in class_names]), classes=classes, names=names)
    return ImageDataset.from_arrays(stack, names=names)


def _resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))
