"""The on-disk image store: equal to decoding each file, memory-mapped, atomic and restartable,
and training from it takes no more memory for more images."""

import json

import numpy as np
import pytest
import torch

from conftest import write_image
from selfsup.data import load_data, loaders, store
from selfsup.data.decode import decode_image


def mixed_folder(root):
    """Train and test splits of RGB and grey 10×10 PNGs in three classes."""
    for split, count in (("train", 7), ("test", 3)):
        for k in range(count):
            for i, name in enumerate(("ant", "bee", "cow")):
                mode = "L" if (k + i) % 3 == 0 else "RGB"
                write_image(root / split / name / f"{k:02d}.png", size=(10, 10), seed=100 * k + i, mode=mode)
    return root


def reference(root, split):
    """Each file decoded on its own, as RGB N×C×H×W, in the store's order (class, then name)."""
    paths = sorted((root / split).rglob("*.png"))
    arrays = [decode_image(path.read_bytes()) for path in paths]
    arrays = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(store, "CHUNK", 4)  # several shards per split, grey-only ones among them


def test_the_store_equals_decoding_each_file_and_is_memory_mapped(tmp_path, small_chunks):
    root = mixed_folder(tmp_path / "zoo")
    splits = load_data(str(root))
    assert torch.equal(splits.train.images, reference(root, "train"))
    assert torch.equal(splits.test.images, reference(root, "test"))
    assert splits.train.classes == ["ant", "bee", "cow"] and splits.train.labels.tolist()[:8] == [0] * 7 + [1]
    maps = open("/proc/self/maps").read()
    assert str(loaders.cache_dir()) in maps and "images.npy" in maps  # read from disk, not held in memory
    again = load_data(str(root))  # read back from the store, not decoded again
    assert torch.equal(again.train.images, splits.train.images) and again.train.names == splits.train.names


def test_a_killed_build_leaves_no_store_and_a_rerun_finishes_it(tmp_path, small_chunks, monkeypatch):
    root = mixed_folder(tmp_path / "zoo")
    decode, calls = loaders._decode_file, []

    def dies_after_twelve(*args, **kwargs):
        calls.append(args[0].name)
        if len(calls) > 12:
            raise KeyboardInterrupt  # killed in the middle of the training split
        return decode(*args, **kwargs)

    monkeypatch.setattr(loaders, "_decode_file", dies_after_twelve)
    with pytest.raises(KeyboardInterrupt):
        load_data(str(root))
    built = list(loaders.cache_dir().glob("*.store"))
    partial = list(loaders.cache_dir().glob("*.store.partial"))
    assert built == [] and len(partial) == 1  # nothing a later run could take for a finished store
    finished = sum(json.loads(p.read_text())["count"] for p in partial[0].glob("shards/*.json"))
    assert finished >= 8  # whole shards of 4 images; the interrupted one left no file
    calls.clear()
    monkeypatch.setattr(
        loaders, "_decode_file", lambda *a, **k: (calls.append(a[0].name), decode(*a, **k))[1]
    )
    splits = load_data(str(root))
    assert len(calls) == 30 - finished  # the finished shards are reused, the rest decoded
    assert torch.equal(splits.train.images, reference(root, "train"))
    assert list(loaders.cache_dir().glob("*.store.partial")) == []


@pytest.mark.parametrize("suffix", ["tar", "tar.gz", "zip"])
def test_an_unlabelled_folder_and_an_archive_give_the_same_store(tmp_path, small_chunks, suffix):
    """A tar is read in place at each member's offset, a compressed one unpacked to a scratch folder
    (removed after the build), a zip read by member: none is held in memory whole."""
    import shutil

    root = tmp_path / "flat"
    for k in range(6):
        write_image(root / f"{k}.png", size=(8, 8), seed=k)
    folder = load_data(str(root))
    kind = {"tar": "tar", "tar.gz": "gztar", "zip": "zip"}[suffix]
    archive = load_data(shutil.make_archive(str(tmp_path / "flat"), kind, root))
    assert not folder.train.labelled and folder.test is None
    assert (
        torch.equal(folder.train.images, archive.train.images) and folder.train.names == archive.train.names
    )
    assert [p.suffix for p in loaders.cache_dir().iterdir()] == [".store", ".store"]  # no scratch left


