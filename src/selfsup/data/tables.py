"""Images in tables: Parquet files, a folder written by Hugging Face ``datasets``' ``save_to_disk``
(Arrow), and a CSV/TSV list of image paths, each with an optional label column.

Each becomes a :class:`Source`: the images' split and class (:class:`~selfsup.data.layout.Placed`)
and a function that reads one image's bytes, which the store (:mod:`selfsup.data.store`) decodes
chunk by chunk. No table is read whole: an Arrow file is memory-mapped, and a Parquet file is read
one row group at a time, so the images need not fit in memory.

The image column is the one Hugging Face's features call ``Image``, else one named ``image`` or
``img``, else the first column of bytes (or of ``{bytes, path}`` records); a column of file paths
(absolute, or relative to the table's folder) also serves. The label column is a ``ClassLabel``
(its names are the classes), else one named as :data:`selfsup.data.names.LABEL_NAMES` lists;
negative, empty and missing labels mark unlabelled images. Splits follow Hugging Face's names
(``train``, ``test``, ``validation``; ``unsupervised``/``unlabeled`` join the training split
without labels); Parquet files in a folder take their split from their name (``train-00000-of-00004.parquet``)
or folder (``train/part-0.parquet``); a lone file is the training split.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from selfsup.data import delimited
from selfsup.data.dataset import marks_unlabelled
from selfsup.data.layout import IMAGE_SUFFIXES, SPLIT_NAMES, Placed, Unused
from selfsup.data.names import LABEL_NAMES
from selfsup.errors import DataError

TABLE_SUFFIXES = (".parquet",)
HF_MARKS = ("dataset_dict.json", "state.json")
"""Files that mark a folder written by ``datasets.save_to_disk`` (a DatasetDict; a Dataset)."""
UNLABELLED_SPLITS = frozenset({"unsupervised", "unlabeled", "unlabelled"})
IMAGE_COLUMNS = ("image", "img", "picture", "photo")
PATH_COLUMNS = ("path", "image", "image_path", "file", "filename", "file_name", "filepath", "img")


@dataclass
class Source:
    """Images to store: per split, their placement (``name`` is what :attr:`read` takes); what was
    left out."""

    grouped: dict[str, list[Placed]]
    read: Callable[[str], bytes]
    unused: Unused


def is_table_source(path: Path, names: list[str] | None = None) -> bool:
    """Whether ``path`` is a Parquet file, a ``save_to_disk`` folder, or a folder whose files
    (``names``, relative) hold Parquet files and no image."""
    if path.is_file():
        return path.name.lower().endswith(TABLE_SUFFIXES)
    if any((path / mark).is_file() for mark in HF_MARKS):
        return True
    suffixes = {PurePosixPath(n).suffix.lower() for n in names or []}
    return ".parquet" in suffixes and not suffixes & IMAGE_SUFFIXES


def table_holds_images(path: Path) -> bool:
    """Whether a Parquet file has an image column (else it is read as a text corpus); True where it
    cannot be read (the image reader then says why)."""
    try:
        import pyarrow.parquet as pq

        schema = pq.ParquetFile(path).schema_arrow
        _image_column(schema, _features(schema), path.name)
    except DataError:
        return False
    except Exception:  # noqa: BLE001 - pyarrow missing or a damaged file: the image reader reports it
        return True
    return True


def table_source(path: Path) -> Source:
    """The images of a Parquet file, a folder of them, or a ``save_to_disk`` folder. Raises
    :class:`DataError` where ``pyarrow`` is missing, a file cannot be read, or a table has no
    image column."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet and Arrow tables needs pyarrow: pip install pyarrow"
        ) from None
    unused = Unused()
    tables: dict[str, list[_Table]] = {}
    try:
        found = _table_files(path, unused)
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the dataset folder {path}: {type(exc).__name__}: {exc}") from None
    for split, file in found:
        tables.setdefault(split, []).append(_Table.open(file, path))
    if "test" in tables and "val" in tables:
        for table in tables.pop("val"):
            unused.add("a validation split beside the test split", table.name)
    if "val" in tables:
        tables["test"] = tables.pop("val")
    if not tables.get("train") and not tables.get("unlabelled"):
        raise DataError(f"{path}: no training split among the tables")
    grouped: dict[str, list[Placed]] = {}
    for split, split_tables in tables.items():
        target = "train" if split == "unlabelled" else split
        for table in split_tables:
            grouped.setdefault(target, []).extend(table.placed(target, keep_labels=split != "unlabelled"))
    readers = {table.name: table for split_tables in tables.values() for table in split_tables}

    def read(name: str) -> bytes:
        table, _, row = name.rpartition("#")
        return readers[table].image(int(row))

    return Source(grouped, read, unused)


