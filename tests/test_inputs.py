"""Inputs that trip real users: each is read as the user means it, or refused with a one-line error.

One section per kind of input:
1. pixel values as the file means them (modes, bit depths, EXIF orientation, transparency, colour profiles);
2. the folder layout as the user means it (splits, classes, hidden and unused files, wrappers, archives);
3. labels as the user means them (negative = unlabelled, a single class);
4. batches too small to learn from (each method's floor, BatchNorm's, under torchrun, in evaluation);
5. text as the user means it (CSV headers and labels, documents of a .txt, line ends, control tokens);
6. run files and commands (strict JSON, resuming with other settings, key=value anywhere);
7. schedules that outlast the run.
"""

import io
import json
import struct
import tarfile
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from conftest import make_image_folder, make_tar, write_image
from selfsup import api
from selfsup.data import load_data
from selfsup.data.decode import UnmappableImage, decode_image
from selfsup.data.tokenizer import encode_documents, encode_marked_masks, train_tokenizer, trim_padding
from selfsup.errors import ConfigError, DataError
from selfsup.jsonfile import to_json
from selfsup.methods import METHODS
from selfsup.methods.recipes import build_config
from selfsup.train import read_history
from selfsup.train.batch_guard import check_batch_floor
from selfsup.train.optim import scaled_lr
from test_cli import assert_one_line_error, run_cli


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pixels(data: bytes) -> list:
    return decode_image(data).tolist()


# ---- 1. pixel values as the file means them ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_is_scaled_to_8_bits_not_clipped(fmt):
    image = Image.fromarray(np.array([[0, 20000, 40000, 65535]], dtype=np.uint16))
    assert pixels(encoded(image, fmt)) == [[0, 78, 156, 255]]  # value / 257


def test_16_bit_greyscale_folder_reads_all_grey_levels(tmp_path):
    for i in range(5):
        Image.fromarray(np.array([[0, 20000, 40000]] * 3, dtype=np.uint16)).save(tmp_path / f"{i}.png")
    assert torch.unique(load_data(str(tmp_path)).train.images).tolist() == [0, 78, 156]


