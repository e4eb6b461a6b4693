"""The Python API with the user's own module and data: any nn.Module as the backbone, a Dataset,
a tensor or an array as the data; the run saves the module and reloads without the user's code."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from selfsup import api
from selfsup.errors import ConfigError, DataError, SelfsupError
from selfsup.models.encoder import load_encoder


class TinyNet(nn.Module):
    """A user's own network: feature maps, not flat features (selfsup flattens them)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))

    def forward(self, x):
        return self.body(x)


class DigitPairs(torch.utils.data.Dataset):
    """(image, label) pairs as torchvision's data sets give them: C×H×W floats in [0, 1], ints."""

    classes = [str(i) for i in range(10)]

    def __init__(self, n=300):
        digits = load_digits()
        self.images = torch.tensor(digits.images[:n] / 16.0, dtype=torch.float32)[:, None]
        self.labels = digits.target[:n].tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


COMMON = dict(epochs=1, batch_size=64, progress=False, report=False)


def test_a_users_module_and_dataset_pretrain_evaluate_and_reload(tmp_path):
    net = TinyNet()
    before = net.body[0].weight.clone()
    result = api.pretrain("simclr", DigitPairs(), out=tmp_path / "run", backbone=net, **COMMON)
    assert torch.equal(net.body[0].weight, before)  # the module handed over is left as it was
    assert np.isfinite(result.final_loss)
    encoder = load_encoder(result.run_dir)
    assert encoder.out_dim == 32 and encoder(torch.rand(3, 1, 8, 8)).shape == (3, 32)
    assert encoder.spec["backbone"].startswith("custom:TinyNet")
    with pytest.raises(SelfsupError, match="the run's data <DigitPairs> are not there any more"):
        api.evaluate(result.run_dir, progress=False, report=False)
    scores = api.evaluate(
        result.run_dir,
        data=DigitPairs(),
        labels=["5/class"],
        seeds=1,
        protocols=["knn", "scratch"],
        progress=False,
        report=False,
    )
    assert {row["protocol"] for row in scores["results"]} == {"knn", "scratch"}
    # a new process, without the user's module registered, rebuilds the encoder from the run
    here = str(Path(__file__).parent)  # the user's class must be importable where the run is loaded
    code = (
        f"import sys, torch; sys.path.insert(0, {here!r}); from selfsup import load_encoder; "
        f"e = load_encoder({str(result.run_dir)!r}); print(e(torch.rand(2, 1, 8, 8)).shape[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "32"


@pytest.mark.parametrize("form", ["tensor", "array", "pair", "named"])
def test_tensors_and_arrays_are_data(tmp_path, form):
    digits = load_digits()
    images = (digits.images[:200] * 255 / 16).astype(np.uint8)  # N×H×W
    data = {
        "tensor": torch.from_numpy(images),
        "array": images,
        "pair": (images, digits.target[:200]),
        "named": [(image, "odd" if t % 2 else "even") for image, t in zip(images, digits.target)],  # a list
    }[form]
    result = api.pretrain("simclr", data, out=tmp_path / form, backbone="small_cnn", **COMMON)
    assert np.isfinite(result.final_loss)
    if form == "named":
        from selfsup.data import load_data

        assert load_data(data).train.classes == ["even", "odd"]


def test_bad_python_data_and_backbones_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="data must be a path, 'digits', a tensor"):
        api.pretrain("simclr", 42, out=tmp_path / "a", **COMMON)
    with pytest.raises(DataError, match="images must have shape N×H×W"):
        api.pretrain("simclr", torch.rand(5, 7), out=tmp_path / "b", **COMMON)
    with pytest.raises(ConfigError, match="cannot take images of 1×8×8"):
        api.pretrain("simclr", DigitPairs(100), out=tmp_path / "c", backbone=nn.Linear(3, 3), **COMMON)
