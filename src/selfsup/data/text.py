"""Text corpora: plain-text files (one document per line, or paragraphs) and CSV files with a text
column and an optional label column (AG News: class index, title, description; ``\\`` = line break)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import torch

from selfsup.data.dataset import UNLABELLED, DataSplits, TextDataset, held_out_split, marks_unlabelled
from selfsup.errors import DataError

TEXT_SUFFIXES = (".txt", ".csv", ".tsv")
LABEL_NAMES = (
    "label",
    "labels",
    "class",
    "class_index",
    "category",
    "target",
    "y",
    "sentiment",
    "polarity",
    "topic",
    "intent",
    "emotion",
    "tag",
)
TEXT_NAMES = (
    "text",
    "texts",
    "sentence",
    "sentence1",
    "sentence2",
    "review",
    "content",
    "body",
    "document",
    "tweet",
    "title",
    "description",
    "comment",
    "question",
    "answer",
    "message",
    "abstract",
    "headline",
    "utterance",
    "article",
    "summary",
    "passage",
)
"""Column names that mark a CSV's first row as a header (case-insensitive)."""
UNLABELLED_HELD_OUT = 0.1  # share of an unlabelled corpus (its last documents) held out for test metrics
PARAGRAPH_SHARE = 0.05  # auto: paragraphs where blank lines separate documents twice and once per 20 lines
MAX_CLASSES = 1000  # auto: a column is categorical (a label) with at most this many values...
MAX_LABEL_CHARS = 50  # ...each at most this long


def is_text_path(spec: str) -> bool:
    return spec.lower().endswith(TEXT_SUFFIXES)


def load_text(
    path: Path,
    *,
    text_column: str = "auto",
    label_column: str = "auto",
    header: str = "auto",
    documents: str = "auto",
    line_break: str = "\\",
    held_out_seed: int = 0,
    held_out_fraction: float = 0.2,
) -> DataSplits:
    """Read a corpus into train/test splits.

    Encoding: UTF-8, or UTF-16/UTF-32 where a byte-order mark says so; Windows and old Mac line
    ends are line ends.

    ``.txt``: ``documents`` = ``line`` (one per line), ``paragraph`` (separated by blank lines) or
    ``auto`` (paragraphs where blank lines separate documents at least twice and at least once per
    20 lines, as in plays and prose; blank lines at the start and end do not count). Unlabelled:
    its last 10% of documents are the test split. A file holding NUL characters (UTF-16 without a
    byte-order mark, a binary file) is refused.

    ``.csv``/``.tsv``: ``text_column`` and ``label_column`` are column names or 0-based indices
    (several text columns, comma-separated, are joined by a line break; a label column ``none``
    reads no labels). A ``.csv`` that is no table of two or more columns by commas but is one by
    semicolons is read by semicolons. ``header`` ``auto`` takes the first row as a header when it
    names a known column (:data:`LABEL_NAMES`, :data:`TEXT_NAMES`), or when it is not among the
    values of a column of numbers or categories below it. ``label_column`` ``auto`` takes a column
    named like a label, else the one categorical column (repeated short values); the other columns
    are the text, except columns of numbers (ids) beside text columns. Empty or negative-number
    labels mark unlabelled texts (pretrained on, never evaluated; a column of nothing else reads as
    unlabelled). ``line_break`` is the mark that stands for a line break inside a field. A labelled
    corpus holds out ``held_out_fraction`` of its labelled texts, stratified and seeded, so that
    evaluation never sees training texts.

    Raises :class:`DataError` for undecodable bytes, an empty corpus, a malformed table, an unknown
    column, or labels of a single class (the label column is then likely the wrong one).
    """
    content = _decode(path.read_bytes(), path).replace("\r\n", "\n").replace("\r", "\n")
    if path.suffix.lower() == ".txt":
        (texts, found), labels = _documents(content, documents), None
    else:
        texts, labels, found = _read_table(content, path, text_column, label_column, header, line_break)
        empty = sum(1 for text in texts if not text.strip())
        found += f" [{empty} rows without text left out]" if empty else ""
    kept = [i for i, text in enumerate(texts) if text.strip()]
    if not kept:
        raise DataError(f"{path} holds no text (empty corpus)")
    texts = [texts[i] for i in kept]
    if labels is not None:
        labels = [labels[i] for i in kept]
        named = _class_names(labels, path)
        if not named:  # every label marks an unlabelled text
            labels, found = None, found + " [the label column marks every text unlabelled]"
    if labels is None:
        return _unlabelled_splits(texts, path, found)
    return _labelled_splits(texts, labels, named, path, found, held_out_fraction, held_out_seed)


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


