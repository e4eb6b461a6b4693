"""The language-model pretext tasks: BERT's masked LM, BART's denoising auto-encoder and a causal LM.

Each takes one view, a batch of token ids N×L (``[CLS] … [SEP]``, right-padded with 0), and keeps a
:class:`TextEncoder` whose pooled states are the document embedding the evaluation uses (for BART,
its encoder's). Losses are cross-entropies in nats per predicted token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.augment.text_noise import IGNORE, BartNoise, bart_noise, mlm_mask, next_sentence_pairs
from selfsup.data.tokenizer import MASK_MARK, trim_padding
from selfsup.errors import ConfigError
from selfsup.losses.text import token_cross_entropy, token_loss
from selfsup.methods.base import PICTURES, TEST_METRICS, BatchFloor, Method, MethodOutput, Progress
from selfsup.models.text import BaseTextEncoder, LMHead, TextDecoder, TextEncoder

EXAMPLES = 4  # held-out documents shown in each method's examples file


class TextMethod(Method):
    """A method over token ids; its encoder must be a :class:`TextEncoder` with its tokenizer attached."""

    views = 1
    modality = "text"

    def __init__(self, encoder: BaseTextEncoder):
        if not isinstance(encoder, BaseTextEncoder):
            raise ConfigError(
                f"{type(self).__name__} learns from text: it needs text data (.txt, .csv, .tsv) "
                "and model.backbone=transformer"
            )
        super().__init__(encoder)
        self.vocab = encoder.vocab

    @staticmethod
    def encoder_options(params) -> dict:
        """Keyword arguments of the :class:`TextEncoder` this method needs (e.g. ``causal=True``)."""
        return {}

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Texts of token-id rows (special tokens dropped, except [MASK], shown as ``<mask>``)."""
        texts = []
        for row in ids.tolist():
            pieces, current = [], []
            for token in row:
                if token == self.vocab.mask:
                    pieces += [self.encoder.tokenizer.decode(current), MASK_MARK]
                    current = []
                elif token >= self.vocab.specials or token == self.vocab.unk:
                    current.append(token)
            joiner = (
                " " if self.vocab.kind == "wordpiece" else ""
            )  # byte-level and character tokens keep their spaces
            texts.append(
                joiner.join(p for p in pieces + [self.encoder.tokenizer.decode(current)] if p).strip()
            )
        return texts


ROW_MULTIPLE = 64
"""The selected positions go through an output layer as a multiple of this many rows: PyTorch's
CPU bf16 matrix products (oneDNN) keep kernels for every row count they meet, and the count of
masked tokens differs at each step (one AG News MLM epoch: +3.5 MB a step, never freed)."""


