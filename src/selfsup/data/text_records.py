"""Reading a corpus file as records, by streaming: each format's documents (and labels) a few MB
at a time, the choices that need a look at the data (paragraphs or lines, header row, which column
is the label) made on the first piece. :func:`selfsup.data.text.load_text` stores what they give."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from selfsup.data import delimited
from selfsup.data.corpus import PARAGRAPH_END, cut_lines, cut_paragraphs, open_text, read_chunks
from selfsup.data.delimited import NUL_MESSAGE, SAMPLE_CHARS
from selfsup.data.names import LABEL_NAMES, TEXT_NAMES
from selfsup.errors import DataError

PARAGRAPH_SHARE = 0.05  # auto: paragraphs where blank lines separate documents twice and once per 20 lines
MAX_CLASSES = 1000  # auto: a column is categorical (a label) with at most this many values...
MAX_LABEL_CHARS = 50  # ...each at most this long
ROWS_AT_A_TIME = 20_000


Batch = tuple[list[str], "list[str | None] | None", str]
"""Documents, their labels as written (None: no label column), how the file was read."""


def text_records(path: Path, kind: str, options: dict) -> Iterator[Batch]:
    """The documents of a corpus file of format ``kind`` (:func:`selfsup.data.text.text_kind`), a
    few MB at a time; ``options`` are :func:`selfsup.data.text.load_text`'s. Raises
    :class:`DataError` for undecodable bytes, NUL characters, a damaged gzip file, a malformed
    table or JSON line, an unknown column."""
    if kind == ".parquet":
        yield from _parquet(path, options)
        return
    encoding = "utf-8"
    try:
        handle, encoding = open_text(path)
        handle.close()
        if kind == ".txt":
            yield from _txt(path, options["documents"])
        elif kind == ".jsonl":
            yield from _jsonl(path, options)
        else:
            yield from _table(path, kind, options)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not {encoding.replace('-sig', '').upper()} text ({exc.reason}); convert it with "
            "e.g. `iconv -t utf-8`"
        ) from None
    except (EOFError, OSError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {path}: {exc}") from None


def _chunks(path: Path, cut) -> Iterator[str]:
    handle, _ = open_text(path)
    with handle:
        for chunk in read_chunks(handle, cut):
            if "\x00" in chunk:  # no character of text: UTF-16 without a byte-order mark, a binary file
                raise DataError(NUL_MESSAGE.format(path=path))
            yield chunk


def _txt(path: Path, documents: str) -> Iterator[Batch]:
    if documents not in ("auto", "line", "paragraph"):
        raise DataError(f"data.documents must be auto, line or paragraph, got '{documents}'")
    first = _sample(path, cut_paragraphs)
    blocks = [block for block in PARAGRAPH_END.split(first) if block.strip()]
    lines = sum(1 for line in first.split("\n") if line.strip())
    separators = len(blocks) - 1
    if documents == "paragraph" or (
        documents == "auto" and separators >= 2 and separators >= PARAGRAPH_SHARE * lines
    ):
        found = " (paragraphs: blank lines separate the documents; data.documents=line reads one per line)"
        for chunk in _chunks(path, cut_paragraphs):
            yield [block.strip("\n") for block in PARAGRAPH_END.split(chunk) if block.strip()], None, found
    else:
        for chunk in _chunks(path, cut_lines):
            yield chunk.split("\n"), None, " (one document per line)"


@dataclass
class _Layout:
    """How a table is read: its dialect, column names, header, label and text columns."""

    dialect: delimited.Dialect
    names: list[str]
    has_header: bool
    label_index: int | None
    text_indices: list[int]
    line_break: str

    def batch(self, body: list[list[str]]) -> Batch:
        def clean(field: str) -> str:
            return field.replace(self.line_break, "\n") if self.line_break else field

        texts = ["\n".join(clean(row[i]).strip() for i in self.text_indices) for row in body]
        labels = None if self.label_index is None else [row[self.label_index].strip() for row in body]
        return texts, labels, self.found()

    def found(self) -> str:
        def quoted(i: int) -> str:
            return f"'{self.names[i]}'" if self.has_header else f"column {i}"

        return (
            f" ({self.dialect.describe()}; {'header row; ' if self.has_header else 'no header; '}"
            f"text: {', '.join(quoted(i) for i in self.text_indices)}"
            + (f"; label: {quoted(self.label_index)}" if self.label_index is not None else "")
            + ")"
        )


def _table(path: Path, kind: str, options: dict) -> Iterator[Batch]:
    """A CSV or TSV's rows, :data:`ROWS_AT_A_TIME` at a time, read in the dialect
    :func:`selfsup.data.delimited.sniff` finds (``data.quoting``); the header and columns chosen
    on its first few MB of rows."""
    dialect, sample = delimited.sniff(path, kind, options.get("quoting", "auto"))
    layout = _table_layout([row.fields for row in sample], path, dialect, options)
    body = delimited.rows(path, dialect, len(layout.names))
    if layout.has_header:
        next(body, None)
    while True:
        batch = [row.fields for row in itertools.islice(body, ROWS_AT_A_TIME)]
        if not batch:
            return
        yield layout.batch(batch)


def _sample(path: Path, cut) -> str:
    """The first :data:`SAMPLE_CHARS` of the file, up to the last record boundary: what the
    choices that look at the data see."""
    handle, _ = open_text(path)
    with handle:
        text = handle.read(SAMPLE_CHARS)
        more = bool(handle.read(1))
    end = cut(text) if more else len(text)
    return text[:end] if end > 0 else text


def _table_layout(rows: list[list[str]], path: Path, dialect: delimited.Dialect, options: dict) -> _Layout:
    header = options["header"]
    if header == "auto":
        has_header = _has_header(rows)
    elif header in ("true", "false"):
        has_header = header == "true"
    else:
        raise DataError(f"data.header must be auto, true or false, got '{header}'")
    names = rows[0] if has_header else [str(i) for i in range(len(rows[0]))]
    body = rows[1:] if has_header else rows
    label_index = _label_index(options["label_column"], names, body, has_header, path)
    text_indices = _text_indices(options["text_column"], label_index, names, body, path)
    return _Layout(dialect, names, has_header, label_index, text_indices, options["line_break"])


def _jsonl(path: Path, options: dict) -> Iterator[Batch]:
    """One JSON object per line."""
    fields, seen = None, 0
    for chunk in _chunks(path, cut_lines):
        rows = []
        for number, line in enumerate(chunk.split("\n")):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise DataError(f"{path}: line {seen + number + 1} is not a JSON object") from None
        seen += chunk.count("\n")
        if not rows:
            continue
        if not all(isinstance(row, dict) for row in rows):
            raise DataError(f'{path}: each line must be a JSON object, e.g. {{"text": "...", "label": 1}}')
        fields = fields or _fields(rows[0], path, options)
        yield _record_batch(rows, *fields)


def _parquet(path: Path, options: dict) -> Iterator[Batch]:
    """A Parquet file's rows, a batch of rows at a time."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.ParquetFile(path)
        fields = None
        for batch in table.iter_batches(batch_size=8192):
            rows = batch.to_pylist()
            try:
                fields = fields or _fields(rows[0], path, options)
            except DataError as exc:
                raise DataError(f"{exc}; nor an image column (bytes, or a Hugging Face Image)") from None
            yield _record_batch(rows, *fields)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _fields(row: dict, path: Path, options: dict) -> tuple[list[str], str | None, str]:
    """The text fields and label field of a record (by ``data.text_column``/``label_column``, else
    by name), and how they were chosen."""
    keys = list(row)
    label = options["label_column"]
    if label == "auto":
        label = next((k for k in keys if k.lower() in LABEL_NAMES), None)
    elif label == "none":
        label = None
    elif label not in keys:
        raise DataError(f"{path} has no field '{label}' (fields: {', '.join(keys)})")
    if options["text_column"] == "auto":
        named = [k for k in keys if k.lower() in TEXT_NAMES and k != label]
        texts = named[:1] or [k for k in keys if isinstance(row[k], str) and k != label][:1]
    else:
        texts = [part.strip() for part in options["text_column"].split(",") if part.strip()]
    missing = [k for k in texts if k not in keys]
    if not texts or missing:
        raise DataError(
            f"{path}: no text field{' ' + ', '.join(missing) if missing else ''} "
            f"(fields: {', '.join(keys)}); "
            "name one with data.text_column"
        )
    found = f" (text: {', '.join(repr(k) for k in texts)}" + (f"; label: {label!r}" if label else "") + ")"
    return texts, label, found


def _record_batch(rows: list[dict], texts: list[str], label: str | None, found: str) -> Batch:
    def text(value) -> str:
        return "" if value is None else str(value)

    documents = ["\n".join(text(row.get(k)).strip() for k in texts) for row in rows]
    labels = None if label is None else [_label_text(row.get(label)) for row in rows]
    return documents, labels, found


def _label_text(value) -> str:
    """A label as text: an integral number without its decimals; none: empty (unlabelled)."""
    if value is None or isinstance(value, float) and value != value:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
