r"""End-to-end SimCLR pretraining, selfsup against lightly's documented SimCLR loop, side by side.

Both train the same model on the same images with the same augmentation settings:

* data: a class-balanced subset of the shared CIFAR-10 training JPEGs (``--subset`` images); lightly
  reads them as an image folder (lossless PNGs of exactly the pixels selfsup decoded), per image
  with PIL in a ``DataLoader`` with 2 workers, as lightly's examples do;
* model: torchvision ResNet-18 with the ImageNet stem (fc removed, 512-d features), projection head
  512-512-128 with BatchNorm (lightly's ``SimCLRProjectionHead(512, 512, 128)`` = selfsup's
  ``mlp_head``), NT-Xent with temperature 0.5, plain SGD at 0.06 without momentum or weight decay,
  batch 256 (lightly's ``examples/pytorch/simclr.py``);
* augmentation: lightly's ``SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)``
  and selfsup's ``simclr_cifar`` preset: crop 0.08-1, flip, jitter 0.4/0.4/0.4/0.1 with p 0.8,
  grayscale 0.2, no blur.

Three runs, each ``--epochs`` epochs from seed 0: lightly (fp32, as documented), selfsup fp32
(contiguous memory, the same arithmetic as lightly, so the gap is the data pipeline), and selfsup
with its defaults on this machine (``precision=auto``, channels_last). Reported: the median
seconds per epoch, and kNN accuracy (k 200, T 0.1, cosine) of the backbone's features with the
subset's labels as the memory bank, on the 10,000 test images.

    pip install lightly    # the benchmark's environment only; not a selfsup dependency
    python benchmarks/lightly_simclr.py [--data ../shared/datasets/cifar10-jpeg.tar.gz] \
        [--subset 10000] [--epochs 3]

Writes benchmarks/results/lightly_simclr.json; the last line is the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from machine import machine_info
from selfsup.api import resolve
from selfsup.data.dataset import train_subset
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.knn import knn_predict
from selfsup.models import load_encoder
from selfsup.train import run_pretraining

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
LR = 0.06
BATCH = 256


def write_image_folder(images: torch.Tensor, labels: torch.Tensor, root: Path) -> None:
    for index, (image, label) in enumerate(zip(images, labels.tolist())):
        folder = root / f"class{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:06d}.png")


def run_lightly(folder: Path, epochs: int) -> tuple[nn.Module, list[float], list[float]]:
    import torchvision
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    class SimCLR(nn.Module):
        def __init__(self, backbone: nn.Module):
            super().__init__()
            self.backbone = backbone
            self.projection_head = SimCLRProjectionHead(512, 512, 128)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    model = SimCLR(nn.Sequential(*list(resnet.children())[:-1]))
    transform = SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=2
    )
    criterion = NTXentLoss(temperature=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    seconds, losses = [], []
    for epoch in range(epochs):
        started, total = time.perf_counter(), 0.0
        for (x0, x1), _ in loader:
            loss = criterion(model(x0), model(x1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            total += loss.item()
        seconds.append(time.perf_counter() - started)
        losses.append(total / len(loader))
        print(f"lightly epoch {epoch + 1}: {seconds[-1]:.1f} s, loss {losses[-1]:.4f}", flush=True)
    return model.backbone.eval(), seconds, losses


@torch.no_grad()
def lightly_features(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # lightly's IMAGENET_NORMALIZE
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return torch.cat(
        [
            backbone((images[i : i + 512].float() / 255 - mean) / std).flatten(1)
            for i in range(0, len(images), 512)
        ]
    )


def knn_accuracy(train_features, train_labels, test_features, test_labels) -> float:
    predictions = knn_predict(train_features, train_labels, test_features, 10, k=200, temperature=0.1)
    return (predictions == test_labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-lightly-simclr"))
    args = parser.parse_args()

    overrides = [
        "model.backbone=resnet18",
        "model.stem=imagenet",
        f"train.batch_size={BATCH}",
        f"train.epochs={args.epochs}",
        "augment.preset=simclr_cifar",
        "method.temperature=0.5",
        "method.proj_hidden_dim=512",
        "method.proj_dim=128",
        "method.proj_layers=2",
        "optim.name=sgd",
        f"optim.lr={LR}",
        "optim.lr_scaling=none",
        "optim.momentum=0",
        "optim.weight_decay=0",
        "optim.warmup_epochs=0",
        "optim.schedule=constant",
        "train.device=cpu",
    ]
    config, splits = resolve("simclr", args.data, overrides=overrides)
    subset = train_subset(splits, args.subset)
    train, test = subset.train, splits.test
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        write_image_folder(train.images, train.labels, Path(tmp))
        backbone, seconds, losses = run_lightly(Path(tmp), args.epochs)
    accuracy = knn_accuracy(
        lightly_features(backbone, train.images),
        train.labels,
        lightly_features(backbone, test.images),
        test.labels,
    )
    rows.append(
        {
            "run": "lightly 1.6 (fp32, PIL per image, 2 workers)",
            "seconds_per_epoch": seconds,
            "loss": losses,
            "knn_accuracy": accuracy,
        }
    )

    for name, extra in (
        ("selfsup fp32", ["train.precision=fp32", "train.channels_last=false"]),
        ("selfsup defaults (precision auto, channels_last)", []),
    ):
        run_config, _ = resolve("simclr", args.data, overrides=overrides + extra)
        out = Path(args.out) / name.split(" (")[0].replace(" ", "-")
        result = run_pretraining(run_config, subset, out, overwrite=True, progress=False)
        encoder = load_encoder(out)
        accuracy = knn_accuracy(
            extract_features(encoder, train.images, torch.device("cpu")),
            train.labels,
            extract_features(encoder, test.images, torch.device("cpu")),
            test.labels,
        )
        rows.append(
            {
                "run": name,
                "precision": run_config.train.precision,
                "seconds_per_epoch": [r["seconds"] for r in result.history],
                "loss": [r["loss"] for r in result.history],
                "knn_accuracy": accuracy,
            }
        )
        print(f"{name}: {rows[-1]['seconds_per_epoch']}", flush=True)

    base = statistics.median(rows[0]["seconds_per_epoch"])
    print(f"\n{'run':52s} {'s/epoch':>8s} {'speed-up':>9s} {'kNN':>6s}")
    for row in rows:
        row["median_seconds_per_epoch"] = statistics.median(row["seconds_per_epoch"])
        row["speedup_vs_lightly"] = base / row["median_seconds_per_epoch"]
        print(
            f"{row['run']:52s} {row['median_seconds_per_epoch']:8.1f} {row['speedup_vs_lightly']:8.2f}× "
            f"{row['knn_accuracy']:6.3f}"
        )
    result_path = ROOT / "benchmarks" / "results" / "lightly_simclr.json"
    result_path.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "args": vars(args),
                "images": len(train),
                "test_images": len(test),
                "compared": "lightly examples/pytorch/simclr.py loop vs selfsup pretrain, "
                "same ResNet-18 (ImageNet stem), "
                "head, loss, optimiser, batch, augmentation settings and images; kNN k=200 T=0.1",
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"saved {result_path}")
    print(
        f"selfsup fp32 / lightly: {rows[1]['speedup_vs_lightly']:.2f}× per epoch; "
        f"selfsup defaults / lightly: {rows[2]['speedup_vs_lightly']:.2f}×"
    )


if __name__ == "__main__":
    main()
