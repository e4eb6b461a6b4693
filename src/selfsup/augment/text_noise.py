"""Text corruptions of the language-model pretext tasks, on batches of token ids N×L (``[CLS] … [SEP]``,
right-padded with 0). Randomness comes from torch's global generator, which the training loop seeds
per epoch, so a run is reproducible and the masks are redrawn for every batch.

- :func:`mlm_mask`: BERT's masking (Devlin et al. 2019): select 15% of the non-special tokens
  (optionally whole words), replace 80% of them by ``[MASK]``, 10% by a random token, keep 10%.
- :func:`bart_noise`: BART's five noising functions (Lewis et al. 2020, Sec. 2.2; fairseq
  ``denoising_dataset.py``): token masking, token deletion, text infilling, sentence permutation,
  document rotation.
- :func:`next_sentence_pairs`: BERT's next-sentence prediction inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from selfsup.data.tokenizer import IGNORE, Vocabulary, pad_rows, trim_padding


def numpy_generator() -> np.random.Generator:
    """A numpy generator drawn from torch's global one (reproducible under ``torch.manual_seed``)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,))))


def word_starts(ids: torch.Tensor, vocab: Vocabulary) -> torch.Tensor:
    """N×L bool: the token begins a word (its own mark, white space before it, or a special token
    before it)."""
    table = vocab.starts_word.to(ids.device) | vocab.is_space.to(ids.device)
    previous = torch.nn.functional.pad(ids[:, :-1], (1, 0))
    after_break = vocab.is_space.to(ids.device)[previous] | (previous < vocab.specials)
    return table[ids] | after_break


def mlm_mask(
    ids: torch.Tensor,
    vocab: Vocabulary,
    prob: float = 0.15,
    mask_token: float = 0.8,
    random_token: float = 0.1,
    whole_word: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: ``(inputs, targets)``, both N×L; ``targets`` holds the original id where a
    token was selected and ``IGNORE`` elsewhere. Special and padding tokens are never selected; with
    ``whole_word`` all tokens of a word are selected together. At least one token is selected."""
    candidates = ids >= vocab.specials
    draw = torch.rand(ids.shape, device=ids.device)
    if whole_word:
        word = (word_starts(ids, vocab).long().cumsum(dim=1) - 1).clamp(0, ids.shape[1] - 1)
        draw = draw.gather(1, word)  # every token of a word takes the draw of the word's index
    selected = (draw < prob) & candidates
    if not bool(selected.any()) and bool(candidates.any()):
        first = torch.nonzero(candidates)[torch.randint(int(candidates.sum()), (1,))][0]
        selected[first[0], first[1]] = True
    action = torch.rand(ids.shape, device=ids.device)
    inputs = ids.clone()
    inputs[selected & (action < mask_token)] = vocab.mask
    replace = selected & (action >= mask_token) & (action < mask_token + random_token)
    inputs[replace] = torch.randint(vocab.specials, vocab.size, (int(replace.sum()),), device=ids.device)
    targets = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    return inputs, targets


@dataclass
class BartNoise:
    """Which of BART's noising functions apply (the paper's best, the default: text infilling of 30% of
    the tokens with Poisson(3) span lengths, plus sentence permutation)."""

    token_masking: float = 0.0  # probability of replacing each token by [MASK]
    token_deletion: float = 0.0  # probability of deleting each token
    text_infilling: float = 0.3  # share of tokens covered by masked spans (0: off)
    poisson_lambda: float = 3.0  # mean span length of text infilling
    sentence_permutation: bool = True
    document_rotation: bool = False


def document_bodies(ids: torch.Tensor, vocab: Vocabulary) -> list[list[int]]:
    """Each row's tokens without [CLS], [SEP] and padding (unknown and mask tokens kept)."""
    return [[t for t in row if t >= vocab.specials or t in (vocab.unk, vocab.mask)] for row in ids.tolist()]


def sentence_cuts(body: list[int], ends: np.ndarray) -> list[int]:
    """Positions inside ``body`` just after a token that ends a sentence (where a new sentence starts)."""
    return [i + 1 for i, token in enumerate(body[:-1]) if ends[token]]


def permute_sentences(body: list[int], ends: np.ndarray, rng: np.random.Generator) -> list[int]:
    """The sentences (each ending after a token that ends a sentence) in a random order."""
    cuts = sentence_cuts(body, ends)
    sentences = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])]
    return [token for k in rng.permutation(len(sentences)) for token in sentences[k]]


