"""Delimited text tables (``.csv``, ``.tsv``, semicolon-separated) read as the file means them.

Every table selfsup reads goes through here: text corpora (:mod:`selfsup.data.text_records`),
lists of image paths (:mod:`selfsup.data.tables`) and labels files. Two conventions coexist:

* RFC 4180 quoting (what spreadsheets, pandas and Python's ``csv`` write): a field may be
  enclosed in double quotes, which protect delimiters, line breaks and doubled quotes ``""``;
* no quoting (the IANA ``text/tab-separated-values`` format, and most NLP data sets' TSV files):
  a quote is a character like any other, and every line is one row.

A quote at the start of a field means quoting only where the file uses quoting: where somewhere a
whole field opens with a quote just after a delimiter (or at the start of a line) and closes with
a quote just before a delimiter (or at the end of a line), and the file read that way is a table.
A review that merely begins with a quote (``"Wow, dull``) or holds one (``she said "fine"``) in a
file without quoting stays text. Rows are never merged silently: a row with another number of
fields than the first is an error naming its lines, and so is a quoted field that does not close
before :data:`FIELD_LIMIT` characters.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from selfsup.data.corpus import open_text
from selfsup.errors import DataError

SAMPLE_CHARS = 4 * 2**20
"""The first characters of a file, on which its delimiter and quoting are chosen."""
FIELD_LIMIT = 16 * 2**20
"""The longest field read, in characters (Python's ``csv`` stops at 131,072, less than a long
document); a quote left open would otherwise swallow the rest of the file."""
QUOTING = ("auto", "true", "false")
NUL_MESSAGE = (
    "{path} holds NUL characters (UTF-16 or UTF-32 text without a byte-order mark, or not a text file); "
    "convert it to UTF-8 with e.g. `iconv -f utf-16 -t utf-8`"
)
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


@dataclass(frozen=True)
class Dialect:
    """How a table is written: its ``delimiter`` and whether double quotes enclose fields."""

    delimiter: str
    quoting: bool

    def describe(self) -> str:
        """E.g. ``tab-separated, no quoting``."""
        quotes = 'fields in "quotes"' if self.quoting else "no quoting"
        return f"{DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))}-separated, {quotes}"

    def reader(self, lines) -> Iterator[list[str]]:
        if self.quoting:
            return csv.reader(lines, delimiter=self.delimiter, strict=True)
        return csv.reader(lines, delimiter=self.delimiter, quoting=csv.QUOTE_NONE)


@dataclass
class Row:
    """A row of a table: its fields and the lines of the file it spans (1-based, inclusive)."""

    fields: list[str]
    first_line: int
    last_line: int

    def lines(self) -> str:
        if self.first_line == self.last_line:
            return f"line {self.first_line}"
        return f"lines {self.first_line}-{self.last_line}"


class TableError(DataError):
    """A table that cannot be read in its dialect (a malformed quoted field, a field too long)."""


def is_quoted_table(sample: str, delimiter: str) -> bool:
    """Whether ``sample`` holds a whole field in quotes: a quote right after a delimiter or a line
    start, then anything but a lone quote (doubled quotes and line breaks included), then a quote
    right before a delimiter or a line end."""
    d = re.escape(delimiter)
    field = re.compile(rf'(?<![^\n{d}])"(?:[^"]|"")*"(?=[{d}\n]|\Z)')
    return field.search(sample) is not None


def sniff(path: Path, kind: str, quoting: str = "auto") -> tuple[Dialect, list[Row]]:
    """The dialect of the table at ``path`` (``kind``: ``.csv`` or ``.tsv``) and its first rows
    (about :data:`SAMPLE_CHARS` characters), chosen on those rows:

    * the delimiter: a tab for ``.tsv``; for ``.csv`` a comma, or a semicolon where only
      semicolons make a table of two or more columns (spreadsheets in locales whose decimal mark is
      a comma);
    * ``quoting`` ``auto``: quoting where a whole field is quoted (:func:`is_quoted_table`) and
      the rows read that way are a table (every row as wide as the first), none otherwise;
      ``true``/``false`` force it.

    Raises :class:`DataError` for an unknown ``quoting``, an empty file, or first rows that are no
    table whichever way they are read (naming the first row of another width and its lines).
    """
    if quoting not in QUOTING:
        raise DataError(f"data.quoting must be auto, true or false, got '{quoting}'")
    text = _sample_text(path)
    delimiters = ["\t"] if kind == ".tsv" else [",", ";"]
    candidates = []
    for delimiter in delimiters:
        quoted = quoting == "true" or (quoting == "auto" and is_quoted_table(text, delimiter))
        candidates += [Dialect(delimiter, True)] if quoted else []
        candidates += [Dialect(delimiter, False)] if quoting != "true" else []
    parsed = [(dialect, *_sample_rows(path, dialect)) for dialect in candidates]
    if not any(found for _, found, _ in parsed):
        raise DataError(f"{path} holds no rows (an empty corpus or list)")
    tables = [(d, found) for d, found, error in parsed if found and error is None and _misfit(found) is None]
    wide = [(d, found) for d, found in tables if len(found[0].fields) > 1]
    narrow = [(d, found) for d, found in tables if d.delimiter == delimiters[0]]
    if wide or narrow:
        return (wide or narrow)[0]
    dialect, found, error = parsed[0]
    if error is not None and (not found or _misfit(found) is None):
        raise error
    raise DataError(width_message(path, dialect, _misfit(found), len(found[0].fields)))


def rows(path: Path, dialect: Dialect, width: int | None = None) -> Iterator[Row]:
    """Every non-empty row of the table at ``path`` read in ``dialect``, with its line numbers.
    Raises :class:`DataError` naming the lines of a row that is not ``width`` fields wide (when
    given), of a malformed quoted field, or of a field over :data:`FIELD_LIMIT` characters, and
    for NUL characters."""
    handle, _ = open_text(path)
    with handle:
        yield from _rows(handle, path, dialect, width)


def width_message(path: Path, dialect: Dialect, row: Row, width: int) -> str:
    """The error for ``row``, which is not ``width`` fields wide."""
    message = (
        f"{path}: the row on {row.lines()} has {len(row.fields)} fields, the first row {width} "
        f"({dialect.describe()})"
    )
    if dialect.quoting and row.first_line != row.last_line:
        message += (
            f"; a quote opening a field on line {row.first_line} closes on line {row.last_line}: if "
            "quotes are text in this file, pass data.quoting=false"
        )
    elif not dialect.quoting:
        message += "; if fields are in quotes, pass data.quoting=true"
    return message


def _rows(handle, path: Path, dialect: Dialect, width: int | None) -> Iterator[Row]:
    counted = {"line": 0}

    def lines():
        for line in handle:
            if "\x00" in line:
                raise DataError(NUL_MESSAGE.format(path=path))
            counted["line"] += 1
            yield line

    if csv.field_size_limit() < FIELD_LIMIT:
        csv.field_size_limit(FIELD_LIMIT)
    reader, last = dialect.reader(lines()), 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise TableError(
                f"{path}: cannot read line {last + 1} or the lines after it as a table "
                f"({dialect.describe()}): {exc}"
                + ("; if quotes are text in this file, pass data.quoting=false" if dialect.quoting else "")
            ) from None
        row = Row(fields, last + 1, counted["line"])
        last = counted["line"]
        if not fields or not "".join(fields).strip() and len(fields) == 1:
            continue
        if width is not None and len(fields) != width:
            raise DataError(width_message(path, dialect, row, width))
        yield row


def _sample_text(path: Path) -> str:
    handle, _ = open_text(path)
    with handle:
        text = handle.read(SAMPLE_CHARS)
    if "\x00" in text:
        raise DataError(NUL_MESSAGE.format(path=path))
    return text


def _sample_rows(path: Path, dialect: Dialect) -> tuple[list[Row], TableError | None]:
    """The rows of the first :data:`SAMPLE_CHARS` characters in ``dialect``, and the error that
    stopped reading them, if any."""
    found, chars = [], 0
    handle, _ = open_text(path)
    with handle:
        try:
            for row in _rows(handle, path, dialect, None):
                found.append(row)
                chars += sum(len(field) + 1 for field in row.fields)
                if chars > SAMPLE_CHARS:
                    break
        except TableError as exc:
            return found, exc
    return found, None


def _misfit(rows: list[Row]) -> Row | None:
    """The first row not as wide as the first."""
    return next((row for row in rows if len(row.fields) != len(rows[0].fields)), None)