def test_sizes_that_differ_across_shards_are_refused(tmp_path, small_chunks):
    root = tmp_path / "sizes"
    for k in range(6):
        write_image(root / f"{k}.png", size=(8, 8) if k < 5 else (9, 9), seed=k)
    with pytest.raises(Exception, match=r"images have different sizes \(2 sizes"):
        load_data(str(root))


def test_without_a_cache_the_images_are_read_into_memory(tmp_path):
    root = mixed_folder(tmp_path / "zoo")
    splits = load_data(str(root), cache=False)
    assert torch.equal(splits.train.images, reference(root, "train"))
    assert list(loaders.cache_dir().glob("*.store")) == []


def test_a_folder_without_a_test_split_is_held_out_in_the_store(tmp_path, small_chunks):
    from selfsup.data.dataset import held_out_split

    root = tmp_path / "zoo"
    for k in range(10):
        for i, name in enumerate(("ant", "bee")):
            write_image(root / name / f"{k:02d}.png", size=(6, 6), seed=10 * k + i)
    splits = load_data(str(root))
    everything = reference(tmp_path, "zoo")
    labels = torch.tensor([0] * 10 + [1] * 10)
    train_index, test_index = held_out_split(labels, 0.2, 0)  # what the in-memory loading did
    assert torch.equal(splits.train.images, everything[train_index])
    assert torch.equal(splits.test.images, everything[test_index])
    assert splits.test.labels.tolist() == labels[test_index].tolist() and "held out 4 labelled" in splits.note
    assert "/test/images.npy" in open("/proc/self/maps").read()  # the held-out split is mapped too


MEMORY_PROBE = """
import re, sys, torch
from pathlib import Path
import numpy as np
from selfsup.data import DataSplits
from selfsup.data.layout import Placed
from selfsup.data.store import build_store, load_store
from selfsup.methods.recipes import build_config
from selfsup.train import build_run, step
from selfsup.methods import Progress

count, folder = int(sys.argv[1]), Path(sys.argv[2])
items = {"train": [Placed(f"{i}.png", "train", None) for i in range(count)]}
def decode(item):
    return np.random.default_rng(int(item.name[:-4])).integers(0, 256, (64, 64, 3), dtype=np.uint8)
if sys.argv[3] == "build":  # in a process of its own: the decoding threads' memory is not training's
    build_store(folder, items, decode, "probe", "", lambda splits: None, None)
    sys.exit()
torch.set_num_threads(1)  # one thread, one malloc arena (MALLOC_ARENA_MAX): less allocator noise
splits, _ = load_store(folder)
config = build_config("simclr", small_images=False, overrides=[
    "model.backbone=small_cnn", "model.width=8", "method.proj_dim=16", "train.batch_size=64",
    "train.precision=fp32", "train.epochs=1"])
data = DataSplits(splits["train"], None, "probe")
run = build_run(config, data, folder / "run", torch.device("cpu"), False, False)
def anon_kb():
    return int(re.search(r"RssAnon:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
after_setup, generator, after_steps = anon_kb(), torch.Generator().manual_seed(0), []
for k in range(8):
    index = torch.randint(0, count, (64,), generator=generator)  # anywhere in the store
    step(run, index, generator, Progress(k, 8, 8))
    after_steps.append(anon_kb())
# the allocator's spikes come and go from step to step (±100 MB); a copy of the data would stay
print(after_setup, min(after_steps))
"""


def test_anonymous_memory_does_not_grow_with_the_number_of_images(tmp_path):
    import os
    import subprocess
    import sys

    def anon_kb(count: int) -> list[int]:
        for mode in ("build", "train"):
            out = subprocess.run(
                [sys.executable, "-c", MEMORY_PROBE, str(count), str(tmp_path / f"s{count}"), mode],
                env={**os.environ, "MALLOC_ARENA_MAX": "1"},
                capture_output=True,
                text=True,
                check=True,
            )
        return [int(value) for value in out.stdout.split()[-2:]]

    (small_setup, small_steps), (large_setup, large_steps) = anon_kb(2_000), anon_kb(20_000)
    # 18,000 more images would add 216 MB if they were held in memory (measured: +240 MB); the
    # allocator's noise between runs is up to 70 MB
    decoded_kb = 18_000 * 64 * 64 * 3 // 1024
    assert large_setup - small_setup < decoded_kb / 2, (
        small_setup,
        large_setup,
    )  # loading, statistics, setup
    assert large_steps - small_steps < decoded_kb / 2, (small_steps, large_steps)  # steps: the floor