def _unlabelled_splits(texts: list[str], path: Path, found: str) -> DataSplits:
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
    texts: list[str],
    labels: list[str],
    classes: list[str],
    path: Path,
    found: str,
    held_out_fraction: float,
    held_out_seed: int,
) -> DataSplits:
    """A labelled corpus: a stratified, seeded share of its labelled texts is the test split."""
    position = {c: i for i, c in enumerate(classes)}
    full = TextDataset(texts, torch.tensor([position.get(c, UNLABELLED) for c in labels]), classes)
    train_idx, test_idx = held_out_split(full.labels, held_out_fraction, held_out_seed)
    note = (
        f"labelled corpus{found}: held out {len(test_idx)} labelled texts "
        f"({held_out_fraction:.0%}, stratified, seed {held_out_seed}) for evaluation"
    )
    return DataSplits(full.subset(train_idx), full.subset(test_idx), source=str(path), note=note)


def _decode(raw: bytes, path: Path) -> str:
    text = _decoded(raw, path)
    if "\x00" in text:  # NUL is no character of text: UTF-16 without a byte-order mark, or a binary file
        raise DataError(
            f"{path} holds NUL characters (UTF-16 or UTF-32 text without a byte-order mark, or not a "
            "text file); convert it to UTF-8 with e.g. `iconv -f utf-16 -t utf-8`"
        )
    return text


