import numpy as np
import pytest
import torch

from conftest import corrupt_bytes, make_image_folder, make_tar, write_image
from selfsup.data import ImageDataset, load_data, loaders
from selfsup.errors import DataError


def test_digits_split_is_fixed_and_stratified():
    first, second = load_data("digits"), load_data("digits")
    assert first.train.images.shape == (1347, 1, 8, 8) and first.test.images.shape == (450, 1, 8, 8)
    assert first.train.images.dtype == torch.uint8 and first.train.images.max() == 255
    assert torch.equal(first.test.images, second.test.images)
    counts = torch.bincount(first.test.labels)
    assert counts.min() >= 43 and counts.max() <= 46


def test_labelled_folder_without_splits_holds_out_a_test_split(tmp_path):
    make_image_folder(tmp_path / "pets", per_class=10)
    splits = load_data(str(tmp_path / "pets"))
    assert splits.train.classes == ["cat", "dog"]
    assert len(splits.train) == 16 and len(splits.test) == 4
    assert torch.bincount(splits.test.labels).tolist() == [2, 2]
    assert "held out" in splits.note
    assert splits.train.names[0].startswith("cat/")


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(5):
        write_image(tmp_path / "flat" / f"{i}.png", seed=i)
    splits = load_data(str(tmp_path / "flat"))
    assert not splits.train.labelled and splits.test is None and len(splits.train) == 5


def test_archive_with_train_and_test_gives_those_splits(tmp_path):
    folder = make_image_folder(tmp_path / "set", per_class=3, splits=["train", "test"])
    for wrapper in (None, "wrapped"):
        archive = make_tar(folder, tmp_path / f"set-{wrapper}.tar.gz", wrapper=wrapper)
        splits = load_data(str(archive))
        assert len(splits.train) == 6 and len(splits.test) == 6
        assert splits.train.images.shape[1:] == (3, 12, 12)
        assert splits.test.classes == ["cat", "dog"]


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "pets", per_class=4)
    first = load_data(str(folder))

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(loaders, "_build", must_not_decode)
    second = load_data(str(folder))
    assert torch.equal(first.train.images, second.train.images)
    # a changed file invalidates the cache
    write_image(folder / "cat" / "000.png", seed=999)
    with pytest.raises(AssertionError, match="decoded again"):
        load_data(str(folder))


def test_numpy_arrays(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 10, 10, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    splits = load_data(str(tmp_path / "x.npy"))
    assert splits.train.images.shape == (20, 3, 10, 10) and not splits.train.labelled
    np.savez(tmp_path / "xy.npz", images=images, labels=np.repeat(["a", "b"], 10))
    splits = load_data(str(tmp_path / "xy.npz"))
    assert splits.train.classes == ["a", "b"] and len(splits.test) == 4
    floats = ImageDataset.from_arrays(np.full((2, 4, 4), 0.5))
    assert floats.images.dtype == torch.uint8 and int(floats.images[0, 0, 0, 0]) == 128


def test_resize_option_makes_mixed_sizes_usable(tmp_path):
    write_image(tmp_path / "mixed" / "a" / "0.png", size=(20, 12))
    write_image(tmp_path / "mixed" / "a" / "1.png", size=(12, 12))
    with pytest.raises(DataError, match="data.image_size"):
        load_data(str(tmp_path / "mixed"))
    splits = load_data(str(tmp_path / "mixed"), image_size=8)
    assert splits.train.images.shape[1:] == (3, 8, 8)


def test_grey_images_keep_one_channel(tmp_path):
    for i in range(4):
        write_image(tmp_path / "grey" / f"{i}.png", mode="L", seed=i)
    assert load_data(str(tmp_path / "grey")).train.images.shape == (4, 1, 12, 12)


def write_text(path):
    path.write_text("x")
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p / "missing", "not found"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no images found"),
        (lambda p: write_text(p / "a.doc"), "unsupported data file"),
    ],
)
def test_bad_paths_name_the_culprit(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        load_data(str(path))
    assert str(path) in str(info.value)


def test_corrupt_image_is_named_or_skipped_with_a_count(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=4)
    (folder / "dog" / "broken.png").write_bytes(corrupt_bytes())
    with pytest.raises(DataError, match=r"dog/broken.png.*--skip-bad-images"):
        load_data(str(folder))
    with pytest.warns(UserWarning, match="skipped 1 corrupt image"):
        splits = load_data(str(folder), skip_bad_images=True)
    assert len(splits.train) + len(splits.test) == 8


def test_real_cifar10_archive(cifar_tar):
    splits = load_data(str(cifar_tar))
    assert splits.train.images.shape == (50000, 3, 32, 32)
    assert splits.test.images.shape == (10000, 3, 32, 32)
    assert (
        splits.train.classes[0] == "airplane" and torch.bincount(splits.test.labels).tolist() == [1000] * 10
    )


def test_train_subset_is_class_balanced_and_keeps_the_test_split():
    from selfsup.data.dataset import train_subset

    splits = load_data("digits")
    subset = train_subset(splits, 500)
    assert abs(len(subset.train) - 500) <= 5 and subset.test is splits.test  # rounded per class
    assert torch.bincount(subset.train.labels).min() >= 48  # 10 classes, about 50 each
