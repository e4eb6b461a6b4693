"""Large image collections: store build, training memory and batch reading, side by side.

    python benchmarks/data_scale.py [--sizes 10000,50000] [--side 96] [--steps 5]

Synthesises collections from the shared CIFAR-10 JPEGs (each upscaled to 1.25 × SIDE, randomly
cropped to SIDE and brightness-jittered, so no two images are alike) in a temporary folder, then
for each size, each in a fresh process (the store is raw pixels below 160 px, JPEG from 160 px):

- builds the store (``load_data``): images/s, bytes on disk, peak RSS;
- trains SimCLR with ResNet-18 for ``--steps`` steps from it (batches drawn from the whole store):
  peak RSS and ``RssAnon``;
- evaluates an (untrained) ResNet-18 with the harness, kNN and linear probe on 1% of the labels:
  the features of the labelled images and the test split, a batch at a time; peak RSS and ``RssAnon``;
- reads and augments batches of 256 (two SimCLR views) from the store, against torchvision's
  ``ImageFolder`` + ``DataLoader`` (2 workers) on the same files with the same augmentations,
  one after the other (the loader's workers would take the cores from the store's blocks), median
  of 3 blocks.

Saves ``benchmarks/results/data_scale_SIDEpx_cpu.json`` with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
sys.path.insert(0, str(ROOT / "benchmarks"))

STATUS = """
import re
def status():
    text = open("/proc/self/status").read()
    return {k: int(re.search(k + r":\\s+(\\d+)", text).group(1)) // 1024 for k in ("VmHWM", "RssAnon")}
"""

BUILD = (
    STATUS
    + """
import sys, time
from selfsup.data import load_data
started = time.perf_counter()
splits = load_data(sys.argv[1])
count = len(splits.train) + (len(splits.test) if splits.test is not None else 0)
print({"seconds": time.perf_counter() - started, "images": count, **status()})
"""
)

TRAIN = (
    STATUS
    + """
import sys, torch
from selfsup.data import load_data
from selfsup.methods import Progress
from selfsup.methods.recipes import build_config
from selfsup.train import build_run, step
splits = load_data(sys.argv[1])
steps = int(sys.argv[2])
config = build_config("simclr", small_images=False, overrides=["train.batch_size=128", "train.epochs=1"])
run = build_run(config, splits, __import__("pathlib").Path(sys.argv[3]), torch.device("cpu"), False, False)
generator = torch.Generator().manual_seed(0)
for k in range(steps):
    index = torch.randint(0, len(run.inputs), (128,), generator=generator)
    step(run, index, generator, Progress(k, steps, steps))
print(status())
"""
)


EVALUATE = (
    STATUS
    + """
import sys, torch
from selfsup.config import EvalConfig
from selfsup.data import load_data
from selfsup.evaluate import evaluate_encoder
from selfsup.methods.recipes import build_config
from selfsup.train.modality import build_encoder
splits = load_data(sys.argv[1])
config = build_config("simclr", small_images=False)
torch.manual_seed(0)
encoder = build_encoder(config, splits.train.images)  # untrained: the memory, not the accuracy, is measured
evaluation = EvalConfig(labels=["0.01"], seeds=1, protocols=["knn", "linear"])
evaluate_encoder(encoder, splits, evaluation, torch.device("cpu"), progress=False)
print(status())
"""
)


def synthesise(args: tuple[bytes, int, int, str]) -> None:
    import io

    from PIL import Image, ImageEnhance

    data, index, side, path = args
    rng = np.random.default_rng(index)
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((side * 5 // 4, side * 5 // 4), Image.BICUBIC)
    left, top = rng.integers(0, side // 4 + 1, 2)
    image = image.crop((left, top, left + side, top + side))
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.8, 1.2)))
    image.save(path, quality=90)


def make_collection(folder: Path, count: int, side: int, sources: list[tuple[str, bytes]]) -> None:
    jobs = []
    for i in range(count):
        label, data = sources[i % len(sources)]
        (folder / label).mkdir(parents=True, exist_ok=True)
        jobs.append((data, i, side, str(folder / label / f"{i:07d}.jpg")))
    with Pool(os.cpu_count()) as pool:
        pool.map(synthesise, jobs, chunksize=256)


def cifar_sources() -> list[tuple[str, bytes]]:
    with tarfile.open(CIFAR) as tar:
        found = [
            (member.name.split("/")[-2], tar.extractfile(member).read())
            for member in tar.getmembers()
            if member.isfile() and "/train/" in f"/{member.name}" and member.name.endswith(".jpg")
        ]
    order = np.random.default_rng(0).permutation(len(found))  # the archive is sorted by class
    return [found[i] for i in order]


def run(script: str, *argv: str, cache: Path) -> dict:
    env = {**os.environ, "SELFSUP_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", script, *argv], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return eval(out.stdout.strip().splitlines()[-1])  # our own subprocess's dict


def read_batches(folder: Path, cache: Path, batches: int) -> dict:
    """Seconds per batch of 256 with two SimCLR views (median of 3 blocks of ``batches``): the store
    + the batched pipeline, then ImageFolder + DataLoader with torchvision's per-image transforms
    (2 workers)."""
    import torch
    from torchvision import datasets, transforms

    os.environ["SELFSUP_CACHE_DIR"] = str(cache)
    from selfsup.augment import ViewAugmenter
    from selfsup.data import load_data
    from selfsup.methods.recipes import build_config

    images = load_data(str(folder)).train.images
    side = images.shape[-1]
    config = build_config("simclr", small_images=False, overrides=["augment.crop_scale=[0.08,1.0]"])
    augmenter = ViewAugmenter(config.augment)
    view = transforms.Compose(
        [
            transforms.RandomResizedCrop(side, scale=(0.08, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            transforms.RandomGrayscale(0.2),
            transforms.ToTensor(),
        ]
    )
    two = transforms.Lambda(lambda image: (view(image), view(image)))
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(str(folder), transform=two),
        batch_size=256,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
        drop_last=True,
    )
    state = {"iter": None}  # the workers start with the first batch asked of them
    generator = torch.Generator().manual_seed(0)

    def gather() -> torch.Tensor:
        return images[torch.randint(0, len(images), (256,), generator=generator)]

    def ours_batch() -> None:
        augmenter(gather(), generator)

    def theirs_batch() -> None:
        try:
            next(state["iter"] or iter(()))
        except StopIteration:  # a new epoch (the workers persist)
            state["iter"] = iter(loader)
            next(state["iter"])

    # one pipeline at a time: the loader's workers, once started, take the 2 cores whenever they
    # prefetch, so they are started after the store's blocks; its rate is then its steady rate
    ours_batch()  # warm-up: the pipeline's kernels load
    ours = [_block_seconds(ours_batch, batches) for _ in range(3)]
    gathers = [_block_seconds(gather, batches) for _ in range(3)]
    theirs_batch(), theirs_batch()  # warm-up: the workers start and fill their queues
    theirs = [_block_seconds(theirs_batch, batches) for _ in range(3)]
    ours, theirs = statistics.median(ours), statistics.median(theirs)
    return {
        "store_s_per_batch": ours,
        "store_gather_s_per_batch": statistics.median(gathers),  # of which: reading the images
        "imagefolder_s_per_batch": theirs,
        "speedup": theirs / ours,
    }


def _block_seconds(read, batches: int) -> float:
    started = time.perf_counter()
    for _ in range(batches):
        read()
    return (time.perf_counter() - started) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--out", default=None, help="default: benchmarks/results/data_scale_SIDEpx_cpu.json")
    args = parser.parse_args()
    args.out = args.out or str(ROOT / "benchmarks" / "results" / f"data_scale_{args.side}px_cpu.json")
    from selfsup.train.machine import machine_info

    sources = cifar_sources()
    rows = []
    with tempfile.TemporaryDirectory(prefix="data-scale-") as tmp:
        for count in (int(s) for s in args.sizes.split(",")):
            folder, cache = Path(tmp) / f"images{count}", Path(tmp) / f"cache{count}"
            started = time.perf_counter()
            make_collection(folder, count, args.side, sources)
            files = sum(p.stat().st_size for p in folder.rglob("*.jpg"))
            row = {
                "images": count,
                "side": args.side,
                "files_mb": files / 2**20,
                "synthesis_s": time.perf_counter() - started,
            }
            build = run(BUILD, str(folder), cache=cache)
            store_bytes = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
            row["build"] = {
                **build,
                "images_per_s": count / build["seconds"],
                "store_mb": store_bytes / 2**20,
                "decoded_mb": count * 3 * args.side**2 / 2**20,
            }
            row["build"]["encoding"] = json.loads(next(cache.glob("*.store/store.json")).read_text())[
                "encoding"
            ]
            row["train"] = run(TRAIN, str(folder), str(args.steps), str(Path(tmp) / "run"), cache=cache)
            row["evaluate"] = run(EVALUATE, str(folder), cache=cache)
            row["read"] = read_batches(folder, cache, args.batches)
            print(json.dumps(row), flush=True)
            rows.append(row)
            import shutil

            shutil.rmtree(folder), shutil.rmtree(cache)
    result = {
        "machine": machine_info(),
        "what": "store build, SimCLR ResNet-18 steps from the store, and batch reading against "
        "torchvision ImageFolder + DataLoader (2 workers), on synthetic collections from CIFAR-10",
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
