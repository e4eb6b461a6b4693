import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, digits_knn_accuracy
from selfsup import api, load_encoder
from selfsup.data import DataSplits, load_data
from selfsup.errors import TrainingError
from selfsup.evaluate.features import extract_features
from selfsup.methods.simclr import SimCLR
from selfsup.train import run_pretraining
from selfsup.train.checkpoint import load_checkpoint


def final_loss(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["loss"], len(lines)


def test_resume_after_a_shorter_run_is_exact(tmp_path):
    """`--epochs 2` straight equals `--epochs 1` then `--epochs 2 --resume`.

    The learning-rate schedule depends on the total number of epochs, so this comparison uses a
    constant schedule; `test_killed_run_resumes_exactly` covers the warm-up + cosine schedule.
    """
    overrides = TINY + ["optim.schedule=constant", "optim.warmup_epochs=0"]
    api.pretrain("simclr", "digits", out=tmp_path / "straight", epochs=2, overrides=overrides, progress=False)
    api.pretrain("simclr", "digits", out=tmp_path / "resumed", epochs=1, overrides=overrides, progress=False)
    api.pretrain(
        "simclr",
        "digits",
        out=tmp_path / "resumed",
        epochs=2,
        overrides=overrides,
        resume=True,
        progress=False,
    )
    straight, resumed = final_loss(tmp_path / "straight"), final_loss(tmp_path / "resumed")
    assert resumed == straight  # same loss, bit for bit, and two metric lines each
    a, b = (load_file(str(tmp_path / run / "encoder.safetensors")) for run in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_killed_run_resumes_exactly(tmp_path):
    class Killed(Exception):
        pass

    def kill_after_first_epoch(record, method):
        if record["epoch"] == 1:
            raise Killed

    splits = load_data("digits")
    config, _ = api.resolve("simclr", "digits", overrides=TINY + ["train.epochs=2"])
    run_pretraining(config, splits, tmp_path / "straight", progress=False)
    with pytest.raises(Killed):
        run_pretraining(
            config, splits, tmp_path / "killed", progress=False, on_epoch_end=kill_after_first_epoch
        )
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 1
    run_pretraining(config, splits, tmp_path / "killed", resume=True, progress=False)
    assert final_loss(tmp_path / "killed") == final_loss(tmp_path / "straight")


def test_run_directory_contents(tmp_path):
    result = api.pretrain("simclr", "digits", out=tmp_path, epochs=2, overrides=TINY, progress=False)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"epoch", "loss", "lr", "images_per_s", "seconds", "embedding_std"} <= set(record)
    assert record["epoch"] == 2 and result.final_loss == record["loss"]
    config = (tmp_path / "config.yaml").read_text()
    assert "simclr_small.yaml" in config and "batch_size: 128" in config
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2
    encoder = load_encoder(tmp_path)
    assert encoder(torch.rand(2, 1, 8, 8)).shape == (2, 32)


def test_existing_run_is_not_overwritten_by_accident(tmp_path):
    api.pretrain("simclr", "digits", out=tmp_path, epochs=1, overrides=TINY, progress=False)
    with pytest.raises(Exception, match="already holds a run; pass --resume"):
        api.pretrain("simclr", "digits", out=tmp_path, epochs=1, overrides=TINY, progress=False)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    original = SimCLR.forward
    calls = {"n": 0}

    def nan_in_second_epoch(self, views, labels=None, progress=None):
        calls["n"] += 1
        out = original(self, views, labels, progress)
        if calls["n"] > 10:  # 10 steps per epoch with batch 128
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(SimCLR, "forward", nan_in_second_epoch)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2.*epoch 1.*checkpoint.pt"):
        api.pretrain("simclr", "digits", out=tmp_path, epochs=3, overrides=TINY, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_simclr_learns_on_real_digits_without_collapse(tmp_path):
    result = api.pretrain("simclr", "digits", out=tmp_path, epochs=5, overrides=TINY, progress=False)
    losses = [h["loss"] for h in result.history]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    # 0 would be complete collapse; 1/sqrt(32) ≈ 0.18 is the spread of a uniform sphere in 32 dimensions
    assert result.history[-1]["embedding_std"] > 0.2 / 32**0.5
    assert digits_knn_accuracy(tmp_path) > 0.6  # chance is 0.1
    test = extract_features(load_encoder(tmp_path), load_data("digits").test.images, torch.device("cpu"))
    assert torch.linalg.matrix_rank(test - test.mean(0), rtol=1e-3) > 8


def test_simclr_trains_on_real_cifar10(cifar_tar, tmp_path):
    splits = load_data(str(cifar_tar))
    subset = DataSplits(splits.train.subset(torch.arange(0, 50000, 100)), None, source="cifar10 subset")
    config, _ = api.resolve(
        "simclr",
        str(cifar_tar),
        overrides=[
            "model.backbone=small_cnn",
            "model.width=16",
            "train.batch_size=100",
            "train.epochs=2",
            "optim.warmup_epochs=1",
            "train.precision=fp32",
        ],
    )
    result = run_pretraining(config, subset, tmp_path, progress=False)
    assert all(torch.isfinite(torch.tensor([h["loss"] for h in result.history])))
    assert result.history[-1]["embedding_std"] > 0.1 / 64**0.5
    assert load_encoder(tmp_path)(torch.rand(2, 3, 32, 32)).shape == (2, 64)


def test_resnet_views_that_reach_1x1_maps_train_in_float32_on_the_cpu():
    """bf16 convolutions on the CPU give garbage weight gradients for 3×3 kernels on 1×1 maps
    (PyTorch 2.14, benchmarks/bf16_conv_grad.py: inf/NaN in the taps that only see padding); the loop
    avoids them."""
    from selfsup.models.backbones import resnet_last_stage_input_side

    assert resnet_last_stage_input_side(14, "imagenet") == 1  # DINO's local crops of 32-px images
    assert resnet_last_stage_input_side(32, "imagenet") == 2
    assert resnet_last_stage_input_side(32, "auto") == 8  # CIFAR stem
    assert resnet_last_stage_input_side(4, "cifar") == 1


def test_the_loop_trains_in_float32_where_bf16_would_meet_1x1_maps(tmp_path):
    with pytest.warns(UserWarning, match="training in float32"):
        api.pretrain(
            "dino",
            "digits",
            out=tmp_path,
            epochs=1,
            progress=False,
            overrides=[
                "model.backbone=resnet18",
                "model.stem=imagenet",
                "train.precision=bf16",
                "train.batch_size=256",
                "method.out_dim=64",
                "method.hidden_dim=64",
                "augment.local_views=1",
            ],
        )
