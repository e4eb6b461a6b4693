"""The on-disk store of decoded images: each split's uint8 N×C×H×W pixels in a NumPy ``.npy``
file, read memory-mapped, beside a JSON file of its labels, classes and file names.

A store is built once per source by decoding :data:`CHUNK` images at a time into shard files,
then copying the shards into each split's ``images.npy``: no step holds more than one chunk of
decoded images (plus the file being copied, which the operating system pages). At training time a
batch is gathered by index from the memory map, and the page cache decides what stays in RAM.

A build killed at any point leaves only ``STORE.partial/``, never a directory that a later run
mistakes for a store: the store appears, by one rename, when it is complete. Its finished shards
(each written to a temporary name, then renamed) are reused by the next build of the same source.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from selfsup.atomic import write_bytes, write_file, write_text
from selfsup.data.compressed import BYTES_FILE, OFFSETS_FILE, JpegImages, choose_encoding, encode_jpeg
from selfsup.data.dataset import UNLABELLED, ImageDataset
from selfsup.data.folders import building, publish
from selfsup.data.layout import Placed
from selfsup.errors import DataError

STORE_FORMAT = 2  # 2: store.json records the encoding (raw or jpeg)
CHUNK = 1024
"""Images decoded, and held in memory, at a time."""
INFO_FILE, IMAGES_FILE, META_FILE = "store.json", "images.npy", "meta.json"

TOO_LARGE = "too large"
"""What a :data:`Decode` returns for an image skipped for its size (None: skipped as corrupt)."""
Decode = Callable[[Placed], "np.ndarray | str | None"]


@dataclass
class Shard:
    """One chunk of a split, decoded: its images' shape, whether they are RGB, and per kept image
    its file name and class (None: unlabelled); the files that could not be decoded, and those
    skipped for their size."""

    path: Path
    count: int
    shapes: list[tuple[int, int]]
    rgb: bool
    names: list[str]
    labels: list[str | None]
    bad: list[str]
    lengths: list[int] | None = None  # jpeg: each image's bytes in the shard's file
    too_large: list[str] | None = None

    @classmethod
    def read(cls, path: Path) -> Shard:
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        shapes = [tuple(shape) for shape in meta["shapes"]]
        return cls(
            path,
            meta["count"],
            shapes,
            meta["rgb"],
            meta["names"],
            meta["labels"],
            meta["bad"],
            meta.get("lengths"),
            meta.get("too_large", []),
        )

    def pixels(self) -> np.ndarray:
        """The kept images, N×H×W (grey) or N×H×W×3, memory-mapped."""
        return np.load(self.path, mmap_mode="r")


def load_store(directory: Path, mmap: bool = True) -> tuple[dict[str, ImageDataset], dict]:
    """The splits of the store in ``directory`` (images memory-mapped unless ``mmap`` is False:
    then read into memory), and its ``store.json``: ``unused`` (the line about unused files) and
    ``held_out`` (how many training images the build held out as the test split; 0: none) and
    ``encoding`` (``raw``: pixels; ``jpeg``: :class:`~selfsup.data.compressed.JpegImages`; these
    are decoded per batch, and ``mmap`` does not apply).
    Raises an exception of any type for a damaged store (the caller builds it again)."""
    info = json.loads((directory / INFO_FILE).read_text())
    if info["format"] != STORE_FORMAT:
        raise ValueError(f"store format {info['format']}, expected {STORE_FORMAT}")
    splits = {}
    for name in info["splits"]:
        meta = json.loads((directory / name / META_FILE).read_text())
        if info["encoding"] == "jpeg":
            images = JpegImages(directory / name, tuple(meta["shape"]))
        else:  # copy-on-write: the tensor is writable, and the file is never written
            images = torch.from_numpy(
                np.load(directory / name / IMAGES_FILE, mmap_mode="c" if mmap else None)
            )
        labels = torch.tensor(meta["labels"], dtype=torch.long) if meta["labels"] is not None else None
        item_index = torch.tensor(meta["item_index"], dtype=torch.long) if "item_index" in meta else None
        splits[name] = ImageDataset(images, labels, meta["classes"], meta["names"], item_index)
    return splits, info


def build_store(
    directory: Path,
    grouped: dict[str, list[Placed]],
    decode: Decode,
    source: str,
    unused: str,
    share_classes: Callable[[dict[str, ImageDataset]], None],
    hold_out: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    encoding: str = "raw",
) -> None:
    """Decode the images of every split of ``grouped`` with ``decode`` (None: a file skipped) and
    write the store to ``directory``. Raises :class:`DataError` where a split has no readable image
    or images of different sizes, or splits differ in size; ``share_classes`` re-indexes the
    splits' labels over the union of their classes. A labelled training split of several classes
    without a test split is split in the store by ``hold_out(labels) -> (train index, test
    index)``, both sorted, so that no run copies it in memory. ``encoding`` (``data.store``):
    :func:`~selfsup.data.compressed.choose_encoding`, by the first image's size for ``auto``."""
    choose_encoding(encoding, 0)  # an unknown name is refused before anything is written
    partial = directory.with_name(directory.name + ".partial")
    with building(partial):
        # Registered before this check, so a process that published the store and found no other
        # builder left cannot remove the shards from under this one: it published first.
        if (directory / INFO_FILE).exists():
            return
        encoding, shards = _decode(partial, grouped, decode, source, encoding)
        channels = 3 if any(s.rgb for split_shards in shards.values() for s in split_shards) else 1
        out = partial / f"out-{socket.gethostname()}-{os.getpid()}"  # each builder assembles its own
        shutil.rmtree(out, ignore_errors=True)
        splits, offset = {}, 0
        for split in sorted(shards, key=lambda name: name != "train"):  # items are numbered train first
            splits[split] = _assemble(out / split, shards[split], channels, encoding, offset)
            offset += len(splits[split])
        share_classes(splits)
        held_out = 0
        train = splits.get("train")
        if (
            hold_out is not None
            and train is not None
            and "test" not in splits
            and len(train.present_classes()) > 1
        ):
            train_index, test_index = hold_out(train.labels)
            splits["test"] = _take(out, "train", "test", train, test_index, encoding)
            splits["train"] = _take(out, "train", "train", train, train_index, encoding)
            held_out = len(test_index)
        _write_meta(out, splits, {"unused": unused, "held_out": held_out, "encoding": encoding})
        publish(out, directory, INFO_FILE)


