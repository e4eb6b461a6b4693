"""The files of an image folder or of a tar or zip archive: their names, and a reader of the bytes
of those that may be images. Which of them are the images of which split and class:
:mod:`selfsup.data.layout`."""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from selfsup.data.layout import IMAGE_SUFFIXES, Unused, hidden_prefix
from selfsup.errors import DataError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")


def folder_names(path: Path, unused: Unused | None = None) -> list[str]:
    """Every file below ``path`` (relative, ``/``-separated, sorted), following links to folders
    (each real folder once: a second way to one is counted in ``unused``); a hidden folder is
    listed as ``its/path/`` and not entered."""
    names, seen = [], set()
    for root, dirs, files in os.walk(path, followlinks=True):
        base = Path(root).relative_to(path).as_posix()
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            if unused is not None:
                unused.add("links to a folder read already", base)
            continue
        seen.add(real)
        prefix = "" if base == "." else base + "/"
        hidden = sorted(d for d in dirs if hidden_prefix(d) is not None)
        dirs[:] = sorted(d for d in dirs if d not in hidden)
        names += [f"{prefix}{d}/" for d in hidden] + [prefix + f for f in files]
    return sorted(names)


def archive_contents(path: Path, scratch: Path) -> tuple[list[str], Callable[[str], bytes]]:
    """Every file name of a tar or zip archive (sorted), and a function that reads the bytes of one
    that may be an image (:data:`IMAGE_SUFFIXES`; ``OSError`` for a link to a member the archive
    does not hold). No step holds the archive's images in memory: a zip and an uncompressed tar
    are read in place (a tar member at its offset), a compressed tar is unpacked once, streaming,
    into the folder ``scratch``, which must outlive the reading. Raises :class:`DataError` for an
    archive that cannot be read."""
    names: list[str] = []

    def wanted(name: str) -> bool:
        return hidden_prefix(name) is None and Path(name).suffix.lower() in IMAGE_SUFFIXES

    try:
        if path.name.lower().endswith(".zip"):
            archive = zipfile.ZipFile(path)  # members are read by name; reads from threads are locked
            members = {}
            for info in archive.infolist():
                if not info.is_dir():
                    names.append(_member_name(info.filename))
                    members[names[-1]] = info
            return sorted(names), lambda name: archive.read(members[name])
        read = _tar_reader(path, scratch, names, wanted)  # fills names
        return sorted(names), read
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise DataError(f"cannot read archive {path}: {exc}") from None


def _tar_reader(path: Path, scratch: Path, names: list[str], wanted) -> Callable[[str], bytes]:
    """Fill ``names`` with a tar's files; the reader of its images (see :func:`archive_contents`)."""
    try:  # read in place only where tarfile finds no compression (whatever the name says)
        tarfile.open(path, "r:").close()
        compressed = False
    except tarfile.ReadError:
        compressed = True
    places: dict[str, tuple[int, int] | Path | None] = {}
    unpacked = 0
    with tarfile.open(path) as archive:
        for member in archive:
            if not (member.isfile() or member.issym() or member.islnk()):
                continue
            name = _member_name(member.name)
            names.append(name)
            if not wanted(name):
                continue
            if member.isfile() and not compressed:
                places[name] = (member.offset_data, member.size)
                continue
            try:
                handle = archive.extractfile(member)  # links resolve inside the archive
            except KeyError:
                handle = None
            if handle is None:
                places[name] = None
                continue
            target = scratch / f"{unpacked:08d}"  # a name seen twice (tar -r) gets a new file
            unpacked += 1
            with open(target, "wb") as out:
                shutil.copyfileobj(handle, out, 2**20)
            places[name] = target

    def read(name: str) -> bytes:
        place = places[name]
        if place is None:
            raise OSError("a link to a file the archive does not hold")
        if isinstance(place, Path):
            return place.read_bytes()
        with open(path, "rb") as handle:
            handle.seek(place[0])
            return handle.read(place[1])

    return read


def _member_name(name: str) -> str:
    """An archive member's path relative to the archive's root, ``/``-separated (some Windows tools
    write ``\\``), without leading ``./`` and ``/`` (not every leading dot: ``./.hidden/x.png``
    stays hidden)."""
    name = name.replace("\\", "/")
    while name.startswith(("./", "/")):
        name = name[1:] if name.startswith("/") else name[2:]
    return name
