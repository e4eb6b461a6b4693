"""Text corpora: plain-text files (one document per line, or paragraphs) and CSV files with a text
column and an optional label column (AG News: class index, title, description; ``\\`` = line break)."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from selfsup.data.dataset import DataSplits, LabelledData, stratified_split
from selfsup.errors import DataError

TEXT_SUFFIXES = (".txt", ".csv", ".tsv")
LABEL_NAMES = ("label", "labels", "class", "category", "target", "y")
UNLABELLED_HELD_OUT = 0.1  # share of an unlabelled corpus (its last documents) held out for test metrics


@dataclass
class TextDataset(LabelledData):
    """Documents as strings, optionally labelled (``labels`` int64 of shape N, values in ``range(len(classes))``)."""

    texts: list[str]
    labels: torch.Tensor | None = None
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise DataError(f"{len(self.labels)} labels for {len(self.texts)} texts")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index) -> "TextDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return TextDataset([self.texts[i] for i in index.tolist()],
                           None if self.labels is None else self.labels[index], self.classes)


def is_text_path(spec: str) -> bool:
    return spec.lower().endswith(TEXT_SUFFIXES)


def load_text(path: Path, *, text_column: str = "auto", label_column: str = "auto", header: str = "auto",
              documents: str = "auto", line_break: str = "\\", held_out_seed: int = 0,
              held_out_fraction: float = 0.2) -> DataSplits:
    """Read a corpus into train/test splits.

    ``.txt``: ``documents`` = ``line`` (one per line), ``paragraph`` (separated by blank lines) or
    ``auto`` (paragraphs where the file has blank lines); unlabelled, its last 10% of documents are
    the test split. ``.csv``/``.tsv``: ``text_column`` and ``label_column`` are column names or
    0-based indices (several text columns, comma-separated, are joined by a line break; a label
    column ``none`` reads no labels); ``auto`` takes a header column named label/class/... (or, with
    no header, a first column of integers) as the label and the other columns as the text;
    ``line_break`` is the mark that stands for a line break inside a field. A labelled corpus is
    split 80/20, stratified and seeded, so that evaluation never sees training texts.
    """
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (undecodable byte at offset {exc.start}); "
                        "convert it with e.g. `iconv -t utf-8`") from None
    if path.suffix.lower() == ".txt":
        texts, labels = _documents(content, documents, path), None
    else:
        texts, labels = _read_table(content, path, text_column, label_column, header, line_break)
    kept = [i for i, text in enumerate(texts) if text.strip()]
    if not kept:
        raise DataError(f"{path} holds no text (empty corpus)")
    texts = [texts[i] for i in kept]
    if labels is None:
        cut = len(texts) - int(len(texts) * UNLABELLED_HELD_OUT)
        note = (f"unlabelled corpus: its last {len(texts) - cut} documents (10%) are held out for the test metrics"
                if cut < len(texts) else "")
        test = TextDataset(texts[cut:]) if cut < len(texts) else None
        return DataSplits(TextDataset(texts[:cut]), test, source=str(path), note=note)
    labels = [labels[i] for i in kept]
    classes = sorted(set(labels), key=lambda c: (0, int(c), c) if re.fullmatch(r"-?\d+", c) else (1, 0, c))
    if len(classes) < 2:
        raise DataError(f"{path}: the label column has one class ('{classes[0]}'); it cannot be learned or "
                        "evaluated (pass data.label_column=none to read the texts unlabelled)")
    position = {c: i for i, c in enumerate(classes)}
    full = TextDataset(texts, torch.tensor([position[c] for c in labels]), classes)
    train_idx, test_idx = stratified_split(full.labels, held_out_fraction, held_out_seed)
    note = (f"labelled corpus: held out {len(test_idx)} texts ({held_out_fraction:.0%}, stratified, "
            f"seed {held_out_seed}) for evaluation")
    return DataSplits(full.subset(train_idx), full.subset(test_idx), source=str(path), note=note)


def _documents(content: str, documents: str, path: Path) -> list[str]:
    if documents not in ("auto", "line", "paragraph"):
        raise DataError(f"data.documents must be auto, line or paragraph, got '{documents}'")
    paragraphs = documents == "paragraph" or (documents == "auto" and re.search(r"\n[ \t]*\n", content))
    if paragraphs:
        return [p.strip("\n") for p in re.split(r"\n[ \t]*\n", content)]
    return content.splitlines()


def _read_table(content: str, path: Path, text_column: str, label_column: str, header: str,
                line_break: str) -> tuple[list[str], list[str] | None]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        rows = [row for row in csv.reader(io.StringIO(content), delimiter=delimiter) if row]
    except csv.Error as exc:
        raise DataError(f"cannot parse {path} as CSV: {exc}") from None
    if not rows:
        raise DataError(f"{path} holds no text (empty corpus)")
    if header == "auto":
        has_header = csv.Sniffer().has_header(content[:20000])
    elif header in ("true", "false"):
        has_header = header == "true"
    else:
        raise DataError(f"data.header must be auto, true or false, got '{header}'")
    names = rows[0] if has_header else [str(i) for i in range(len(rows[0]))]
    body = rows[1:] if has_header else rows
    width = len(names)
    bad = next((i for i, row in enumerate(body) if len(row) != width), None)
    if bad is not None:
        raise DataError(f"{path}: row {bad + 1 + has_header} has {len(body[bad])} fields, the first row {width}")

    def column(name: str) -> int:
        if name in names:
            return names.index(name)
        if name.isdigit() and int(name) < width:
            return int(name)
        raise DataError(f"{path} has no column '{name}' (columns: {', '.join(names)})")

    if label_column == "none":
        label_index = None
    elif label_column != "auto":
        label_index = column(label_column)
    else:
        named = [i for i, n in enumerate(names) if n.strip().lower() in LABEL_NAMES]
        if named:
            label_index = named[0]
        elif not has_header and width > 1 and all(re.fullmatch(r"\s*-?\d+\s*", row[0]) for row in body):
            label_index = 0
        else:
            label_index = None
    if text_column == "auto":
        text_indices = [i for i in range(width) if i != label_index]
    else:
        text_indices = [column(part.strip()) for part in text_column.split(",") if part.strip()]
    if not text_indices:
        raise DataError(f"{path}: no text column (columns: {', '.join(names)}); name one with data.text_column")

    def clean(field: str) -> str:
        return field.replace(line_break, "\n") if line_break else field

    texts = ["\n".join(clean(row[i]).strip() for i in text_indices) for row in body]
    labels = None if label_index is None else [row[label_index].strip() for row in body]
    return texts, labels