def _decode(
    partial: Path, grouped: dict[str, list[Placed]], decode: Decode, source: str, encoding: str
) -> tuple[str, dict[str, list[Shard]]]:
    """The build's encoding and each split's shards, decoding those not finished yet; DataError
    for a split without a readable image or splits of different image sizes."""
    (partial / "shards").mkdir(parents=True, exist_ok=True)
    encoding = _encoding(partial, grouped, decode, encoding)
    shards = {}
    for split, items in grouped.items():
        shards[split] = _decode_split(partial / "shards", split, items, decode, encoding)
        _check_split(shards[split], source)
    sizes = {_shape(s) for s in shards.values()}
    if len(sizes) > 1:
        raise DataError(
            f"{source}: splits have different image sizes {sorted(sizes)}; pass data.image_size=N to resize"
        )
    return encoding, shards


def _encoding(partial: Path, grouped: dict[str, list[Placed]], decode: Decode, encoding: str) -> str:
    """``raw`` or ``jpeg``, chosen once per build: a rerun goes on as the killed build began."""
    chosen = partial / "encoding"
    if not chosen.exists():
        side = _first_side(grouped, decode) if encoding == "auto" else 0
        write_text(chosen, choose_encoding(encoding, side))
    return chosen.read_text()


def _write_meta(out: Path, splits: dict[str, ImageDataset], info: dict) -> None:
    """Each split's ``meta.json`` (labels, classes, file names, shape) and the store's ``store.json``."""
    for split, data in splits.items():
        labels = data.labels.tolist() if data.labels is not None else None
        meta = {
            "labels": labels,
            "classes": data.classes,
            "names": data.names,
            "shape": list(data.images.shape),
            "item_index": data.indices().tolist(),
        }
        write_text(out / split / META_FILE, json.dumps(meta))
    write_text(out / INFO_FILE, json.dumps({"format": STORE_FORMAT, "splits": list(splits), **info}))