def span_lengths(budget: int, poisson_lambda: float, rng: np.random.Generator) -> list[int]:
    """Poisson(λ) span lengths drawn until they cover ``budget`` tokens; the last one is cut so that
    they sum to exactly ``budget`` (fairseq's ``add_whole_word_mask`` does the same)."""
    lengths: list[int] = []
    total = 0
    while total < budget:
        lengths.append(int(rng.poisson(poisson_lambda)))
        total += lengths[-1]
    lengths[-1] -= total - budget
    return lengths


def infill(
    body: list[int], ratio: float, poisson_lambda: float, mask: int, rng: np.random.Generator
) -> list[int]:
    """Text infilling: spans with Poisson(λ) lengths, covering ``ceil(ratio·n)`` tokens in total,
    each replaced by one ``[MASK]``; a span of length 0 inserts a ``[MASK]``."""
    n = len(body)
    if n == 0 or ratio <= 0:
        return body
    lengths = span_lengths(math.ceil(ratio * n), poisson_lambda, rng)[:n]
    starts = rng.choice(n, size=len(lengths), replace=False)
    covered = np.zeros(n, dtype=bool)
    insert = np.zeros(n, dtype=bool)
    for start, length in zip(starts, lengths):
        if length == 0:
            insert[start] = True
        covered[start : start + length] = True
    out = []
    for i, token in enumerate(body):
        if insert[i] and not (out and out[-1] == mask):
            out.append(mask)
        if covered[i]:
            if not (out and out[-1] == mask):
                out.append(mask)
        else:
            out.append(token)
    return out


def noise_document(
    body: list[int], vocab: Vocabulary, noise: BartNoise, rng: np.random.Generator, ends: np.ndarray
) -> list[int]:
    """One document's tokens (without ``[CLS]``/``[SEP]``) through the chosen noising functions, in
    fairseq's order: permutation, masking, deletion, infilling, rotation."""
    if noise.sentence_permutation:
        body = permute_sentences(body, ends, rng)
    if noise.token_masking > 0:
        body = [vocab.mask if rng.random() < noise.token_masking else t for t in body]
    if noise.token_deletion > 0:
        body = [t for t in body if rng.random() >= noise.token_deletion]
    if noise.text_infilling > 0:
        body = infill(body, noise.text_infilling, noise.poisson_lambda, vocab.mask, rng)
    if noise.document_rotation and len(body) > 1:
        turn = int(rng.integers(len(body)))
        body = body[turn:] + body[:turn]
    return body


def bart_noise(ids: torch.Tensor, vocab: Vocabulary, noise: BartNoise, max_length: int) -> torch.Tensor:
    """Noised copies of the documents N×L (``[CLS] … [SEP]``, padded) as N×L' ids, at most
    ``max_length``; L' is cut as every batch of ids is (:func:`~selfsup.data.tokenizer.trim_padding`:
    a multiple of 16 positions), so that a run meets few lengths."""
    rng = numpy_generator()
    ends = vocab.ends_sentence.numpy()
    rows = [
        [vocab.cls] + noise_document(body, vocab, noise, rng, ends)[: max_length - 2] + [vocab.sep]
        for body in document_bodies(ids, vocab)
    ]
    return trim_padding(pad_rows(rows, max_length)).to(ids.device)


def next_sentence_pairs(
    ids: torch.Tensor, vocab: Vocabulary
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT's next-sentence prediction: each document is cut at a sentence end (else at a random
    token) into A and B; for half the rows B is replaced by the B of another document. Returns ids
    ``[CLS] A [SEP] B [SEP]`` N×L' (no longer than the input), segment ids (0 for A, 1 for B) and
    ``is_next`` (1: B follows A)."""
    rng = numpy_generator()
    ends = vocab.ends_sentence.numpy()
    bodies = document_bodies(ids, vocab)
    firsts, seconds = [], []
    for body in bodies:
        cuts = sentence_cuts(body, ends)
        cut = (
            int(rng.choice(cuts))
            if cuts
            else (int(rng.integers(1, len(body))) if len(body) > 1 else len(body))
        )
        firsts.append(body[:cut])
        seconds.append(body[cut:])
    n = len(bodies)
    is_next = rng.random(n) < 0.5 if n > 1 else np.ones(n, dtype=bool)
    rows, segments = [], []
    for i in range(n):
        second = seconds[i] if is_next[i] else seconds[(i + 1 + int(rng.integers(n - 1))) % n]
        rows.append([vocab.cls] + firsts[i] + [vocab.sep] + second + [vocab.sep])
        segments.append([0] * (len(firsts[i]) + 2) + [1] * (len(second) + 1))
    length = min(
        max(len(r) for r in rows), ids.shape[1]
    )  # one [SEP] more than the input: B loses its last token
    return (
        pad_rows(rows, length).to(ids.device),
        pad_rows(segments, length).to(ids.device),
        torch.as_tensor(is_next, dtype=torch.long, device=ids.device),
    )
