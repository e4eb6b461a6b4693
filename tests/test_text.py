"""Text: corpora, tokenizers, BERT/BART noise, the transformers, the three language-model methods,
their runs, evaluation and verbs, and the user's errors."""

import json
import math
import random

import numpy as np
import pytest
import torch

from conftest import SHARED
from selfsup import api, cli, load_encoder
from selfsup.augment.text_noise import (
    IGNORE,
    BartNoise,
    bart_noise,
    infill,
    mlm_mask,
    next_sentence_pairs,
    permute_sentences,
    span_lengths,
    word_starts,
)
from selfsup.data import TextDataset, load_data
from selfsup.data.tokenizer import Vocabulary, encode_documents, pack_documents, train_tokenizer, trim_padding
from selfsup.errors import ConfigError, DataError, SelfsupError
from selfsup.evaluate.tfidf import tfidf_features, tfidf_probe
from selfsup.losses.text import token_cross_entropy
from selfsup.models.text import TextDecoder, TextEncoder, TextTransformer
from selfsup.train import run_pretraining

AG_NEWS = SHARED / "ag_news_test.csv"
SHAKESPEARE = SHARED / "tinyshakespeare.txt"
TINY_TEXT = [
    "model.width=32",
    "model.depth=1",
    "text.vocab_size=300",
    "text.max_length=48",
    "train.batch_size=32",
    "optim.warmup_epochs=0",
    "train.pictures=2",
]
"""Overrides that make a text run take seconds."""

SENTENCES = [
    "The cat sat on the mat.",
    "Stocks fell sharply today!",
    "Is the game on tonight?",
    "Rain is expected tomorrow.",
    "The team won the cup.",
    "Oil prices rose again.",
]


def corpus(n: int = 60) -> list[str]:
    return [" ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 3)) for i in range(n)]


def write_csv(path, rows) -> str:
    path.write_text("".join(",".join(f'"{field}"' for field in row) + "\n" for row in rows))
    return str(path)


@pytest.fixture
def news_csv(tmp_path) -> str:
    """A small AG-News-like CSV: class index, title, description with backslash line breaks."""
    rows = [(str(1 + i % 2), f"Title {i}", text.replace(". ", ".\\")) for i, text in enumerate(corpus(80))]
    return write_csv(tmp_path / "news.csv", rows)


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer(corpus(), "wordpiece", 200)


@pytest.fixture
def ag_news():
    if not AG_NEWS.exists():
        pytest.skip(f"real-data test: {AG_NEWS} is absent (see ../shared/datasets/README.md)")
    return str(AG_NEWS)


# ---- corpora ---------------------------------------------------------------------------------------


def test_ag_news_format_gives_labels_joined_columns_line_breaks_and_a_stratified_split(news_csv):
    splits = load_data(news_csv)
    assert isinstance(splits.train, TextDataset)
    assert (len(splits.train), len(splits.test)) == (64, 16)
    assert splits.train.classes == ["1", "2"]
    assert torch.bincount(splits.test.labels).tolist() == [8, 8]
    text = splits.train.texts[0]
    assert text.startswith("Title ") and "\n" in text and "\\" not in text
    assert not set(splits.train.texts) & set(splits.test.texts)


def test_csv_columns_by_header_name_and_unlabelled_reading(tmp_path):
    path = write_csv(
        tmp_path / "named.csv",
        [("id", "body", "topic")] + [(str(i), t, "ab"[i % 2]) for i, t in enumerate(corpus(20))],
    )
    splits = load_data(path, text_options={"text_column": "body", "label_column": "topic"})
    assert splits.train.classes == ["a", "b"] and splits.train.texts[0] in corpus(20)
    auto = load_data(
        path
    )  # auto: 'topic' names a label, 'body' the text; the id column of numbers is not text
    assert auto.train.classes == ["a", "b"] and auto.train.texts[0] in corpus(20)
    unlabelled = load_data(path, text_options={"text_column": "body", "label_column": "none"})
    assert unlabelled.train.labels is None and len(unlabelled.train) + len(unlabelled.test) == 20


def test_plain_text_documents_are_lines_or_paragraphs_and_the_tail_is_held_out(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(f"line {i}" for i in range(50)) + "\n")
    splits = load_data(str(lines))
    assert len(splits.train) == 45 and splits.test.texts == [f"line {i}" for i in range(45, 50)]
    paragraphs = tmp_path / "play.txt"
    paragraphs.write_text("A:\nHello there.\n\nB:\nGood day.\n\n\nA:\nFarewell.\n")
    splits = load_data(str(paragraphs), text_options={"documents": "auto"})
    assert splits.train.texts == ["A:\nHello there.", "B:\nGood day.", "A:\nFarewell."]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty corpus"),
        (b"  \n\n \n", "empty corpus"),
        (b"good line\n\xff\xfe bad bytes\n", "not UTF-8"),
    ],
)
def test_bad_text_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_data(str(path))