def _first_side(grouped: dict[str, list[Placed]], decode: Decode) -> int:
    """The longer side of the first image that decodes (0: none does)."""
    for items in grouped.values():
        for item in items[:64]:
            array = decode(item)
            if isinstance(array, np.ndarray):
                return max(array.shape[:2])
    return 0


def _decode_split(
    folder: Path, split: str, items: list[Placed], decode: Decode, encoding: str
) -> list[Shard]:
    """The shards of one split, decoding those a previous build did not finish (and, for a
    ``jpeg`` store, encoding them in the same threads)."""
    shards = []
    workers = max(1, min(4, os.cpu_count() or 1))
    bar = tqdm(total=len(items), desc=f"decoding {split}", unit="img", disable=None, leave=False)

    def work(item: Placed):
        array = decode(item)
        if not isinstance(array, np.ndarray) or encoding == "raw":
            return array
        return array.shape, encode_jpeg(array)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(items), CHUNK):
            path = folder / f"{split}-{start // CHUNK:06d}.{'npy' if encoding == 'raw' else 'jpg.bin'}"
            meta = path.with_name(path.name + ".json")
            if not meta.exists():
                chunk = items[start : start + CHUNK]
                _write_shard(path, meta, chunk, list(pool.map(work, chunk)), encoding)
            shards.append(Shard.read(path))
            bar.update(len(items[start : start + CHUNK]))
    bar.close()
    return shards


def _write_shard(path: Path, meta_path: Path, items: list[Placed], results: list, encoding: str) -> None:
    """Stack one chunk's decoded images (grey ones as RGB where the chunk has RGB) to ``path``, or
    (``jpeg``) write their JPEG bytes one after the other; the JSON sidecar ``meta_path``, written
    last, marks the shard finished."""
    kept = [
        (item, result)
        for item, result in zip(items, results)
        if result is not None and not isinstance(result, str)
    ]
    shapes_of = [r.shape if encoding == "raw" else r[0] for _, r in kept]
    shapes = sorted({shape[:2] for shape in shapes_of})
    rgb = any(len(shape) == 3 for shape in shapes_of)
    meta = {
        "count": len(kept),
        "shapes": [list(s) for s in shapes],
        "rgb": rgb,
        "names": [item.name for item, _ in kept],
        "labels": [item.label for item, _ in kept],
        "bad": [item.name for item, result in zip(items, results) if result is None],
        "too_large": [item.name for item, result in zip(items, results) if isinstance(result, str)],
    }
    if encoding == "jpeg":
        meta["lengths"] = [len(r[1]) for _, r in kept]
        write_bytes(path, b"".join(r[1] for _, r in kept))
    elif len(shapes) == 1:
        stack = np.stack([np.repeat(a[..., None], 3, axis=2) if rgb and a.ndim == 2 else a for _, a in kept])
        write_file(path, lambda handle: np.save(handle, stack), needed=stack.nbytes)
    write_text(meta_path, json.dumps(meta))


def _check_split(shards: list[Shard], source: str) -> None:
    """The checks of the old in-memory decoding, over the shards of one split."""
    bad = [name for s in shards for name in s.bad]
    if bad:
        warnings.warn(
            f"{source}: skipped {len(bad)} corrupt image(s) (or unreadable files, or images without a "
            f"faithful 8-bit picture), first: {bad[0]}"
        )
    large = [name for s in shards for name in s.too_large or []]
    if large:
        warnings.warn(
            f"{source}: skipped {len(large)} image(s) too large to read (over data.max_pixels), "
            f"first: {large[0]}"
        )
    if not any(s.count for s in shards):
        raise DataError(f"{source}: no readable images")
    shapes = sorted({shape for s in shards for shape in s.shapes})
    if len(shapes) > 1:
        raise DataError(
            f"{source}: images have different sizes ({len(shapes)} sizes, e.g. {shapes[:3]}); "
            "pass data.image_size=N to resize and centre-crop them to N×N"
        )


def _shape(shards: list[Shard]) -> tuple[int, int]:
    return next(s.shapes[0] for s in shards if s.count)