def test_under_torchrun_one_process_per_machine_builds_the_store(tmp_path):
    """The process of local rank 1 waits for local rank 0's store and decodes nothing itself; with
    no builder it stops with a clear error."""
    import os
    import subprocess
    import sys

    root = mixed_folder(tmp_path / "zoo")
    env = {**os.environ, "SELFSUP_CACHE_DIR": str(tmp_path / "cache"), "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    waiter = (
        "import sys; from selfsup.data import load_data, loaders\n"
        "loaders._decode_file = lambda *a: sys.exit('decoded in local rank 1')\n"
        f"print(len(load_data({str(root)!r}).train))"
    )
    process = subprocess.Popen([sys.executable, "-c", waiter], env=env, stdout=subprocess.PIPE, text=True)
    assert len(load_data(str(root)).train) == 21  # this test's process builds it, as local rank 0
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and output.strip() == "21"
    lonely = subprocess.run(
        [sys.executable, "-c", waiter],
        capture_output=True,
        text=True,
        env={**env, "SELFSUP_STORE_WAIT": "0.5", "SELFSUP_CACHE_DIR": str(tmp_path / "no builder")},
    )
    assert "did not appear" in lonely.stderr and "local rank 0" in lonely.stderr


def test_two_processes_building_one_store_at_once_both_get_it(tmp_path, small_chunks):
    """Two runs started together on the same data (or two torchrun "nodes" on one machine) share
    the shards and each assembles its own copy; the first rename wins, the other reads it."""
    import os
    import subprocess
    import sys

    root = mixed_folder(tmp_path / "zoo")
    env = {**os.environ, "SELFSUP_CACHE_DIR": str(tmp_path / "cache")}
    script = (
        "from selfsup.data import load_data, store; store.CHUNK = 2\n"
        f"s = load_data({str(root)!r}); print(len(s.train), int(s.train.images.sum()))"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0].strip() for run in runs]
    expected = f"21 {int(reference(root, 'train').sum())}"
    assert [run.returncode for run in runs] == [0, 0] and outputs == [expected, expected]
    assert [p.name.endswith(".partial") for p in (tmp_path / "cache").iterdir()] == [False]


def test_a_builder_that_finishes_leaves_the_shards_to_one_still_decoding(tmp_path, small_chunks):
    """The race behind two concurrent builds: the first to publish must not remove the shards
    while another live process is registered as building from them; the last one removes them."""
    import os
    import shutil
    import socket

    root = mixed_folder(tmp_path / "zoo")
    load_data(str(root))
    (built,) = (tmp_path / "cache").iterdir()
    shutil.rmtree(built)
    partial = built.with_name(built.name + ".partial")
    other = partial / "builders" / f"{socket.gethostname()}-{os.getppid()}"  # a live process
    other.parent.mkdir(parents=True)
    other.touch()
    load_data(str(root))
    assert partial.is_dir() and built.is_dir()
    other.unlink()
    shutil.rmtree(built)
    load_data(str(root))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [built.name]


def test_a_builder_arriving_after_the_store_was_published_decodes_nothing(tmp_path, small_chunks):
    root = mixed_folder(tmp_path / "zoo")
    load_data(str(root))
    (built,) = (tmp_path / "cache").iterdir()

    def never(item):
        raise AssertionError(f"decoded {item}")

    store.build_store(built, {"train": []}, never, str(root), "", lambda splits: None)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [built.name]


def test_a_compressed_tar_named_tar_and_a_member_added_twice(tmp_path, small_chunks):
    """The reader follows what tarfile finds, not the name; a member appended again (tar -r) reads
    as its last copy, as tar extracts it."""
    import shutil
    import tarfile

    root = tmp_path / "flat"
    for k in range(3):
        write_image(root / f"{k}.png", size=(8, 8), seed=k)
    expected = load_data(str(root)).train
    gz = shutil.make_archive(str(tmp_path / "flat"), "gztar", root)
    assert torch.equal(load_data(shutil.move(gz, tmp_path / "renamed.tar")).train.images, expected.images)
    with tarfile.open(tmp_path / "twice.tar.gz", "w:gz") as tar:
        write_image(tmp_path / "old.png", size=(8, 8), seed=99)
        tar.add(tmp_path / "old.png", arcname="0.png")
        for k in range(3):
            tar.add(root / f"{k}.png", arcname=f"{k}.png")
    assert torch.equal(load_data(str(tmp_path / "twice.tar.gz")).train.images, expected.images)
