"""The text losses (SimCSE, ELECTRA) against references written from their papers' formulas with
plain numpy loops; SimCSE's dropout views and ELECTRA's replaced-token labels."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from selfsup import losses
from selfsup.augment.text_noise import IGNORE
from selfsup.data.tokenizer import train_tokenizer
from selfsup.methods.electra import ELECTRA, ELECTRAParams
from selfsup.methods.simcse import SimCSE, SimCSEParams
from selfsup.models.text import TextEncoder

rng = np.random.default_rng(0)


def t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def simcse_reference(z1, z2, temperature):
    def sim(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    n = len(z1)
    out = []
    for i in range(n):
        denominator = sum(math.exp(sim(z1[i], z2[j]) / temperature) for j in range(n))
        out.append(-math.log(math.exp(sim(z1[i], z2[i]) / temperature) / denominator))
    return np.mean(out)


def detection_reference(logits, replaced, padding):
    out = []
    for x, y, pad in zip(logits.ravel(), replaced.ravel(), padding.ravel()):
        if not pad:
            p = 1 / (1 + math.exp(-x))
            out.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
    return np.mean(out)


def test_simcse_loss_matches_the_paper_formula_and_finite_differences():
    z1, z2 = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    for temperature in (0.05, 0.5):
        got = losses.simcse_loss(t(z1), t(z2), temperature).item()
        assert got == pytest.approx(simcse_reference(z1, z2, temperature), rel=1e-5)
    assert torch.autograd.gradcheck(lambda a, b: losses.simcse_loss(a, b, 0.5), (t(z1), t(z2)))
    half = losses.simcse_loss(
        torch.randn(4, 3, dtype=torch.bfloat16), torch.randn(4, 3, dtype=torch.bfloat16)
    )
    assert half.dtype == torch.float32


def test_replaced_token_detection_loss_matches_the_paper_formula_and_finite_differences():
    logits = rng.normal(size=(3, 7)) * 3
    replaced = rng.random((3, 7)) < 0.3
    padding = np.zeros((3, 7), dtype=bool)
    padding[1, 4:], padding[2, 6:] = True, True
    args = (torch.tensor(replaced), torch.tensor(padding))
    got = losses.replaced_token_detection_loss(t(logits), *args)
    assert got.item() == pytest.approx(detection_reference(logits, replaced, padding), rel=1e-5)
    total = losses.replaced_token_detection_loss(t(logits), *args, reduction="sum")
    assert total.item() == pytest.approx(got.item() * (~padding).sum(), rel=1e-6)
    assert torch.autograd.gradcheck(lambda x: losses.replaced_token_detection_loss(x, *args), (t(logits),))


def test_text_losses_refuse_bad_shapes():
    with pytest.raises(ValueError, match="N×D"):
        losses.simcse_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="N×L"):
        losses.replaced_token_detection_loss(
            torch.randn(2, 3), torch.zeros(2, 4), torch.zeros(2, 3, dtype=bool)
        )
    with pytest.raises(ValueError, match="reduction"):
        losses.replaced_token_detection_loss(torch.randn(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), "max")


TEXTS = ["The cat sat on the mat.", "Stocks fell sharply today!", "Is the game on tonight?", "Oil rose."]


def tiny_encoder(**options) -> TextEncoder:
    torch.manual_seed(0)
    tokenizer = train_tokenizer(TEXTS * 5, "wordpiece", 120)
    return TextEncoder(tokenizer.get_vocab_size(), 32, 2, 2, 24, **options).attach_tokenizer(tokenizer)


def ids_of(encoder) -> torch.Tensor:
    from selfsup.data import TextDataset

    return encoder.inputs(TextDataset(TEXTS)).long()


def test_simcse_passes_differ_only_through_dropout():
    noisy = SimCSE(tiny_encoder(dropout=0.1, pooling="first"), SimCSEParams())
    ids = ids_of(noisy.encoder)
    h1, h2 = noisy.embed_twice(ids)
    assert not torch.allclose(h1, h2)  # two dropout masks
    noisy.eval()
    h1, h2 = noisy.embed_twice(ids)
    assert torch.equal(h1, h2)  # eval mode: no dropout, the same pass twice
    clean = SimCSE(tiny_encoder(dropout=0.0, pooling="first"), replace(SimCSEParams(), dropout=0.0))
    h1, h2 = clean.embed_twice(ids)
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(h1, clean.encoder.backbone(ids)[:, 0])  # the [CLS] state
    out = noisy.train()([ids])
    assert out.loss.requires_grad and out.monitored["embedding"].shape == (4, 32)
    assert SimCSE.encoder_options(SimCSEParams()) == {"dropout": 0.1, "pooling": "first"}


def test_electra_labels_a_sample_equal_to_the_original_as_original_and_skips_padding():
    method = ELECTRA(tiny_encoder(), ELECTRAParams(mask_prob=0.5))
    ids = ids_of(method.encoder)
    assert (ids == 0).any(), "the test needs padding"
    torch.manual_seed(1)
    masked, targets = method.corrupt(ids)
    selected = targets != IGNORE
    # the generator samples the original at half the selected positions, another token elsewhere
    other = torch.where(ids == method.vocab.size - 1, method.vocab.size - 2, method.vocab.size - 1)
    chosen = torch.where(torch.arange(ids.numel()).view(ids.shape) % 2 == 0, ids, other)[selected]
    method.corrupt = lambda _: (masked, targets)
    method.sample = lambda logits: chosen
    c = method.run(ids)
    assert torch.equal(c.corrupted[selected], chosen) and torch.equal(c.corrupted[~selected], ids[~selected])
    expected = torch.zeros_like(selected)
    expected[selected] = chosen != ids[selected]
    assert torch.equal(c.replaced, expected) and (chosen == ids[selected]).any()  # equal: "original"
    assert not c.replaced[c.padding].any() and torch.equal(c.padding, ids == 0)
    # the padding's logits do not count: changing them leaves the loss as it is
    logits = c.logits.detach().clone()
    loss = losses.replaced_token_detection_loss(logits, c.replaced, c.padding)
    logits[c.padding] = 100.0
    assert losses.replaced_token_detection_loss(logits, c.replaced, c.padding) == loss


def test_electra_samples_no_special_ids_but_unk_and_shares_the_embeddings():
    method = ELECTRA(tiny_encoder(), ELECTRAParams())
    logits = torch.zeros(2000, method.vocab.size)
    logits[:, : method.vocab.specials] = 20.0  # the generator would pick the specials
    drawn = method.sample(logits)
    assert set(drawn.tolist()) <= {method.vocab.unk} | set(range(method.vocab.specials, method.vocab.size))
    assert method.generator.embed is method.encoder.backbone.embed
    assert method.generator.blocks[0].linear1.in_features == 8  # a quarter of the width, 4× MLP
    untied = ELECTRA(tiny_encoder(), ELECTRAParams(tie_embeddings=False))
    assert untied.generator.embed.tokens.embedding_dim == 8
    out = method([ids_of(method.encoder)])
    assert set(out.terms) == {"generator_loss", "discriminator_loss"}
    expected = out.terms["generator_loss"] + 50 * out.terms["discriminator_loss"]
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_simcse_trains_a_hugging_face_checkpoint_with_its_own_dropout(tmp_path):
    pytest.importorskip("transformers", reason="hf: backbones need transformers (the hf extra)")
    from hf_tiny import tiny_bert
    from selfsup.models.hf_text import HFTextEncoder

    folder = tiny_bert(tmp_path / "bert", TEXTS * 5, vocab=120)
    encoder = HFTextEncoder.from_checkpoint(folder, causal=False, max_length=24)
    method = SimCSE(encoder, SimCSEParams()).train()  # BERT's hidden and attention dropout, 0.1
    ids = ids_of(encoder)
    h1, h2 = method.embed_twice(ids)
    assert not torch.allclose(h1, h2)
    out = method([ids])
    out.loss.backward()
    assert encoder.model.base_model.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_a_text_encoder_saved_before_the_dropout_option_loads_without_dropout():
    encoder = tiny_encoder(dropout=0.1)
    old = {key: value for key, value in encoder.spec.items() if key != "dropout"}
    loaded = TextEncoder.from_spec(old, encoder.tokenizer)
    assert loaded.spec["dropout"] == 0.0 and loaded.backbone.drop.p == 0.0
    loaded.load_state_dict(encoder.state_dict())  # dropout adds no weights