def _assemble(folder: Path, shards: list[Shard], channels: int, encoding: str, offset: int) -> ImageDataset:
    """One split's ``images.npy`` (N×C×H×W), or its JPEG bytes and offsets, copied shard by shard,
    and its labels (the images of the returned data set are a placeholder of the right shape);
    its items are numbered from ``offset``."""
    folder.mkdir(parents=True)
    height, width = _shape(shards)
    count = sum(s.count for s in shards)
    if encoding == "jpeg":
        lengths = [n for s in shards if s.count for n in s.lengths]
        _save_offsets(folder, lengths)
        with open(folder / BYTES_FILE, "wb") as out:
            for shard in (s for s in shards if s.count):
                with open(shard.path, "rb") as part:
                    shutil.copyfileobj(part, out, 2**22)
    else:
        with _NpyWriter(folder / IMAGES_FILE, (count, channels, height, width)) as images:
            for shard in (s for s in shards if s.count):
                pixels = shard.pixels()
                nchw = pixels[:, None] if pixels.ndim == 3 else pixels.transpose(0, 3, 1, 2)
                images.write(np.broadcast_to(nchw, (len(nchw), channels, height, width)))  # grey into RGB
    names = [name for s in shards for name in s.names]
    class_names = [label for s in shards for label in s.labels]
    item_index = offset + torch.arange(count)
    if all(c is None for c in class_names):
        return ImageDataset(_placeholder(count, channels, height, width), names=names, item_index=item_index)
    classes = sorted({c for c in class_names if c is not None})
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index.get(c, UNLABELLED) for c in class_names], dtype=torch.long)
    return ImageDataset(_placeholder(count, channels, height, width), labels, classes, names, item_index)


def _take(
    out: Path, source: str, target: str, data: ImageDataset, index: torch.Tensor, encoding: str
) -> ImageDataset:
    """Rows ``index`` (sorted) of split ``source``'s images as split ``target`` (replacing it where
    it is the same split), copied :data:`CHUNK` rows at a time; the labels and names with them."""
    folder = out / f"{target}.new"
    folder.mkdir()
    rows = index.numpy()
    if encoding == "jpeg":
        offsets = np.load(out / source / OFFSETS_FILE)
        lengths = offsets[rows + 1] - offsets[rows]
        _save_offsets(folder, lengths)
        with (
            open(out / source / BYTES_FILE, "rb") as source_file,
            open(folder / BYTES_FILE, "wb") as target_file,
        ):
            for row in rows.tolist():
                source_file.seek(int(offsets[row]))
                target_file.write(source_file.read(int(offsets[row + 1] - offsets[row])))
    else:
        with _NpyWriter(folder / IMAGES_FILE, (len(index), *data.images.shape[1:])) as images:
            for start in range(0, len(rows), CHUNK):
                # mapped anew for each chunk: the pages read are unmapped with it, not kept in this process
                pixels = np.load(out / source / IMAGES_FILE, mmap_mode="r")
                images.write(pixels[rows[start : start + CHUNK]])
                del pixels
    shutil.rmtree(out / target, ignore_errors=True)
    os.replace(folder, out / target)
    names = [data.names[i] for i in rows.tolist()] if data.names is not None else None
    shape = data.images.shape[1:]
    return ImageDataset(
        _placeholder(len(rows), *shape), data.labels[index], data.classes, names, data.indices()[index]
    )


def _save_offsets(folder: Path, lengths) -> None:
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    write_file(folder / OFFSETS_FILE, lambda handle: np.save(handle, offsets))


class _NpyWriter:
    """Writes a uint8 ``.npy`` of ``shape`` by appending rows, through the file rather than a
    memory map: the written pages go to the page cache without counting in this process's memory."""

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self.handle = open(path, "wb")
        self.shape, self.rows = shape, 0
        header = {"descr": "|u1", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.handle, header)

    def write(self, rows: np.ndarray) -> None:
        self.handle.write(np.ascontiguousarray(rows, dtype=np.uint8).tobytes())
        self.rows += len(rows)

    def __enter__(self) -> _NpyWriter:
        return self

    def __exit__(self, kind, *rest) -> None:
        self.handle.close()
        if kind is None and self.rows != self.shape[0]:
            raise RuntimeError(f"wrote {self.rows} rows of {self.shape[0]}")


def _placeholder(count: int, channels: int, height: int, width: int) -> torch.Tensor:
    """A tensor of the split's shape that holds no memory (labels are shared before the pixels are
    read back from the store)."""
    return torch.empty(1, channels, height, width, dtype=torch.uint8).expand(count, -1, -1, -1)
