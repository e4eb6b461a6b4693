"""Which files of an image folder or archive are the images of which split and class.

The rules (the README's table "What selfsup does with…" states them for users):

* hidden files and folders (a name that starts with ``.``) and macOS's ``__MACOSX`` folders are
  skipped, at any depth;
* a file is an image by its suffix (:data:`IMAGE_SUFFIXES`, case-insensitive);
* a folder that holds everything and has sub-folders is looked through (an archive of ``pets/``
  holding ``cat/`` and ``dog/``); one that holds only images is a class of its own;
* the top folders are splits only when every one of them is a split name (``train``/``training``,
  ``test``/``testing``, ``val``, ``valid``, ``validation``, any case) and one is a training folder:
  ``test/`` (``testing/``) is the test split, else ``val/`` (or ``valid/``, ``validation/``); class
  folders named ``train`` beside others are classes;
* inside a split (or the whole folder), sub-folder names are the classes; a folder with no
  sub-folders is unlabelled; images lying beside class folders are not used.

Every file left out is counted by reason in :class:`Unused`, which the loader reports as one
warning: nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from selfsup.errors import DataError

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".apng",
        ".bmp",
        ".dib",
        ".gif",
        ".webp",
        ".tif",
        ".tiff",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
        ".qoi",
        ".jp2",
        ".j2k",
        ".avif",
    }
)
"""Raster formats Pillow decodes without extra software."""
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "test": "test",
    "testing": "test",
    "val": "val",
    "valid": "val",
    "validation": "val",
}
SKIPPED_FOLDERS = frozenset({"__MACOSX"})  # resource forks macOS adds to the archives it makes


@dataclass
class Unused:
    """Files a layout leaves out: reason -> their names (relative to the data set's root); and
    ``remarks`` on readings a user may not expect."""

    reasons: dict[str, list[str]] = field(default_factory=dict)
    remarks: list[str] = field(default_factory=list)

    def add(self, reason: str, name: str) -> None:
        self.reasons.setdefault(reason, []).append(name)

    def counts(self) -> str:
        """The files left out, counted by reason with an example each ("" when none was)."""
        parts = []
        for reason, names in self.reasons.items():
            if reason == "not images":
                suffixes = Counter(PurePosixPath(n).suffix.lower() or "no suffix" for n in names)
                kinds = ", ".join(f"{s} ×{c}" for s, c in suffixes.most_common(4))
                parts.append(f"files that are not images ×{len(names)} ({kinds})")
            else:
                parts.append(f"{reason} ×{len(names)} (e.g. {names[0]})")
        return "; ".join(parts)

    def message(self, source: str) -> str:
        """One line on what was left out and the remarks ("" when there is neither)."""
        parts = ([f"not used: {self.counts()}"] if self.reasons else []) + self.remarks
        return f"{source}: " + "; ".join(parts) if parts else ""


def hidden_prefix(name: str) -> str | None:
    """The path up to and including its first hidden or skipped component (``a/.x/b.png`` -> ``a/.x``),
    or None where no component is hidden."""
    parts = name.split("/")
    for i, part in enumerate(parts):
        if part.startswith(".") or part in SKIPPED_FOLDERS:
            return "/".join(parts[: i + 1])
    return None


def image_files(names: list[str], unused: Unused) -> list[str]:
    """The names that are images, in order; the others are counted in ``unused`` (a hidden
    folder once, however many files it holds)."""
    kept, hidden = [], set()
    for name in names:
        prefix = hidden_prefix(name)
        if prefix is not None:
            if prefix not in hidden:
                hidden.add(prefix)
                unused.add("hidden files or folders", prefix)
        elif PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
            kept.append(name)
        else:
            unused.add("not images", name)
    return kept


@dataclass
class Placed:
    """Where a layout puts an image: its split (train or test) and class (None: unlabelled)."""

    name: str
    split: str
    label: str | None


def place(names: list[str], source: str, unused: Unused) -> list[Placed]:
    """Split and class of each image file name (``a/b/c.png`` relative to the root), by the rules
    of this module; images that are not used are counted in ``unused``."""
    if not names:
        found = f"; not used: {unused.counts()}" if unused.reasons else ""
        raise DataError(
            f"no images found in {source} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}{found})"
        )
    parts_of = {name: name.split("/") for name in names}
    depth = 0  # folders looked through: each held everything, and sub-folders
    while True:
        tops = {parts[depth] for parts in parts_of.values()}
        if (
            len(tops) != 1
            or next(iter(tops)).lower() in SPLIT_NAMES
            or all(len(parts) <= depth + 2 for parts in parts_of.values())
        ):
            break
        depth += 1
    rel = {name: parts[depth:] for name, parts in parts_of.items()}
    folders = {parts[0] for parts in rel.values() if len(parts) > 1}
    splits = {folder: SPLIT_NAMES[folder.lower()] for folder in folders if folder.lower() in SPLIT_NAMES}
    if folders and len(splits) == len(folders):
        if "train" not in splits.values():
            raise DataError(
                f"{source} holds the split folders {', '.join(sorted(folders))} but no train/ folder: "
                "name the training images' folder train/"
            )
        test = next((f for f in sorted(splits, key=_test_preference) if splits[f] != "train"), None)
        grouped: dict[str, list[tuple[str, list[str]]]] = {}
        for name, parts in rel.items():
            if len(parts) == 1:
                unused.add("images beside the split folders", name)
            elif splits[parts[0]] == "train":
                grouped.setdefault("train", []).append((name, parts[1:]))
            elif parts[0] == test:
                grouped.setdefault("test", []).append((name, parts[1:]))
            else:
                unused.add(f"images in {parts[0]}/ ({test}/ is the test split)", name)
    else:
        if splits:
            unused.remarks.append(
                f"{', '.join(sorted(f + '/' for f in splits))} beside other folders "
                f"({', '.join(sorted(f + '/' for f in folders - set(splits)))}): every folder is "
                "read as a class; a split layout has split folders only"
            )
        grouped = {"train": [(name, parts) for name, parts in rel.items()]}
    placed = []
    for split, items in grouped.items():
        in_classes = any(len(parts) > 1 for _, parts in items)
        for name, parts in items:
            if len(parts) > 1:
                placed.append(Placed(name, split, parts[0]))
            elif in_classes:
                unused.add("images beside the class folders", name)
            else:
                placed.append(Placed(name, split, None))
    return placed


def _test_preference(folder: str) -> tuple[int, str]:
    """test/ (testing/) before val/, valid/, validation/ (then by name) as the test split."""
    order = ["test", "testing", "val", "valid", "validation"]
    return order.index(folder.lower()) if folder.lower() in order else len(order), folder
