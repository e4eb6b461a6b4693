import json

import numpy as np
import pytest
import torch

from conftest import TINY
from selfsup import api
from selfsup.config import EvalConfig
from selfsup.data import load_data
from selfsup.errors import ConfigError
from selfsup.evaluate import evaluate_encoder, format_table
from selfsup.evaluate.budgets import parse_budget, select_labelled
from selfsup.evaluate.knn import knn_predict
from selfsup.evaluate.linear import linear_probe
from selfsup.models import Encoder


def test_budgets_parse_fractions_and_per_class_counts():
    assert parse_budget("0.01").fraction == 0.01
    assert parse_budget("10/class").per_class == 10
    assert parse_budget("1.0").fraction == 1.0
    for bad in ("0", "1.5", "abc", "0/class", "-0.1"):
        with pytest.raises(ConfigError, match="invalid label budget"):
            parse_budget(bad)


def test_labelled_subsets_are_class_balanced_seeded_and_differ_between_seeds():
    labels = torch.arange(10).repeat_interleave(50)
    a = select_labelled(labels, parse_budget("5/class"), seed=0)
    assert torch.bincount(labels[a]).tolist() == [5] * 10
    assert torch.equal(a, select_labelled(labels, parse_budget("5/class"), seed=0))
    assert not torch.equal(a, select_labelled(labels, parse_budget("5/class"), seed=1))
    assert torch.bincount(labels[select_labelled(labels, parse_budget("0.1"), 0)]).tolist() == [5] * 10
    assert len(select_labelled(labels, parse_budget("1.0"), 0)) == 500
    with pytest.raises(ConfigError, match="only 50"):
        select_labelled(labels, parse_budget("60/class"), 0)


def knn_reference(train, train_labels, test, num_classes, k, temperature):
    """InstDisc's weighted vote, one test point at a time."""
    out = []
    for q in test:
        sims = np.array([float(q @ t / (q.norm() * t.norm())) for t in train])
        top = np.argsort(-sims)[:k]
        votes = np.zeros(num_classes)
        for j in top:
            votes[int(train_labels[j])] += np.exp(sims[j] / temperature)
        out.append(int(np.argmax(votes)))
    return out


def test_knn_matches_the_weighted_cosine_vote():
    torch.manual_seed(0)
    train, test = torch.randn(40, 6), torch.randn(15, 6)
    labels = torch.randint(0, 4, (40,))
    predicted = knn_predict(train, labels, test, 4, k=7, temperature=0.1)
    assert predicted.tolist() == knn_reference(train, labels, test, 4, 7, 0.1)
    # k larger than the labelled set is capped, not an error
    assert knn_predict(train[:5], labels[:5], test, 4, k=200).shape == (15,)


def test_linear_probe_separates_separable_features_and_chooses_c_without_test_labels():
    torch.manual_seed(0)
    centres = torch.randn(3, 8) * 4
    y = torch.arange(3).repeat(10)
    x = centres[y] + torch.randn(30, 8)
    test_y = torch.arange(3).repeat(20)
    test_x = centres[test_y] + torch.randn(60, 8)
    predicted, info = linear_probe(x, y, test_x, seed=0)
    assert (predicted == test_y).float().mean() > 0.9
    assert info["selection"] == "cross-validated"
    _, info_one = linear_probe(x[:3], y[:3], test_x, seed=0)  # one label per class: no validation fold
    assert info_one["selection"].startswith("default")
    uneven = torch.tensor([0, 3, 6, 9, 1, 4, 2])  # 4 of class 0, 2 of class 1, 1 of class 2 (a random draw)
    _, info_uneven = linear_probe(x[uneven], y[uneven], test_x, seed=0)
    assert info_uneven["selection"] == "cross-validated (1 item alone in a class, always fitted)"


