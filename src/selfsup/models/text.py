"""Small transformers for text, built from PyTorch's own layers.

One pre-norm block (``vit.transformer_block``: attention and a 4× GELU MLP, as in GPT-2 and MAE)
serves the bidirectional encoder (BERT, BART's encoder), the decoder-only causal language model
(GPT) and, with cross-attention, BART's decoder. Token and learned position embeddings; the output
layer is tied to the token embedding (BERT, GPT-2, BART all tie it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.tokenizer import Vocabulary, trim_padding
from selfsup.data.tokens import document_ids
from selfsup.errors import DataError
from selfsup.models.vit import init_transformer, transformer_block


def init_text(module: nn.Module) -> None:
    """Xavier-uniform linear layers, unit LayerNorms (as the ViT) and N(0, 0.02) embeddings (BERT, GPT-2)."""
    init_transformer(module)
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)


def causal_mask(length: int, device: torch.device) -> torch.Tensor:
    """L×L boolean mask, True above the diagonal: position i may not attend to j > i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


def padding_mask(ids: torch.Tensor) -> torch.Tensor | None:
    """N×L bool, True at padding (id 0), the keys no position may attend to; None where there is none
    (always the mask while ``torch.export`` traces: whether a batch pads depends on its data)."""
    padding = ids == 0
    if torch.compiler.is_exporting():
        return padding
    return padding if bool(padding.any()) else None


class TokenEmbedding(nn.Module):
    """Token + learned position (+ optional segment) embeddings: ids N×L -> N×L×dim."""

    def __init__(self, vocab_size: int, dim: int, max_length: int, segments: int = 0):
        super().__init__()
        self.max_length = max_length
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Embedding(max_length, dim)
        self.segments = nn.Embedding(segments, dim) if segments else None

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        if ids.shape[1] > self.max_length:
            raise ValueError(
                f"sequence of {ids.shape[1]} tokens is longer than the model's {self.max_length}"
            )
        x = self.tokens(ids) + self.positions.weight[: ids.shape[1]]
        if self.segments is not None and segments is not None:
            x = x + self.segments(segments)
        return x


class TextTransformer(nn.Module):
    """A stack of pre-norm blocks over token embeddings: ids N×L -> states N×L×dim (final LayerNorm).

    ``causal``: each position attends only to itself and earlier ones (a decoder-only LM); otherwise
    to every non-padding position. Padding (id 0) is never attended to. ``dropout``: BERT-style
    dropout on the embeddings, the attention weights and the residual branches (in train mode only;
    0 by default, as selfsup's language-model recipes; SimCSE's noise).
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        depth: int,
        heads: int,
        max_length: int,
        causal: bool = False,
        segments: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.causal = causal
        self.embed = TokenEmbedding(vocab_size, dim, max_length, segments)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(transformer_block(dim, heads, dropout=dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        init_text(self)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        x = self.drop(self.embed(ids, segments))
        padding = padding_mask(ids)
        mask = causal_mask(ids.shape[1], ids.device) if self.causal else None
        for block in self.blocks:
            x = block(x, src_mask=mask, src_key_padding_mask=padding, is_causal=self.causal)
        return self.norm(x)


class TextDecoder(nn.Module):
    """BART's decoder: causal pre-norm blocks with cross-attention to the encoder's states; it
    shares the encoder's token embedding (``tokens``) and has its own positions."""

    def __init__(self, tokens: nn.Embedding, dim: int, depth: int, heads: int, max_length: int):
        super().__init__()
        self.tokens = tokens
        self.positions = nn.Embedding(max_length, dim)
        self.blocks = nn.ModuleList(
            transformer_block(dim, heads, nn.TransformerDecoderLayer) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        init_text(self.blocks)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, ids: torch.Tensor, memory: torch.Tensor, memory_padding: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions.weight[: ids.shape[1]]
        mask = causal_mask(ids.shape[1], ids.device)
        padding = padding_mask(ids)
        for block in self.blocks:
            x = block(
                x,
                memory,
                tgt_mask=mask,
                tgt_key_padding_mask=padding,
                memory_key_padding_mask=memory_padding,
                tgt_is_causal=True,
            )
        return self.norm(x)


class LMHead(nn.Module):
    """Token logits from states, the output matrix tied to the token embedding, plus a bias;
    ``transform``: BERT's dense + GELU + LayerNorm before it (GPT-2 and BART have none)."""

    def __init__(self, tokens: nn.Embedding, transform: bool = False):
        super().__init__()
        dim = tokens.embedding_dim
        self.tokens = tokens
        self.transform = (
            nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim, eps=1e-12)) if transform else None
        )
        self.bias = nn.Parameter(torch.zeros(tokens.num_embeddings))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if self.transform is not None:
            states = self.transform(states)
        return F.linear(states, self.tokens.weight, self.bias)


