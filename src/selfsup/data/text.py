"""Text corpora: plain-text files (one document per line, or paragraphs) and CSV files with a text
column and an optional label column (AG News: class index, title, description; ``\\`` = line break)."""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from selfsup.atomic import WriteError, cache_failure, write_error
from selfsup.data.corpus import INFO_FILE, CorpusWriter, Documents, load_corpus
from selfsup.data.dataset import DataSplits, TextDataset, held_out_split, marks_unlabelled
from selfsup.data.folders import local_rank, wait_for
from selfsup.data.text_records import text_records
from selfsup.errors import DataError

TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl")
UNLABELLED_HELD_OUT = 0.1  # share of an unlabelled corpus (its last documents) held out for test metrics


def text_kind(name: str) -> str | None:
    """The format of a corpus file by its name (``.txt``, ``.csv``, ``.tsv``, ``.jsonl``, each
    also gzip-compressed as ``NAME.gz``), or None."""
    name = name.lower()
    if name.endswith(".parquet"):
        return ".parquet"
    name = name.removesuffix(".gz")
    return next((suffix for suffix in TEXT_SUFFIXES if name.endswith(suffix)), None)


def is_text_path(spec: str) -> bool:
    """Whether ``spec`` names a corpus file by its suffix (Parquet files may hold images instead)."""
    return text_kind(spec) not in (None, ".parquet")


def load_text(
    path: Path,
    *,
    store: Path | None = None,
    text_column: str = "auto",
    label_column: str = "auto",
    header: str = "auto",
    documents: str = "auto",
    line_break: str = "\\",
    quoting: str = "auto",
    held_out_seed: int = 0,
    held_out_fraction: float = 0.2,
) -> DataSplits:
    """Read a corpus into train/test splits, by streaming it into a corpus store
    (:mod:`selfsup.data.corpus`) at ``store`` (built once; None, or a folder that cannot be
    written: a temporary one), so that it need not fit in memory; the splits' texts are
    :class:`~selfsup.data.corpus.Documents` of the store.

    Encoding: UTF-8, or UTF-16/UTF-32 where a byte-order mark says so; Windows and old Mac line
    ends are line ends. Any of the formats below may be gzip-compressed (``corpus.txt.gz``).

    ``.txt``: ``documents`` = ``line`` (one per line), ``paragraph`` (separated by blank lines) or
    ``auto`` (paragraphs where blank lines separate documents at least twice and at least once per
    20 lines of the first few MB, as in plays and prose; blank lines at the start and end do not
    count). Unlabelled: its last 10% of documents are the test split. A file holding NUL characters
    (UTF-16 without a byte-order mark, a binary file) is refused.

    ``.csv``/``.tsv``: ``text_column`` and ``label_column`` are column names or 0-based indices
    (several text columns, comma-separated, are joined by a line break; a label column ``none``
    reads no labels). A ``.csv`` that is no table of two or more columns by commas but is one by
    semicolons is read by semicolons. ``header`` ``auto`` takes the first row as a header when it
    names a known column (:mod:`selfsup.data.names`), or when it is not among the values of a
    column of numbers or categories below it. ``label_column`` ``auto`` takes a column
    named like a label, else the one categorical column (repeated short values); the other columns
    are the text, except columns of numbers (ids) beside text columns. These choices are made on
    the first few MB of rows. ``line_break`` is the mark that stands for a line break inside a field.
    ``quoting`` (``auto``, ``true``, ``false``): whether double quotes enclose fields
    (:mod:`selfsup.data.delimited`; ``auto``: where the file quotes whole fields); a row of
    another width than the first is an error naming its lines, never merged into another.

    ``.jsonl`` (one JSON object per line) and ``.parquet``: the text field is ``text_column`` (or
    the first named as ``TEXT_NAMES`` lists, else the first of strings), the label field
    ``label_column`` (or the first named as ``LABEL_NAMES`` lists).

    Empty or negative-number labels mark unlabelled texts (pretrained on, never evaluated; a label
    column of nothing else reads as unlabelled). A labelled corpus holds out ``held_out_fraction``
    of its labelled texts, stratified and seeded, so that evaluation never sees training texts.

    Raises :class:`DataError` for undecodable bytes, an empty corpus, a malformed table, an unknown
    column, or labels of a single class (the label column is then likely the wrong one).
    """
    options = dict(
        text_column=text_column,
        label_column=label_column,
        header=header,
        documents=documents,
        line_break=line_break,
        quoting=quoting,
    )
    texts, labels, info = corpus_store(path, store, options)
    if labels is None:
        return _unlabelled_splits(texts, path, info["found"])
    held_out = (held_out_fraction, held_out_seed)
    return _labelled_splits(texts, torch.from_numpy(labels), info["classes"], path, info["found"], *held_out)


