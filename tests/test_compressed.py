"""Compressed stores: large images are kept as JPEG bytes and decoded per batch, close to the
pixels of the files, in the same order, splits and labels as a raw store."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from selfsup.data import load_data, store
from selfsup.data.compressed import JpegImages, encode_jpeg
from selfsup.data.decode import decode_image
from selfsup.errors import ConfigError


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(store, "CHUNK", 4)


def smooth(side, seed, mode="RGB"):
    """A smooth picture (gradients and a blob) of ``side`` px, as photos are, unlike noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    channels = [
        255 * np.clip(a * x + b * y + c * np.exp(-((x - d) ** 2 + (y - e) ** 2) * 8), 0, 1)
        for a, b, c, d, e in rng.uniform(0, 1, (3, 5))
    ]
    array = np.stack(channels, axis=-1).astype(np.uint8)
    return Image.fromarray(array if mode == "RGB" else array[..., 0])


def folder(root, side=160, per_class=5, grey=()):
    for i, name in enumerate(("ant", "bee")):
        for k in range(per_class):
            mode = "L" if (name, k) in grey else "RGB"
            path = root / "train" / name / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            smooth(side, 10 * i + k, mode).save(path)
    return root


def reference(root, names):
    """The files ``names`` (relative to ``root``) decoded on their own, as RGB N×C×H×W."""
    arrays = [decode_image((root / name).read_bytes()) for name in names]
    arrays = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def test_large_images_are_stored_as_jpeg_and_decode_close_to_the_files(tmp_path):
    root = folder(tmp_path / "data", grey={("bee", 1)})
    splits = load_data(str(root))  # auto: 160 px and up is compressed
    images = splits.train.images
    assert (
        isinstance(images, JpegImages) and images.shape == (8, 3, 160, 160) and len(images) == 8
    )  # 2 held out
    expected = reference(root, splits.train.names)
    decoded = images[torch.arange(8)]
    assert decoded.dtype == torch.uint8 and decoded.shape == expected.shape
    assert (decoded.float() - expected.float()).abs().mean() < 1.5  # quality 95, no chroma subsampling
    # exactly what encoding the decoded file and decoding it again gives
    again = [
        decode_jpeg(
            torch.frombuffer(bytearray(encode_jpeg(a.permute(1, 2, 0).numpy())), dtype=torch.uint8),
            mode=ImageReadMode.RGB,
        )
        for a in expected
    ]
    assert torch.equal(decoded, torch.stack(again))
    raw = load_data(str(root), store="raw").train
    assert (
        isinstance(raw.images, torch.Tensor)
        and torch.equal(raw.images, expected)
        and raw.names == splits.train.names
    )
    store_bytes = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("images.jpg.bin"))
    assert store_bytes < raw.images.numel() / 4


def test_indexing_gives_what_a_tensor_gives(tmp_path):
    images = load_data(str(folder(tmp_path / "data")), store="jpeg").train.images
    whole = images[:]
    assert torch.equal(images[3], whole[3]) and torch.equal(images[-1], whole[-1])
    assert torch.equal(images[2:7:2], whole[2:7:2])
    index = torch.tensor([7, 0, 4, 4])
    assert torch.equal(images[index], whole[index]) and torch.equal(images[index.numpy()], whole[index])
    assert images[torch.tensor([], dtype=torch.long)].shape == (0, 3, 160, 160)
    with pytest.raises(IndexError):
        images[torch.tensor([8])]


def test_a_held_out_split_and_labels_match_the_raw_store(tmp_path):
    root = tmp_path / "data"
    for i, name in enumerate(("ant", "bee", "cow")):
        for k in range(10):
            path = root / name / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            smooth(24, 10 * i + k).save(path)
    jpeg, raw = load_data(str(root), store="jpeg"), load_data(str(root), store="raw")
    for name in ("train", "test"):
        a, b = getattr(jpeg, name), getattr(raw, name)
        assert torch.equal(a.labels, b.labels) and a.names == b.names
        assert (a.images[:].float() - b.images.float()).abs().mean() < 3


def test_a_killed_jpeg_build_is_finished_by_the_next_run(tmp_path, monkeypatch):
    root = folder(tmp_path / "data")
    calls = []
    original = store._write_shard

    def dies(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(store, "_write_shard", dies)
    with pytest.raises(KeyboardInterrupt):
        load_data(str(root), store="jpeg")
    assert not list((tmp_path / "cache").glob("*.store"))
    monkeypatch.setattr(store, "_write_shard", original)
    train = load_data(str(root), store="jpeg").train
    assert (train.images[:].float() - reference(root, train.names).float()).abs().mean() < 1.5


def test_training_gathers_batches_from_a_jpeg_store(tmp_path):
    from selfsup import api

    root = tmp_path / "data"
    for i, name in enumerate(("ant", "bee")):
        for k in range(8):
            path = root / name / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            smooth(16, 10 * i + k).save(path)
    result = api.pretrain(
        "simclr",
        str(root),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=8,
        backbone="small_cnn",
        overrides=["data.store=jpeg", "model.width=8"],
        progress=False,
    )
    assert np.isfinite(result.history[-1]["loss"])
    scores = api.evaluate(
        result.run_dir, labels=["2/class"], seeds=1, protocols=["knn", "pixels"], progress=False
    )
    assert {row["protocol"] for row in scores["results"]} == {"knn", "pixels"}


def test_an_unknown_store_encoding_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="data.store must be one of auto, raw, jpeg"):
        load_data(str(folder(tmp_path / "data", side=8)), store="png")


def test_masks_and_zero_dimensional_indices_pick_the_images_a_tensor_would(tmp_path):
    images = load_data(str(folder(tmp_path / "data")), store="jpeg").train.images
    whole = images[:]
    mask = torch.tensor([True, False] * 4)
    assert torch.equal(images[mask], whole[mask]) and torch.equal(images[torch.tensor(3)], whole[3])
    assert torch.equal(images[np.int64(5)], whole[5])
