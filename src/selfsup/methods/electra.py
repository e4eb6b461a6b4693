"""ELECTRA (Clark, Luong, Le & Manning 2020, "ELECTRA: Pre-training Text Encoders as
Discriminators Rather Than Generators"; official code: google-research/electra).

A small generator, trained as a masked LM, fills the masked positions with tokens sampled from its
output distribution (no gradient through the sampling); the discriminator, the encoder that the
evaluation keeps, predicts for every non-padding token whether it was replaced. A sample equal to
the original token counts as original. The loss is L_MLM + λ·L_Disc, λ = 50.

As the official code: 15% of the non-special tokens are selected, 85% of them become [MASK] and the
rest stay as they are (no random tokens; ``pretrain_helpers.mask``); the generator has the
discriminator's depth and a quarter of its width (``generator_hidden_size=0.25``, its heads scaled
alike, its MLP 4× its width) and shares the discriminator's token and position embeddings
(``untied_generator_embeddings=False``): they are projected by a linear layer to the generator's
width, and its output layer maps back to the embedding width (dense, GELU, LayerNorm) before the
tied output matrix, as BERT's ``embeddings_project`` and ELECTRA's masked-LM head do. The
discriminator's head is dense + GELU + a logit per token. Generator samples never take a special
id other than [UNK] (selfsup reads id 0 as padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.augment.text_noise import IGNORE, mlm_mask
from selfsup.data.tokenizer import trim_padding
from selfsup.distributed import global_mean
from selfsup.errors import ConfigError
from selfsup.losses import replaced_token_detection_loss
from selfsup.losses.text import token_cross_entropy, token_loss
from selfsup.methods.base import PICTURES, TEST_METRICS, MethodOutput, Progress
from selfsup.methods.text import (
    EXAMPLES,
    TextMethod,
    predict_selected,
    predicted_accuracy,
)
from selfsup.models.text import TextEncoder, TokenEmbedding, init_text, padding_mask
from selfsup.models.vit import transformer_block


@dataclass
class ELECTRAParams:
    """ELECTRA's settings; defaults from the paper and google-research/electra's
    ``configure_pretraining.py``."""

    mask_prob: float = 0.15  # share of the non-special tokens the generator fills in
    mask_token: float = 0.85  # of those: replaced by [MASK] in the generator's input (the rest kept)
    disc_weight: float = 50.0  # λ, the weight of the discriminator's loss
    generator_size: float = 0.25  # generator width (and heads) as a fraction of the discriminator's
    generator_layers: float = 1.0  # generator depth as a fraction of the discriminator's
    temperature: float = 1.0  # of the generator's sampling
    tie_embeddings: bool = True  # the generator shares the discriminator's token and position embeddings


class Generator(nn.Module):
    """The masked-LM generator: ids N×L -> states N×L×width, and token logits from states.
    ``embed``: the discriminator's :class:`TokenEmbedding` to share (projected to ``width`` when
    its width differs), or None for the generator's own."""

    def __init__(
        self, embed: TokenEmbedding | None, vocab_size: int, width: int, depth: int, heads: int, length: int
    ):
        super().__init__()
        own = embed is None
        self.embed = TokenEmbedding(vocab_size, width, length) if own else embed
        size = self.embed.tokens.embedding_dim
        self.project = nn.Linear(size, width) if size != width else nn.Identity()
        self.blocks = nn.ModuleList(transformer_block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.transform = nn.Sequential(nn.Linear(width, size), nn.GELU(), nn.LayerNorm(size, eps=1e-12))
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        init_text(nn.ModuleList([self.project, self.blocks, self.norm, self.transform]))
        if own:
            init_text(self.embed)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.project(self.embed(ids))
        padding = padding_mask(ids)
        for block in self.blocks:
            x = block(x, src_key_padding_mask=padding)
        return self.norm(x)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(states), self.embed.tokens.weight, self.bias)


@dataclass
class Corruption:
    """One batch through ELECTRA: the generator's masked input and targets (N×L), its logits at
    the selected positions (K×V), the discriminator's input (N×L), which tokens differ from the
    original (N×L bool), the padding (N×L bool), the discriminator's states and logits."""

    masked: torch.Tensor
    targets: torch.Tensor
    generator_logits: torch.Tensor
    corrupted: torch.Tensor
    replaced: torch.Tensor
    padding: torch.Tensor
    states: torch.Tensor
    logits: torch.Tensor


