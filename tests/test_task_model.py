"""The task model: `selfsup fit` from a few labels and the unlabelled rest, `selfsup predict`,
`selfsup.load_classifier` and the classifier's exports; label spreading against its formula."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from conftest import TINY_TEXT, make_image_folder, quick_run
from selfsup import api, load_classifier
from selfsup.data import load_data
from selfsup.errors import SelfsupError
from selfsup.models.export import export_encoder
from selfsup.task.semi import knn_graph, label_spreading
from test_cli import assert_one_line_error, run_cli

TINY = ["model.width=8", "train.batch_size=256", "train.precision=fp32"]
QUICK = ["eval.finetune_epochs=2", "eval.finetune_min_steps=5"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("task") / "run"
    api.pretrain("simclr", "digits", out=out, epochs=2, overrides=TINY, progress=False, report=False)
    return out


# ---- label spreading against its formula -----------------------------------------------------------------


def test_label_spreading_is_the_closed_form_of_zhou_et_al():
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(30, 5)).astype(np.float32))
    labelled, labels = torch.tensor([0, 5, 9]), torch.tensor([0, 1, 2])
    found, weights = label_spreading(features, labelled, labels, 3, neighbours=4, alpha=0.9, iterations=400)
    w = knn_graph(features, 4).toarray()
    d = np.diag(1 / np.sqrt(w.sum(axis=1)))
    s = d @ w @ d
    y = np.zeros((30, 3))
    y[[0, 5, 9], [0, 1, 2]] = 1
    closed = np.linalg.solve(np.eye(30) - 0.9 * s, y)  # F* = (I − αS)⁻¹Y, up to a factor
    expected = closed / closed.sum(axis=1, keepdims=True)
    expected[[0, 5, 9]] = y[[0, 5, 9]]
    assert np.allclose(found.numpy(), expected, atol=1e-4)
    assert torch.all(weights[labelled] == 1) and float(weights.min()) >= 0


def test_the_knn_graph_is_symmetric_and_cubes_cosine_similarities():
    features = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    w = knn_graph(features, 1).toarray()
    assert np.allclose(w, w.T) and w[0, 1] == pytest.approx(2 * 0.8**3) and w[0, 2] == 0


# ---- fit ---------------------------------------------------------------------------------------------


def test_fit_from_a_budget_writes_a_model_directory(digits_run, tmp_path):
    facts = api.fit(digits_run, budget=20, protocol="linear", out=tmp_path / "model", progress=False)
    for name in ("head.safetensors", "classes.json", "classifier.json", "encoder.safetensors", "report.html"):
        assert (tmp_path / "model" / name).exists(), name
    assert (
        set(facts["classes"]) <= {str(i) for i in range(10)} and facts["labelled_items"] == 20
    )  # those picked
    assert "labeller simulated" in facts["labels"] and facts["semi"] == "propagate"
    assert 0 < facts["validation_accuracy"] <= 1 and 0 < facts["test_accuracy"] <= 1
    page = (tmp_path / "model" / "report.html").read_text()
    assert "Confusion matrix" in page and "Most confident predictions" in page


def test_auto_never_reads_the_test_split(digits_run, tmp_path, monkeypatch):
    from selfsup.task import fit as task

    seen = {}
    original = task.choose_protocol

    def watched(fitting, labelled):
        seen["rows"] = len(fitting.inputs)
        return original(fitting, labelled)

    monkeypatch.setattr(task, "choose_protocol", watched)
    overrides = QUICK
    first = api.fit(
        digits_run, budget=20, semi="none", out=tmp_path / "a", overrides=overrides, progress=False
    )
    assert seen["rows"] == len(load_data("digits").train)  # the training items only
    monkeypatch.setattr(
        "selfsup.data.loaders.load_digits",
        _digits_with_shuffled_test_labels(),
    )
    second = api.fit(
        digits_run, budget=20, semi="none", out=tmp_path / "b", overrides=overrides, progress=False
    )
    assert (first["protocol"], first["protocol_choice"]) == (second["protocol"], second["protocol_choice"])
    assert first["validation_accuracy"] == second["validation_accuracy"]
    assert first["test_accuracy"] != second["test_accuracy"]


def _digits_with_shuffled_test_labels():
    from selfsup.data.loaders import load_digits

    def load():
        splits = load_digits()
        splits.test.labels = splits.test.labels[
            torch.randperm(len(splits.test), generator=torch.Generator().manual_seed(0))
        ]
        return splits

    return load


@pytest.mark.parametrize("semi", ["self-train", "distill"])
def test_self_training_and_a_distilled_student_train_and_predict(digits_run, tmp_path, semi):
    extra = {"student": "small_cnn"} if semi == "distill" else {}
    facts = api.fit(
        digits_run,
        budget=30,
        protocol="linear",
        semi=semi,
        out=tmp_path / semi,
        overrides=QUICK,
        progress=False,
        **extra,
    )
    assert facts["test_accuracy"] > 0.2  # better than chance (0.1) after a few steps
    model = load_classifier(tmp_path / semi)
    probabilities = model(load_data("digits").test.images[:4].float() / 255)
    assert probabilities.shape == (4, 10) and torch.allclose(probabilities.sum(dim=1), torch.ones(4))


def test_fit_from_a_labels_file_and_its_errors(digits_run, tmp_path, capsys):
    splits = load_data("digits")
    rows = torch.arange(0, 40, 2)
    with open(tmp_path / "l.csv", "w") as handle:
        handle.write("index,label\n")
        for r in rows.tolist():
            handle.write(
                f"{int(splits.train.indices()[r])},{'even' if splits.train.labels[r] % 2 == 0 else 'odd'}\n"
            )
    facts = api.fit(
        digits_run,
        labelled=tmp_path / "l.csv",
        protocol="linear",
        semi="none",
        out=tmp_path / "m",
        progress=False,
    )
    assert facts["classes"] == ["even", "odd"] and facts["labelled_items"] == 20
    code, _, err = run_cli(["fit", digits_run, "--out", tmp_path / "x", "--quiet"], capsys)
    assert_one_line_error(code, err, "fit needs labels: --labelled FILE")
    (tmp_path / "one.csv").write_text(f"index,label\n{int(splits.train.indices()[0])},cat\n")
    code, _, err = run_cli(["fit", digits_run, "--labelled", tmp_path / "one.csv", "--quiet"], capsys)
    assert_one_line_error(code, err, "the labels name one class ('cat')")


# ---- predict, load_classifier, export -------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    folder = make_image_folder(
        root / "pets", classes=("cat", "dog", "owl"), per_class=8, splits=["train", "test"]
    )
    quick_run("simclr", folder, root / "run", ["model.width=8", "train.batch_size=8"])
    api.fit(root / "run", budget=9, protocol="linear", out=root / "model", progress=False)
    return root


def test_predict_equals_load_classifier(folder_model, tmp_path, capsys):
    code, out, _ = run_cli(
        [
            "predict",
            folder_model / "model",
            "--data",
            folder_model / "pets",
            "--top-k",
            "2",
            "--out",
            tmp_path / "p.csv",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0 and "48 predictions" in out
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert list(rows[0]) == ["index", "path", "label", "probability", "label_2", "probability_2"]
    splits = load_data(folder_model / "pets")
    model = load_classifier(folder_model / "model")
    images = torch.cat([splits.train.images, splits.test.images]).float() / 255
    with torch.no_grad():
        expected = model(images)
    names = splits.train.names + splits.test.names
    for row, probabilities, name in zip(rows, expected, names):
        assert row["path"] == name and row["label"] == model.classes[int(probabilities.argmax())]
        assert float(row["probability"]) == pytest.approx(float(probabilities.max()), abs=1e-5)


def test_the_onnx_classifier_equals_pytorch_and_names_its_classes(folder_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    import onnxruntime

    note = api.export(folder_model / "model", format="onnx", out=tmp_path / "c.onnx")
    assert note["classes"] == ["cat", "dog", "owl"] and note["max_abs_difference"] <= 1e-4
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "c.onnx")).metadata_props}
    assert json.loads(props["classes"]) == ["cat", "dog", "owl"]
    images = torch.rand(5, 3, 12, 12)
    session = onnxruntime.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = load_classifier(folder_model / "model")(images).numpy()
    assert np.abs(session.run(None, {"images": images.numpy()})[0] - expected).max() <= 1e-4


def test_predict_errors_are_one_line(folder_model, digits_run, tmp_path, capsys):
    code, _, err = run_cli(["predict", digits_run, "--data", "digits", "--quiet"], capsys)
    assert_one_line_error(code, err, "is not a model directory of `selfsup fit` (a run directory")
    code, _, err = run_cli(["predict", folder_model / "model", "--data", "digits", "--quiet"], capsys)
    assert_one_line_error(code, err, "1-channel images; the model takes 3 channels")
    corpus = tmp_path / "notes.txt"
    corpus.write_text("a note\nanother note\n")
    code, _, err = run_cli(["predict", folder_model / "model", "--data", corpus, "--quiet"], capsys)
    assert_one_line_error(code, err, "holds texts; this model classifies images")
    code, _, err = run_cli(
        ["predict", folder_model / "model", "--data", folder_model / "pets", "--top-k", "9", "--quiet"],
        capsys,
    )
    assert_one_line_error(code, err, "--top-k must lie in 1..3")


def test_a_text_classifier_fits_and_predicts_a_txt_file(tmp_path):
    corpus = tmp_path / "news.csv"
    corpus.write_text(
        "text,label\n"
        + "".join(
            f"{topic} story {i},{label}\n"
            for i, (topic, label) in enumerate(
                [("rain and storms", "weather"), ("stocks and markets", "money")] * 40
            )
        )
    )
    quick_run("mlm", corpus, tmp_path / "run", TINY_TEXT)
    facts = api.fit(tmp_path / "run", budget=10, protocol="linear", out=tmp_path / "model", progress=False)
    assert facts["classes"] == ["money", "weather"]
    (tmp_path / "new.txt").write_text("storms and rain again\nmarkets and stocks again\n")
    api.predict(tmp_path / "model", data=tmp_path / "new.txt", out=tmp_path / "p.csv", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["text"] for r in rows] == ["storms and rain again", "markets and stocks again"]
    with pytest.raises(SelfsupError, match="holds images; this model classifies texts"):
        api.predict(tmp_path / "model", data="digits", out=tmp_path / "q.csv", progress=False)

    # the classifier and its encoder as TorchScript and ONNX: token ids of any length in, the same outputs
    import onnxruntime

    model = load_classifier(tmp_path / "model")
    ids = model.inputs(load_data(str(tmp_path / "new.txt")).train)
    for folder, reference in ((tmp_path / "model", model), (tmp_path / "run", model.encoder)):
        note = export_encoder(folder, "torchscript", tmp_path / f"{folder.name}.pt")
        traced = torch.jit.load(note["path"])
        assert torch.allclose(traced(ids.long()), reference(ids), atol=1e-5)
        assert torch.allclose(traced(ids[:, :4].long()), reference(ids[:, :4]), atol=1e-5)
        note = export_encoder(folder, "onnx", tmp_path / f"{folder.name}.onnx")
        session = onnxruntime.InferenceSession(note["path"], providers=["CPUExecutionProvider"])
        for part in (ids, ids[:1, :4]):
            out = session.run(None, {"ids": part.long().numpy()})[0]
            assert torch.allclose(torch.as_tensor(out), reference(part), atol=1e-4)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta.get("classes", "null")) is None  # the encoder's export: features
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map["classes"]) == ["money", "weather"]
    assert (
        note["max_length"] == 16
        and "class probabilities" in json.loads((tmp_path / "model.pt.json").read_text())["output"]
    )
    with pytest.raises(
        SelfsupError, match="does not fit a text classifier; use one of safetensors, torchscript"
    ):
        export_encoder(tmp_path / "model", "timm")