class BaseTextEncoder(nn.Module):
    """What every text encoder offers the methods and the evaluation: token ids N×L -> document
    embeddings N×dim (mean of the final states over the non-padding tokens, or the first token's
    state with ``pooling='first'``); ``backbone(ids)`` -> states N×L×dim; ``lm_head()``, the
    output layer giving token logits; a ``tokenizer`` and its ``vocab`` (:meth:`attach_tokenizer`);
    :meth:`inputs` turns texts into ids. Subclasses set ``spec``, ``backbone``, ``out_dim``,
    ``max_length`` and ``pooling``."""

    spec: dict
    max_length: int
    pooling: str = "mean"
    tokenizer = None
    vocab: Vocabulary | None = None

    def attach_tokenizer(self, tokenizer) -> BaseTextEncoder:
        self.tokenizer = tokenizer
        self.vocab = Vocabulary.of(tokenizer, self.spec["tokenizer_kind"])
        return self

    def lm_head(self, transform: bool = False) -> nn.Module:
        """The output layer: states …×dim -> logits …×vocabulary (``transform``: BERT's dense +
        GELU + LayerNorm first, where the encoder builds one)."""
        raise NotImplementedError

    def inputs(self, dataset) -> torch.Tensor:
        """Token ids of a :class:`TextDataset`'s documents (``[CLS] … [SEP]``, padded, at most
        ``max_length``)."""
        if not hasattr(dataset, "texts"):
            raise DataError("this encoder was trained on text; give it a text corpus (.txt, .csv, .tsv)")
        return document_ids(self.tokenizer, dataset.texts, self.max_length)

    def pool(self, states: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Document embeddings N×dim from states N×L×dim of ``ids`` N×L."""
        if self.pooling == "first":
            return states[:, 0]
        keep = (ids != 0).unsqueeze(-1).to(states.dtype)
        return (states * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = trim_padding(ids).long()  # stored ids may be uint16
        return self.pool(self.backbone(ids), ids)


class TextEncoder(BaseTextEncoder):
    """selfsup's own text encoder: a :class:`TextTransformer` with its tokenizer trained on the
    corpus. ``spec`` rebuilds it; the tokenizer is attached from the run directory's
    ``tokenizer.json``. A spec saved before an option existed (e.g. ``dropout``) takes its default."""

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        depth: int,
        heads: int,
        max_length: int,
        causal: bool = False,
        segments: int = 0,
        pooling: str = "mean",
        tokenizer_kind: str = "wordpiece",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.spec = dict(
            modality="text",
            vocab_size=vocab_size,
            dim=dim,
            depth=depth,
            heads=heads,
            max_length=max_length,
            causal=causal,
            segments=segments,
            pooling=pooling,
            tokenizer_kind=tokenizer_kind,
            dropout=dropout,
        )
        self.backbone = TextTransformer(vocab_size, dim, depth, heads, max_length, causal, segments, dropout)
        self.out_dim = dim
        self.max_length = max_length
        self.pooling = pooling

    def lm_head(self, transform: bool = False) -> nn.Module:
        return LMHead(self.backbone.embed.tokens, transform)

    @classmethod
    def from_spec(cls, spec: dict, tokenizer) -> TextEncoder:
        """An untrained encoder of a saved ``spec`` with ``tokenizer`` attached."""
        return cls(**{k: v for k, v in spec.items() if k != "modality"}).attach_tokenizer(tokenizer)

    def fresh(self) -> TextEncoder:
        """An untrained encoder of the same architecture and tokenizer (the from-scratch baseline)."""
        return TextEncoder.from_spec(self.spec, self.tokenizer)
