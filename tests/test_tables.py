"""Images in tables: Parquet, Hugging Face ``save_to_disk`` folders and CSV/TSV lists of paths give
the same pixels as the files they hold, with their splits and labels."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.data import load_data, store
from selfsup.data.decode import decode_image
from selfsup.errors import DataError

datasets = pytest.importorskip("datasets", reason="the datasets package writes the tables these tests read")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(store, "CHUNK", 3)  # several shards, and Parquet row groups across them


def pictures(count, seed=0):
    """``count`` distinct 6×5 RGB images as PNG bytes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def expected(data):
    return torch.from_numpy(np.stack([decode_image(b) for b in data])).permute(0, 3, 1, 2)


def features():
    return datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})


def hf_split(data, labels):
    images = [{"bytes": b, "path": None} for b in data]
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features())


def test_save_to_disk_folder_gives_the_pixels_splits_and_class_names(tmp_path):
    train, test, extra = pictures(7), pictures(3, seed=1), pictures(2, seed=2)
    folder = tmp_path / "hf"
    datasets.DatasetDict(
        {
            "train": hf_split(train, [0, 1, 0, 1, -1, 1, 0]),
            "test": hf_split(test, [1, 0, 1]),
            "unsupervised": hf_split(extra, [-1, -1]),
        }
    ).save_to_disk(str(folder))
    splits = load_data(str(folder))
    assert torch.equal(splits.train.images, torch.cat([expected(train), expected(extra)]))
    assert torch.equal(splits.test.images, expected(test))
    assert splits.train.classes == ["cat", "dog"]
    assert splits.train.labels.tolist() == [0, 1, 0, 1, -1, 1, 0, -1, -1]  # -1 and the unsupervised split
    assert splits.test.labels.tolist() == [1, 0, 1]


def test_a_parquet_file_and_a_folder_of_parquet_shards(tmp_path):
    train, test = pictures(8), pictures(4, seed=1)
    hf_split(train, [0, 1] * 4).to_parquet(str(tmp_path / "one.parquet"), batch_size=3)  # row groups of 3
    splits = load_data(str(tmp_path / "one.parquet"))  # one file, labelled: 20% held out
    assert len(splits.train) + len(splits.test) == 8 and splits.train.classes == ["cat", "dog"]
    whole = torch.cat([splits.train.images, splits.test.images])
    assert sorted(map(bytes, whole.flatten(1).numpy())) == sorted(
        map(bytes, expected(train).flatten(1).numpy())
    )

    shards = tmp_path / "shards" / "data"
    shards.mkdir(parents=True)
    hf_split(train[:5], [0] * 5).to_parquet(str(shards / "train-00000-of-00002.parquet"), batch_size=2)
    hf_split(train[5:], [1] * 3).to_parquet(str(shards / "train-00001-of-00002.parquet"))
    hf_split(test, [1, 0, 1, 0]).to_parquet(str(shards / "test-00000-of-00001.parquet"))
    splits = load_data(str(tmp_path / "shards"))
    assert torch.equal(splits.train.images, expected(train))
    assert torch.equal(splits.test.images, expected(test))
    assert splits.train.labels.tolist() == [0] * 5 + [1] * 3


def test_a_table_of_paths_and_of_plain_bytes_with_string_labels(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = pictures(4)
    for i, b in enumerate(data):
        (tmp_path / f"{i}.png").write_bytes(b)
    table = pa.table({"file": [f"{i}.png" for i in range(4)], "img": data, "class": ["a", "b", "", "a"]})
    pq.write_table(table, tmp_path / "plain.parquet")
    splits = load_data(str(tmp_path / "plain.parquet"))
    assert torch.equal(splits.train.images, expected(data))  # "" is unlabelled
    assert splits.train.labels.tolist() == [0, 1, -1, 0]
    pq.write_table(table.drop(["img"]).rename_columns(["image", "class"]), tmp_path / "paths.parquet")
    assert torch.equal(load_data(str(tmp_path / "paths.parquet")).train.images, expected(data))


def test_csv_and_tsv_lists_of_image_paths(tmp_path):
    data = pictures(6)
    (tmp_path / "img").mkdir()
    for i, b in enumerate(data):
        (tmp_path / "img" / f"{i}.png").write_bytes(b)
    rows = ["path,label,split"] + [
        f"img/{i}.png,{'cat' if i % 2 else 'dog'},{'test' if i >= 4 else 'train'}" for i in range(6)
    ]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    splits = load_data(str(tmp_path / "list.csv"))
    assert torch.equal(splits.train.images, expected(data[:4])) and torch.equal(
        splits.test.images, expected(data[4:])
    )
    assert splits.train.classes == ["cat", "dog"] and splits.train.labels.tolist() == [1, 0, 1, 0]
    (tmp_path / "list.tsv").write_text(
        "".join(f"{tmp_path}/img/{i}.png\t-1\n" for i in range(3))
    )  # no header
    splits = load_data(str(tmp_path / "list.tsv"))
    assert torch.equal(splits.train.images, expected(data[:3])) and not splits.train.labelled


def test_a_csv_of_texts_is_still_a_text_corpus(tmp_path):
    (tmp_path / "texts.csv").write_text("text,label\nthe cat sat on the mat,1\na dog ran in the park,2\n")
    assert load_data(str(tmp_path / "texts.csv")).train.texts[0] == "the cat sat on the mat"


def test_a_table_without_images_is_one_line_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1, 2], "label": [0, 1]}), tmp_path / "numbers.parquet")
    with pytest.raises(DataError, match="no text field .*nor an image column"):
        load_data(str(tmp_path / "numbers.parquet"))


def test_a_listed_file_that_is_missing_is_one_line_error(tmp_path):
    (tmp_path / "list.csv").write_text("path\nnowhere.png\n")
    with pytest.raises(DataError, match="cannot read .*nowhere.png"):
        load_data(str(tmp_path / "list.csv"))


def test_a_list_row_without_its_path_column_is_one_line_error(tmp_path):
    (tmp_path / "list.csv").write_text("label,path\ncat,a.png\ndog\n")
    with pytest.raises(DataError, match="line 3 has 1 fields"):
        load_data(str(tmp_path / "list.csv"))


def test_a_list_read_by_a_relative_path_reuses_the_store(tmp_path, monkeypatch):
    (tmp_path / "img").mkdir()
    for i, b in enumerate(pictures(3)):
        (tmp_path / "img" / f"{i}.png").write_bytes(b)
    (tmp_path / "list.csv").write_text("path\n" + "".join(f"img/{i}.png\n" for i in range(3)))
    load_data(str(tmp_path / "list.csv"))
    monkeypatch.chdir(tmp_path)
    load_data("list.csv")
    assert len(list((tmp_path / "cache").glob("*.store"))) == 1
