"""Shared fixtures: an isolated data cache, tiny image folders, and paths to the real data sets."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CIFAR_TAR = SHARED / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated_cache(cache_root, monkeypatch):
    """Decoded data sets are cached for this test session only, never in the user's cache."""
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(cache_root))


@pytest.fixture(autouse=True)
def pinned_precision(monkeypatch):
    """``train.precision=auto`` follows the CPU's flags without timing dry steps, so a test's numbers
    never depend on which precision a busy machine happened to measure faster (test_speed.py
    times them with its own clock)."""
    from selfsup.train import speed

    monkeypatch.setattr(speed, "measures_precision", lambda setting, device: False)


@pytest.fixture(autouse=True)
def no_reports(monkeypatch):
    """Runs skip their report.html (a t-SNE and plots: seconds each); test_report.py turns them on."""
    monkeypatch.setenv("SELFSUP_REPORT", "0")


def write_image(path: Path, size=(12, 12), seed=0, mode="RGB") -> None:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)


def make_image_folder(root: Path, classes=("cat", "dog"), per_class=6, size=(12, 12), splits=None) -> Path:
    """An ImageFolder tree (optionally with train/ and test/ splits) of random PNGs."""
    seed = 0
    for split in splits or [None]:
        base = root / split if split else root
        for name in classes:
            for i in range(per_class):
                seed += 1
                write_image(base / name / f"{i:03d}.png", size=size, seed=seed)
    return root


def make_tar(folder: Path, archive: Path, wrapper: str | None = None) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=wrapper or ".")
    return archive


def corrupt_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()[:40]  # a truncated PNG


@pytest.fixture
def cifar_tar() -> Path:
    if not CIFAR_TAR.exists():
        pytest.skip(f"real-data test: {CIFAR_TAR} is absent (see ../shared/datasets/README.md)")
    return CIFAR_TAR


def digits_knn_accuracy(run_dir: Path, k: int = 20) -> float:
    """Test accuracy of a run's encoder on the digits by a kNN vote over all training features."""
    import torch

    from selfsup import load_encoder
    from selfsup.data import load_data
    from selfsup.evaluate.features import extract_features
    from selfsup.evaluate.knn import knn_predict

    splits = load_data("digits")
    encoder = load_encoder(run_dir)
    train = extract_features(encoder, splits.train.images, torch.device("cpu"))
    test = extract_features(encoder, splits.test.images, torch.device("cpu"))
    return float(
        (knn_predict(train, splits.train.labels, test, 10, k=k) == splits.test.labels).float().mean()
    )


TINY = ["model.width=8", "method.proj_dim=16", "train.batch_size=128", "optim.warmup_epochs=0.5"]
"""Overrides that make a digits run take about a second per epoch."""

TINY_TEXT = ["model.width=32", "model.depth=1", "train.batch_size=16", "text.max_length=16"]
"""Overrides that make a text run of a few dozen documents take a second."""


def quick_run(method: str, data, out: Path, overrides: list[str]) -> Path:
    """One quiet epoch of ``method`` on ``data`` (no progress, no report) into ``out``."""
    from selfsup import api

    api.pretrain(method, str(data), out=out, epochs=1, overrides=overrides, progress=False, report=False)
    return out
