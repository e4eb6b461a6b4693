"""Read a data spec (``digits`` or a path) into :class:`DataSplits`, decoding each image once.

Folders and archives are decoded once into an on-disk store (:mod:`selfsup.data.store`) in
``$SELFSUP_CACHE_DIR`` (default ``~/.cache/selfsup``), read memory-mapped: a second run does not
decode again, and the images need not fit in memory.
Which files a folder or archive holds: :mod:`selfsup.data.files`; which are which split and class:
:mod:`selfsup.data.layout`; how a file's pixels become 8-bit: :mod:`selfsup.data.decode`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selfsup.atomic import WriteError, cache_failure, write_error
from selfsup.data.corpus import CORPUS_FORMAT
from selfsup.data.dataset import UNLABELLED, DataSplits, ImageDataset, held_out_split, stratified_split
from selfsup.data.decode import MAX_PIXELS, TooLarge, UnmappableImage, decode_image, own_pixel_limit
from selfsup.data.files import ARCHIVE_SUFFIXES, archive_contents, folder_names
from selfsup.data.folders import local_rank, remove_dead_partials, wait_for
from selfsup.data.layout import Placed, Unused, image_files, place
from selfsup.data.python_data import python_splits
from selfsup.data.store import TOO_LARGE, build_store, load_store
from selfsup.data.tables import (
    TABLE_SUFFIXES,
    Source,
    is_image_list,
    is_table_source,
    list_source,
    listed_files,
    table_holds_images,
    table_source,
)
from selfsup.data.text import is_text_path, load_text
from selfsup.errors import DataError

HELD_OUT_FRACTION = 0.2  # share of a labelled data set without a test split that is held out for evaluation
HELD_OUT_SEED = 0
CACHE_FORMAT = 5  # 2: pixels as a viewer shows them (EXIF, bit depth, alpha, colour profiles); 3: a store;
# 4: raw or JPEG stores; 5: files known by their change time too, data.max_pixels, JPEGs drafted


def load_data(
    spec: str,
    *,
    image_size: int | None = None,
    skip_bad_images: bool = False,
    cache: bool = True,
    text_options: dict | None = None,
    store: str = "auto",
    max_pixels: int | None = MAX_PIXELS,
) -> DataSplits:
    """Load ``digits``, an ImageFolder directory, a tar or zip archive of one, a .npy/.npz file, data
    from Python (:mod:`selfsup.data.python_data`: a tensor, an array, a Dataset), or a text corpus
    (.txt, .csv, .tsv: see :func:`selfsup.data.text.load_text`, which takes ``text_options``).

    Folders and archives follow :mod:`selfsup.data.layout` (``train/`` and ``test/`` or ``val/``
    folders give those splits; sub-folder names are the classes; a flat folder is unlabelled;
    whatever is not used is counted in ``DataSplits.unused``). A labelled set without a test
    split is split 80/20 (stratified, seed 0) so that evaluation never sees training images;
    negative labels (arrays) mark unlabelled items, which all stay in the training split.
    ``image_size`` resizes (shorter side) and centre-crops every image to that square size.
    ``store`` (``data.store``): how a folder, archive or table is stored: ``raw`` pixels, ``jpeg``
    (:mod:`selfsup.data.compressed`), or ``auto``: JPEG from 160 px up. ``max_pixels``
    (``data.max_pixels``): larger images are refused, or skipped with ``skip_bad_images``.

    Raises :class:`DataError` for a missing or unreadable path, an unknown format, a layout it
    cannot read, corrupt or too large images (unless ``skip_bad_images``) and pixels without a
    faithful 8-bit picture.
    """
    images = dict(
        image_size=image_size,
        skip_bad_images=skip_bad_images,
        cache=cache,
        store=store,
        max_pixels=max_pixels,
    )
    if not isinstance(spec, (str, os.PathLike)):  # a tensor, an array or a Dataset from Python
        return python_splits(spec, _finish)
    if spec == "digits":
        return load_digits()
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"data path not found: {spec}")
    name = path.name.lower()
    parquet = name.endswith(TABLE_SUFFIXES)
    if (parquet and table_holds_images(path)) or (name.endswith((".csv", ".tsv")) and is_image_list(path)):
        return _load_cached(path, **images)
    if is_text_path(name) or parquet:  # a Parquet file without an image column: texts
        options = text_options or {}
        store = cache_dir() / f"{_corpus_key(path, options)}.corpus" if cache else None
        return load_text(
            path, store=store, held_out_seed=HELD_OUT_SEED, held_out_fraction=HELD_OUT_FRACTION, **options
        )
    if name.endswith((".npy", ".npz")):
        return _finish(_load_arrays(path), spec)
    if path.is_dir() or name.endswith(ARCHIVE_SUFFIXES):
        return _load_cached(path, **images)
    raise DataError(
        f"unsupported data file: {spec} (expected a folder, {', '.join(ARCHIVE_SUFFIXES)}, .npy, .npz, "
        ".parquet, .txt, .csv, .tsv or 'digits')"
    )


def load_digits() -> DataSplits:
    """scikit-learn's 1,797 8×8 grey digits, 16 grey levels scaled to 0..255; fixed stratified 75/25 split."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    full = ImageDataset(images, labels, classes=[str(i) for i in range(10)])
    train_idx, test_idx = stratified_split(labels, test_fraction=0.25, seed=HELD_OUT_SEED)
    return DataSplits(full.subset(train_idx), full.subset(test_idx), source="digits")