def _decoded(raw: bytes, path: Path) -> str:
    """The file's text: UTF-32 or UTF-16 where a byte-order mark says so (UTF-32 LE's begins with
    UTF-16 LE's, so it is tried first), else UTF-8 (with or without one)."""
    boms = (
        (b"\xff\xfe\x00\x00", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    )
    encoding = next((name for bom, name in boms if raw.startswith(bom)), "utf-8-sig")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not {encoding.replace('-sig', '').upper()} text (undecodable byte at offset "
            f"{exc.start}); convert it with e.g. `iconv -t utf-8`"
        ) from None


def _documents(content: str, documents: str) -> tuple[list[str], str]:
    """The documents of a .txt and how they were cut (for the run's note)."""
    if documents not in ("auto", "line", "paragraph"):
        raise DataError(f"data.documents must be auto, line or paragraph, got '{documents}'")
    blocks = [block for block in re.split(r"\n(?:[ \t]*\n)+", content) if block.strip()]
    lines = sum(1 for line in content.split("\n") if line.strip())
    separators = len(blocks) - 1
    if documents == "paragraph" or (
        documents == "auto" and separators >= 2 and separators >= PARAGRAPH_SHARE * lines
    ):
        return [block.strip("\n") for block in blocks], (
            " (paragraphs: blank lines separate the documents; data.documents=line reads one per line)"
        )
    return content.split("\n"), " (one document per line)"


def _read_table(
    content: str, path: Path, text_column: str, label_column: str, header: str, line_break: str
) -> tuple[list[str], list[str] | None, str]:
    """The texts of a table's rows, their labels (None without a label column) and how the table
    was read (for the run's note)."""
    rows = _table_rows(content, path)
    if header == "auto":
        has_header = _has_header(rows)
    elif header in ("true", "false"):
        has_header = header == "true"
    else:
        raise DataError(f"data.header must be auto, true or false, got '{header}'")
    names = rows[0] if has_header else [str(i) for i in range(len(rows[0]))]
    body = rows[1:] if has_header else rows
    label_index = _label_index(label_column, names, body, has_header, path)
    text_indices = _text_indices(text_column, label_index, names, body, path)

    def clean(field: str) -> str:
        return field.replace(line_break, "\n") if line_break else field

    def quoted(i: int) -> str:
        return f"'{names[i]}'" if has_header else f"column {i}"

    texts = ["\n".join(clean(row[i]).strip() for i in text_indices) for row in body]
    labels = None if label_index is None else [row[label_index].strip() for row in body]
    found = (
        f" ({'header row; ' if has_header else 'no header; '}"
        f"text: {', '.join(quoted(i) for i in text_indices)}"
        + (f"; label: {quoted(label_index)}" if label_index is not None else "")
        + ")"
    )
    return texts, labels, found


def _table_rows(content: str, path: Path) -> list[list[str]]:
    """The non-empty rows of a CSV (by commas, else by semicolons where only they make a table of
    two or more columns) or TSV; raises :class:`DataError` unless there are rows, all as wide."""

    def parse(delimiter: str) -> list[list[str]]:
        try:
            return [row for row in csv.reader(io.StringIO(content), delimiter=delimiter) if row]
        except csv.Error as exc:
            raise DataError(f"cannot parse {path} as CSV: {exc}") from None

    def table(rows: list[list[str]]) -> bool:
        return bool(rows) and len(rows[0]) > 1 and all(len(row) == len(rows[0]) for row in rows)

    rows = parse("\t" if path.suffix.lower() == ".tsv" else ",")
    if path.suffix.lower() == ".csv" and not table(rows):
        semicolons = parse(";")  # spreadsheets in locales whose decimal mark is a comma write these
        rows = semicolons if table(semicolons) else rows
    if not rows:
        raise DataError(f"{path} holds no text (empty corpus)")
    width = len(rows[0])
    bad = next((i for i, row in enumerate(rows) if len(row) != width), None)
    if bad is not None:
        raise DataError(f"{path}: row {bad + 1} has {len(rows[bad])} fields, the first row {width}")
    return rows


def _column(name: str, names: list[str], path: Path) -> int:
    """The index of the column ``name``: a column name, else a 0-based index."""
    if name in names:
        return names.index(name)
    if name.isdigit() and int(name) < len(names):
        return int(name)
    raise DataError(f"{path} has no column '{name}' (columns: {', '.join(names)})")


def _label_index(
    label_column: str, names: list[str], body: list[list[str]], has_header: bool, path: Path
) -> int | None:
    """The label column of ``data.label_column``; ``auto``: the first named like a label, else the
    one categorical column (None where there are none or several)."""
    if label_column == "none":
        return None
    if label_column != "auto":
        return _column(label_column, names, path)
    width = len(names)
    named = [i for i, n in enumerate(names) if n.strip().lower() in LABEL_NAMES] if has_header else []
    categorical = [i for i in range(width) if _categorical([row[i] for row in body])] if width > 1 else []
    return named[0] if named else categorical[0] if len(categorical) == 1 else None


def _text_indices(
    text_column: str, label_index: int | None, names: list[str], body: list[list[str]], path: Path
) -> list[int]:
    """The text columns of ``data.text_column`` (comma-separated); ``auto``: every column but the
    label's, except columns of numbers (ids, scores) where text remains."""
    if text_column == "auto":
        others = [i for i in range(len(names)) if i != label_index]
        text_indices = [i for i in others if not all(_number(row[i]) for row in body)] or others
    else:
        text_indices = [_column(part.strip(), names, path) for part in text_column.split(",") if part.strip()]
    if not text_indices:
        raise DataError(
            f"{path}: no text column (columns: {', '.join(names)}); name one with data.text_column"
        )
    return text_indices


def _has_header(rows: list[list[str]]) -> bool:
    """Whether the first row names the columns: it holds a known column name, or it is not among
    the values of a column of numbers or of categories below it. Whether label values look like
    numbers does not matter."""
    first, body = rows[0], rows[1:]
    if any(field.strip().lower() in LABEL_NAMES + TEXT_NAMES for field in first):
        return True
    for i, field in enumerate(first):
        values = [row[i].strip() for row in body]
        if values and all(_number(v) for v in values) and not _number(field.strip()):
            return True
        if _categorical(values) and field.strip() not in set(values):
            return True
    return False


def _categorical(values: list[str]) -> bool:
    """Whether a column holds categories: short values, each seen twice or more on average."""
    distinct = set(values)
    return (
        0 < len(distinct) <= min(MAX_CLASSES, len(values) / 2)
        and max(len(v) for v in distinct) <= MAX_LABEL_CHARS
    )


def _number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