def corpus_store(path: Path, store: Path | None, options: dict) -> tuple[Documents, np.ndarray | None, dict]:
    """The corpus store of ``path`` at ``store`` (:func:`selfsup.data.corpus.load_corpus`), built
    first where it is missing or damaged; where it cannot be written (or ``store`` is None) it is
    built in a temporary folder, which is removed once its files are mapped."""
    if store is not None and not (store / INFO_FILE).exists() and local_rank() > 0:
        wait_for(store, INFO_FILE, f"the corpus store of {path}")  # local rank 0 builds it
    if store is not None and (store / INFO_FILE).exists():
        try:
            return load_corpus(store)
        except Exception as exc:  # noqa: BLE001 - a damaged store is built again, whatever its fault
            warnings.warn(
                f"ignored the damaged cache {store} ({type(exc).__name__}); reading the corpus again"
            )
            shutil.rmtree(store, ignore_errors=True)
    if store is not None:
        try:
            _build_corpus(path, store, options)
            return load_corpus(store)
        except (OSError, WriteError) as exc:
            warnings.warn(
                f"could not store the corpus in {store.parent} ({cache_failure(exc)}); the next run reads "
                "it again (set SELFSUP_CACHE_DIR to a writable folder)"
            )
    folder = Path(tempfile.mkdtemp(prefix="selfsup-corpus-"))
    try:
        _build_corpus(path, folder / "corpus", options)
        documents, labels, info = load_corpus(folder / "corpus")  # open: the files live on while open
        documents.persistent = False  # token ids are then encoded in memory, not stored beside it
        return documents, labels, info
    except OSError as exc:
        raise write_error(exc, folder / "corpus") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _build_corpus(path: Path, store: Path, options: dict) -> None:
    """Stream the documents of ``path`` (empty ones left out) into a corpus store."""
    kind = text_kind(path.name)
    writer = CorpusWriter(store)
    try:
        empty, labelled, found = 0, False, ""
        for texts, labels, how in text_records(path, kind, options):
            found = how
            kept = [i for i, text in enumerate(texts) if text.strip()]
            empty += len(texts) - len(kept)
            labelled = labelled or labels is not None
            writer.add([texts[i] for i in kept], None if labels is None else [labels[i] for i in kept])
        if not writer.count:
            raise DataError(f"{path} holds no text (empty corpus)")
        found += f" [{empty} rows without text left out]" if empty and kind != ".txt" else ""
        classes = _class_names(list(writer.names), path) if labelled else None
        if labelled and not classes:  # every label marks an unlabelled text
            classes, found = None, found + " [the label column marks every text unlabelled]"
        writer.finish(classes, {"found": found})
    except BaseException:
        writer.abandon()
        raise


def _class_names(labels: list[str], path: Path) -> list[str]:
    """The classes the labels name (integers in numeric order first, then the others in text
    order), without the marks of unlabelled texts; raises :class:`DataError` for a single class."""
    named = sorted(
        {c for c in labels if not marks_unlabelled(c)},
        key=lambda c: (0, int(c), c) if re.fullmatch(r"-?\d+", c) else (1, 0, c),
    )
    if len(named) == 1:
        raise DataError(
            f"{path}: the label column holds one class ('{named[0]}'); it cannot be learned or "
            "evaluated (pass data.label_column=none to read the texts unlabelled)"
        )
    return named


def _unlabelled_splits(texts: Documents, path: Path, found: str) -> DataSplits:
    """An unlabelled corpus: its last :data:`UNLABELLED_HELD_OUT` of documents are the test split."""
    cut = len(texts) - int(len(texts) * UNLABELLED_HELD_OUT)
    note = (
        f"unlabelled corpus{found}: {len(texts)} documents, its last {len(texts) - cut} (10%) "
        "held out for the test metrics"
        if cut < len(texts)
        else f"unlabelled corpus{found}: {len(texts)} documents"
    )
    test = TextDataset(texts[cut:]) if cut < len(texts) else None
    return DataSplits(TextDataset(texts[:cut]), test, source=str(path), note=note)


def _labelled_splits(
    texts: Documents,
    labels: torch.Tensor,
    classes: list[str],
    path: Path,
    found: str,
    held_out_fraction: float,
    held_out_seed: int,
) -> DataSplits:
    """A labelled corpus: a stratified, seeded share of its labelled texts is the test split."""
    full = TextDataset(texts, labels, classes)
    train_idx, test_idx = held_out_split(full.labels, held_out_fraction, held_out_seed)
    note = (
        f"labelled corpus{found}: held out {len(test_idx)} labelled texts "
        f"({held_out_fraction:.0%}, stratified, seed {held_out_seed}) for evaluation"
    )
    return DataSplits(full.subset(train_idx), full.subset(test_idx), source=str(path), note=note)