class ELECTRA(TextMethod):
    """Replaced-token detection: a masked-LM generator corrupts the text, the encoder detects it."""

    offers = frozenset({TEST_METRICS, PICTURES})

    def __init__(self, encoder: TextEncoder, params: ELECTRAParams):
        super().__init__(encoder)
        if not isinstance(encoder, TextEncoder):
            raise ConfigError("ELECTRA trains selfsup's own transformer; a Hugging Face checkpoint takes mlm")
        if encoder.spec["causal"]:
            raise ConfigError("ELECTRA's discriminator must be bidirectional")
        if not 0 < params.mask_prob < 1 or not 0 <= params.mask_token <= 1:
            raise ConfigError("method.mask_prob must lie in (0, 1) and method.mask_token in [0, 1]")
        if not 0 < params.generator_size <= 1 or not 0 < params.generator_layers <= 1:
            raise ConfigError("method.generator_size and method.generator_layers must lie in (0, 1]")
        if params.temperature <= 0 or params.disc_weight < 0:
            raise ConfigError("method.temperature must be positive and method.disc_weight 0 or more")
        self.params = params
        spec = encoder.spec
        heads = max(1, round(spec["heads"] * params.generator_size))
        width = max(heads, round(spec["dim"] * params.generator_size))
        while width % heads:
            heads -= 1
        depth = max(1, round(spec["depth"] * params.generator_layers))
        shared = encoder.backbone.embed if params.tie_embeddings else None
        self.generator = Generator(shared, spec["vocab_size"], width, depth, heads, spec["max_length"])
        dim = encoder.out_dim
        self.discriminator_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))

    def corrupt(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's input and targets (``IGNORE`` where not selected), both N×L."""
        return mlm_mask(ids, self.vocab, self.params.mask_prob, self.params.mask_token, 0.0)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """Tokens K drawn from the generator's logits K×V at temperature τ, never a special id
        but [UNK]."""
        logits = logits.detach().float() / self.params.temperature
        banned = torch.arange(logits.shape[-1], device=logits.device) < self.vocab.specials
        banned[self.vocab.unk] = False
        probs = logits.masked_fill(banned, -math.inf).softmax(dim=-1)
        return torch.multinomial(probs, 1).squeeze(1)

    def run(self, ids: torch.Tensor) -> Corruption:
        masked, targets = self.corrupt(ids)
        selected = targets != IGNORE
        generator_logits = predict_selected(self.generator.logits, self.generator(masked), selected)
        corrupted = ids.clone()
        if bool(selected.any()):
            corrupted[selected] = self.sample(generator_logits)
        states = self.encoder.backbone(corrupted)
        logits = self.discriminator_head(states).squeeze(-1)
        replaced, padding = corrupted != ids, ids == 0
        return Corruption(masked, targets, generator_logits, corrupted, replaced, padding, states, logits)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        c = self.run(views[0])
        mlm = token_loss(c.generator_logits, c.targets[c.targets != IGNORE])
        total = replaced_token_detection_loss(c.logits, c.replaced, c.padding, reduction="sum")
        detection = global_mean(total, (~c.padding).sum())
        return MethodOutput(
            mlm + self.params.disc_weight * detection,
            {"generator_loss": mlm.detach(), "discriminator_loss": detection.detach()},
            {"embedding": self.encoder.pool(c.states, c.corrupted).detach().float()},
        )

    @torch.no_grad()
    def test_metrics(self, ids: torch.Tensor, labels=None) -> dict[str, float]:
        c = self.run(ids)
        targets, keep = c.targets[c.targets != IGNORE], ~c.padding
        flagged = c.logits > 0
        replaced = c.replaced[keep]
        return {
            "generator_masked_token_nats": float(token_cross_entropy(c.generator_logits, targets)),
            "generator_masked_token_accuracy": predicted_accuracy(c.generator_logits, targets),
            "replaced_share": float(replaced.float().mean()),
            "detection_accuracy": float((flagged[keep] == replaced).float().mean()),
            "detection_recall": float(flagged[keep][replaced].sum() / replaced.sum().clamp_min(1)),
        }

    def marked(self, ids: torch.Tensor, marks: torch.Tensor) -> str:
        """The text of one row of ids with the marked tokens in brackets."""
        pieces, current = [], []
        for token, mark in zip(ids.tolist(), marks.tolist()):
            if token < self.vocab.specials and token != self.vocab.unk:
                continue
            if mark:
                pieces += [
                    self.encoder.tokenizer.decode(current),
                    f"[{self.encoder.tokenizer.decode([token])}]",
                ]
                current = []
            else:
                current.append(token)
        joiner = " " if self.vocab.kind == "wordpiece" else ""
        return joiner.join(p for p in pieces + [self.encoder.tokenizer.decode(current)] if p).strip()

    @torch.no_grad()
    def pictures(self, ids: torch.Tensor, generator: torch.Generator, labels=None) -> dict[str, list[str]]:
        c = self.run(trim_padding(ids[:EXAMPLES]))
        lines = []
        for i in range(len(c.corrupted)):
            lines += [
                f"original:  {self.decode(ids[i : i + 1])[0]}",
                f"replaced:  {self.marked(c.corrupted[i], c.replaced[i])}",
                f"flagged:   {self.marked(c.corrupted[i], c.logits[i] > 0)}",
                "",
            ]
        return {"replaced_tokens": lines}