def test_bad_csv_files_give_clear_errors(tmp_path):
    one_class = write_csv(tmp_path / "one.csv", [("1", t) for t in corpus(10)])
    with pytest.raises(DataError, match="one class"):
        load_data(one_class)
    missing = write_csv(tmp_path / "cols.csv", [("text", "label")] + [(t, "x") for t in corpus(10)])
    with pytest.raises(DataError, match="no column 'body'.*columns: text, label"):
        load_data(missing, text_options={"text_column": "body"})
    ragged = tmp_path / "ragged.csv"
    ragged.write_text('"1","a b c"\n"2","d e","f"\n')
    with pytest.raises(DataError, match="line 2 has 3 fields"):
        load_data(str(ragged))


def test_cli_reports_text_data_errors_in_one_line(tmp_path, capsys):
    path = write_csv(tmp_path / "one.csv", [("1", t) for t in corpus(10)])
    assert cli.main(["pretrain", "--method", "mlm", "--data", path, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("selfsup: error:") and "one class" in err and len(err.splitlines()) == 1


def test_image_methods_refuse_text_and_text_methods_refuse_images(news_csv, tmp_path):
    with pytest.raises(DataError, match="learns from images.*holds texts"):
        api.pretrain("simclr", news_csv, out=tmp_path / "a", epochs=1, progress=False)
    with pytest.raises(DataError, match="learns from texts.*holds images"):
        api.pretrain("mlm", "digits", out=tmp_path / "b", epochs=1, progress=False)
    with pytest.raises(ConfigError, match="model.backbone must be transformer"):
        api.pretrain(
            "mlm",
            news_csv,
            out=tmp_path / "c",
            epochs=1,
            overrides=["model.backbone=resnet18"],
            progress=False,
        )


def test_image_verbs_refuse_a_text_corpus(news_csv, tmp_path):
    with pytest.raises(SelfsupError, match="augment.*text corpus"):
        api.augment_grid(news_csv, tmp_path / "grid.png")
    with pytest.raises(SelfsupError, match="ablate.*text corpus"):
        api.ablate("simclr", news_csv, drop=["crop"], out=tmp_path / "ablate", progress=False)


# ---- tokenizers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "char"])
def test_tokenizers_have_the_special_tokens_first_and_encode_documents(kind):
    tokenizer = train_tokenizer(corpus(), kind, 300, lowercase=False)
    assert [tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [
        0,
        1,
        2,
        3,
        4,
    ]
    text = "The cat sat on the mat. Stocks fell sharply today!"
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert (
        tokenizer.decode(ids) == text
    )  # WordPiece's decoder rejoins punctuation; BPE and characters are lossless
    if kind == "char":
        assert len(ids) == len(text)
    docs = encode_documents(tokenizer, [text, "cat"], max_length=8)
    assert docs.shape == (2, 8) and docs[:, 0].tolist() == [2, 2] and docs[0, -1] == 3
    assert (docs[1] == 0).sum() > 0 and 3 in docs[1].tolist()


def test_vocabulary_tables_mark_word_starts_spaces_and_sentence_ends(wordpiece):
    vocab = Vocabulary.of(wordpiece, "wordpiece")
    piece = next(i for t, i in wordpiece.get_vocab().items() if t.startswith("##"))
    assert not vocab.starts_word[piece] and vocab.starts_word[wordpiece.token_to_id("cat")]
    assert (
        vocab.ends_sentence[wordpiece.token_to_id(".")]
        and not vocab.ends_sentence[wordpiece.token_to_id("cat")]
    )
    chars = train_tokenizer(corpus(), "char", 0)
    cvocab = Vocabulary.of(chars, "char")
    assert cvocab.is_space[chars.token_to_id(" ")] and (cvocab.chars[5:] == 1).all()
    ids = torch.tensor([encode_documents(chars, ["the cat"], 16)[0].tolist()])
    assert word_starts(ids, cvocab)[0, 1:8].tolist() == [True, False, False, True, True, False, False]


def test_packing_cuts_the_stream_into_equal_blocks(wordpiece):
    blocks = pack_documents(wordpiece, corpus(30), block=16)
    assert blocks.shape[1] == 16 and blocks[0, 0] == 2 and (blocks != 0).all()
    assert (blocks == 3).sum() >= len(blocks) * 16 // 60  # the documents' [SEP]s are in the stream
    with pytest.raises(ConfigError, match="fewer than one block"):
        pack_documents(wordpiece, ["cat"], block=64)
    padded = torch.tensor([[2, 7, 3, 0, 0], [2, 7, 8, 9, 3]])
    assert trim_padding(padded[:1], multiple=1).tolist() == [[2, 7, 3]]
    assert trim_padding(padded[:1], multiple=4).tolist() == [[2, 7, 3, 0]]
    assert trim_padding(padded[:1]).shape == (1, 5)  # never wider than stored
    wide = torch.zeros(3, 40, dtype=torch.long)
    wide[0, :17] = 5
    assert trim_padding(wide).shape == (3, 32) and trim_padding(wide[:, :20]).shape == (3, 20)


# ---- BERT masking ----------------------------------------------------------------------------------


def test_mlm_masking_follows_bert_15_80_10_10_and_never_touches_special_tokens(wordpiece):
    vocab = Vocabulary.of(wordpiece, "wordpiece")
    torch.manual_seed(0)
    ids = torch.randint(vocab.specials, vocab.size, (400, 100))
    ids[:, 0], ids[:, -1], ids[:, 80:] = 2, 3, 0  # [CLS], [SEP], padding
    ids[:, 79] = 3
    torch.manual_seed(1)
    inputs, targets = mlm_mask(ids, vocab)
    selected = targets != IGNORE
    candidates = ids >= vocab.specials
    assert not (selected & ~candidates).any()
    assert selected.sum() / candidates.sum() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(targets[selected], ids[selected])
    masked = (inputs == vocab.mask) & selected
    kept = (inputs == ids) & selected
    randomised = selected & ~masked & ~kept
    n = selected.sum().item()
    assert masked.sum() / n == pytest.approx(0.8, abs=0.01)
    # a random replacement can draw the original token; the rest of the 10% "random" share is here
    assert randomised.sum() / n == pytest.approx(0.1 * (1 - 1 / (vocab.size - vocab.specials)), abs=0.01)
    assert kept.sum() / n == pytest.approx(0.1, abs=0.01)
    assert (inputs[randomised] >= vocab.specials).all()
    assert torch.equal(inputs[~selected], ids[~selected])
    again, _ = mlm_mask(ids, vocab)
    assert not torch.equal(again, inputs)  # redrawn on every call
    torch.manual_seed(1)
    assert torch.equal(mlm_mask(ids, vocab)[0], inputs)  # and reproducible under a seed


def test_whole_word_masking_selects_all_pieces_of_a_word_together(wordpiece):
    vocab = Vocabulary.of(wordpiece, "wordpiece")
    ids = encode_documents(
        wordpiece, ["catmat stocksfell the rainteam cup " * 6] * 200, 64
    )  # unseen words: several pieces
    starts = word_starts(ids, vocab)
    assert (~starts & (ids >= vocab.specials)).any(), "the test needs words of several pieces"
    torch.manual_seed(1)
    _, targets = mlm_mask(ids, vocab, whole_word=True)
    selected = targets != IGNORE
    word = starts.long().cumsum(dim=1)
    for row in range(len(ids)):
        for w in word[row].unique():
            members = (word[row] == w) & (ids[row] >= vocab.specials)
            if members.any():
                assert selected[row][members].all() or not selected[row][members].any()
    assert 0.08 < selected.sum() / (ids >= vocab.specials).sum() < 0.25


# ---- BART noise ------------------------------------------------------------------------------------


def test_text_infilling_masks_30_percent_in_poisson_spans_each_one_mask():
    rng = np.random.default_rng(0)
    body = list(range(100, 1100))
    removed, spans = [], []
    for _ in range(50):
        out = infill(body, 0.3, 3.0, mask=4, rng=rng)
        assert all(not (a == 4 and b == 4) for a, b in zip(out, out[1:])), "a span is one [MASK]"
        kept = [t for t in out if t != 4]
        assert kept == sorted(kept)  # the remaining tokens keep their order
        removed.append(1 - len(kept) / len(body))
        spans.append(out.count(4))
    # ceil(0.3 n) tokens are drawn for spans; overlaps make the share a little smaller
    assert 0.26 < np.mean(removed) <= 0.3
    # about 0.3 n / λ = 100 spans (λ = 3); spans that overlap or touch become one [MASK]
    assert 60 < np.mean(spans) < 100
    lengths = [span_lengths(300, 3.0, rng) for _ in range(200)]
    assert all(sum(x) == 300 for x in lengths)
    drawn = np.concatenate([x[:-1] for x in lengths])  # the last of each is cut to the budget
    assert drawn.mean() == pytest.approx(3.0, abs=0.05) and drawn.var() == pytest.approx(
        3.0, abs=0.2
    )  # Poisson
    assert (drawn == 0).mean() == pytest.approx(math.exp(-3), abs=0.01)


def test_zero_length_spans_insert_a_mask():
    rng = np.random.default_rng(3)
    inserted = 0
    for _ in range(200):
        out = infill(list(range(10, 20)), 0.1, 0.5, mask=4, rng=rng)  # λ=0.5: most spans have length 0
        kept = [t for t in out if t != 4]
        inserted += out.count(4) > 10 - len(kept)  # more [MASK]s than removed tokens: some were inserted
    assert inserted > 50


def test_sentence_permutation_rotation_masking_and_deletion(wordpiece):
    vocab = Vocabulary.of(wordpiece, "wordpiece")
    ends = vocab.ends_sentence.numpy()
    body = encode_documents(wordpiece, [" ".join(SENTENCES)], 128)[0, 1:-1].tolist()
    rng = np.random.default_rng(0)
    sentences = [tuple(wordpiece.encode(s, add_special_tokens=False).ids) for s in SENTENCES]
    permuted = permute_sentences(body, ends, rng)
    assert sorted(permuted) == sorted(body) and permuted != body

    def split(tokens):
        out, current = [], []
        for t in tokens:
            current.append(t)
            if ends[t]:
                out.append(tuple(current))
                current = []
        return out

    assert sorted(split(permuted)) == sorted(sentences)
    ids = encode_documents(wordpiece, [" ".join(SENTENCES)] * 300, 128)
    torch.manual_seed(0)
    rotated = bart_noise(
        ids, vocab, BartNoise(text_infilling=0, sentence_permutation=False, document_rotation=True), 128
    )
    row = rotated[0][1 : (rotated[0] != 0).sum() - 1].tolist()
    turn = next(k for k in range(len(body)) if body[k:] + body[:k] == row)
    assert rotated[:, 0].eq(2).all() and turn >= 0
    masked = bart_noise(
        ids, vocab, BartNoise(token_masking=0.2, text_infilling=0, sentence_permutation=False), 128
    )
    assert masked.shape == (len(ids), min(-(-ids.shape[1] // 16) * 16, 128))  # lengths in multiples of 16
    assert ((masked == 4).sum() / (ids >= 5).sum()).item() == pytest.approx(0.2, abs=0.01)
    deleted = bart_noise(
        ids, vocab, BartNoise(token_deletion=0.2, text_infilling=0, sentence_permutation=False), 128
    )
    assert 1 - (deleted >= 5).sum() / (ids >= 5).sum() == pytest.approx(0.2, abs=0.01)
    for r in range(5):  # what is left is a subsequence of the original
        it = iter(body)
        assert all(t in it for t in deleted[r][1 : (deleted[r] != 0).sum() - 1].tolist())


def test_next_sentence_pairs_are_half_consecutive_with_segment_ids(wordpiece):
    vocab = Vocabulary.of(wordpiece, "wordpiece")
    ids = encode_documents(wordpiece, corpus(200), 64)
    torch.manual_seed(0)
    pairs, segments, is_next = next_sentence_pairs(ids, vocab)
    assert 0.4 < is_next.float().mean() < 0.6
    assert pairs.shape[1] <= ids.shape[1] and pairs[:, 0].eq(2).all()
    for i in range(len(ids)):
        length = int((pairs[i] != 0).sum())
        seps = (pairs[i, :length] == 3).nonzero().flatten().tolist()
        assert segments[i, : seps[0] + 1].eq(0).all() and segments[i, seps[0] + 1 : length].eq(1).all()
        if is_next[i] and len(seps) == 2:  # A then B is the document itself
            body = ids[i][(ids[i] >= 5)].tolist()
            assert [t for t in pairs[i, :length].tolist() if t >= 5] == body


# ---- models and losses -----------------------------------------------------------------------------


def test_the_causal_transformer_sees_only_the_past_and_padding_changes_nothing():
    torch.manual_seed(0)
    model = TextTransformer(50, 32, 2, 2, 16, causal=True).eval()
    ids = torch.randint(5, 50, (1, 10))
    changed = ids.clone()
    changed[0, 6:] = torch.randint(5, 50, (4,))
    a, b = model(ids), model(changed)
    assert torch.allclose(a[0, :6], b[0, :6], atol=1e-5) and not torch.allclose(a[0, 6:], b[0, 6:])
    bidirectional = TextEncoder(50, 32, 2, 2, 16).eval()
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    two = torch.cat([padded, torch.cat([ids[:, :5], torch.zeros(1, 9, dtype=torch.long)], dim=1)])
    assert torch.allclose(bidirectional(ids), bidirectional(two)[:1], atol=1e-5)
    assert torch.allclose(bidirectional(ids[:, :5]), bidirectional(two)[1:], atol=1e-5)


def test_the_bart_decoder_is_causal_and_reads_the_encoder():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(50, 32)
    decoder = TextDecoder(embedding, 32, 2, 2, 16).eval()
    memory = torch.randn(1, 7, 32)
    free = torch.zeros(1, 7, dtype=torch.bool)
    ids = torch.randint(5, 50, (1, 9))
    changed = ids.clone()
    changed[0, 5:] = torch.randint(5, 50, (4,))
    a, b = decoder(ids, memory, free), decoder(changed, memory, free)
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-5) and not torch.allclose(a[0, 5:], b[0, 5:])
    assert not torch.allclose(a, decoder(ids, memory + 1, free))


def test_token_cross_entropy_is_the_mean_negative_log_likelihood_of_the_kept_targets():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    targets = torch.randint(0, 11, (3, 5))
    targets[0, :2] = IGNORE
    keep = targets != IGNORE
    log_p = logits.log_softmax(dim=-1)
    reference = (
        -sum(log_p[i, j, targets[i, j]] for i in range(3) for j in range(5) if keep[i, j]) / keep.sum()
    )
    assert token_cross_entropy(logits, targets).item() == pytest.approx(reference.item(), rel=1e-6)


def text_run(tmp_path, method, data, *overrides, epochs=2):
    return api.pretrain(
        method,
        data,
        out=tmp_path / method,
        epochs=epochs,
        overrides=TINY_TEXT + list(overrides),
        overwrite=True,
        progress=False,
    )


def test_causal_lm_test_metrics_match_their_definitions(tmp_path, news_csv):
    result = text_run(tmp_path, "causal_lm", news_csv, epochs=1)
    method, _ = api.load_method(result.run_dir, "cpu")
    splits = load_data(news_csv)
    ids = trim_padding(method.encoder.inputs(splits.test)).long()  # stored ids are uint16
    with torch.no_grad():
        logits = method.head(method.encoder.backbone(ids))[:, :-1].float()
    targets = ids[:, 1:]
    keep = targets != 0
    nats = -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)[keep]
    chars = sum(len(t) for t in splits.test.texts)
    metrics = method.derived_metrics(method.test_metrics(ids))
    assert metrics["nats_per_token"] == pytest.approx(nats.mean().item(), rel=1e-4)
    assert metrics["perplexity"] == pytest.approx(math.exp(nats.mean().item()), rel=1e-4)
    # byte-level BPE: characters per token decode exactly (the [SEP]s and line breaks aside)
    assert metrics["nats_per_char"] == pytest.approx(nats.sum().item() / chars, rel=0.05)


# ---- the methods on real data ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, extra",
    [
        ("mlm", []),
        ("mlm", ["method.whole_word=true", "method.next_sentence=true"]),
        ("bart", []),
        ("causal_lm", []),
        ("simcse", []),
        ("electra", []),
    ],
)
def test_text_methods_train_on_ag_news_without_nan_or_collapse(tmp_path, ag_news, method, extra):
    result = text_run(tmp_path, method, ag_news, "text.vocab_size=2000", "model.width=64", *extra, epochs=1)
    history = result.history[-1]
    if method == "electra":  # L_MLM + 50·L_Disc: each term below its chance level
        assert history["generator_loss"] < math.log(2000) and history["discriminator_loss"] < math.log(2)
    assert math.isfinite(result.final_loss) and (method == "electra" or result.final_loss < math.log(2000))
    assert history["embedding_rank"] > 2.0  # the document embeddings span more than a couple of directions
    assert result.test_metrics and all(math.isfinite(v) for v in result.test_metrics.values())
    encoder = load_encoder(result.run_dir)
    texts = TextDataset(["Stocks fell on Wall Street.", "The team won the final.", "A new chip from Intel."])
    features = encoder(encoder.inputs(texts))
    assert features.shape == (3, 64) and torch.isfinite(features).all()
    assert (
        torch.cdist(features, features) + torch.eye(3)
    ).min() > 1e-4  # different texts, different embeddings


def test_electras_discriminator_learns_to_flag_what_the_context_gives_away(tmp_path):
    """Runs of consecutive words (w17 w18 w19 ...): a replacement breaks the run wherever the
    generator puts it, so the discriminator can learn to flag it from its neighbours alone, while
    a word's identity says nothing (the generator samples each word about as often as it occurs).
    Its loss must fall well below the entropy of the base rate, where it would sit if it only
    learned how many tokens are replaced."""
    rng = random.Random(0)
    lines = []
    for _ in range(3000):
        start, length = rng.randrange(150), rng.randrange(10, 40)
        lines.append(" ".join(f"w{(start + k) % 200}" for k in range(length)))
    (tmp_path / "runs.txt").write_text("\n".join(lines) + "\n")
    result = api.pretrain(
        "electra",
        str(tmp_path / "runs.txt"),
        out=tmp_path / "electra",
        epochs=6,
        overrides=["text.vocab_size=400", "model.width=64", "model.depth=2", "text.max_length=48"]
        + ["train.batch_size=64", "optim.warmup_epochs=0"],
        overwrite=True,
        progress=False,
    )
    share = result.test_metrics["replaced_share"]
    base_rate_entropy = -(share * math.log(share) + (1 - share) * math.log(1 - share))
    assert result.history[-1]["discriminator_loss"] < 0.75 * base_rate_entropy
    assert result.test_metrics["detection_recall"] > 0.3
    assert result.test_metrics["detection_accuracy"] > 1 - share + 0.03


def test_char_causal_lm_on_tiny_shakespeare_reports_nats_per_char(tmp_path):
    if not SHAKESPEARE.exists():
        pytest.skip(f"real-data test: {SHAKESPEARE} is absent")
    result = text_run(
        tmp_path,
        "causal_lm",
        str(SHAKESPEARE),
        "text.tokenizer=char",
        "text.lowercase=false",
        "text.pack=true",
        "text.max_length=64",
        "train.batch_size=64",
        "optim.lr=3e-3",
        epochs=1,
    )
    metrics = result.test_metrics
    vocab_size = len(json.loads((result.run_dir / "tokenizer.json").read_text())["model"]["vocab"])
    assert metrics["nats_per_char"] == pytest.approx(
        metrics["nats_per_token"], rel=0.05
    )  # one character per token
    assert metrics["nats_per_char"] < 0.9 * math.log(
        vocab_size
    )  # learned more than the character frequencies' start
    samples = (result.run_dir / "samples.txt").read_text()
    assert samples.count("sample:") == 2


# ---- runs, verbs, evaluation -----------------------------------------------------------------------


def test_bart_run_denoises_and_writes_reconstructions(tmp_path, news_csv, capsys):
    result = text_run(tmp_path, "bart", news_csv)
    assert (result.run_dir / "reconstructions.txt").read_text().count("reconstructed:") == 2
    assert set(json.loads((result.run_dir / "test_metrics.json").read_text())) == {
        "reconstruction_nats",
        "reconstruction_token_accuracy",
    }
    assert (
        cli.main(["denoise", str(result.run_dir), "The cat sat on the mat. Stocks fell sharply today!"]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("noised:") and "reconstructed:" in out
    assert cli.main(["generate", str(result.run_dir)]) == 2
    assert "needs a causal_lm run" in capsys.readouterr().err


def test_causal_lm_generates_from_a_prompt_reproducibly(tmp_path, news_csv, capsys):
    result = text_run(tmp_path, "causal_lm", news_csv)
    first = api.generate(result.run_dir, "The cat", tokens=12, seed=3)
    assert first.startswith("the cat") and len(first) > len("the cat")  # the recipe lower-cases
    assert api.generate(result.run_dir, "The cat", tokens=12, seed=3) == first
    assert (
        cli.main(["generate", str(result.run_dir), "--prompt", "Stocks", "--tokens", "5", "--top-k", "3"])
        == 0
    )
    assert capsys.readouterr().out.startswith("stocks")
    assert cli.main(["denoise", str(result.run_dir), "text"]) == 2


def test_text_evaluation_has_tfidf_finetune_and_scratch_and_refuses_pixels(tmp_path, news_csv):
    result = text_run(
        tmp_path, "mlm", news_csv, "eval.finetune_min_steps=5", "eval.finetune_epochs=1", epochs=1
    )
    evaluation = api.evaluate(
        result.run_dir,
        labels=["4/class"],
        seeds=2,
        protocols=["knn", "linear", "finetune", "scratch", "tfidf"],
        progress=False,
    )
    rows = {r["protocol"]: r for r in evaluation["results"]}
    assert set(rows) == {"knn", "linear", "finetune", "scratch", "tfidf"}
    assert all(0 <= r["mean"] <= 1 and len(r["accuracies"]) == 2 for r in rows.values())
    assert rows["tfidf"]["mean"] > 0.6  # above chance (0.5) on the toy texts
    with pytest.raises(ConfigError, match="protocol 'pixels' is for images"):
        api.evaluate(result.run_dir, protocols=["pixels"], progress=False)
    out = api.embed(result.run_dir, news_csv, tmp_path / "emb.npy")
    assert np.load(out).shape == (80, 32)


def test_tfidf_baseline_separates_texts_by_their_words():
    sport = [f"the team won match {i} with a goal" for i in range(30)]
    money = [f"the bank raised rate {i} on its shares" for i in range(30)]
    texts = [t for pair in zip(sport, money) for t in pair]
    labels = torch.tensor([0, 1] * 30)
    index = torch.arange(10)
    train_x, test_x = tfidf_features(texts, texts[10:])
    predicted, detail = tfidf_probe(train_x[index.numpy()], labels[index], test_x, seed=0)
    assert torch.equal(predicted, labels[10:]) and detail["selection"] == "cross-validated"


def test_a_killed_text_run_resumes_exactly(tmp_path, news_csv):
    """Tokenizer, length-grouped batches, masks and BART noise all continue as in an uninterrupted run."""

    class Killed(Exception):
        pass

    def kill_after_first_epoch(record, method):
        if record["epoch"] == 1:
            raise Killed

    config, splits = api.resolve("bart", news_csv, overrides=TINY_TEXT + ["train.epochs=2"])
    straight = run_pretraining(config, splits, tmp_path / "straight", progress=False)
    with pytest.raises(Killed):
        run_pretraining(
            config, splits, tmp_path / "killed", progress=False, on_epoch_end=kill_after_first_epoch
        )
    resumed = run_pretraining(config, splits, tmp_path / "killed", resume=True, progress=False)
    assert resumed.final_loss == straight.final_loss
    assert resumed.test_metrics == straight.test_metrics


def test_unlabelled_corpus_trains_and_has_test_metrics_but_cannot_be_evaluated(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(corpus(100)))
    result = text_run(tmp_path, "mlm", str(path), epochs=1)
    assert "masked_token_accuracy" in result.test_metrics
    with pytest.raises(DataError, match="no labels"):
        api.evaluate(result.run_dir, progress=False)
    assert (
        json.loads((result.run_dir / "encoder.json").read_text())["encoder"]["tokenizer_kind"] == "wordpiece"
    )


@pytest.mark.parametrize(
    "method, causal",
    [("mlm", False), ("bart", False), ("causal_lm", True), ("simcse", False), ("electra", False)],
)
def test_text_recipes_name_their_source_and_build_the_right_encoder(method, causal, news_csv):
    from selfsup.methods.recipes import build_config
    from selfsup.train.modality import build_text_inputs

    config = build_config(method, small_images=False)
    assert (
        config.recipe == f"{method}.yaml"
        and len(config.source) > 20
        and config.model.backbone == "transformer"
    )
    config.model.width, config.text.vocab_size = 32, 200
    encoder, train, test = build_text_inputs(config, load_data(news_csv))
    assert encoder.spec["causal"] is causal and train.shape[0] == 64 and test.shape[0] == 16


def test_invalid_text_options_are_refused(news_csv, tmp_path):
    for override, message in [
        ("text.tokenizer=sentencepiece", "text.tokenizer"),
        ("text.max_length=2", "max_length"),
        ("method.mask_prob=1.5", "mask_prob"),
    ]:
        with pytest.raises(ConfigError, match=message):
            api.pretrain(
                "mlm",
                news_csv,
                out=tmp_path / "x",
                epochs=1,
                overrides=TINY_TEXT + [override],
                progress=False,
            )
    with pytest.raises(ConfigError, match="text_infilling"):
        api.pretrain(
            "bart",
            news_csv,
            out=tmp_path / "y",
            epochs=1,
            overrides=TINY_TEXT + ["method.text_infilling=1.2"],
            progress=False,
        )


def test_selected_positions_meet_the_output_layer_in_multiples_of_rows():
    from selfsup.methods.text import ROW_MULTIPLE, predict_selected

    torch.manual_seed(0)
    head, seen = torch.nn.Linear(8, 5), []
    head.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    states = torch.randn(3, 30, 8, requires_grad=True)
    selected = torch.rand(3, 30) < 0.3
    logits = predict_selected(head, states, selected)
    assert torch.allclose(logits, head(states[selected]), atol=1e-6) and seen[0] % ROW_MULTIPLE == 0
    logits.sum().backward()
    assert torch.equal(states.grad[~selected], torch.zeros_like(states.grad[~selected]))
