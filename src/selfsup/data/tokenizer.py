"""Tokenizers trained on the corpus with Hugging Face ``tokenizers``, and documents as token-id tensors.

Three kinds, each normalising the text as said here:

* ``wordpiece`` (BERT): Unicode NFC (a letter and its accent written as one character or two
  are the same), BERT's cleaning (control characters removed, white space as spaces, Chinese
  characters as words), lower-casing if asked; split on white space and punctuation, words cut
  into pieces of at most :data:`MAX_WORD_CHARS` characters, ``##`` continuations.
* ``bpe`` (GPT-2/BART): byte-level BPE, lossless: no normalisation but lower-casing if asked.
* ``char`` (one token per character, for character-level language models): NFC, lower-casing if
  asked.

Accents and other combining marks are kept: they tell words apart (``hacia``/``hacía``,
``papa``/``papá``, Hindi ``कुल``/``कल``). BERT's own tokenizer strips them whenever it
lower-cases; here that is a separate choice (``strip_accents``). Every kind has the same special
tokens; a document is encoded as ``[CLS] tokens [SEP]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from selfsup.atomic import write_text
from selfsup.errors import ConfigError, SelfsupError

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]  # ids 0..4 in this order
TOKENIZER_FILE = "tokenizer.json"
KINDS = ("wordpiece", "bpe", "char")
SENTENCE_END = ".!?"
MAX_WORD_CHARS = 100
"""WordPiece cuts longer words (protein sequences, URLs, words of scripts without spaces) into
pieces of this length before its own matching, which turns a longer word into one ``[UNK]`` and
costs time cubic in the word's length."""
UNKNOWN_SAMPLE_CHARS = 1_000_000
"""Characters of the training text, spread through it, whose share of ``[UNK]`` is counted."""
MASK_MARK = (
    "<mask>"  # how texts show [MASK], and how a user writes one where masks are meant (`selfsup denoise`)
)


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise SelfsupError(
            "text methods need the 'tokenizers' package: pip install 'selfsup[text]'"
        ) from None
    return tokenizers


