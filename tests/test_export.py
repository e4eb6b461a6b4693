"""`selfsup export`: each format loads in its target library and gives the encoder's features."""

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from selfsup.cli import main
from selfsup.errors import ConfigError
from selfsup.models.encoder import Encoder, load_encoder, save_encoder
from selfsup.models.export import FORMATS, export_encoder
from selfsup.verbs import VERBS

MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def make_run(tmp_path, backbone: str, channels: int = 3, side: int = 32, **options):
    """A run directory holding an untrained encoder, as pretraining saves it."""
    torch.manual_seed(0)
    encoder = Encoder(backbone, channels, side, MEAN[:channels], STD[:channels], **options).eval()
    run = tmp_path / backbone.replace(":", "_")
    run.mkdir()
    save_encoder(encoder, run)
    return run


def images(channels=3, side=32, n=5):
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(1))


def features_of(model: nn.Module, note: dict, x):
    """The library model's features of images ``x`` standardised as the export's note says."""
    mean, std = torch.tensor(note["mean"]).view(1, -1, 1, 1), torch.tensor(note["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        return model.eval()((x - mean) / std)


def test_torchvision_exports_load_strictly_into_torchvision_models(tmp_path):
    from torchvision import models

    run = make_run(tmp_path, "resnet18")  # 32 px: the CIFAR stem, which the note names
    note = export_encoder(run, "torchvision")
    assert note["model"] == "resnet18" and note["stem"].startswith("CIFAR stem")
    model = models.get_model("resnet18", weights=None)
    model.fc, model.maxpool = nn.Identity(), nn.Identity()
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.load_state_dict(torch.load(note["path"]), strict=True)
    x = images()
    torch.testing.assert_close(features_of(model, note, x), load_encoder(run)(x), atol=1e-5, rtol=1e-5)

    run = make_run(tmp_path, "torchvision:mobilenet_v3_small", side=64)
    note = export_encoder(run, "torchvision")
    assert note["stem"] == "the library's own"
    model = models.get_model("mobilenet_v3_small", weights=None)
    model.classifier[-1] = nn.Identity()
    model.load_state_dict(torch.load(note["path"]), strict=True)
    x = images(side=64)
    torch.testing.assert_close(features_of(model, note, x), load_encoder(run)(x), atol=1e-5, rtol=1e-5)


def test_timm_exports_load_strictly_into_timm_models(tmp_path):
    timm = pytest.importorskip("timm", reason="the timm export is loaded with timm (the timm extra)")
    for backbone, side in (("timm:convnext_atto", 32), ("resnet34", 96)):  # a built-in ResNet too
        run = make_run(tmp_path, backbone, side=side)
        note = export_encoder(run, "timm")
        model = timm.create_model(note["model"], pretrained=False, num_classes=0)
        model.load_state_dict(torch.load(note["path"]), strict=True)
        x = images(side=side, n=3)
        torch.testing.assert_close(features_of(model, note, x), load_encoder(run)(x), atol=1e-4, rtol=1e-4)


def test_torchscript_and_onnx_take_any_batch_size_and_match_pytorch(tmp_path):
    run = make_run(tmp_path, "small_cnn", channels=1, side=16)
    x = images(channels=1, side=16, n=7)
    expected = load_encoder(run)(x).detach()
    note = export_encoder(run, "torchscript")
    assert note["max_abs_difference"] <= 1e-4
    with pytest.warns(FutureWarning):  # torch.jit is deprecated, yet the format C++ runtimes load
        scripted = torch.jit.load(note["path"])
    torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=1e-5)
    onnxruntime = pytest.importorskip("onnxruntime", reason="the ONNX export is checked with onnxruntime")
    note = export_encoder(run, "onnx", tmp_path / "model.onnx")
    assert note["path"] == str(tmp_path / "model.onnx") and note["max_abs_difference"] <= 1e-4
    out = onnxruntime.InferenceSession(note["path"]).run(None, {"images": x.numpy()})[0]
    assert abs(out - expected.numpy()).max() <= 1e-4


def test_safetensors_export_has_the_library_keys_and_the_spec(tmp_path):
    run = make_run(tmp_path, "resnet18")
    note = export_encoder(run, "safetensors")
    with safe_open(note["path"], "pt") as file:
        assert "conv1.weight" in file.keys() and not any(k.startswith("backbone.") for k in file.keys())
        assert "mean" not in file.keys()
        assert json.loads(file.metadata()["selfsup_spec"])["backbone"] == "resnet18"


@pytest.mark.parametrize(
    "backbone, fmt, message",
    [
        ("resnet18", "pickle", "unknown export format 'pickle'"),
        ("resnet18", "hf", "--format hf does not fit an image run"),
        ("timm:resnet18", "torchvision", "cannot be exported as torchvision weights; use --format timm"),
        ("small_cnn", "timm", "cannot be exported as timm weights; use --format safetensors"),
    ],
)
def test_formats_that_do_not_fit_the_run_are_one_line_errors(tmp_path, backbone, fmt, message):
    if backbone.startswith("timm:"):
        pytest.importorskip("timm", reason="builds a timm backbone (the timm extra)")
    with pytest.raises(ConfigError, match=message):
        export_encoder(make_run(tmp_path, backbone), fmt)


def test_the_export_verb_writes_the_file_and_its_note(tmp_path, capsys):
    run = make_run(tmp_path, "small_cnn", channels=1, side=8)
    assert (
        main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "e.safetensors")]) == 0
    )
    assert "safetensors export in" in capsys.readouterr().out
    assert json.loads((tmp_path / "e.safetensors.json").read_text())["out_dim"] == load_encoder(run).out_dim
    option = next(o for o in VERBS["export"].options if o.name == "--format")
    assert option.choices == FORMATS