def _finish(splits: dict[str, ImageDataset], source: str, unused: str = "", note: str = "") -> DataSplits:
    """The splits as :class:`DataSplits`, a labelled training split without a test split held out
    20% (stratified, seed 0); ``note``: the store already held it out."""
    if unused:
        warnings.warn(unused)
    train, test = splits.get("train"), splits.get("test")
    if train is None:
        raise DataError(f"{source}: no training images found")
    if note:
        return DataSplits(train, test, source=source, note=note, unused=unused)
    if test is None and len(train.present_classes()) > 1:  # one class: nothing to evaluate, pretrain on all
        train_idx, test_idx = _hold_out(train.labels)
        note = _held_out_note(source, len(test_idx))
        return DataSplits(
            train.subset(train_idx), train.subset(test_idx), source=source, note=note, unused=unused
        )
    if test is not None and test.labelled and train.labelled:  # an unlabelled train/ is labelled later
        missing = sorted(set(test.present_classes().tolist()) - set(train.present_classes().tolist()))
        if missing:
            counts = ", ".join(f"{test.classes[c]} ×{int((test.labels == c).sum())}" for c in missing[:5])
            warnings.warn(
                f"{source}: the test split has classes the training split lacks ({counts}): they are "
                "scored, and no classifier can predict them"
            )
    return DataSplits(train, test, source=source, unused=unused)


def _load_arrays(path: Path) -> dict[str, ImageDataset]:
    """``images`` [+ ``labels``] (.npy: the images alone), or ``train_images``/``test_images`` (or
    ``val_images``) [+ ``*_labels``]; ``unlabelled_images`` (or ``unlabeled_images``, STL-10's
    split) join the training split without labels."""
    try:
        if path.name.lower().endswith(".npy"):
            return {"train": ImageDataset.from_arrays(np.load(path, allow_pickle=False))}
        with np.load(path, allow_pickle=False) as arrays:
            keys = set(arrays.files)

            def split(prefix: str) -> ImageDataset:
                labels = arrays[f"{prefix}labels"] if f"{prefix}labels" in keys else None
                return ImageDataset.from_arrays(arrays[f"{prefix}images"], labels)

            if "images" in keys:
                out = {"train": split("")}
            elif "train_images" not in keys and keys & {"unlabelled_images", "unlabeled_images"}:
                out = {}
            elif "train_images" in keys:
                out = {"train": split("train_")}
                test = next((p for p in ("test_", "val_") if f"{p}images" in keys), None)
                if test:
                    out["test"] = split(test)
            else:
                raise DataError(
                    f"{path}: an .npz needs 'images' (and optionally 'labels'), "
                    f"or 'train_images'/'test_images'; found {sorted(keys)}"
                )
            extra = next((k for k in ("unlabelled_images", "unlabeled_images") if k in keys), None)
            if extra:
                out["unlabelled"] = ImageDataset.from_arrays(arrays[extra])
            _share_classes(out)
            if extra:
                unlabelled = out.pop("unlabelled")
                out["train"] = out["train"].join(unlabelled) if "train" in out else unlabelled
            return out
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read arrays from {path}: {exc}") from None