def sideways_pair(tmp_path, fmt: str, suffix: str):
    """The same picture stored upright and stored rotated with EXIF Orientation 6 (rotate 90°
    clockwise to view)."""
    upright = np.zeros((6, 10, 3), dtype=np.uint8)
    upright[:, :3] = (250, 20, 20)  # a red band on the left
    upright[:, 3:] = (20, 20, 250)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: 10×6
    exif = Image.Exif()
    exif[0x0112] = 6
    folder = tmp_path / fmt
    folder.mkdir()
    lossless_as_can_be = {"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}
    (folder / f"upright{suffix}").write_bytes(encoded(Image.fromarray(upright), fmt, **lossless_as_can_be))
    (folder / f"sideways{suffix}").write_bytes(encoded(stored, fmt, exif=exif, **lossless_as_can_be))
    return folder, upright


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_exif_orientation_turns_a_sideways_photo_upright(tmp_path, fmt, suffix):
    folder, upright = sideways_pair(tmp_path, fmt, suffix)
    images = load_data(str(folder)).train.images  # same size now: no "different sizes" error
    assert images.shape == (2, 3, 6, 10)
    for image in images:
        assert (
            image.permute(1, 2, 0).int() - torch.from_numpy(upright).int()
        ).abs().max() <= 12  # JPEG's loss


VIEWED = {  # how a viewer shows stored pixels S under each EXIF orientation (EXIF 2.3, tag 0x0112)
    1: lambda s: s,
    2: lambda s: s[:, ::-1],
    3: lambda s: s[::-1, ::-1],
    4: lambda s: s[::-1],
    5: lambda s: s.T,
    6: lambda s: np.rot90(s, -1),
    7: lambda s: s[::-1, ::-1].T,
    8: lambda s: np.rot90(s, 1),
}


@pytest.mark.parametrize("orientation", sorted(VIEWED))
def test_all_eight_exif_orientations(orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (3, 5), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    assert np.array_equal(
        decode_image(encoded(Image.fromarray(stored), "PNG", exif=exif)), VIEWED[orientation](stored)
    )


def palette_with_transparency() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 1  # palette entry 1 (blue) is transparent
    return image


@pytest.mark.parametrize(
    "image,fmt,expected",
    [
        (Image.new("1", (2, 1), 1), "PNG", [[255, 255]]),
        (Image.new("L", (2, 1), 77), "PNG", [[77, 77]]),
        (Image.new("LA", (2, 1), (100, 0)), "PNG", [[255, 255]]),  # transparent: the white behind it
        (Image.new("LA", (2, 1), (100, 255)), "PNG", [[100, 100]]),
        (Image.new("RGBA", (1, 1), (200, 0, 0, 128)), "PNG", [[[228, 127, 127]]]),  # half red over white
        (
            Image.fromarray(np.array([[10, 200]], dtype=np.uint8)),
            "PNG+tRNS",
            [[10, 255]],
        ),  # grey 200 is transparent
        (
            Image.fromarray(np.array([[[5, 6, 7], [9, 9, 9]]], dtype=np.uint8)),
            "PNG+tRNS",
            [[[5, 6, 7], [255, 255, 255]]],
        ),
        (palette_with_transparency(), "PNG", [[[255, 0, 0], [255, 255, 255]]]),
        (palette_with_transparency(), "GIF", [[[255, 0, 0], [255, 255, 255]]]),
        (Image.new("CMYK", (1, 1), (255, 0, 0, 0)), "JPEG", [[[0, 255, 255]]]),  # cyan
        (Image.new("RGB", (1, 1), (10, 200, 30)), "PNG", [[[10, 200, 30]]]),
        (Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F"), "TIFF", [[0, 128, 255]]),
        (Image.fromarray(np.array([[0, 65535]], dtype=np.int32), "I"), "PPM", [[0, 255]]),
    ],
)
def test_every_mode_becomes_the_picture_a_viewer_shows(image, fmt, expected):
    if fmt == "PNG+tRNS":  # a PNG's transparent grey level or colour (its tRNS chunk)
        data = encoded(image, "PNG", transparency=200 if image.mode == "L" else (9, 9, 9))
    else:
        data = encoded(image, fmt, quality=100) if fmt != "TIFF" else encoded(image, fmt)
    got = decode_image(data)
    assert np.abs(got.astype(int) - np.array(expected)).max() <= 2, got.tolist()  # JPEG: colour rounding


@pytest.mark.parametrize(
    "image,message",
    [
        (Image.fromarray(np.array([[0.0, 2.5]], dtype=np.float32), "F"), r"span \[0, 2.5\]"),
        (Image.fromarray(np.array([[-5, 7]], dtype=np.int32), "I"), "signed integer"),
    ],
)
def test_pixels_without_a_faithful_picture_are_refused_not_clipped(image, message, tmp_path):
    with pytest.raises(UnmappableImage, match=message):
        decode_image(encoded(image, "TIFF"))
    for i in range(2):
        image.save(tmp_path / f"{i}.tif")
    with pytest.raises(DataError, match=f"0.tif: .*{message}"):
        load_data(str(tmp_path))


def swapped_red_blue_profile() -> bytes:
    """An sRGB ICC profile whose red and blue primaries are swapped: a file tagged with it that
    stores pure red means pure blue."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", profile[128:132])[0]
    tags = {bytes(profile[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = tags[b"rXYZ"], tags[b"bXYZ"]
    profile[red + 4 : red + 12], profile[blue + 4 : blue + 12] = (
        profile[blue + 4 : blue + 12],
        profile[red + 4 : red + 12],
    )
    return bytes(profile)


def test_embedded_colour_profiles_are_converted_to_srgb():
    red = Image.new("RGB", (1, 1), (255, 0, 0))
    shown = decode_image(encoded(red, "PNG", icc_profile=swapped_red_blue_profile()))[0, 0]
    assert shown[2] > 200 and shown[0] < 60  # blue, as the profile says
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert (
        np.abs(decode_image(encoded(red, "PNG", icc_profile=srgb))[0, 0].astype(int) - [255, 0, 0]).max() <= 2
    )


def test_animations_give_their_first_frame():
    frames = [Image.new("L", (2, 2), 10), Image.new("L", (2, 2), 200)]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert np.unique(decode_image(data)).tolist() == [10]


@pytest.mark.parametrize(
    "array,expected",
    [
        (np.array([[[0, 128, 255]]], dtype=np.int64), [0, 128, 255]),  # integers in 0..255: as they are
        (np.array([[[0, 20000, 65535]]], dtype=np.uint16), [0, 78, 255]),  # uint16: 16 bits
        (np.array([[[0.0, 0.5, 1.0]]]), [0, 128, 255]),
    ],
)
def test_array_pixels_by_their_dtype(tmp_path, array, expected):
    np.save(tmp_path / "x.npy", np.repeat(array, 4, axis=0))
    assert load_data(str(tmp_path / "x.npy")).train.images[0].flatten().tolist() == expected


def test_uint16_arrays_of_8_bit_values_are_read_as_16_bits_with_a_warning(tmp_path):
    np.save(tmp_path / "x.npy", np.full((4, 2, 2), 200, dtype=np.uint16))
    with pytest.warns(UserWarning, match="nearly black; if they are 8-bit pictures, save them as uint8"):
        assert int(load_data(str(tmp_path / "x.npy")).train.images.max()) == 1


def test_a_corrupt_file_is_named_without_python_internals(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=3)
    (folder / "cat" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"corrupt or truncated image: .*cat/bad.png") as info:
        load_data(str(folder))
    assert "BytesIO" not in str(info.value) and "0x" not in str(info.value)


def test_boolean_arrays_are_black_and_white(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[[False, True]]] * 4))
    assert load_data(str(tmp_path / "x.npy")).train.images[0].flatten().tolist() == [0, 255]


@pytest.mark.parametrize(
    "array,message",
    [
        (np.array([[[0, 300]]], dtype=np.int32), r"0..255"),
        (np.array([[[0.0, 255.0]]]), r"\[0, 1\].*divide"),
    ],
)
def test_array_pixels_out_of_range_are_refused(tmp_path, array, message):
    np.save(tmp_path / "x.npy", np.repeat(array, 4, axis=0))
    with pytest.raises(DataError, match=f"x.npy: .*{message}"):
        load_data(str(tmp_path / "x.npy"))


# ---- 2. the folder layout as the user means it ---------------------------------------------------


def test_class_folders_named_like_splits_are_classes(tmp_path):
    folder = make_image_folder(tmp_path / "vehicles", classes=("bus", "train", "tram"), per_class=10)
    with pytest.warns(
        UserWarning,
        match=r"train/ beside other folders \(bus/, tram/\): every folder is read as a "
        "class",
    ):
        splits = load_data(str(folder))
    assert splits.train.classes == ["bus", "train", "tram"]
    assert len(splits.train) + len(splits.test) == 30 and torch.bincount(splits.test.labels).tolist() == [
        2,
        2,
        2,
    ]


def test_hidden_files_and_folders_are_skipped_and_counted(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=5)
    write_image(folder / ".ipynb_checkpoints" / "000-checkpoint.png")
    write_image(folder / "cat" / ".hidden.png")
    (folder / "cat" / ".DS_Store").write_bytes(b"\0")
    (folder / "labels.csv").write_text("x")
    with pytest.warns(
        UserWarning,
        match=r"not used: hidden files or folders ×3 \(e.g. \.ipynb_checkpoints\); "
        r"files that are not images ×1 \(\.csv ×1\)",
    ):
        splits = load_data(str(folder))
    assert splits.train.classes == ["cat", "dog"] and len(splits.train) + len(splits.test) == 10


def test_hidden_folders_stay_hidden_in_an_archive_of_dot(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=5)
    write_image(folder / ".ipynb_checkpoints" / "000-checkpoint.png")
    archive = make_tar(folder, tmp_path / "pets.tar.gz")  # members ./cat/000.png, ./.ipynb_checkpoints/...
    with pytest.warns(UserWarning, match=r"hidden files or folders ×1 \(e.g. \.ipynb_checkpoints\)"):
        assert load_data(str(archive)).train.classes == ["cat", "dog"]


def test_archives_skip_macos_metadata_and_look_through_a_wrapper_folder(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=5)
    write_image(folder / "__MACOSX" / "cat" / "._000.png")
    archive = make_tar(folder, tmp_path / "pets.tar.gz", wrapper="pets")  # pets/cat/..., pets/dog/...
    with pytest.warns(UserWarning, match=r"hidden files or folders ×1 \(e.g. pets/__MACOSX\)"):
        splits = load_data(str(archive))
    assert splits.train.classes == ["cat", "dog"]
    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as zipped:
        for path in sorted(folder.rglob("*.png")):
            if "__MACOSX" not in path.parts:
                zipped.write(path, f"pets/{path.relative_to(folder).as_posix()}")
    assert load_data(str(tmp_path / "pets.zip")).train.classes == ["cat", "dog"]


def test_split_layout_needs_every_top_folder_to_be_a_split_and_counts_the_rest(tmp_path):
    folder = make_image_folder(tmp_path / "set", per_class=3, splits=["train", "test", "val"])
    write_image(folder / "cover.png")
    with pytest.warns(
        UserWarning,
        match=r"images beside the split folders ×1 \(e.g. cover.png\); "
        r"images in val/ \(test/ is the test split\) ×6",
    ):
        splits = load_data(str(folder))
    assert len(splits.train) == 6 and len(splits.test) == 6
    only_val = make_image_folder(tmp_path / "tv", per_class=3, splits=["Train", "Validation"])
    splits = load_data(str(only_val))
    assert len(splits.train) == 6 and len(splits.test) == 6  # val/ is the test split where there is no test/
    no_train = make_image_folder(tmp_path / "nt", per_class=3, splits=["test", "val"])
    with pytest.raises(DataError, match="no train/ folder"):
        load_data(str(no_train))


def test_training_and_testing_folders_are_splits(tmp_path):
    folder = make_image_folder(
        tmp_path / "mnist_png" / "mnist_png", classes=("0", "1"), per_class=3, splits=["training", "testing"]
    )
    splits = load_data(str(folder.parent))  # looked through mnist_png/
    assert splits.train.classes == ["0", "1"] and len(splits.train) == 6 and len(splits.test) == 6


def test_an_archive_of_a_flat_folder_is_one_class_with_every_image_pretrained_on(tmp_path):
    for i in range(10):
        write_image(tmp_path / "photos" / f"{i}.png", seed=i)
    splits = load_data(str(make_tar(tmp_path / "photos", tmp_path / "photos.tar.gz", wrapper="photos")))
    assert splits.train.classes == ["photos"] and len(splits.train) == 10 and splits.test is None


def test_only_files_that_are_not_images_are_named_in_the_error(tmp_path):
    for i in range(3):
        (tmp_path / "phone" / f"IMG_{i}.HEIC").parent.mkdir(exist_ok=True)
        (tmp_path / "phone" / f"IMG_{i}.HEIC").write_bytes(b"\0")
    with pytest.raises(
        DataError, match=r"no images found in .*phone.*files that are not images ×3 \(\.heic ×3\)"
    ):
        load_data(str(tmp_path / "phone"))


def test_broken_links_are_named_or_skipped(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=5)
    (folder / "cat" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match=r"cannot read .*cat/gone.png .*--skip-bad-images"):
        load_data(str(folder))
    with pytest.warns(UserWarning, match="skipped 1 corrupt image"):
        assert len(load_data(str(folder), skip_bad_images=True).train.names) == 8
    archive = tmp_path / "pets.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(folder / "cat" / "000.png", "cat/000.png")
        tar.add(folder / "dog" / "000.png", "dog/000.png")
        link = tarfile.TarInfo("cat/gone.png")
        link.type, link.linkname = tarfile.SYMTYPE, "cat/missing.png"
        tar.addfile(link)
    with pytest.raises(
        DataError, match=r"cannot read .*cat/gone.png of .*\(a link to a file the archive does not hold\)"
    ):
        load_data(str(archive))
    with pytest.warns(UserWarning, match="skipped 1 corrupt image"):
        assert load_data(str(archive), skip_bad_images=True).train.classes == ["cat", "dog"]


def test_zip_names_written_with_backslashes(tmp_path):
    folder = make_image_folder(tmp_path / "set", per_class=3, splits=["train", "test"])
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as zipped:
        for path in sorted(folder.rglob("*.png")):
            zipped.writestr(str(path.relative_to(folder)).replace("/", "\\"), path.read_bytes())
    splits = load_data(str(tmp_path / "set.zip"))
    assert splits.train.classes == ["cat", "dog"] and len(splits.test) == 6


def test_a_class_only_in_the_test_split_is_named(tmp_path):
    folder = make_image_folder(tmp_path / "set", per_class=3, splits=["train", "test"])
    for i in range(2):
        write_image(folder / "test" / "bird" / f"{i}.png", seed=50 + i)
    with pytest.warns(UserWarning, match=r"the test split has classes the training split lacks \(bird ×2\)"):
        assert load_data(str(folder)).test.classes == ["bird", "cat", "dog"]


def test_images_beside_class_folders_are_counted(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=5)
    write_image(folder / "stray.png")
    with pytest.warns(UserWarning, match=r"images beside the class folders ×1 \(e.g. stray.png\)"):
        load_data(str(folder))


def test_linked_class_folders_are_followed(tmp_path):
    make_image_folder(tmp_path / "store", per_class=5)
    (tmp_path / "pets").mkdir()
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).symlink_to(tmp_path / "store" / name, target_is_directory=True)
    splits = load_data(str(tmp_path / "pets"))
    assert splits.train.classes == ["cat", "dog"] and len(splits.train) + len(splits.test) == 10


def test_an_unwritable_or_damaged_cache_only_costs_a_second_decoding(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "pets", per_class=3)
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(tmp_path / "file" / "cache"))  # below a file: cannot be made
    with pytest.warns(UserWarning, match="could not cache the decoded images"):
        assert len(load_data(str(folder)).train) == 4
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(tmp_path / "cache"))
    load_data(str(folder))
    for cached in (tmp_path / "cache").glob("*.store/store.json"):
        cached.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="ignored the damaged cache"):
        assert len(load_data(str(folder)).train) == 4


def test_cached_loads_repeat_the_unused_count(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=5)
    write_image(folder / "stray.png")
    for _ in range(2):  # the second load reads the cache
        with pytest.warns(UserWarning, match="images beside the class folders ×1"):
            load_data(str(folder))


def test_every_run_prints_what_it_found(tmp_path, capsys):
    folder = make_image_folder(
        tmp_path / "vehicles", classes=("bus", "car", "tram"), per_class=6, size=(8, 8)
    )
    code, _, err = run_cli(
        [
            "pretrain",
            "--data",
            folder,
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--backbone",
            "small_cnn",
            "--out",
            tmp_path / "run",
            "model.width=4",
        ],
        capsys,
    )
    assert code == 0, err
    assert "train 15 images; test 3 images; 3 classes (bus 6, car 6, tram 6); 3×8×8 uint8" in err


# ---- 3. labels as the user means them ------------------------------------------------------------


def stl_like(tmp_path, labels) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path / "stl.npz"
    np.savez(path, images=rng.integers(0, 256, (len(labels), 8, 8), dtype=np.uint8), labels=np.array(labels))
    return str(path)


def test_negative_labels_mean_unlabelled(tmp_path):
    labels = [0, 1] * 10 + [-1] * 20
    splits = load_data(stl_like(tmp_path, labels))
    assert splits.train.classes == ["0", "1"]
    assert len(splits.train) == 36 and (splits.train.labels == -1).sum() == 20  # pretraining uses them all
    assert len(splits.test) == 4 and bool((splits.test.labels >= 0).all())  # never in the test split
    from selfsup.evaluate.budgets import parse_budget, select_labelled

    for budget in ("1.0", "2/class"):
        chosen = select_labelled(splits.train.labels, parse_budget(budget), seed=0)
        assert bool((splits.train.labels[chosen] >= 0).all())
    assert len(select_labelled(splits.train.labels, parse_budget("1.0"), seed=0)) == 16


def test_unlabelled_images_are_pretrained_on_and_left_out_of_evaluation(tmp_path):
    path = stl_like(tmp_path, [0, 1] * 10 + [-1] * 20)
    result = api.pretrain(
        "simclr",
        path,
        out=tmp_path / "run",
        epochs=1,
        batch_size=12,
        progress=False,
        overrides=["model.width=4", "method.proj_dim=8", "optim.warmup_epochs=0"],
    )
    assert result.history[0]["images_per_s"] > 0
    evaluation = api.evaluate(
        tmp_path / "run", labels=["1.0"], seeds=1, protocols=["knn", "linear"], progress=False
    )
    assert evaluation["test_images"] == 4 and all(r["labelled_images"] == 16 for r in evaluation["results"])
    api.embed(tmp_path / "run", path, tmp_path / "x.npy")
    rows = json.loads((tmp_path / "x.json").read_text())
    assert rows["label"].count(None) == 20 and rows["classes"] == ["0", "1"]


@pytest.mark.parametrize("labels", [[0, 1] * 6 + [-1] * 12, [0, 1]])
def test_the_report_of_a_tiny_data_set(tmp_path, labels, monkeypatch):
    monkeypatch.setenv("SELFSUP_REPORT", "1")
    api.pretrain(
        "simclr",
        stl_like(tmp_path, labels),
        out=tmp_path / "run",
        epochs=1,
        batch_size=2,
        progress=False,
        overrides=["model.width=4", "method.proj_dim=8", "optim.warmup_epochs=0"],
    )
    assert (tmp_path / "run" / "report.html").exists()


def test_report_map_shows_unlabelled_points_apart():
    from selfsup.report.figures import scatter as _scatter

    figure = _scatter(np.zeros((4, 2)), np.array([0, 1, -1, -1]), ["cat", "dog"], "map")
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["unlabelled", "cat", "dog"]


def test_negative_labels_written_as_text_are_unlabelled_too(tmp_path):
    splits = load_data(stl_like(tmp_path, ["cat", "dog"] * 5 + ["-1", "", "NA"] * 2))
    assert splits.train.classes == ["cat", "dog"] and int((splits.train.labels < 0).sum()) == 6


def test_whole_float_labels_name_integer_classes(tmp_path):
    splits = load_data(stl_like(tmp_path, [0.0, 1.0] * 10 + [float("nan")] * 2))
    assert splits.train.classes == ["0", "1"] and int((splits.train.labels < 0).sum()) == 2


def test_an_npz_of_unlabelled_images_alone(tmp_path):
    np.savez(tmp_path / "u.npz", unlabelled_images=np.zeros((5, 8, 8), dtype=np.uint8))
    splits = load_data(str(tmp_path / "u.npz"))
    assert len(splits.train) == 5 and not splits.train.labelled and splits.test is None


def test_stl10_unlabelled_split_joins_the_training_images(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "stl.npz",
        train_images=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8),
        train_labels=np.array([1, 2, 1, 2, 1, 2]),
        test_images=rng.integers(0, 256, (4, 8, 8), dtype=np.uint8),
        test_labels=np.array([1, 2, 2, 1]),
        unlabelled_images=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8),
    )
    splits = load_data(str(tmp_path / "stl.npz"))
    assert len(splits.train) == 16 and splits.train.labels.tolist() == [0, 1] * 3 + [-1] * 10
    assert splits.test.labels.tolist() == [0, 1, 1, 0]


def test_a_single_class_cannot_be_evaluated(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "buses", classes=("bus",), per_class=12, size=(8, 8))
    code, _, err = run_cli(
        [
            "pretrain",
            "--data",
            folder,
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--backbone",
            "small_cnn",
            "--out",
            tmp_path / "run",
            "model.width=4",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    code, _, err = run_cli(["evaluate", tmp_path / "run", "--quiet"], capsys)
    assert_one_line_error(code, err, "one class ('bus')")


# ---- 4. batches too small to learn from ----------------------------------------------------------

IMAGE_METHODS = sorted(name for name, info in METHODS.items() if info.build.modality == "image")
FLOORS = {"simclr": 2, "moco_v3": 2, "siamese": 2, "vicreg": 2, "barlow_twins": 3, "nnclr": 2}
"""The batch each method's loss needs (the others learn from one image, BatchNorm permitting)."""
TINY_MODELS = {
    "dae": ["method.decoder_width=4"],
    "mae": ["model.width=16", "model.depth=1", "method.decoder_dim=16", "method.decoder_depth=1"],
    "pixelcnn": ["model.width=8", "model.depth=2"],
    "pixelrnn": ["model.width=8", "model.depth=1"],
    "dino": ["method.out_dim=64", "method.hidden_dim=32", "method.bottleneck_dim=16"],
    "ibot": ["model.width=16", "model.depth=1", "method.out_dim=64", "method.hidden_dim=32"]
    + ["method.bottleneck_dim=16"],
    "ijepa": ["model.width=16", "model.depth=1", "method.predictor_dim=16", "method.predictor_depth=1"]
    + ["method.predictor_heads=2"],
}


@pytest.fixture(scope="module")
def twelve_digits(tmp_path_factory) -> str:
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = tmp_path_factory.mktemp("digits") / "twelve.npz"
    np.savez(path, images=np.round(digits.images[:12] * 255 / 16).astype(np.uint8), labels=digits.target[:12])
    return str(path)


def tiny_run(method: str, data: str, batch: int, out, epochs: int = 1, **kwargs):
    overrides = ["model.width=4", "optim.warmup_epochs=0", "train.pictures=0"]
    overrides += TINY_MODELS.get(
        method,
        ["method.proj_dim=8"] if method != "moco_v2" else ["method.proj_dim=8", "method.queue_size=16"],
    )
    return api.pretrain(
        method,
        data,
        out=out,
        epochs=epochs,
        batch_size=batch,
        progress=False,
        report=False,
        overrides=overrides,
        **kwargs,
    )


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_each_method_refuses_a_batch_it_cannot_learn_from_and_learns_at_its_floor(
    method, twelve_digits, tmp_path
):
    floor = FLOORS.get(method, 1)
    if floor > 1:
        with pytest.raises(
            ConfigError,
            match=rf"batch size {floor - 1} is too small for {method}: .*"
            rf"use --batch-size {floor} or more",
        ):
            tiny_run(method, twelve_digits, floor - 1, tmp_path / "small")
        assert not (tmp_path / "small").exists()
    try:
        result = tiny_run(method, twelve_digits, floor, tmp_path / "floor")
    except ConfigError as exc:  # BatchNorm in the method's heads: two values per channel at one image
        assert "BatchNorm layer" in str(exc) and "use --batch-size 2 or more" in str(exc), exc
        assert not (tmp_path / "floor").exists()
        result = tiny_run(method, twelve_digits, 2, tmp_path / "two")
    assert np.isfinite(result.final_loss) and result.final_loss != 0.0


def test_batch_norm_on_one_value_per_channel_is_named(twelve_digits, tmp_path):
    """A ResNet's last stage sees 1×1 maps of 8×8 images: a batch of 2 gives 2 values per channel."""
    with pytest.raises(
        ConfigError,
        match=r"batch size 1 is too small for byol with this model: its BatchNorm layer "
        r"'.*' would normalise 2 values per channel .*use --batch-size 2 or more",
    ):
        api.pretrain(
            "byol",
            twelve_digits,
            out=tmp_path / "r",
            epochs=1,
            batch_size=1,
            progress=False,
            overrides=[
                "method.proj_dim=8",
                "method.proj_hidden_dim=8",
                "method.pred_hidden_dim=8",
                "optim.warmup_epochs=0",
                "model.backbone=resnet18",
            ],
        )


def test_masked_lm_with_next_sentence_prediction_needs_two_documents(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"Sentence {i} is here. Another one {i} follows.\n" for i in range(40)))
    with pytest.raises(ConfigError, match="batch size 1 is too small for mlm: next-sentence prediction"):
        api.pretrain(
            "mlm",
            str(corpus),
            out=tmp_path / "run",
            epochs=1,
            batch_size=1,
            progress=False,
            overrides=[
                "model.width=32",
                "model.depth=1",
                "text.vocab_size=200",
                "method.next_sentence=true",
                "optim.warmup_epochs=0",
            ],
        )


def test_one_image_batches_write_null_spread_in_strict_json(twelve_digits, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "degrees of freedom" warning either
        tiny_run("dae", twelve_digits, 1, tmp_path / "run")
    record = json.loads(
        (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0],
        parse_constant=lambda name: pytest.fail(f"{name} is not JSON"),
    )
    assert record["embedding_std"] is None


def test_floors_under_torchrun_count_the_global_batch_or_each_process():
    from selfsup.methods.base import BatchFloor

    check_batch_floor("simclr", BatchFloor(2, "why"), 2, 1, processes=2)  # the global batch has two
    with pytest.raises(
        ConfigError,
        match=r"batch size 2 \(1 per process\) is too small for mlm: why; "
        r"use --batch-size 4 or more",
    ):
        check_batch_floor("mlm", BatchFloor(2, "why", per_process=True), 2, 1, processes=2)


def test_fine_tuning_too_few_labels_for_batch_norm_is_a_clear_error(tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_class=6, size=(8, 8))
    api.pretrain(
        "simclr",
        str(folder),
        out=tmp_path / "run",
        epochs=1,
        batch_size=4,
        progress=False,
        overrides=["method.proj_dim=8", "optim.warmup_epochs=0", "model.backbone=resnet18"],
    )
    with pytest.raises(ConfigError, match=r"on 2 labelled images: BatchNorm layer"):
        api.evaluate(tmp_path / "run", labels=["1/class"], seeds=1, protocols=["finetune"], progress=False)


# ---- 5. text as the user means it -----------------------------------------------------------------


def review_rows(n: int) -> list[tuple[str, str]]:
    words = ["great film", "dull plot", "fine acting", "awful sound", "lovely music", "weak ending"]
    labels = ["positive", "negative", "neutral"]
    return [(f"{words[i % 6]} number {i}", labels[i % 3]) for i in range(n)]


def write_rows(path, rows) -> str:
    path.write_text("".join(",".join(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize("header", [("text", "label"), ("review", "verdict"), ("Sentence", "Polarity")])
def test_csv_header_is_found_whatever_the_labels_look_like(tmp_path, header):
    splits = load_data(write_rows(tmp_path / "reviews.csv", [header] + review_rows(60)))
    assert splits.train.classes == ["negative", "neutral", "positive"]
    texts = splits.train.texts + splits.test.texts
    assert len(texts) == 60 and not any("positive" in t or header[0] in t for t in texts)


def test_semicolon_separated_csv(tmp_path):
    rows = [("text", "label")] + [(f"{text}, really", label) for text, label in review_rows(30)]
    (tmp_path / "r.csv").write_text("".join(";".join(row) + "\n" for row in rows))
    splits = load_data(str(tmp_path / "r.csv"))
    assert splits.train.classes == ["negative", "neutral", "positive"] and splits.train.texts[0].endswith(
        ", really"
    )


def test_headerless_csv_with_word_labels_is_labelled(tmp_path):
    splits = load_data(write_rows(tmp_path / "reviews.csv", review_rows(60)))
    assert splits.train.classes == ["negative", "neutral", "positive"] and "labels from" not in splits.note
    assert "no header" in splits.note and "label: column 1" in splits.note


def test_csv_empty_and_negative_labels_mean_unlabelled(tmp_path):
    rows = [("text", "label")] + review_rows(30) + [(f"unsure {i}", "") for i in range(5)] + [("x y", "-1")]
    splits = load_data(write_rows(tmp_path / "reviews.csv", rows))
    assert splits.train.classes == ["negative", "neutral", "positive"]
    assert int((splits.train.labels < 0).sum()) == 6 and bool((splits.test.labels >= 0).all())


def test_text_columns_in_list_syntax(tmp_path):
    rows = [("title", "description", "label")] + [
        (f"t{i}", text, label) for i, (text, label) in enumerate(review_rows(30))
    ]
    path = write_rows(tmp_path / "news.csv", rows)
    config = build_config("mlm", small_images=False, overrides=["data.text_column=[title,description]"])
    splits = load_data(path, text_options=config.data.text_options())
    assert splits.train.texts[0].count("\n") == 1 and splits.train.classes == [
        "negative",
        "neutral",
        "positive",
    ]


def test_a_label_column_of_nothing_but_unlabelled_marks_reads_unlabelled(tmp_path):
    splits = load_data(
        write_rows(tmp_path / "r.csv", [("text", "label")] + [(t, "-1") for t, _ in review_rows(20)])
    )
    assert splits.train.labels is None and "marks every text unlabelled" in splits.note


def test_one_text_per_line_with_a_final_blank_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"document number {i}\n" for i in range(200)) + "\n")
    splits = load_data(str(path))
    assert len(splits.train) + len(splits.test) == 200


def test_a_stray_blank_line_does_not_make_paragraphs(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text(
        "\n".join(f"document number {i}" for i in range(150))
        + "\n\n"
        + "\n".join(f"document number {i}" for i in range(150, 300))
    )
    splits = load_data(str(path))
    assert len(splits.train) + len(splits.test) == 300
    path.write_text(
        "\n".join(f"line {i}" for i in range(25)) + "\n\n" + "\n".join(f"line {i}" for i in range(25, 50))
    )
    assert len(load_data(str(path)).train) == 45  # a short file: still 50 documents
    path.write_text(
        "\n".join(f"line {i}" for i in range(20))
        + "\n\n"
        + "\n".join(f"line {i}" for i in range(20, 40))
        + "\n\n"
        + "\n".join(f"line {i}" for i in range(40, 60))
    )
    splits = load_data(str(path))
    assert len(splits.train) == 54 and "one document per line" in splits.note  # two stray lines in 60


def test_windows_line_ends_and_utf16_files(tmp_path):
    play = "A:\r\nHello there.\r\n\r\nB:\r\nGood day.\r\n\r\nA:\r\nFarewell.\r\n"
    (tmp_path / "play.txt").write_bytes(play.encode("utf-16"))  # with a byte-order mark, as Notepad writes it
    splits = load_data(str(tmp_path / "play.txt"))
    assert splits.train.texts == ["A:\nHello there.", "B:\nGood day.", "A:\nFarewell."]
    (tmp_path / "play32.txt").write_bytes(play.encode("utf-32"))  # its byte-order mark begins like UTF-16's
    assert load_data(str(tmp_path / "play32.txt")).train.texts == splits.train.texts
    (tmp_path / "bare.txt").write_bytes(("hello world\n" * 60).encode("utf-16-le"))  # no byte-order mark
    with pytest.raises(DataError, match="NUL characters"):
        load_data(str(tmp_path / "bare.txt"))


def test_literal_control_tokens_in_user_text_are_text(tmp_path):
    texts = ["the cat [PAD] sat on the [MASK] mat [SEP] today [CLS]"] * 20 + ["a dog ran"] * 20
    for kind in ("wordpiece", "bpe", "char"):
        tokenizer = train_tokenizer(texts, kind, 120)
        ids = encode_documents(tokenizer, texts[:1] + ["a dog ran"], 64)
        body = ids[0, 1 : int((ids[0] != 0).nonzero()[-1])]
        assert not bool(((body < 5) & (body != 1)).any()), (
            kind,
            body.tolist(),
        )  # no [PAD] [CLS] [SEP] [MASK]
        assert int(ids[0, int((ids[0] != 0).nonzero()[-1])]) == 3  # the document ends with its own [SEP]
    held = torch.tensor([[2, 7, 0, 8, 3, 0, 0], [2, 9, 3, 0, 0, 0, 0]])  # a pad id inside a row's text
    assert trim_padding(held, multiple=1).tolist() == [
        [2, 7, 0, 8, 3],
        [2, 9, 3, 0, 0],
    ]  # every real token kept


def test_denoise_reads_mask_marks_as_masks():
    tokenizer = train_tokenizer(["oil prices rose on monday"] * 20, "bpe", 100)
    ids = encode_marked_masks(tokenizer, "oil <mask> on monday", 32)[0].tolist()
    assert ids[0] == 2 and ids.count(4) == 1 and ids[-1] == 3


# ---- 6. run files and commands ---------------------------------------------------------------------


def test_run_files_are_strict_json(tmp_path):
    record = {
        "epoch": 1,
        "loss": 0.5,
        "embedding_std": float("nan"),
        "rank": float("inf"),
        "terms": [np.float32("nan")],
    }
    text = to_json(record)
    strict = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert strict == {"epoch": 1, "loss": 0.5, "embedding_std": None, "rank": None, "terms": [None]}
    (tmp_path / "metrics.jsonl").write_text(text + "\n")
    back = read_history(tmp_path)[0]
    assert np.isnan(back["embedding_std"]) and back["loss"] == 0.5


def test_resume_with_a_changed_model_option_names_it(tmp_path, capsys):
    base = [
        "pretrain",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--out",
        tmp_path / "run",
        "--quiet",
        "method.proj_dim=8",
        "optim.warmup_epochs=0",
    ]
    code, _, err = run_cli(base + ["model.width=8"], capsys)
    assert code == 0, err
    code, _, err = run_cli(base[:4] + ["2"] + base[5:] + ["model.width=16", "--resume"], capsys)
    assert_one_line_error(code, err, "model.width 16 (the checkpoint's: 8)")


def test_resume_may_extend_a_run_and_keeps_its_fitted_schedules(twelve_digits, tmp_path):
    tiny_run("dino", twelve_digits, 4, tmp_path / "run")  # 1 epoch: the prototypes frozen for half of it
    result = tiny_run("dino", twelve_digits, 4, tmp_path / "run", epochs=2, resume=True)
    assert [record["epoch"] for record in result.history] == [1, 2]
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "freeze_last_layer_epochs: 0.5" in saved  # as the first epoch ran it, not refitted to 1 of 2


def test_extending_a_short_run_does_not_warm_up_again(tmp_path):
    overrides = ["model.width=8", "method.proj_dim=8", "train.batch_size=256"]
    api.pretrain("simclr", "digits", out=tmp_path / "run", epochs=2, progress=False, overrides=overrides)
    result = api.pretrain(
        "simclr", "digits", out=tmp_path / "run", epochs=6, progress=False, overrides=overrides, resume=True
    )
    rates = [record["lr"] for record in result.history]
    assert (
        rates[2:] == sorted(rates[2:], reverse=True) and max(rates[2:]) < rates[0]
    )  # no second warm-up to the peak


def test_a_run_records_its_data_path_in_full_and_says_where_it_went(tmp_path, monkeypatch, capsys):
    folder = make_image_folder(tmp_path / "pets", per_class=6, size=(8, 8))
    monkeypatch.chdir(tmp_path)
    api.pretrain(
        "simclr",
        "pets",
        out=tmp_path / "run",
        epochs=1,
        batch_size=4,
        progress=False,
        overrides=["model.width=4", "method.proj_dim=8", "optim.warmup_epochs=0"],
    )
    monkeypatch.chdir(tmp_path / "run")  # evaluating from elsewhere finds the data
    assert api.evaluate(tmp_path / "run", labels=["1/class"], seeds=1, protocols=["knn"], progress=False)
    other = make_image_folder(tmp_path / "other", per_class=6, size=(8, 8))
    code, _, err = run_cli(
        [
            "pretrain",
            "--data",
            other,
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--out",
            tmp_path / "run",
            "--resume",
            "model.width=4",
            "method.proj_dim=8",
            "optim.warmup_epochs=0",
        ],
        capsys,
    )
    assert_one_line_error(code, err, f"data.spec '{other}' (the checkpoint's: '{folder}')")
    folder.rename(tmp_path / "moved")
    code, _, err = run_cli(["evaluate", tmp_path / "run"], capsys)
    assert_one_line_error(code, err, f"the run's data {folder} are not there any more; pass --data PATH")


def test_settings_may_stand_anywhere_after_the_verb(tmp_path, capsys):
    code, _, err = run_cli(
        [
            "pretrain",
            "--data",
            "digits",
            "train.epochs=1",
            "--batch-size",
            "256",
            "--out",
            tmp_path / "run",
            "--quiet",
            "optim.warmup_epochs=0",
            "model.width=8",
            "method.proj_dim=8",
        ],
        capsys,
    )
    assert code == 0, err
    code, out, err = run_cli(
        [
            "evaluate",
            tmp_path / "run",
            "--protocol",
            "knn",
            "eval.knn_k=5",
            "--labels",
            "1/class",
            "--quiet",
            "eval.seeds=1",
        ],
        capsys,
    )
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())["eval_config"]
    assert saved["knn_k"] == 5 and saved["seeds"] == 1
    code, _, err = run_cli(
        ["evaluate", "eval.knn_k=7", tmp_path / "run", "--protocol", "knn", "--quiet"], capsys
    )
    assert code == 0, err  # before RUN_DIR too
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["eval_config"]["knn_k"] == 7
    code, _, err = run_cli(["report", tmp_path / "run", "eval.knn_k=5"], capsys)
    assert_one_line_error(code, err, "takes no key=value settings")


def test_a_refused_resume_leaves_the_run_as_it_was(twelve_digits, tmp_path):
    tiny_run("byol", twelve_digits, 4, tmp_path / "run")
    saved = (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="BatchNorm layer"):
        tiny_run("byol", twelve_digits, 1, tmp_path / "run", epochs=2, resume=True)
    assert (tmp_path / "run" / "config.yaml").read_text() == saved


def test_checkpoints_of_older_versions_compare_only_the_options_both_know(tmp_path):
    from selfsup.train.checkpoint import check_resumable

    config = build_config("simclr", small_images=True)
    check_resumable(
        {"method": "simclr", "backbone": config.model.backbone}, config, tmp_path
    )  # no settings saved
    older = config.to_dict()
    del older["model"]["stem"]  # an option the older version did not have
    check_resumable({"method": "simclr", "config": older}, config, tmp_path)


# ---- 7. schedules that outlast the run ---------------------------------------------------------------


def test_recipe_schedules_are_fitted_to_a_short_run():
    config = build_config("simclr", small_images=False, flags={"train.epochs": 8})
    assert config.optim.warmup_epochs == 4  # the recipe's 10, halved to end half-way through the run
    assert config.adjustments == [
        "optim.warmup_epochs: the recipe's 10 epochs do not fit a run of 8 epochs; 4 used (half the run)"
    ]
    assert config.to_dict()["optim"]["warmup_epochs"] == 4  # config.yaml records what is used
    long = build_config("simclr", small_images=False, flags={"train.epochs": 100})
    assert long.optim.warmup_epochs == 10 and not long.adjustments  # it fits: the paper's setting stands
    dino = build_config(
        "dino", small_images=False, flags={"train.epochs": 1}, overrides=["optim.warmup_epochs=0.2"]
    )
    assert dino.method.freeze_last_layer_epochs == 0.5 and dino.optim.warmup_epochs == 0.2


def test_the_user_schedule_is_checked_against_the_recipe_the_data_pick():
    config, _ = api.resolve("pixelcnn", "digits", overrides=["optim.warmup_epochs=150"])  # _small: 200 epochs
    assert config.optim.warmup_epochs == 150


def test_a_schedule_the_user_set_that_outlasts_the_run_is_refused(capsys, tmp_path):
    code, _, err = run_cli(
        [
            "pretrain",
            "--data",
            "digits",
            "--epochs",
            "8",
            "optim.warmup_epochs=10",
            "--out",
            tmp_path / "run",
        ],
        capsys,
    )
    assert_one_line_error(
        code, err, "option 'optim.warmup_epochs' = 10 does not end within the run's 8 epochs"
    )
    code, _, err = run_cli(
        [
            "pretrain",
            "--method",
            "dino",
            "--data",
            "digits",
            "--epochs",
            "2",
            "method.warmup_teacher_temp_epochs=3",
            "--out",
            tmp_path / "run",
        ],
        capsys,
    )
    assert_one_line_error(code, err, "method.warmup_teacher_temp_epochs")


def test_a_short_run_decays_its_learning_rate(tmp_path):
    result = api.pretrain(
        "simclr",
        "digits",
        out=tmp_path / "run",
        epochs=2,
        progress=False,
        overrides=["model.width=8", "method.proj_dim=8", "train.batch_size=256"],
    )
    optim = build_config("simclr", small_images=True, flags={"train.epochs": 2}).optim
    peak = scaled_lr(optim.lr, 256, optim.lr_scaling)
    assert optim.warmup_epochs == 1 and result.history[0]["lr"] == pytest.approx(peak)  # warmed up in epoch 1
    assert result.history[-1]["lr"] < 0.1 * peak  # then cosine towards 0, not stuck at the peak