def _table_files(path: Path, unused: Unused) -> list[tuple[str, Path]]:
    """(split, file) of every table: ``train``, ``test``, ``val`` or ``unlabelled``."""
    if path.is_file():
        return [("train", path)]
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        return [(s, f) for name in splits for s in _split(name, unused) for f in _arrow_files(path / name)]
    if (path / "state.json").is_file():
        return [("train", f) for f in _arrow_files(path)]
    found = []
    for file in sorted(path.rglob("*.parquet")):
        relative = file.relative_to(path)
        words = [relative.name.split("-")[0].split("_")[0].split(".")[0].lower()] + [
            p.lower() for p in relative.parts[:-1]
        ]
        split = next((w for w in words if w in SPLIT_NAMES or w in UNLABELLED_SPLITS), "train")
        found += [(s, file) for s in _split(split, unused, relative.as_posix())]
    return found


def _split(name: str, unused: Unused, file: str | None = None) -> list[str]:
    """The split a table of split ``name`` serves ([]: none, counted in ``unused``)."""
    if name.lower() in UNLABELLED_SPLITS:
        return ["unlabelled"]
    if name.lower() in SPLIT_NAMES:
        return [SPLIT_NAMES[name.lower()]]
    unused.add(f"split '{name}' (neither train, test, validation nor unlabelled)", file or name)
    return []


def _arrow_files(folder: Path) -> list[Path]:
    state = json.loads((folder / "state.json").read_text())
    return [folder / entry["filename"] for entry in state["_data_files"]]


class _Table:
    """One Parquet or Arrow file: its image and label columns, and one image's bytes by row."""

    def __init__(self, name: str, file: Path, schema, rows: int, row_group: Callable | None, table):
        self.name, self.file, self.rows = name, file, rows
        self._row_group, self._table = row_group, table
        features = _features(schema)
        self.image_column = _image_column(schema, features, name)
        self.label_column = _label_column(schema, features, self.image_column)
        names = features.get(self.label_column, {}).get("names") if self.label_column else None
        self.class_names = names
        self._groups: dict[int, object] = {}
        self._starts = [0]
        self._lock = threading.Lock()

    @classmethod
    def open(cls, file: Path, root: Path) -> _Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = file.relative_to(root).as_posix() if file != root else file.name
        try:
            if file.suffix == ".arrow":
                # zero copy: the table's buffers are the memory-mapped file's pages
                table = pa.ipc.open_stream(pa.memory_map(str(file))).read_all()
                return cls(name, file, table.schema, table.num_rows, None, table)
            parquet = pq.ParquetFile(file)
            made = cls(
                name, file, parquet.schema_arrow, parquet.metadata.num_rows, parquet.read_row_group, None
            )
            sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
            for size in sizes:
                made._starts.append(made._starts[-1] + size)
            return made
        except (OSError, pa.ArrowException, KeyError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read the table {file}: {exc}") from None

    def labels(self) -> list[str | None]:
        """Each row's class name (None: unlabelled)."""
        if self.label_column is None:
            return [None] * self.rows
        if self._table is not None:
            values = self._table.column(self.label_column).to_pylist()
        else:
            import pyarrow.parquet as pq

            values = pq.read_table(self.file, columns=[self.label_column]).column(0).to_pylist()
        return [_class_name(v, self.class_names) for v in values]

    def placed(self, split: str, keep_labels: bool) -> list[Placed]:
        labels = self.labels() if keep_labels else [None] * self.rows
        return [Placed(f"{self.name}#{row}", split, label) for row, label in enumerate(labels)]

    def image(self, row: int) -> bytes:
        """The bytes of row ``row``'s image (read from its path where the table holds only that)."""
        value = self._cell(row)
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, bytes):
            return value
        if not value:
            raise OSError("the table holds no image in this row")
        path = Path(value)
        return (path if path.is_absolute() else self.file.parent / path).read_bytes()

    def _cell(self, row: int):
        if self._table is not None:
            return self._table.column(self.image_column)[row].as_py()
        import bisect

        group = bisect.bisect_right(self._starts, row) - 1
        with self._lock:  # the store's decoding threads ask for neighbouring rows: keep two groups
            if group not in self._groups:
                if len(self._groups) >= 2:
                    self._groups.pop(next(iter(self._groups)))
                self._groups[group] = self._row_group(group, columns=[self.image_column])
            table = self._groups[group]
        return table.column(0)[row - self._starts[group]].as_py()


