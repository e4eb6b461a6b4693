"""The files of an image folder or of a tar or zip archive: their names, and the bytes of those
that may be images. Which of them are the images of which split and class:
:mod:`selfsup.data.layout`."""

from __future__ import annotations

import os
import tarfile
import zipfile
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


def archive_contents(path: Path) -> tuple[list[str], dict[str, bytes | None]]:
    """Every file name of a tar or zip archive (sorted) and the bytes of those that may be images
    (None: a link to a member the archive does not hold)."""
    names, contents = [], {}

    def wanted(name: str) -> bool:
        return hidden_prefix(name) is None and Path(name).suffix.lower() in IMAGE_SUFFIXES

    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        name = _member_name(info.filename)
                        names.append(name)
                        if wanted(name):
                            contents[name] = archive.read(info)
        else:
            with tarfile.open(path) as archive:
                for member in archive:
                    if member.isfile() or member.issym() or member.islnk():
                        name = _member_name(member.name)
                        names.append(name)
                        if wanted(name):
                            try:
                                handle = archive.extractfile(member)  # links resolve inside the archive
                                contents[name] = handle.read() if handle is not None else None
                            except KeyError:
                                contents[name] = None
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise DataError(f"cannot read archive {path}: {exc}") from None
    return sorted(names), contents


def _member_name(name: str) -> str:
    """An archive member's path relative to the archive's root, ``/``-separated (some Windows tools
    write ``\\``), without leading ``./`` and ``/`` (not every leading dot: ``./.hidden/x.png``
    stays hidden)."""
    name = name.replace("\\", "/")
    while name.startswith(("./", "/")):
        name = name[1:] if name.startswith("/") else name[2:]
    return name
