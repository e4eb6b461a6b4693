"""Token ids of a corpus, stored once and read memory-mapped (as nanoGPT's ``train.bin``): the
documents of a corpus store (:class:`~selfsup.data.corpus.Documents`) are encoded a few thousand at
a time into a file beside the store, so a corpus need not fit in memory as text or as tokens.

Two forms, both uint16 where the vocabulary fits (else int32): documents, N×``max_length`` rows of
``[CLS] tokens [SEP]`` right-padded with ``[PAD]`` (0), viewed up to the longest document; and
the packed stream (``[CLS]``, then each document followed by ``[SEP]``) viewed as blocks. A store
is named by the tokenizer, the form, the length and the documents it holds, so a new tokenizer or
another split writes another; it appears by one rename when complete. Documents held in a list
(not a store) are encoded in memory, as before.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from selfsup.atomic import WriteError, cache_failure, write_text
from selfsup.data.corpus import Documents
from selfsup.data.folders import local_rank, partial_suffix, publish, remove_dead_partials, wait_for
from selfsup.data.tokenizer import UNKNOWN_SAMPLE_CHARS, encode_documents, pack_documents, token_lists
from selfsup.errors import ConfigError, DataError

TOKENS_FORMAT = 1
ENCODE_CHUNK = 4096
"""Documents encoded at a time."""
IDS_FILE, META_FILE = "ids.bin", "tokens.json"


def document_ids(tokenizer, texts: Sequence[str], max_length: int) -> torch.Tensor:
    """Token ids N×L of each document (``[CLS] tokens [SEP]``, cut to ``max_length``, right-padded
    to the longest), int64 from a list, uint16/int32 memory-mapped from a corpus store. Raises
    :class:`ConfigError` where ``max_length`` < 3."""
    if max_length < 3:
        raise ConfigError(f"text.max_length must be at least 3, got {max_length}")
    stored = _stored(tokenizer, texts, "documents", max_length)
    return stored if stored is not None else encode_documents(tokenizer, list(texts), max_length)


def packed_ids(tokenizer, texts: Sequence[str], block: int) -> torch.Tensor:
    """The documents as one stream (``[CLS]``, then each followed by ``[SEP]``) cut into blocks
    N×``block``; the last partial block is dropped. Raises :class:`ConfigError` where the corpus
    holds less than one block."""
    stored = _stored(tokenizer, texts, "packed", block)
    return stored if stored is not None else pack_documents(tokenizer, list(texts), block)


def row_lengths(ids: torch.Tensor, rows: int = 65536) -> torch.Tensor:
    """The non-padding tokens of each row of ``ids`` (int64, N), a few rows at a time (a stored
    corpus is never compared whole)."""
    return torch.cat([(part != 0).sum(dim=1) for part in ids.split(rows)]) if len(ids) else torch.zeros(0)


def sample_texts(texts: Sequence[str], characters: int) -> Iterator[str]:
    """Documents spread evenly through ``texts`` holding about ``characters`` characters (0: all),
    one at a time: the bounded sample a tokenizer is trained on."""
    total = texts.characters() if isinstance(texts, Documents) else sum(len(t) for t in texts)
    stride = max(1, -(-total // characters)) if characters > 0 else 1
    for i in range(0, len(texts), stride):
        yield texts[i]


def check_known_tokens(tokenizer, texts: Sequence[str], max_unknown: float, advice: str) -> float:
    """The share of ``[UNK]`` (id 1) among the tokens of about
    :data:`~selfsup.data.tokenizer.UNKNOWN_SAMPLE_CHARS` characters of ``texts``, spread through
    them. Raises :class:`DataError` where it is above ``max_unknown`` (``text.max_unknown``): a
    model of such tokens learns nothing of the text, so the run stops before training, saying
    what to do (``advice``)."""
    ids = token_lists(tokenizer, list(sample_texts(texts, UNKNOWN_SAMPLE_CHARS)))
    total = sum(len(row) for row in ids)
    share = sum(row.count(1) for row in ids) / total if total else 0.0
    if share > max_unknown:
        raise DataError(
            f"{share:.0%} of the tokens of a sample of the training text ({total} tokens) are [UNK], "
            f"the unknown token: {advice} (text.max_unknown={max_unknown:g} sets the share allowed)"
        )
    return share


def _stored(tokenizer, texts: Sequence[str], form: str, length: int) -> torch.Tensor | None:
    """The ids of ``texts`` from their token store (built first); None where ``texts`` are no
    corpus store or the store's folder cannot be written (they are then encoded in memory)."""
    if not isinstance(texts, Documents) or not texts.persistent:
        return None
    digest = hashlib.sha256(f"{TOKENS_FORMAT}|{form}|{length}|{tokenizer.to_str()}".encode())
    digest.update(texts.key())
    folder = texts.directory / "tokens" / digest.hexdigest()[:24]
    if not (folder / META_FILE).exists() and local_rank() > 0:
        wait_for(folder, META_FILE, "the token ids of the corpus")  # local rank 0 writes them
    if not (folder / META_FILE).exists():
        try:
            _build(folder, tokenizer, texts, form, length)
        except (OSError, WriteError) as exc:
            warnings.warn(
                f"could not store the token ids in {folder.parent} ({cache_failure(exc)}); "
                "encoding them in memory"
            )
            return None
    meta = json.loads((folder / META_FILE).read_text())
    if form == "packed" and meta["blocks"] == 0:
        raise ConfigError(
            f"the corpus has {meta['tokens']} tokens, fewer than one block of text.max_length={length}"
        )
    dtype = np.dtype(meta["dtype"])
    if form == "packed":
        ids = np.memmap(folder / IDS_FILE, dtype=dtype, mode="c", shape=(meta["blocks"] * length,))
        return torch.from_numpy(ids).view(meta["blocks"], length)
    ids = np.memmap(folder / IDS_FILE, dtype=dtype, mode="c", shape=(meta["rows"], length))
    return torch.from_numpy(ids)[:, : meta["longest"]]


def _build(folder: Path, tokenizer, texts: Documents, form: str, length: int) -> None:
    partial = folder.with_name(f"{folder.name}.{partial_suffix()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    remove_dead_partials(folder.parent)
    try:
        _write_ids(partial, tokenizer, texts, form, length)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    publish(partial, folder, META_FILE)


def _write_ids(partial: Path, tokenizer, texts: Documents, form: str, length: int) -> None:
    dtype = np.dtype(np.uint16 if tokenizer.get_vocab_size() <= 2**16 else np.int32)
    tokens, longest = 0, 0
    with open(partial / IDS_FILE, "wb") as handle:
        if form == "packed":
            handle.write(np.asarray([2], dtype=dtype).tobytes())
            tokens = 1
        for batch in texts.batches(ENCODE_CHUNK):
            lists = token_lists(tokenizer, batch)
            if form == "packed":
                stream = np.fromiter((t for ids in lists for t in (*ids, 3)), dtype=dtype)
                handle.write(stream.tobytes())
                tokens += len(stream)
            else:
                rows = np.zeros((len(lists), length), dtype=dtype)
                for i, ids in enumerate(lists):
                    row = [2, *ids[: length - 2], 3]
                    rows[i, : len(row)] = row
                    longest = max(longest, len(row))
                handle.write(rows.tobytes())
    if form == "packed":  # the partial last block stays in the file, outside the view
        meta = {"dtype": dtype.name, "tokens": tokens, "blocks": tokens // length}
    else:
        meta = {"dtype": dtype.name, "rows": len(texts), "longest": longest}
    write_text(partial / META_FILE, json.dumps(meta))