def train_tokenizer(
    texts: list[str],
    kind: str = "wordpiece",
    vocab_size: int = 8000,
    lowercase: bool = True,
    strip_accents: bool = False,
):
    """A ``tokenizers.Tokenizer`` of ``kind`` trained on ``texts`` with at most ``vocab_size`` tokens
    (``char``: every character of the corpus, whatever ``vocab_size``), normalising as the module
    docstring says; ``strip_accents`` removes accents and other combining marks (BERT's
    ``strip_accents``; not for ``bpe``, which stays lossless)."""
    tk = _tokenizers()
    if kind not in KINDS:
        raise ConfigError(f"text.tokenizer must be one of {', '.join(KINDS)}, got '{kind}'")
    if strip_accents and kind == "bpe":
        raise ConfigError("text.strip_accents does not apply to text.tokenizer=bpe, which is lossless")
    if kind == "wordpiece":
        tokenizer = tk.Tokenizer(tk.models.WordPiece(unk_token=UNK, max_input_chars_per_word=MAX_WORD_CHARS))
        tokenizer.normalizer = tk.normalizers.Sequence(
            [
                tk.normalizers.NFC(),
                tk.normalizers.BertNormalizer(lowercase=lowercase, strip_accents=strip_accents),
            ]
        )
        tokenizer.pre_tokenizer = tk.pre_tokenizers.Sequence(
            [
                tk.pre_tokenizers.BertPreTokenizer(),
                tk.pre_tokenizers.Split(tk.Regex(rf"[\s\S]{{1,{MAX_WORD_CHARS}}}"), "isolated"),
            ]
        )
        tokenizer.decoder = tk.decoders.WordPiece()
        trainer = tk.trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False
        )
    elif kind == "bpe":
        tokenizer = tk.Tokenizer(tk.models.BPE())
        if lowercase:
            tokenizer.normalizer = tk.normalizers.Lowercase()
        tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
            initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        )
    else:
        tokenizer = tk.Tokenizer(tk.models.BPE(unk_token=UNK))
        steps = [tk.normalizers.NFC()] + [tk.normalizers.Lowercase()] * lowercase
        if strip_accents:
            steps += [tk.normalizers.NFD(), tk.normalizers.StripAccents(), tk.normalizers.NFC()]
        tokenizer.normalizer = tk.normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = tk.pre_tokenizers.Split(tk.Regex(r"[\s\S]"), "isolated")
        tokenizer.decoder = tk.decoders.Fuse()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=1, special_tokens=SPECIAL_TOKENS, show_progress=False
        )  # no merges
    tokenizer.train_from_iterator(texts, trainer)
    if [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise SelfsupError("the trained tokenizer did not give the special tokens ids 0-4")
    return tokenizer


def save_tokenizer(tokenizer, run_dir: Path) -> None:
    write_text(Path(run_dir) / TOKENIZER_FILE, tokenizer.to_str(pretty=True))


def load_tokenizer(run_dir: Path):
    path = Path(run_dir) / TOKENIZER_FILE
    if not path.exists():
        raise SelfsupError(f"no tokenizer in {run_dir} (expected {TOKENIZER_FILE})")
    return _tokenizers().Tokenizer.from_file(str(path))


@dataclass
class Vocabulary:
    """What the text methods need to know of a tokenizer's tokens (tables indexed by token id).

    ``starts_word``: the token begins a new word (WordPiece: no ``##``; byte-level BPE and characters:
    it begins with white space); ``is_space``: the token is white space (the next token begins a
    word); ``ends_sentence``: the token ends with . ! or ?; ``chars``: characters it stands for
    (WordPiece: its letters plus the space before a word, an approximation).
    """

    size: int
    kind: str
    starts_word: torch.Tensor
    is_space: torch.Tensor
    ends_sentence: torch.Tensor
    chars: torch.Tensor
    pad: int = 0
    unk: int = 1
    cls: int = 2
    sep: int = 3
    mask: int = 4
    specials: int = len(SPECIAL_TOKENS)  # ids below this are special; random replacements are drawn above it

    @classmethod
    def of(cls, tokenizer, kind: str) -> Vocabulary:
        size = tokenizer.get_vocab_size()
        starts, space, ends, chars = (
            torch.zeros(size, dtype=torch.bool),
            torch.zeros(size, dtype=torch.bool),
            torch.zeros(size, dtype=torch.bool),
            torch.zeros(size),
        )
        for token, index in tokenizer.get_vocab().items():
            if index < len(SPECIAL_TOKENS):
                continue
            if kind == "wordpiece":
                text = token[2:] if token.startswith("##") else token
                starts[index] = not token.startswith("##")
                chars[index] = len(text) + (not token.startswith("##"))
            else:
                text = tokenizer.decode([index])
                starts[index] = text[:1].isspace()
                space[index] = text != "" and text.isspace()
                chars[index] = len(text)
            ends[index] = text.rstrip()[-1:] in tuple(SENTENCE_END) if text.strip() else False
        return cls(size, kind, starts, space, ends, chars)


def token_lists(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without ``[CLS]``/``[SEP]``. A literal ``[PAD]``, ``[MASK]``, ...
    in a text is text, never a control token: padding, masks and document bounds come from
    selfsup alone (Hugging Face matches added tokens in the input unless told not to, and does not
    save that setting in ``tokenizer.json``, so it is set here)."""
    tokenizer.encode_special_tokens = True
    return [encoding.ids for encoding in tokenizer.encode_batch(texts, add_special_tokens=False)]


def encode_documents(tokenizer, texts: list[str], max_length: int) -> torch.Tensor:
    """Token ids N×L (int64): ``[CLS] tokens [SEP]`` per document, cut to ``max_length`` (the last
    token then being ``[SEP]``), right-padded with ``[PAD]`` (0) to the longest document."""
    if max_length < 3:
        raise ConfigError(f"text.max_length must be at least 3, got {max_length}")
    return pad_rows([[2] + ids[: max_length - 2] + [3] for ids in token_lists(tokenizer, texts)])


def encode_marked_masks(tokenizer, text: str, max_length: int) -> torch.Tensor:
    """Token ids 1×L of one document (as :func:`encode_documents`) where each ``<mask>`` in
    ``text`` is the ``[MASK]`` token: the one place where a user's text asks for a control token."""
    ids = []
    for i, piece in enumerate(token_lists(tokenizer, text.split(MASK_MARK))):
        ids += ([4] if i else []) + piece
    return pad_rows([[2] + ids[: max_length - 2] + [3]])


def pad_rows(rows: list[list[int]], length: int | None = None) -> torch.Tensor:
    """Rows of token ids as N×L int64, each cut to ``length`` (default: the longest row's) and
    right-padded with ``[PAD]`` (0)."""
    length = max((len(row) for row in rows), default=0) if length is None else length
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        row = row[:length]
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def pack_documents(tokenizer, texts: list[str], block: int) -> torch.Tensor:
    """The corpus as one stream (``[CLS]`` then each document followed by ``[SEP]``) cut into
    blocks N×``block``, as language models train on running text; the last partial block is dropped."""
    stream = [2]
    for ids in token_lists(tokenizer, texts):
        stream += ids + [3]
    count = len(stream) // block
    if count == 0:
        raise ConfigError(
            f"the corpus has {len(stream)} tokens, fewer than one block of text.max_length={block}"
        )
    return torch.tensor(stream[: count * block]).view(count, block)


IGNORE = -100
"""The target of a token that no loss predicts (PyTorch's ``cross_entropy`` default ``ignore_index``)."""

LENGTH_MULTIPLE = 16
"""Batches of token ids are cut to a multiple of this many positions (or their stored width).
PyTorch's CPU attention in bf16 keeps kernels and buffers for every sequence length it meets
(2.14: about 7 MB each for 64×4 heads, never freed); a batch as long as its longest text gave
every step a new length, and one MLM epoch on AG News grew by 0.9 GB. With multiples of 16 a
run meets at most max_length / 16 lengths; the padding costs at most 15 masked positions."""


def trim_padding(ids: torch.Tensor, pad: int = 0, multiple: int = LENGTH_MULTIPLE) -> torch.Tensor:
    """Drop the trailing columns that are padding in every row (a batch is only as long as its
    longest text), keeping a multiple of ``multiple`` columns (:data:`LENGTH_MULTIPLE`) where the
    batch is that wide: everything up to each row's last non-padding token is kept."""
    used = (ids != pad).any(dim=0).nonzero()
    length = max(int(used[-1]) + 1 if len(used) else 0, 1)
    return ids[:, : min(-(-length // multiple) * multiple, ids.shape[1])]