def _share_classes(splits: dict[str, ImageDataset]) -> None:
    """Re-index labels of all splits over the union of their classes, so class i means the same
    everywhere (unlabelled items stay unlabelled)."""
    labelled = [d for d in splits.values() if d.classes is not None]
    if not labelled:
        return
    union = sorted(
        {c for d in labelled for c in d.classes}, key=lambda c: (len(c), c) if c.isdigit() else (0, c)
    )
    position = {c: i for i, c in enumerate(union)}
    for data in labelled:
        remap = torch.tensor(
            [position[c] for c in data.classes] + [UNLABELLED]
        )  # index -1: the unlabelled mark
        data.labels = remap[data.labels]
        data.classes = union


# ---- folders and archives -------------------------------------------------------------------------


def _cache_key(path: Path, options: str) -> str:
    """The store's name: ``options`` (how the images are read) and every file's identity
    (:func:`file_identity`), so that a changed file builds the store again."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{path.resolve()}|{options}".encode())
    if path.is_dir():
        for name in folder_names(path):
            digest.update(f"{name}|{file_identity(path / name)}".encode())
    else:
        path = path.resolve()  # the same store however the path is written
        files = [path] + (listed_files(path) if path.name.lower().endswith((".csv", ".tsv")) else [])
        for file in files:
            digest.update(f"{file}|{file_identity(file)}".encode())
    return digest.hexdigest()[:24]


def file_identity(path: Path) -> str:
    """What tells a file's content changed without reading it: its size, modification time and
    inode change time (``st_ctime``). Copies that keep times (``cp -p``, an archive unpacked
    again, rsync) set the modification time but no tool can set the change time, which the
    system sets on every write, and also on ``chmod``, ``chown`` or a rename (a store then built
    once more). ``missing`` for a broken link."""
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"


def _corpus_key(path: Path, options: dict) -> str:
    what = f"corpus|{CORPUS_FORMAT}|{path.resolve()}|{file_identity(path)}|{sorted(options.items())}"
    return hashlib.sha256(what.encode()).hexdigest()[:24]


def cache_dir() -> Path:
    return Path(os.environ.get("SELFSUP_CACHE_DIR", Path.home() / ".cache" / "selfsup"))


def _load_cached(
    path: Path,
    *,
    image_size: int | None,
    skip_bad_images: bool,
    cache: bool,
    store: str = "auto",
    max_pixels: int | None = MAX_PIXELS,
) -> DataSplits:
    """The splits of a folder or archive from its store in :func:`cache_dir` (built on first use,
    read memory-mapped). Where the cache cannot be written (or ``cache`` is False) the store is
    built in a temporary folder and read into memory."""
    read = (image_size, skip_bad_images, max_pixels)
    encoding, store = (
        store,
        cache_dir() / f"{_cache_key(path, f'{image_size}|{skip_bad_images}|{store}|{max_pixels}')}.store",
    )
    if cache and not store.exists() and local_rank() > 0:
        wait_for(store, "store.json", f"the decoded store of {path}")  # local rank 0 builds it
    if cache and store.exists():
        try:
            return _finish_store(*load_store(store), str(path))
        except Exception as exc:  # noqa: BLE001 - a damaged store is built again, whatever its fault
            warnings.warn(f"ignored the damaged cache {store} ({type(exc).__name__}); decoding again")
            shutil.rmtree(store, ignore_errors=True)
    if cache:
        try:
            _build(path, store, read, encoding)
            return _finish_store(*load_store(store), str(path))
        except (OSError, WriteError) as exc:
            warnings.warn(
                f"could not cache the decoded images in {cache_dir()} ({cache_failure(exc)}); the next run "
                "decodes them again (set SELFSUP_CACHE_DIR to a writable folder)"
            )
    with tempfile.TemporaryDirectory(prefix="selfsup-store-") as folder:
        try:
            _build(path, Path(folder) / "store", read, encoding)
            return _finish_store(*load_store(Path(folder) / "store", mmap=False), str(path))
        except OSError as exc:
            raise write_error(exc, Path(folder) / "store") from None


def _finish_store(splits: dict[str, ImageDataset], info: dict, source: str) -> DataSplits:
    """:func:`_finish` of a store's splits, whose held-out test split (if any) the build made."""
    note = _held_out_note(source, info["held_out"]) if info["held_out"] else ""
    return _finish(splits, source, unused=info["unused"], note=note)