def test_evaluation_of_a_trained_run_writes_eval_json(tmp_path):
    api.pretrain("simclr", "digits", out=tmp_path, epochs=2, overrides=TINY, progress=False)
    evaluation = api.evaluate(
        tmp_path,
        labels=["1/class", "0.1"],
        seeds=2,
        protocols=["knn", "linear", "finetune", "scratch", "pixels"],
        overrides=["eval.finetune_min_steps=5", "eval.finetune_epochs=2"],
        progress=False,
    )
    stored = json.loads((tmp_path / "eval.json").read_text())
    assert stored["results"] == evaluation["results"]
    rows = {(r["protocol"], r["labels"]): r for r in stored["results"]}
    assert len(rows) == 10
    for row in rows.values():
        assert set(row) >= {"protocol", "labels", "mean", "std", "seeds"}
        assert 0.0 <= row["mean"] <= 1.0 and row["seeds"] == 2 and row["std"] >= 0
    assert rows[("knn", "1/class")]["labelled_images"] == 10
    assert rows[("pixels", "0.1")]["mean"] > 0.7
    table = format_table(evaluation)
    assert "SSL + kNN" in table and "from scratch" in table and "1/class" in table


def test_evaluation_rejects_data_of_another_shape(tmp_path):
    encoder = Encoder("small_cnn", in_channels=3, image_size=32, mean=[0.5] * 3, std=[0.2] * 3, width=4)
    with pytest.raises(Exception, match="encoder was trained on 3-channel images of side 32"):
        evaluate_encoder(
            encoder,
            load_data("digits"),
            EvalConfig(labels=["1/class"], seeds=1),
            torch.device("cpu"),
            progress=False,
        )


def test_logistic_fit_matches_scikit_learn():
    """Same objective as scikit-learn's LogisticRegression(C): the same predictions and close weights."""
    from sklearn.linear_model import LogisticRegression

    from selfsup.evaluate.linear import fit_logistic

    torch.manual_seed(0)
    x = torch.randn(60, 5, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * torch.randn(60, dtype=torch.float64) > 0).long() + (x[:, 1] > 1).long()
    for c in (0.01, 1.0):
        weight, bias = fit_logistic(x, y, c, 3)
        reference = LogisticRegression(C=c, max_iter=5000, tol=1e-10).fit(x.numpy(), y.numpy())
        ours = (x @ weight + bias).argmax(1).numpy()
        assert (ours == reference.predict(x.numpy())).mean() > 0.98
        # multinomial weights are defined up to a shift shared by all classes: compare centred ones
        centred = weight.numpy().T - weight.numpy().T.mean(0)
        ref_centred = reference.coef_ - reference.coef_.mean(0)
        assert np.allclose(centred, ref_centred, atol=1e-3)


def test_features_written_batch_by_batch_equal_the_extracted_ones(tmp_path):
    import numpy as np

    from selfsup.evaluate.features import extract_features, write_features
    from selfsup.models import Encoder

    torch.manual_seed(0)
    encoder = Encoder("small_cnn", in_channels=3, image_size=8, mean=[0.5] * 3, std=[0.25] * 3, width=8)
    images = torch.randint(0, 256, (37, 3, 8, 8), dtype=torch.uint8)
    rows = np.lib.format.open_memmap(
        tmp_path / "f.npy", mode="w+", dtype=np.float32, shape=(37, encoder.out_dim)
    )
    write_features(encoder, images, torch.device("cpu"), rows, batch_size=10)  # 4 batches, the last one short
    expected = extract_features(encoder, images, torch.device("cpu"), batch_size=10)
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "f.npy")), expected) and encoder.training


def test_token_ids_are_embedded_a_bounded_number_of_tokens_at_a_time(monkeypatch):
    from selfsup.evaluate import features

    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, ids):
            seen.append(ids.shape[0])
            return ids.float().sum(dim=1, keepdim=True)

    monkeypatch.setattr(features, "BATCH_TOKENS", 40)
    ids = torch.randint(1, 50, (23, 10), dtype=torch.int32)  # 4 rows of 10 tokens a batch
    out = features.extract_features(Recorder(), ids, torch.device("cpu"), batch_size=512)
    assert seen == [4, 4, 4, 4, 4, 3] and torch.equal(out[:, 0], ids.sum(dim=1).float())
    images = torch.zeros(23, 3, 4, 4, dtype=torch.uint8)  # images keep their batch size
    assert features.rows_per_batch(images, 512) == 512


def test_knn_in_small_chunks_predicts_as_in_one():
    from selfsup.evaluate.knn import knn_predict

    torch.manual_seed(0)
    train, test = torch.randn(300, 16), torch.randn(50, 16)
    labels = torch.randint(0, 4, (300,))
    whole = knn_predict(train, labels, test, 4, k=20)
    assert torch.equal(
        knn_predict(train, labels, test, 4, k=20, max_similarities=300 * 7), whole
    )  # chunks of 7
