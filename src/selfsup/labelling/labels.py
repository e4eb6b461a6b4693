"""Labels files: what ``selfsup select`` writes for the user to label, and the labels the user
gives back (``--labelled FILE`` in ``select``, ``evaluate`` and ``fit``).

An item is named by ``index`` (its position in the data as selfsup reads them, over all items
before any held-out split: :attr:`selfsup.data.dataset.LabelledData.item_index`) and, where the
data have files, by ``path`` (relative to the data's root, as the store lists it). A labels file
is either

* a CSV or TSV (read as :mod:`selfsup.data.delimited` reads tables) with a ``path`` or ``index``
  column and a ``label`` column (the names image lists take: ``image``, ``file``, ``class``, ...
  too); an empty label means not labelled yet, so ``select``'s own CSV, its ``label`` column
  filled in, is a labels file; labels are class names (``3`` is the class named "3"); or
* Label Studio's JSON export of a project whose tasks came from ``select``'s task file: each task's
  ``data`` holds ``index`` and ``path``, and its latest annotation that was not cancelled gives
  the label (a ``choices`` result); its ``JSON-MIN`` export (one flat object a task) too.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from selfsup.data import delimited
from selfsup.data.dataset import DataSplits
from selfsup.data.names import LABEL_NAMES
from selfsup.data.tables import PATH_COLUMNS
from selfsup.errors import DataError

INDEX_COLUMN, PATH_COLUMN, LABEL_COLUMN = "index", "path", "label"
SHOWN = 5
"""Items named in an error."""


@dataclass
class Labels:
    """Labels read from a file: the training rows they label (positions in the training split,
    in the file's order) and each one's class name."""

    rows: np.ndarray
    names: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.rows)

    def classes(self) -> list[str]:
        """The class names, sorted as :func:`class_order` sorts them."""
        return class_order(self.names)


def class_order(names) -> list[str]:
    """Class names in order: integers by value first, then the others as text (as corpora's)."""
    return sorted(set(names), key=lambda c: (0, int(c), c) if re.fullmatch(r"-?[0-9]+", c) else (1, 0, c))


def class_indices(names: list[str], classes: list[str]) -> torch.Tensor:
    """The index in ``classes`` of each class name of ``names`` (int64); every name must be there."""
    position = {name: i for i, name in enumerate(classes)}
    return torch.tensor([position[name] for name in names], dtype=torch.long)


def read_labels(path: str | Path, splits: DataSplits) -> Labels:
    """The labels of ``path`` (a CSV/TSV or a Label Studio JSON export) as rows of
    ``splits.train``. Raises :class:`DataError` for a missing file, no ``path``/``index`` or
    ``label`` column, an item the data do not hold (naming the first few), an item of the
    held-out test split, or an item labelled twice."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"labels file not found: {path}")
    try:
        if path.name.lower().endswith(".json"):
            keys, labels = _label_studio(path)
        else:
            keys, labels = _table(path)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8 (e.g. `iconv -t utf-8`)"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not labels:
        raise DataError(
            f"no item of {path} has a label yet: fill in its label column (or label it in Label Studio)"
        )
    return Labels(_rows(keys, splits, path), labels, str(path))


def _table(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    kind = ".tsv" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ".csv"
    dialect, sample = delimited.sniff(path, kind)
    header = [name.strip().lower() for name in sample[0].fields]
    key = INDEX_COLUMN if INDEX_COLUMN in header else next((n for n in PATH_COLUMNS if n in header), None)
    label = next((n for n in (LABEL_COLUMN, *LABEL_NAMES) if n in header), None)
    if key is None or label is None:
        raise DataError(
            f"{path}: a labels file needs a header with a '{PATH_COLUMN}' or '{INDEX_COLUMN}' column and a "
            f"'{LABEL_COLUMN}' column; found {', '.join(sample[0].fields)}"
        )
    key_at, label_at = header.index(key), header.index(label)
    keys, labels = [], []
    rows = delimited.rows(path, dialect, len(header))
    next(rows, None)
    for row in rows:
        name = row.fields[label_at].strip()
        if name:
            keys.append((key if key == INDEX_COLUMN else PATH_COLUMN, row.fields[key_at].strip()))
            labels.append(name)
    return keys, labels


def _label_studio(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a JSON export of Label Studio ({exc})") from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise DataError(f"{path}: a Label Studio export is a JSON list of tasks")
    keys, labels = [], []
    for task in tasks:
        data = task.get("data", task)
        label = _choice(task) if "annotations" in task else _flat_choice(task)
        if label is None:
            continue
        if INDEX_COLUMN in data:
            keys.append((INDEX_COLUMN, str(data[INDEX_COLUMN])))
        elif PATH_COLUMN in data:
            keys.append((PATH_COLUMN, str(data[PATH_COLUMN])))
        else:
            raise DataError(
                f"{path}: a task holds neither '{INDEX_COLUMN}' nor '{PATH_COLUMN}' in its data; import the "
                "tasks of `selfsup select` (its .labelstudio.json) so that labels map back to the items"
            )
        labels.append(label)
    return keys, labels


def _choice(task: dict) -> str | None:
    """The choice of the task's latest annotation that was not cancelled (None: none)."""
    done = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
    for annotation in sorted(done, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))[::-1]:
        for result in annotation.get("result", []):
            choices = result.get("value", {}).get("choices")
            if result.get("type") == "choices" and choices:
                return str(choices[0])
    return None


def _flat_choice(task: dict) -> str | None:
    """JSON-MIN: the label is the value of the choices' name (a string, or ``{"choices": [...]}``)."""
    for key, value in task.items():
        if key in (INDEX_COLUMN, PATH_COLUMN, "image", "text", "id", "annotator", "annotation_id"):
            continue
        if isinstance(value, dict) and value.get("choices"):
            return str(value["choices"][0])
        if isinstance(value, str) and key.lower() in (*LABEL_NAMES, "choice", "choices") and value.strip():
            return value.strip()
    return None


def _rows(keys: list[tuple[str, str]], splits: DataSplits, path: Path) -> np.ndarray:
    """The training rows the keys name; :class:`DataError` for unknown, held-out or repeated items."""
    train, test = splits.train, splits.test
    position = {int(i): row for row, i in enumerate(train.indices().tolist())}
    held_out = set(test.indices().tolist()) if test is not None else set()
    by_path = {_normal(n): row for row, n in enumerate(getattr(train, "names", None) or [])}
    test_paths = set(_normal(n) for n in (getattr(test, "names", None) or [])) if test is not None else set()
    rows, unknown, in_test = [], [], []
    for kind, value in keys:
        if kind == INDEX_COLUMN:
            if not re.fullmatch(r"[0-9]+(\.0*)?", value.strip()):
                unknown.append(f"index {value!r}")
                continue
            number = int(float(value))
            if number in position:
                rows.append(position[number])
            else:
                (in_test if number in held_out else unknown).append(f"index {number}")
        else:
            name = _normal(value)
            if not by_path:
                raise DataError(
                    f"{path}: items are named by path, but {splits.source} has no files; name them by index"
                )
            if name in by_path:
                rows.append(by_path[name])
            else:
                (in_test if name in test_paths else unknown).append(f"'{value}'")
    if unknown:
        raise DataError(
            f"{path}: {len(unknown)} item(s) not in {splits.source}: {', '.join(unknown[:SHOWN])}"
            + (" …" if len(unknown) > SHOWN else "")
        )
    if in_test:
        raise DataError(
            f"{path}: {len(in_test)} item(s) of the held-out test split, which scores the models and "
            f"is never trained on: {', '.join(in_test[:SHOWN])}" + (" …" if len(in_test) > SHOWN else "")
        )
    rows = np.array(rows, dtype=np.int64)
    values, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        repeated = values[counts > 1]
        named = [f"index {int(train.indices()[r])}" for r in repeated[:SHOWN]]
        raise DataError(f"{path}: {len(repeated)} item(s) labelled more than once: {', '.join(named)}")
    return rows


def _normal(name: str) -> str:
    """A path as the store lists it: forward slashes, no leading ``./``."""
    return str(PurePosixPath(name.replace("\\", "/").removeprefix("./")))


def write_picks_csv(path: Path, rows: list[dict]) -> None:
    """The picks as a CSV (``rank, index, path`` or ``text``, ``cluster, score, label``), the label
    left empty for the user; written atomically."""
    from io import StringIO

    from selfsup.atomic import write_text

    columns = list(rows[0]) if rows else [INDEX_COLUMN, LABEL_COLUMN]
    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def label_studio_files(tasks_path: Path, interface_path: Path, picks: list[dict], images, classes) -> None:
    """Label Studio's import file (a JSON list of tasks, each ``data`` holding the picture as a
    ``data:`` URL, or the text, with ``index`` and ``path``: the export maps back by them, not by
    Label Studio's own file names) and a labelling interface (``<Choices name="label">`` of
    ``classes``, or two to rename where the classes are not known yet). ``images``: the picks'
    images, uint8 K×C×H×W (None for texts)."""
    from selfsup.atomic import write_text

    field = "text" if images is None else "image"
    tasks = []
    for i, p in enumerate(picks):
        data = {INDEX_COLUMN: p[INDEX_COLUMN], PATH_COLUMN: p.get(PATH_COLUMN, "")}
        data[field] = p.get("text", "") if images is None else _data_url(images[i])
        tasks.append({"data": data})
    write_text(tasks_path, json.dumps(tasks))
    shown = '<Text name="text" value="$text"/>' if images is None else '<Image name="image" value="$image"/>'
    choices = "".join(f'    <Choice value="{_xml(c)}"/>\n' for c in (classes or ["class A", "class B"]))
    opening = f'<Choices name="{LABEL_COLUMN}" toName="{field}" choice="single" showInline="true">'
    write_text(interface_path, f"<View>\n  {shown}\n  {opening}\n{choices}  </Choices>\n</View>\n")


def _data_url(image) -> str:
    """A stored image (uint8 C×H×W tensor) as a PNG ``data:`` URL (JPEG from 64 px, colour)."""
    import base64
    import io

    from PIL import Image

    pixels = image.numpy()
    picture = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    kind = "JPEG" if picture.mode == "RGB" and min(picture.size) >= 64 else "PNG"
    picture.save(buffer, format=kind, **({"quality": 90} if kind == "JPEG" else {}))
    return f"data:image/{kind.lower()};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _xml(text: str) -> str:
    from xml.sax.saxutils import quoteattr

    return quoteattr(str(text))[1:-1]