def predict_selected(head: nn.Module, states: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """``head`` on the rows of ``states`` N×L×D where ``selected`` (N×L, bool) is true: K×V, in
    ``states[selected]``'s order. Zero rows pad the K rows to a multiple of :data:`ROW_MULTIPLE`
    and their outputs are dropped, so a run meets few row counts (the values are unchanged)."""
    rows = states[selected]
    count = len(rows)
    extra = -count % ROW_MULTIPLE
    if extra:
        rows = torch.cat([rows, rows.new_zeros(extra, *rows.shape[1:])])
    return head(rows)[:count]


def shifted_targets(ids: torch.Tensor) -> torch.Tensor:
    """Next-token targets of ``ids[:, :-1]``: ``ids[:, 1:]`` with padding ignored."""
    targets = ids[:, 1:]
    return targets.masked_fill(targets == 0, IGNORE)


def predicted_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    keep = targets != IGNORE
    return float((logits.argmax(dim=-1)[keep] == targets[keep]).float().mean())


@dataclass
class MaskedLMParams:
    mask_prob: float = 0.15  # share of the non-special tokens selected for prediction
    mask_token: float = 0.8  # of the selected: replaced by [MASK]
    random_token: float = 0.1  # of the selected: replaced by a random token (the rest are kept)
    whole_word: bool = False  # select whole words (all their tokens together)
    next_sentence: bool = False  # add BERT's next-sentence prediction (a binary head on [CLS])


class MaskedLM(TextMethod):
    """BERT (Devlin et al. 2019): predict the selected tokens from the corrupted sequence; the output
    layer (dense, GELU, LayerNorm, tied decoder) and the optional NSP head (pooler: dense + tanh on
    [CLS], then 2 classes) follow the paper's code."""

    offers = frozenset({TEST_METRICS, PICTURES})

    @classmethod
    def batch_floor(cls, params: MaskedLMParams) -> BatchFloor | None:
        if not params.next_sentence:
            return None
        return BatchFloor(
            2,
            "next-sentence prediction takes its random segments from the other documents of each "
            "process's batch",
            per_process=True,
        )

    def __init__(self, encoder: BaseTextEncoder, params: MaskedLMParams):
        super().__init__(encoder)
        if (
            not 0 < params.mask_prob < 1
            or params.mask_token + params.random_token > 1
            or min(params.mask_token, params.random_token) < 0
        ):
            raise ConfigError(
                "method.mask_prob must lie in (0, 1) and method.mask_token + method.random_token in [0, 1]"
            )
        if encoder.spec["causal"]:
            raise ConfigError("the masked LM needs a bidirectional encoder")
        self.params = params
        self.head = encoder.lm_head(transform=True)
        dim = encoder.out_dim
        self.next_sentence = (
            nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 2)) if params.next_sentence else None
        )

    @staticmethod
    def encoder_options(params: MaskedLMParams) -> dict:
        return {"segments": 2} if params.next_sentence else {}

    def corrupt(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        return mlm_mask(ids, self.vocab, p.mask_prob, p.mask_token, p.random_token, p.whole_word)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        ids, segments = views[0], None
        if self.next_sentence is not None:
            ids, segments, is_next = next_sentence_pairs(ids, self.vocab)
        inputs, targets = self.corrupt(ids)
        states = self.encoder.backbone(inputs, segments)
        selected = targets != IGNORE
        loss = token_loss(predict_selected(self.head, states, selected), targets[selected])
        terms = {}
        if self.next_sentence is not None:
            nsp = F.cross_entropy(self.next_sentence(states[:, 0]).float(), is_next)
            terms = {"mlm_loss": loss.detach(), "nsp_loss": nsp.detach()}
            loss = loss + nsp
        return MethodOutput(loss, terms, {"embedding": self.encoder.pool(states, inputs).detach().float()})

    @torch.no_grad()
    def test_metrics(self, ids: torch.Tensor, labels=None) -> dict[str, float]:
        inputs, targets = self.corrupt(ids)
        selected = targets != IGNORE
        logits = predict_selected(self.head, self.encoder.backbone(inputs), selected)
        targets = targets[selected]
        return {
            "masked_token_nats": float(token_cross_entropy(logits, targets)),
            "masked_token_accuracy": predicted_accuracy(logits, targets),
        }

    @torch.no_grad()
    def pictures(self, ids: torch.Tensor, generator: torch.Generator, labels=None) -> dict[str, list[str]]:
        ids = trim_padding(ids[:EXAMPLES])
        inputs, targets = self.corrupt(ids)
        predicted = self.head(self.encoder.backbone(inputs)).argmax(dim=-1)
        filled = torch.where(targets != IGNORE, predicted, inputs)
        shown = torch.where(targets != IGNORE, torch.full_like(ids, self.vocab.mask), inputs)
        return {
            "fill_in": [
                block
                for i in range(len(ids))
                for block in (
                    f"original:  {self.decode(ids[i : i + 1])[0]}",
                    f"masked:    {self.decode(shown[i : i + 1])[0]}",
                    f"predicted: {self.decode(filled[i : i + 1])[0]}",
                    "",
                )
            ]
        }


@dataclass
class BARTParams(BartNoise):
    decoder_depth: int = 0  # decoder blocks; 0: as many as the encoder


class BART(TextMethod):
    """BART (Lewis et al. 2020): a bidirectional encoder reads the noised document, an auto-regressive
    decoder (causal self-attention, cross-attention to the encoder) writes the clean one; the loss
    is the decoder's cross-entropy on the clean tokens. The encoder is what the evaluation keeps."""

    offers = frozenset({TEST_METRICS, PICTURES})

    def __init__(self, encoder: TextEncoder, params: BARTParams):
        super().__init__(encoder)
        if not isinstance(encoder, TextEncoder):
            raise ConfigError(
                "BART trains selfsup's own transformer; a Hugging Face checkpoint takes mlm or causal_lm"
            )
        if encoder.spec["causal"]:
            raise ConfigError("BART's encoder must be bidirectional")
        for key in ("token_masking", "token_deletion", "text_infilling"):
            if not 0 <= getattr(params, key) < 1:
                raise ConfigError(f"method.{key} must lie in [0, 1), got {getattr(params, key)}")
        if params.poisson_lambda <= 0:
            raise ConfigError(f"method.poisson_lambda must be positive, got {params.poisson_lambda}")
        self.params = params
        spec = encoder.spec
        self.decoder = TextDecoder(
            encoder.backbone.embed.tokens,
            spec["dim"],
            params.decoder_depth or spec["depth"],
            spec["heads"],
            spec["max_length"],
        )
        self.head = LMHead(encoder.backbone.embed.tokens)

    def noise(self, ids: torch.Tensor) -> torch.Tensor:
        return bart_noise(ids, self.vocab, self.params, self.encoder.max_length)

    def reconstruction_logits(
        self, noisy: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced decoder logits for the clean ``ids`` given ``noisy``; and the encoder's states."""
        memory = self.encoder.backbone(noisy)
        return self.head(self.decoder(ids[:, :-1], memory, noisy == 0)), memory

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        ids = views[0]
        noisy = self.noise(ids)
        logits, memory = self.reconstruction_logits(noisy, ids)
        return MethodOutput(
            token_loss(logits, shifted_targets(ids)),
            monitored={"embedding": self.encoder.pool(memory, noisy).detach().float()},
        )

    @torch.no_grad()
    def reconstruct(self, noisy: torch.Tensor, max_tokens: int | None = None) -> torch.Tensor:
        """Greedy decoding of the clean text from noised ids N×L: ids N×L' starting with [CLS]."""
        memory = self.encoder.backbone(noisy)
        out = torch.full((len(noisy), 1), self.vocab.cls, dtype=torch.long, device=noisy.device)
        done = torch.zeros(len(noisy), dtype=torch.bool, device=noisy.device)
        for _ in range(min(max_tokens or self.encoder.max_length, self.encoder.max_length) - 1):
            following = self.head(self.decoder(out, memory, noisy == 0)[:, -1]).argmax(dim=-1)
            following = following.masked_fill(done, 0)
            out = torch.cat([out, following[:, None]], dim=1)
            done |= following == self.vocab.sep
            if bool(done.all()):
                break
        return out

    @torch.no_grad()
    def test_metrics(self, ids: torch.Tensor, labels=None) -> dict[str, float]:
        logits, _ = self.reconstruction_logits(self.noise(ids), ids)
        targets = shifted_targets(ids)
        return {
            "reconstruction_nats": float(token_cross_entropy(logits, targets)),
            "reconstruction_token_accuracy": predicted_accuracy(logits, targets),
        }

    @torch.no_grad()
    def pictures(self, ids: torch.Tensor, generator: torch.Generator, labels=None) -> dict[str, list[str]]:
        ids = trim_padding(ids[:EXAMPLES])
        noisy = self.noise(ids)
        rebuilt = self.reconstruct(noisy, 2 * ids.shape[1])
        lines = []
        for i in range(len(ids)):
            lines += [
                f"original:      {self.decode(ids[i : i + 1])[0]}",
                f"noised:        {self.decode(noisy[i : i + 1])[0]}",
                f"reconstructed: {self.decode(rebuilt[i : i + 1])[0]}",
                "",
            ]
        return {"reconstructions": lines}


@dataclass
class CausalLMParams:
    sample_tokens: int = 200  # length of the samples in the run's examples
    temperature: float = 1.0  # of those samples
    top_k: int = 0  # sample from the k most likely tokens only (0: all)


class CausalLM(TextMethod):
    """A decoder-only language model (GPT; Radford et al. 2018): predict each token from the ones
    before it. Test metrics: nats per token, perplexity and nats per character."""

    offers = frozenset({TEST_METRICS, PICTURES})

    def __init__(self, encoder: BaseTextEncoder, params: CausalLMParams):
        super().__init__(encoder)
        if not encoder.spec["causal"]:
            raise ConfigError("the causal LM needs a causal encoder")
        if params.temperature <= 0 or params.top_k < 0:
            raise ConfigError("method.temperature must be positive and method.top_k 0 or more")
        self.params = params
        self.head = encoder.lm_head()

    @staticmethod
    def encoder_options(params: CausalLMParams) -> dict:
        return {"causal": True}

    def next_token_logits(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.encoder.backbone(ids)
        return self.head(states[:, :-1]), states

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor | None = None, progress: Progress | None = None
    ) -> MethodOutput:
        ids = views[0]
        logits, states = self.next_token_logits(ids)
        return MethodOutput(
            token_loss(logits, shifted_targets(ids)),
            monitored={"embedding": self.encoder.pool(states, ids).detach().float()},
        )

    @torch.no_grad()
    def test_metrics(self, ids: torch.Tensor, labels=None) -> dict[str, float]:
        logits, _ = self.next_token_logits(ids)
        targets = shifted_targets(ids)
        keep = targets != IGNORE
        nats = F.cross_entropy(logits[keep].float(), targets[keep], reduction="sum")
        chars = self.vocab.chars.to(ids.device)[targets[keep]].sum()
        return {"nats_per_token": float(nats / keep.sum()), "nats_per_char": float(nats / chars.clamp_min(1))}

    @staticmethod
    def derived_metrics(metrics: dict[str, float]) -> dict[str, float]:
        return {**metrics, "perplexity": math.exp(metrics["nats_per_token"])}

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        tokens: int,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
    ) -> torch.Tensor:
        """Continue the prompts (ids N×P, no padding) by ``tokens`` sampled tokens: ids N×(P+tokens).
        The context is the last ``max_length`` tokens."""
        temperature = temperature or self.params.temperature
        top_k = self.params.top_k if top_k is None else top_k
        out = prompt
        for _ in range(tokens):
            logits = (
                self.head(self.encoder.backbone(out[:, -self.encoder.max_length :])[:, -1]).float()
                / temperature
            )
            logits[:, : self.vocab.specials] = -math.inf
            if top_k:
                threshold = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < threshold, -math.inf)
            probs = logits.softmax(dim=-1)
            following = torch.multinomial(probs.cpu(), 1, generator=generator).to(out.device)
            out = torch.cat([out, following], dim=1)
        return out

    @torch.no_grad()
    def pictures(self, ids: torch.Tensor, generator: torch.Generator, labels=None) -> dict[str, list[str]]:
        ids = ids[:EXAMPLES]
        prompts = ids[:, : min(8, int((ids != 0).sum(dim=1).min()))]
        samples = self.generate(prompts, self.params.sample_tokens, generator)
        lines = []
        for i in range(len(prompts)):
            lines += [
                f"prompt: {self.decode(prompts[i : i + 1])[0]}",
                f"sample: {self.decode(samples[i : i + 1])[0]}",
                "",
            ]
        return {"samples": lines}
