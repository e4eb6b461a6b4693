"""The on-disk store of a text corpus: every document's UTF-8 bytes in one file, their offsets and
labels beside it, read memory-mapped, so a corpus need not fit in memory.

A corpus is read once, by streaming (:func:`read_chunks`: a few MB of text at a time, each cut at a
record boundary), into a store in ``$SELFSUP_CACHE_DIR``; :class:`Documents` is the sequence of its
documents (a list-like view that decodes a document when asked). The token ids of a tokenizer are
stored beside it in the same way (:mod:`selfsup.data.tokens`).

Files of a store ``HASH.corpus/``: ``texts.bin`` (the documents' bytes), ``offsets.bin`` (int64,
N + 1), ``labels.npy`` (int64, −1 unlabelled) and ``corpus.json`` (classes, how it was read). A
build writes ``HASH.corpus.partial-PID/`` and renames it when complete: a killed build leaves
nothing a later run mistakes for a store.
"""

from __future__ import annotations

import codecs
import copy
import gzip
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from selfsup.atomic import write_file, write_text
from selfsup.data.folders import partial_suffix, publish, remove_dead_partials

CORPUS_FORMAT = 2  # 2: tables read by selfsup.data.delimited (quotes as the file means them)
CHUNK_CHARS = 4 * 2**20
"""Characters of text read and parsed at a time."""
TEXTS_FILE, OFFSETS_FILE, LABELS_FILE, INFO_FILE = "texts.bin", "offsets.bin", "labels.npy", "corpus.json"


class Documents(Sequence):
    """Documents of a corpus store (or a subset of them, ``index``), decoded on access.

    ``documents[i]`` is a ``str``; ``documents[a:b]`` and :meth:`take` are views, never copies;
    iteration decodes one document at a time. ``directory`` is the store (token stores live in it).
    """

    def __init__(self, directory: Path, index: range | np.ndarray | None = None):
        self.directory = Path(directory)
        # read with pread, not mapped: the text read does not stay in this process's memory (it
        # stays in the page cache); one descriptor, shared by the views, closed with the last one
        self._file = _Descriptor(self.directory / TEXTS_FILE)
        self._offsets = np.memmap(self.directory / OFFSETS_FILE, dtype=np.int64, mode="r")
        self.persistent = True  # False: read from a removed temporary folder (nothing is stored beside it)
        # a range (the whole store, or a slice of it: no memory) or an array of document numbers
        self.index = range(len(self._offsets) - 1) if index is None else index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            view = copy.copy(self)
            view.index = self.index[i]
            return view
        row = int(self.index[i])
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return os.pread(self._file.fd, end - start, start).decode("utf-8") if end > start else ""

    def __iter__(self) -> Iterator[str]:
        for batch in self.batches():
            yield from batch

    def batches(self, size: int = 4096) -> Iterator[list[str]]:
        """The documents, ``size`` at a time (a run of consecutive documents in one read)."""
        for start in range(0, len(self), size):
            part = self.index[start : start + size]
            if not (isinstance(part, range) and part.step == 1 and len(part)):
                yield [self[i] for i in range(start, min(start + size, len(self)))]
                continue
            cuts = np.asarray(self._offsets[part.start : part.stop + 1])
            data = os.pread(self._file.fd, int(cuts[-1] - cuts[0]), int(cuts[0]))
            cuts = (cuts - cuts[0]).tolist()
            yield [data[a:b].decode("utf-8") for a, b in zip(cuts[:-1], cuts[1:])]

    def take(self, index) -> Documents:
        """The documents at positions ``index`` (of this view), as a view."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"document index out of range for {len(self)} documents")
        view = copy.copy(self)  # the same maps: a store read from a removed temporary folder stays readable
        if isinstance(self.index, range):
            view.index = self.index.start + self.index.step * np.where(index < 0, index + len(self), index)
        else:
            view.index = self.index[index]
        return view

    def rows(self) -> np.ndarray:
        """The store's document numbers of this view."""
        return (
            np.arange(self.index.start, self.index.stop, self.index.step)
            if isinstance(self.index, range)
            else self.index
        )

    def key(self) -> bytes:
        """What names this view's documents (for the token stores built from it)."""
        if isinstance(self.index, range):
            return f"{self.index.start}:{self.index.stop}:{self.index.step}".encode()
        return self.index.tobytes()

    def characters(self) -> int:
        """Bytes of UTF-8 text in this view (a document's bytes bound its characters)."""
        if isinstance(self.index, range) and self.index.step == 1:
            return int(self._offsets[self.index.stop] - self._offsets[self.index.start])
        rows = self.rows()
        return int((self._offsets[rows + 1] - self._offsets[rows]).sum())

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and list(self) == list(other)

    __hash__ = None

    def __add__(self, other) -> list[str]:  # as lists do: a new list, read into memory
        return list(self) + list(other)

    def __radd__(self, other) -> list[str]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"Documents({self.directory.name}, {len(self)} documents)"