def _features(schema) -> dict:
    """Hugging Face's features of a table ({} where it has none)."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return {}
    info = json.loads(meta)
    return info.get("info", {}).get("features", {}) or {}


def _image_column(schema, features: dict, name: str) -> str:
    import pyarrow as pa

    columns = list(schema.names)
    typed = [c for c in columns if features.get(c, {}).get("_type") == "Image"]
    if typed:
        return typed[0]

    def holds_bytes(column: str) -> bool:
        kind = schema.field(column).type
        if pa.types.is_struct(kind):
            return kind.get_field_index("bytes") >= 0
        return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)

    for column in [c for c in columns if c.lower() in IMAGE_COLUMNS] + columns:
        if holds_bytes(column) or (
            column.lower() in IMAGE_COLUMNS and pa.types.is_string(schema.field(column).type)
        ):
            return column
    raise DataError(
        f"{name}: no image column (a Hugging Face Image feature, a column of bytes, or one named "
        f"{'/'.join(IMAGE_COLUMNS)} of file paths); columns: {columns}"
    )


def _label_column(schema, features: dict, image: str) -> str | None:
    columns = [c for c in schema.names if c != image]
    typed = [c for c in columns if features.get(c, {}).get("_type") == "ClassLabel"]
    if typed:
        return typed[0]
    return next((c for c in columns if c.lower() in LABEL_NAMES), None)


def _class_name(value, names: list[str] | None) -> str | None:
    if value is None or isinstance(value, float) and value != value:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            return None
        return names[int(value)] if names is not None else str(int(value))
    text = str(value)
    return None if marks_unlabelled(text) else text


# ---- a CSV/TSV list of image paths ---------------------------------------------------------------


def is_image_list(path: Path) -> bool:
    """Whether a .csv/.tsv file lists image paths: its path column's first value (the column
    named as :data:`PATH_COLUMNS` lists, else the first) ends with an image suffix."""
    try:
        _, sample = delimited.sniff(path, _kind(path))
    except (DataError, OSError, UnicodeDecodeError):
        return False
    rows = [row.fields for row in sample[:2]]
    index = _path_index(rows[0])
    row, column = (rows[1] if len(rows) > 1 else [], index) if index is not None else (rows[0], 0)
    return column < len(row) and PurePosixPath(row[column].strip()).suffix.lower() in IMAGE_SUFFIXES


def list_source(path: Path) -> Source:
    """The images a CSV/TSV list names: a path column (absolute, or relative to the list's folder),
    an optional label column and an optional ``split`` column (train/test/val); without a header,
    the first column is the path and the second the label. Read as :mod:`selfsup.data.delimited`
    reads tables: a row of another width than the first is an error naming its lines."""
    dialect, sample = delimited.sniff(path, _kind(path))
    rows = [row.fields for row in delimited.rows(path, dialect, len(sample[0].fields))]
    header = rows[0]
    path_index = _path_index(header)
    has_header = path_index is not None
    if not has_header:
        path_index, label_index, split_index = 0, (1 if len(header) > 1 else None), None
    else:
        lowered = [h.strip().lower() for h in header]
        label_index = next((i for i, h in enumerate(lowered) if h in LABEL_NAMES), None)
        split_index = lowered.index("split") if "split" in lowered else None
        rows = rows[1:]
    unused = Unused()
    grouped: dict[str, list[Placed]] = {}
    for row in rows:
        name = row[path_index].strip()
        label = row[label_index].strip() if label_index is not None and label_index < len(row) else ""
        split = SPLIT_NAMES.get(row[split_index].strip().lower(), "") if split_index is not None else "train"
        if not split:
            unused.add("rows of another split than train, test or validation", name)
            continue
        grouped.setdefault(split, []).append(Placed(name, split, None if marks_unlabelled(label) else label))
    if "test" in grouped and "val" in grouped:
        for item in grouped.pop("val"):
            unused.add("a validation split beside the test split", item.name)
    if "val" in grouped:
        grouped["test"] = [Placed(p.name, "test", p.label) for p in grouped.pop("val")]
    if not grouped.get("train"):
        raise DataError(f"{path}: the list names no training images")

    def read(name: str) -> bytes:
        file = Path(name)
        return (file if file.is_absolute() else path.parent / file).read_bytes()

    return Source(grouped, read, unused)


def listed_files(path: Path) -> list[Path]:
    """The files a list names (for the store's key: a changed image builds the store again)."""
    return [
        Path(p.name) if Path(p.name).is_absolute() else path.parent / p.name
        for s in list_source(path).grouped.values()
        for p in s
    ]


def _kind(path: Path) -> str:
    return ".tsv" if path.name.lower().endswith(".tsv") else ".csv"


def _path_index(header: list[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(name) for name in PATH_COLUMNS if name in lowered), None)
