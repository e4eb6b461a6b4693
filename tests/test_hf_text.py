"""`--backbone hf:PATH`: a local Hugging Face checkpoint continues pretraining with selfsup's text
methods and its own tokenizer, is evaluated by the harness, and exports back to `transformers`."""

import math

import pytest
import torch

from hf_tiny import tiny_bert, tiny_encoder, tiny_gpt2
from selfsup import api
from selfsup.data import TextDataset
from selfsup.errors import ConfigError
from selfsup.models.encoder import load_encoder
from selfsup.models.hf_text import HFTokenizer

transformers = pytest.importorskip("transformers", reason="hf: backbones need transformers (the hf extra)")

TOPICS = {
    "1": ["Stocks fell sharply on Wall Street.", "Oil prices rose again today.", "The bank cut its rates."],
    "2": ["The team won the cup final.", "A late goal sealed the match.", "The coach praised his players."],
}


def write_news(path, n=48) -> str:
    lines = [
        f'"{label}","{texts[i % 3]} {texts[(i + 1) % 3]}"'
        for i in range(n // 2)
        for label, texts in TOPICS.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def texts():
    return [t for group in TOPICS.values() for t in group] * 4


def continue_pretraining(tmp_path, method, checkpoint, data, length=32):
    return api.pretrain(
        method,
        data,
        out=str(tmp_path / method),
        backbone=f"hf:{checkpoint}",
        epochs=2,
        batch_size=8,
        progress=False,
        report=False,
        overrides=[f"text.max_length={length}", "optim.warmup_epochs=0"],
    )


def own_transformer_run(tmp_path, method, data, depth):
    """One epoch of selfsup's own (not a checkpoint's) transformer."""
    return api.pretrain(
        method,
        data,
        out=str(tmp_path / "own"),
        epochs=1,
        batch_size=8,
        progress=False,
        report=False,
        overrides=["model.width=32", f"model.depth={depth}", "text.vocab_size=200", "text.max_length=32"],
    )


def test_the_tokenizer_maps_the_checkpoints_specials_to_selfsups_ids(tmp_path):
    folder = tiny_bert(tmp_path / "bert", texts())
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    ours = HFTokenizer(hf)
    assert [hf.convert_ids_to_tokens(int(i)) for i in ours.to_hf[:5]] == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]
    ids = ours.encode_batch(["The team won."])[0].ids
    assert min(ids) >= 5 and ours.decode(ids) == "the team won."
    assert (
        ours.to_hf[torch.tensor(ids)].tolist() == hf("The team won.", add_special_tokens=False)["input_ids"]
    )
    gpt2 = HFTokenizer(transformers.AutoTokenizer.from_pretrained(tiny_gpt2(tmp_path / "gpt2", texts())))
    end = len(gpt2.hf) - 1  # <|endoftext|> stands for the roles GPT-2 lacks
    assert gpt2.to_hf[:5].tolist() == [end] * 5 and gpt2.get_vocab_size() == len(gpt2.hf) + 4


@pytest.mark.parametrize("method, build", [("mlm", tiny_bert), ("causal_lm", tiny_gpt2)])
def test_hf_checkpoints_continue_pretraining_evaluate_export_and_reload(tmp_path, method, build):
    checkpoint = build(tmp_path / "checkpoint", texts())
    before = {
        k: v.clone() for k, v in transformers.AutoModel.from_pretrained(checkpoint).state_dict().items()
    }
    result = continue_pretraining(tmp_path, method, checkpoint, write_news(tmp_path / "news.csv"))
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    assert math.isfinite(last) and last < first  # it learns, starting from the checkpoint's head
    assert result.test_metrics and all(math.isfinite(v) for v in result.test_metrics.values())
    scores = api.evaluate(
        result.run_dir,
        labels=["2/class"],
        seeds=1,
        protocols=["knn", "linear", "finetune", "tfidf"],
        progress=False,
        report=False,
    )
    assert {row["protocol"] for row in scores["results"]} >= {"knn", "linear", "finetune", "tfidf"}

    note = api.export(result.run_dir, format="hf", out=tmp_path / "exported")
    model = transformers.AutoModel.from_pretrained(note["path"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(note["path"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)
    encoder = load_encoder(result.run_dir)
    docs = ["Stocks fell on Wall Street.", "The team won the final."]
    ours = encoder(encoder.inputs(TextDataset(docs)))
    if method == "mlm":
        batch = tokenizer(docs, padding=True, return_tensors="pt")
    else:  # selfsup frames a document with <|endoftext|> as GPT-2 did in training
        eos = tokenizer.eos_token_id
        rows = [[eos] + tokenizer(d)["input_ids"] + [eos] for d in docs]
        width = max(map(len, rows))
        batch = {
            "input_ids": torch.tensor([r + [eos] * (width - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        }
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    keep = batch["attention_mask"].unsqueeze(-1).float()
    theirs = (states * keep).sum(1) / keep.sum(1)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", ["roberta", "distilbert"])
def test_roberta_and_distilbert_continue_pretraining_with_their_own_heads(tmp_path, model_type):
    checkpoint = tiny_encoder(tmp_path / "checkpoint", texts(), model_type)
    result = continue_pretraining(tmp_path, "mlm", checkpoint, write_news(tmp_path / "news.csv"), length=64)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    encoder = load_encoder(result.run_dir)
    assert encoder.max_length == (64 if model_type == "distilbert" else 32)  # RoBERTa: 34 positions - 2
    ids = encoder.inputs(TextDataset(["Stocks fell on Wall Street. " * 20]))  # cut at max_length
    assert ids.shape[1] == encoder.max_length and torch.isfinite(encoder(ids)).all()


def test_hf_checkpoints_of_the_wrong_kind_or_place_are_one_line_errors(tmp_path):
    data = write_news(tmp_path / "news.csv")
    gpt2 = tiny_gpt2(tmp_path / "gpt2", texts())
    with pytest.raises(ConfigError, match="is not an encoder \\(mlm: BERT"):
        continue_pretraining(tmp_path, "mlm", gpt2, data)
    with pytest.raises(ConfigError, match="no Hugging Face checkpoint there"):
        continue_pretraining(tmp_path, "mlm", tmp_path / "nowhere", data)
    with pytest.raises(ConfigError, match="BART trains selfsup's own transformer"):
        continue_pretraining(tmp_path, "bart", tiny_bert(tmp_path / "bert", texts()), data)
    with pytest.raises(ConfigError, match="own bidirectional transformer has no transformers architecture"):
        run = own_transformer_run(tmp_path, "mlm", data, depth=1)
        api.export(run.run_dir, format="hf")


def test_a_causal_lm_run_of_selfsups_own_transformer_exports_as_gpt2(tmp_path):
    data = write_news(tmp_path / "news.csv")
    run = own_transformer_run(tmp_path, "causal_lm", data, depth=2)
    note = api.export(run.run_dir, format="hf")
    model = transformers.AutoModel.from_pretrained(note["path"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(note["path"])
    encoder = load_encoder(run.run_dir)
    docs = ["Stocks fell on Wall Street.", "The team won the final."]
    ids = encoder.inputs(TextDataset(docs))
    batch = tokenizer(docs, padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], ids)  # the tokenizer frames texts as selfsup does
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    keep = batch["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(encoder(ids), (states * keep).sum(1) / keep.sum(1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert", "gpt2"])
def test_a_checkpoints_task_model_exports_as_its_own_sequence_classifier(tmp_path, model_type):
    """The task model of an hf: run is fitted on what the architecture's own classification layer
    takes (BERT's pooler, RoBERTa's dense + tanh, GPT-2's last real token), so that
    AutoModelForSequenceClassification loads the export with id2label and gives selfsup's
    probabilities on the checkpoint tokenizer's own batch."""
    from selfsup.models.classifier import load_classifier

    if model_type == "bert":
        checkpoint = tiny_bert(tmp_path / "checkpoint", texts())
    elif model_type == "gpt2":
        checkpoint = tiny_gpt2(tmp_path / "checkpoint", texts())
    else:
        checkpoint = tiny_encoder(tmp_path / "checkpoint", texts(), model_type)
    method = "causal_lm" if model_type == "gpt2" else "mlm"
    run = continue_pretraining(tmp_path, method, checkpoint, write_news(tmp_path / "news.csv")).run_dir
    facts = api.fit(
        run, budget=6, protocol="linear", semi="propagate", out=tmp_path / "model", progress=False
    )
    assert facts["classes"] == ["1", "2"]
    model = load_classifier(tmp_path / "model")
    assert model.encoder.spec["pooling"] == "classifier"
    docs = ["Stocks fell on Wall Street.", "The team won the final.", "Oil prices rose."]
    ours = model(model.inputs(TextDataset(docs)))
    assert torch.allclose(ours.sum(1), torch.ones(3))
    if model_type == "gpt2":  # GPT-2's score layer has no bias for the fitted head's
        with pytest.raises(ConfigError, match="gpt2's classification layer has no bias"):
            api.export(tmp_path / "model", format="hf", out=tmp_path / "exported")
        return
    note = api.export(tmp_path / "model", format="hf", out=tmp_path / "exported")
    assert note["max_abs_difference"] < 1e-4
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(note["path"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(note["path"])
    assert loaded.config.id2label == {0: "1", 1: "2"}
    with torch.no_grad():
        theirs = loaded(**tokenizer(docs, padding=True, truncation=True, return_tensors="pt")).logits
    torch.testing.assert_close(ours, theirs.softmax(dim=1), atol=1e-5, rtol=1e-4)