class _Descriptor:
    """A file open for reading, closed when no view holds it any more."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_RDONLY)

    def __del__(self) -> None:
        os.close(self.fd)


def open_text(path: Path):
    """A text stream of ``path`` (gzip-compressed where it ends in ``.gz``): UTF-32 or UTF-16 where a
    byte-order mark says so, else UTF-8; ``\\r\\n`` and ``\\r`` read as ``\\n``."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        head = handle.read(4)
    boms = (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    )
    encoding = next((name for bom, name in boms if head.startswith(bom)), "utf-8-sig")
    return opener(path, "rt", encoding=encoding, newline=None), encoding


PARAGRAPH_END = re.compile(r"\n(?:[ \t]*\n)+")


def read_chunks(handle, cut: Callable[[str], int], chunk_chars: int | None = None) -> Iterator[str]:
    """The stream's text in pieces of about ``chunk_chars`` characters, each ending where
    ``cut(text)`` says the last whole record of ``text`` ends (0 or less: none yet, read on)."""
    carry, chunk_chars = "", chunk_chars or CHUNK_CHARS
    while True:
        block = handle.read(chunk_chars)
        if not block:
            break
        carry += block
        end = cut(carry)
        if end > 0:
            yield carry[:end]
            carry = carry[end:]
    if carry:
        yield carry


def cut_lines(text: str) -> int:
    """A ``cut`` for :func:`read_chunks`: after the last line end."""
    return text.rfind("\n") + 1


def cut_paragraphs(text: str) -> int:
    """A ``cut`` for :func:`read_chunks`: after the last blank line(s)."""
    last = None
    for last in PARAGRAPH_END.finditer(text):  # noqa: B007 - the last match is wanted
        pass
    return last.end() if last is not None else 0


class CorpusWriter:
    """Writes a corpus store by appending documents and their labels (text; None: unlabelled)."""

    def __init__(self, directory: Path):
        self.final = Path(directory)
        self.partial = self.final.with_name(f"{self.final.name}.{partial_suffix()}")
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir(parents=True)
        remove_dead_partials(self.final.parent)
        self.texts = open(self.partial / TEXTS_FILE, "wb")
        self.offsets = open(self.partial / OFFSETS_FILE, "wb")
        self.codes = open(self.partial / "codes.bin", "wb")
        self.offsets.write(np.zeros(1, dtype=np.int64).tobytes())
        self.position, self.count, self.names = 0, 0, {}

    def add(self, texts: list[str], labels: list[str | None] | None) -> None:
        encoded = [text.encode("utf-8") for text in texts]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        self.texts.write(b"".join(encoded))
        self.offsets.write((self.position + np.cumsum(lengths)).tobytes())
        self.position += int(lengths.sum())
        labels = labels if labels is not None else [None] * len(texts)
        codes = [-1 if label is None else self.names.setdefault(label, len(self.names)) for label in labels]
        self.codes.write(np.asarray(codes, dtype=np.int32).tobytes())
        self.count += len(texts)

    def finish(self, classes: list[str] | None, info: dict) -> None:
        """Write the labels over ``classes`` (None: the corpus is unlabelled) and rename the store."""
        for handle in (self.texts, self.offsets, self.codes):
            handle.close()
        codes = np.fromfile(self.partial / "codes.bin", dtype=np.int32)
        if classes is not None:
            remap = np.full(len(self.names) + 1, -1, dtype=np.int64)  # the last entry: code -1
            position = {c: i for i, c in enumerate(classes)}
            for name, code in self.names.items():
                remap[code] = position.get(name, -1)
            labels = remap[codes]
            write_file(self.partial / LABELS_FILE, lambda handle: np.save(handle, labels))
        (self.partial / "codes.bin").unlink()
        info = {"format": CORPUS_FORMAT, "documents": self.count, "classes": classes, **info}
        write_text(self.partial / INFO_FILE, json.dumps(info))
        publish(self.partial, self.final, INFO_FILE)

    def abandon(self) -> None:
        for handle in (self.texts, self.offsets, self.codes):
            handle.close()
        shutil.rmtree(self.partial, ignore_errors=True)


def load_corpus(directory: Path) -> tuple[Documents, np.ndarray | None, dict]:
    """The documents of a store, their labels (int64, −1 unlabelled; None: an unlabelled corpus)
    and its ``corpus.json``. Raises an exception of any type for a damaged store."""
    info = json.loads((directory / INFO_FILE).read_text())
    if info["format"] != CORPUS_FORMAT:
        raise ValueError(f"corpus store format {info['format']}, expected {CORPUS_FORMAT}")
    documents = Documents(directory)
    if (
        len(documents) != info["documents"]
        or documents._offsets[-1] != (directory / TEXTS_FILE).stat().st_size
    ):
        raise ValueError("the store's offsets do not match its documents")
    labels = np.load(directory / LABELS_FILE) if info["classes"] is not None else None
    return documents, labels, info
