"""Backbones by name from timm and torchvision: built without their classifier, their feature
size found, the CIFAR stem for ResNets, and pretrained, evaluated and reloaded like the built-in ones."""

import pytest
import torch
from torch import nn

from conftest import make_image_folder
from selfsup import api
from selfsup.errors import ConfigError
from selfsup.models.backbones import build_backbone
from selfsup.models.encoder import load_encoder

pytest.importorskip("timm", reason="the timm backbones need the timm package (the timm extra)")


@pytest.mark.parametrize(
    "name, dim",
    [
        ("torchvision:resnet18", 512),
        ("torchvision:mobilenet_v3_small", 1024),  # its classifier's last linear layer is removed
        ("timm:resnet18", 512),
        ("timm:convnext_atto", 320),
        ("timm:vit_tiny_patch16_224", 192),  # built for the data's size (img_size)
    ],
)
def test_library_backbones_return_pooled_features_of_the_found_size(name, dim):
    backbone = build_backbone(name, 3, 32)
    assert backbone.out_dim == dim
    assert backbone(torch.rand(3, 3, 32, 32)).shape == (3, dim)
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in backbone.modules())


def test_grey_images_and_the_cifar_stem():
    for name in ("torchvision:resnet18", "timm:resnet18"):
        small, large = build_backbone(name, 1, 32), build_backbone(name, 1, 96)
        assert small(torch.rand(2, 1, 32, 32)).shape == (2, 512)
        assert small.net.conv1.stride == (1, 1) and isinstance(small.net.maxpool, nn.Identity)
        assert large.net.conv1.stride == (2, 2) and not isinstance(large.net.maxpool, nn.Identity)
        assert build_backbone(name, 3, 32, stem="imagenet").net.conv1.stride == (2, 2)


@pytest.mark.parametrize(
    "name, message",
    [
        ("timm:resnet_18", "timm has no model 'resnet_18' \\(close: resnet18"),
        ("torchvision:resnet19", "torchvision has no classification model 'resnet19'"),
        ("torchvision:squeezenet1_0", "no final linear classifier"),
        ("keras:resnet18", "unknown backbone 'keras:resnet18'"),
    ],
)
def test_unknown_library_models_are_one_line_errors(name, message):
    with pytest.raises(ConfigError, match=message):
        build_backbone(name, 3, 32)


@pytest.mark.parametrize(
    "method, backbone",
    [("simclr", "timm:convnext_atto"), ("byol", "torchvision:mobilenet_v3_small"), ("dino", "timm:resnet18")],
)
def test_methods_pretrain_evaluate_and_reload_library_backbones(tmp_path, method, backbone):
    data = make_image_folder(tmp_path / "pets", per_class=12, size=(32, 32))
    result = api.pretrain(
        method,
        str(data),
        out=str(tmp_path / "run"),
        backbone=backbone,
        epochs=1,
        batch_size=8,
        progress=False,
        report=False,
    )
    assert torch.isfinite(torch.tensor(result.history[-1]["loss"]))
    scores = api.evaluate(
        result.run_dir, labels=["2/class"], seeds=1, protocols=["knn", "linear"], progress=False, report=False
    )
    assert {row["protocol"] for row in scores["results"]} == {"knn", "linear"}
    encoder = load_encoder(result.run_dir)
    images = torch.rand(2, 3, 32, 32)
    assert encoder.spec["backbone"] == backbone and encoder(images).shape[1] == encoder.out_dim


def test_local_views_too_small_for_the_backbone_are_a_clear_error(tmp_path):
    data = make_image_folder(tmp_path / "pets", per_class=4, size=(32, 32))
    with pytest.raises(ConfigError, match="cannot take images of 3×.*set augment.local_size larger"):
        api.pretrain(
            "dino",
            str(data),
            out=str(tmp_path / "run"),
            backbone="timm:convnext_atto",
            epochs=1,
            batch_size=8,
            progress=False,
            report=False,
        )


def test_pretraining_starts_from_weights_in_a_file_or_a_run(tmp_path):
    from torchvision import models

    data = make_image_folder(tmp_path / "pets", per_class=6, size=(32, 32))
    weights = models.resnet18(weights=None).state_dict()  # as torchvision saves them, classifier and all
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}}, tmp_path / "r18.pth")
    common = dict(epochs=1, batch_size=8, progress=False, report=False)
    with pytest.raises(ConfigError, match="other shapes .*conv1.weight .*model.stem=imagenet"):
        api.pretrain(
            "simclr",
            str(data),
            out=str(tmp_path / "a"),
            backbone="torchvision:resnet18",
            overrides=[f"model.weights={tmp_path / 'r18.pth'}"],
            **common,
        )
    from selfsup.methods.recipes import build_config
    from selfsup.train.modality import build_encoder

    config = build_config(
        "simclr",
        small_images=False,
        overrides=[
            "model.backbone=torchvision:resnet18",
            "model.stem=imagenet",
            f"model.weights={tmp_path / 'r18.pth'}",
        ],
    )
    encoder = build_encoder(config, torch.zeros(4, 3, 32, 32, dtype=torch.uint8))
    assert torch.equal(encoder.backbone.net.layer4[1].conv2.weight, weights["layer4.1.conv2.weight"])
    run = api.pretrain("simclr", str(data), out=str(tmp_path / "b"), backbone="resnet18", **common)
    config = build_config("simclr", small_images=False, overrides=[f"model.weights={run.run_dir}"])
    again = build_encoder(config, torch.zeros(4, 3, 32, 32, dtype=torch.uint8))
    assert torch.equal(
        again.backbone.layer1[0].conv1.weight, load_encoder(run.run_dir).backbone.layer1[0].conv1.weight
    )
    torch.save({"layer9.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="missing .*not in the model \\(1\\): layer9.weight"):
        build_encoder(
            build_config("simclr", small_images=False, overrides=[f"model.weights={tmp_path / 'other.pt'}"]),
            torch.zeros(4, 3, 32, 32, dtype=torch.uint8),
        )


def test_mae_hides_patches_of_a_timm_vit_and_its_view_matches_timm(tmp_path):
    from selfsup.models.library_backbones import timm_vit_patches

    backbone = build_backbone("timm:vit_tiny_patch16_224", 3, 64)
    view = timm_vit_patches(backbone)
    assert (view.grid, view.patch_size, view.num_patches) == (4, 16, 16)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # all patches kept: the same tokens as timm's own forward
        torch.testing.assert_close(view.encode(view.embed(x)), backbone.net.forward_features(x))
    data = make_image_folder(tmp_path / "pets", per_class=8, size=(64, 64))
    common = dict(epochs=1, batch_size=8, progress=False, report=False)
    result = api.pretrain(
        "mae", str(data), out=str(tmp_path / "mae"), backbone="timm:vit_tiny_patch16_224", **common
    )
    assert torch.isfinite(torch.tensor(result.history[-1]["loss"]))
    with pytest.raises(ConfigError, match="mae needs a ViT whose patch tokens it can hide"):
        api.pretrain("mae", str(data), out=str(tmp_path / "c"), backbone="timm:convnext_atto", **common)