def _held_out_note(source: str, count: int) -> str:
    return (
        f"no test split in {source}: held out {count} labelled images (20%, stratified, seed 0) "
        "for evaluation"
    )


def _hold_out(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return held_out_split(labels, HELD_OUT_FRACTION, HELD_OUT_SEED)


def _build(path: Path, store: Path, read: tuple, encoding: str) -> None:
    """Decode the images of a folder, archive, table or list (:func:`_source`) into the store
    ``store`` (:mod:`selfsup.data.store`); ``read``: :func:`_decode_file`'s ``image_size``,
    ``skip_bad_images`` and ``max_pixels``."""
    store.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(store.parent)
    scratch = store.parent / f"{store.name}.unpacked.partial-{os.getpid()}"  # a killed build's: removed above
    scratch.mkdir(exist_ok=True)
    try:
        source = _source(path, scratch)

        def decode(item: Placed) -> np.ndarray | str | None:
            return _decode_file(item, source.read, str(path), *read)

        unused = source.unused.message(str(path))
        with own_pixel_limit():
            build_store(store, source.grouped, decode, str(path), unused, _share_classes, _hold_out, encoding)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _source(path: Path, scratch: Path) -> Source:
    """The images of ``path``: a folder or archive by its layout (:mod:`selfsup.data.layout`), or a
    table or list of images (:mod:`selfsup.data.tables`); ``scratch``: a folder that a compressed
    archive is unpacked into while the store is built."""
    unused = Unused()
    names = folder_names(path, unused) if path.is_dir() else None
    if is_table_source(path, names):
        return table_source(path)
    if path.name.lower().endswith((".csv", ".tsv")):
        return list_source(path)
    if names is not None:
        placed = place(image_files(names, unused), str(path), unused)

        def read(name: str) -> bytes:
            return (path / name).read_bytes()
    else:
        names, read = archive_contents(path, scratch)
        placed = place(image_files(names, unused), str(path), unused)

    grouped: dict[str, list[Placed]] = {}
    for item in placed:
        grouped.setdefault(item.split, []).append(item)
    return Source(grouped, read, unused)


def _decode_file(
    item: Placed,
    read: Callable[[str], bytes],
    source: str,
    image_size: int | None,
    skip_bad_images: bool,
    max_pixels: int | None = MAX_PIXELS,
) -> np.ndarray | str | None:
    """One image's pixels (resized and centre-cropped to ``image_size`` if given); where
    ``skip_bad_images``, None for a file that cannot be read or decoded and
    :data:`~selfsup.data.store.TOO_LARGE` for one of more than ``max_pixels`` pixels; otherwise
    such a file raises :class:`DataError`."""
    try:
        data = read(item.name)
    except Exception as exc:  # noqa: BLE001 - OSError, a zip's bad CRC, zlib, a damaged Parquet row group
        if skip_bad_images:
            return None
        raise DataError(
            f"cannot read {item.name} of {source} ({exc}); pass --skip-bad-images to skip such files"
        ) from None
    try:
        array = decode_image(data, max_pixels, at_least=image_size)
        if image_size is not None:
            array = _resize_center_crop(array, image_size)
        return array
    except TooLarge as exc:
        if skip_bad_images:
            return TOO_LARGE
        raise DataError(
            f"image too large: {source}/{item.name} ({exc}); raise the limit with data.max_pixels="
            f"{-(-exc.pixels // 10**6) * 10**6} to read it, or pass --skip-bad-images to skip such images"
        ) from None
    except UnmappableImage as exc:
        if skip_bad_images:
            return None
        raise DataError(
            f"{source}/{item.name}: {exc}; or pass --skip-bad-images to skip such files"
        ) from None
    except Exception as exc:  # PIL raises many types for corrupt or truncated files
        if skip_bad_images:
            return None
        why = re.sub(r" <_io\.BytesIO object at 0x[0-9a-f]+>", "", str(exc))  # Pillow names its buffer
        raise DataError(
            f"corrupt or truncated image: {source}/{item.name} ({type(exc).__name__}: {why}); "
            "pass --skip-bad-images to skip such files"
        ) from None


def _resize_center_crop(array: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray(array)
    width, height = image.size
    scale = size / min(width, height)
    image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))
