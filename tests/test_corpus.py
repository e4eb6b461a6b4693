"""Corpora larger than memory: streamed in pieces into a corpus store and a token store, which
give the same documents, labels and token ids as reading the whole file at once."""

import gzip
import json
import socket

import numpy as np
import pytest
import torch

from selfsup.data import corpus, load_data
from selfsup.data.corpus import Documents
from selfsup.data.tokenizer import encode_documents, pack_documents, train_tokenizer
from selfsup.data.tokens import document_ids, packed_ids, sample_texts
from selfsup.errors import DataError

pytest.importorskip("tokenizers", reason="the text methods need the tokenizers package")


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK_CHARS", 37)  # records cut across many pieces


def texts(count=40):
    return [f"document {i} says {'word ' * (i % 7)}and ends." for i in range(count)]


def everything(splits):
    """Training and test documents, in the store's order (the test split is the corpus's tail)."""
    return list(splits.train.texts) + (list(splits.test.texts) if splits.test is not None else [])


def test_lines_and_paragraphs_read_in_pieces_equal_the_whole_file(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(texts()) + "\n")
    splits = load_data(str(lines))
    assert isinstance(splits.train.texts, Documents) and everything(splits) == texts()
    prose = tmp_path / "prose.txt"
    paragraphs = [f"{t}\nand a second line {i}" for i, t in enumerate(texts(12))]
    prose.write_text("\n\n".join(paragraphs) + "\n\n\n")
    assert everything(load_data(str(prose))) == paragraphs


def test_quoted_csv_fields_across_pieces_keep_their_line_breaks_and_labels(tmp_path):
    rows = [(str(i % 3 + 1), f"title {i}", f'a "quoted" text\nover two lines {i}') for i in range(30)]
    path = tmp_path / "news.csv"
    path.write_text("".join(f'{a},"{b}","{c.replace(chr(34), chr(34) * 2)}"\n' for a, b, c in rows))
    splits = load_data(str(path))
    got = dict(zip(everything(splits), torch.cat([splits.train.labels, splits.test.labels]).tolist()))
    assert got == {f"{b}\n{c}": int(a) - 1 for a, b, c in rows}
    assert splits.train.classes == ["1", "2", "3"]


@pytest.mark.parametrize("compressed", [False, True])
def test_jsonl_and_gzip_corpora(tmp_path, compressed):
    records = [{"id": i, "text": t, "label": ["neg", "pos", None][i % 3]} for i, t in enumerate(texts())]
    content = "".join(json.dumps(r) + "\n" for r in records)
    path = tmp_path / ("corpus.jsonl.gz" if compressed else "corpus.jsonl")
    path.write_bytes(gzip.compress(content.encode()) if compressed else content.encode())
    splits = load_data(str(path))
    assert sorted(everything(splits)) == sorted(texts())
    assert splits.train.classes == ["neg", "pos"]
    unlabelled = [t for t, label in zip(splits.train.texts, splits.train.labels.tolist()) if label == -1]
    assert sorted(unlabelled) == sorted(r["text"] for r in records if r["label"] is None)


def test_a_parquet_file_of_texts_is_a_corpus(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"sentence": texts(), "n": list(range(40))}), tmp_path / "texts.parquet")
    assert everything(load_data(str(tmp_path / "texts.parquet"))) == texts()


def test_a_bad_jsonl_line_is_one_line_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(DataError, match="line 2 is not a JSON object"):
        load_data(str(tmp_path / "bad.jsonl"))


def test_a_build_that_fails_midway_leaves_no_store_and_the_next_run_builds_it(tmp_path, monkeypatch):
    cache_root = tmp_path / "cache"
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(cache_root))
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(texts()) + "\n")
    original = corpus.CorpusWriter.add
    calls = []

    def dies(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a killed process, part way through
        return original(self, *args)

    monkeypatch.setattr(corpus.CorpusWriter, "add", dies)
    with pytest.raises(KeyboardInterrupt):
        load_data(str(path))
    assert not list(cache_root.glob("*.corpus")) and not list(cache_root.glob("*.corpus.partial*"))
    (cache_root / f"x.corpus.partial-{socket.gethostname()}-999999999").mkdir()  # a process killed outright
    (cache_root / "y.corpus.partial-elsewhere-999999999").mkdir()  # another machine's, on a shared disk
    monkeypatch.setattr(corpus.CorpusWriter, "add", original)
    assert everything(load_data(str(path))) == texts()
    assert sorted(p.name for p in cache_root.iterdir()) == [
        next(cache_root.glob("*.corpus")).name,
        "y.corpus.partial-elsewhere-999999999",
    ]


def test_token_store_equals_encoding_in_memory_and_is_built_once(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(texts()) + "\n")
    documents = load_data(str(path)).train.texts
    tokenizer = train_tokenizer(list(documents), "wordpiece", 200)
    stored = document_ids(tokenizer, documents, 9)
    assert stored.dtype == torch.uint16 and torch.equal(
        stored.long(), encode_documents(tokenizer, list(documents), 9)
    )
    blocks = packed_ids(tokenizer, documents, 16)
    assert torch.equal(blocks.long(), pack_documents(tokenizer, list(documents), 16))
    folders = sorted((documents.directory / "tokens").iterdir())
    assert len(folders) == 2
    stamp = [f.stat().st_mtime_ns for f in folders]
    document_ids(tokenizer, documents, 9), packed_ids(tokenizer, documents, 16)
    assert [f.stat().st_mtime_ns for f in sorted((documents.directory / "tokens").iterdir())] == stamp
    subset = documents.take(np.array([5, 1, 3]))  # another split: its own store, in its order
    assert torch.equal(
        document_ids(tokenizer, subset, 9).long(),
        encode_documents(tokenizer, [texts()[i] for i in (5, 1, 3)], 9),
    )


def test_the_tokenizer_learns_from_a_sample_spread_through_the_corpus():
    corpus_texts = [f"{i:04d}" + "x" * 96 for i in range(1000)]  # 100,000 characters
    sample = list(sample_texts(corpus_texts, 10_000))
    assert len(sample) == 100 and sample[0].startswith("0000") and sample[-1].startswith("0990")
    assert len(list(sample_texts(corpus_texts, 0))) == 1000


def test_a_stray_quote_inside_a_field_does_not_split_or_swallow_records(tmp_path):
    """csv reads a quote inside an unquoted field as a character: the pieces are cut by rows as the
    csv module reads them, not by counting quotes."""
    rows = [f'{i % 2}\tThe {i}" monitor, said "fine"' for i in range(30)] + [
        '1\t"a quoted\nfield over lines"'
    ]
    (tmp_path / "stray.tsv").write_text("label\ttext\n" + "\n".join(rows) + "\n")
    splits = load_data(str(tmp_path / "stray.tsv"))
    assert sorted(everything(splits)) == sorted(
        [f'The {i}" monitor, said "fine"' for i in range(30)] + ["a quoted\nfield over lines"]
    )


def test_documents_views_refuse_indices_out_of_range(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(texts()) + "\n")
    documents = load_data(str(path)).train.texts[:10]
    assert documents.take(np.array([-1, 0]))[0] == texts()[9]
    for bad in ([10], [-11]):
        with pytest.raises(IndexError):
            documents.take(np.array(bad))


def test_a_damaged_gzip_corpus_is_one_line_error(tmp_path):
    (tmp_path / "corpus.txt.gz").write_bytes(b"not gzip at all\n")
    with pytest.raises(DataError, match="cannot read .*corpus.txt.gz"):
        load_data(str(tmp_path / "corpus.txt.gz"))
