"""The sections of a run's report page that need more than its files: the run's data (loaded again
from ``data.spec``) and its encoder, or its whole method. Each function returns HTML pieces."""

from __future__ import annotations

from pathlib import Path

import torch

from selfsup import runs
from selfsup.data import ImageDataset
from selfsup.errors import SelfsupError
from selfsup.evaluate.features import extract_features
from selfsup.report.figures import cross_correlation_figure, embedding_map
from selfsup.report.page import esc, img, table

MAP_POINTS = 1000  # test embeddings on the 2-D map
MIN_MAP_POINTS = 6  # fewer items make no map (t-SNE's perplexity must stay below their number) nor retrieval
QUERIES, NEIGHBOURS = 6, 5  # retrieval
RETRIEVAL_BANK = 2000  # training items searched (a CPU embeds a few hundred CIFAR images per second)
CROSS_CORRELATION_DIMS = 64  # the top-left block of the matrix shown


def nearest_neighbours(queries: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (Q×k) of the ``k`` cosine-nearest rows of ``bank`` (B×D) for each of ``queries`` (Q×D)."""
    q = torch.nn.functional.normalize(queries.float(), dim=1)
    b = torch.nn.functional.normalize(bank.float(), dim=1)
    return (q @ b.T).topk(k, dim=1).indices


def data_sections(run_dir: Path, config, encoder, device: torch.device) -> list[str]:
    """Embedding map, retrieval, augmented views and the cross-correlation (where the method offers
    it): the parts that need the run's data and its ``encoder`` (on ``device``). Data that cannot be
    loaded again, or too few of them, make one paragraph that says so."""
    try:
        splits = runs.load_splits(config)
    except SelfsupError as exc:
        return [
            f"<h2>Embeddings</h2><p>The run's data could not be loaded again ({esc(exc)}): no map, "
            "retrieval or augmented views.</p>"
        ]
    train = splits.train
    test = splits.test if splits.test is not None and len(splits.test) >= MIN_MAP_POINTS else train
    if len(test) < MIN_MAP_POINTS:
        return [
            f"<h2>Embeddings</h2><p>Too few items ({len(test)}) for a map or nearest-neighbour retrieval.</p>"
        ]
    generator = torch.Generator().manual_seed(0)  # draws the map's items, the bank, then the views' images
    chosen = torch.randperm(len(test), generator=generator)[:MAP_POINTS]
    test_features = extract_features(encoder, encoder.inputs(test)[chosen], device)
    labels = test.labels[chosen].numpy() if test.labelled else None
    figure, name = embedding_map(test_features, labels, train.classes)
    parts = [
        f"<h2>Embedding map</h2>{img(figure, name + ' map', plot=True)}"
        f"<p class=caption>{name} of the encoder's features of {len(chosen)} test items; nearby points "
        "are items the encoder finds similar.</p>"
    ]
    bank_index = torch.randperm(len(train), generator=generator)[:RETRIEVAL_BANK]
    bank = extract_features(encoder, encoder.inputs(train)[bank_index], device)
    queries, k = chosen[:QUERIES], min(NEIGHBOURS, len(bank_index))
    neighbours = bank_index[nearest_neighbours(test_features[:QUERIES], bank, k)]
    caption = (
        f"<p class=caption>{len(queries)} test queries (first column) and their {k} nearest items among "
        f"{len(bank_index)} training items, by cosine similarity of the features, nearest first.</p>"
    )
    if not isinstance(train, ImageDataset):
        return parts + [
            f"<h2>Nearest neighbours</h2>{_text_retrieval(test, train, queries, neighbours)}{caption}"
        ]
    from selfsup.data.pictures import image_grid

    columns = [test.images[queries].float() / 255] + [
        train.images[neighbours[:, j]].float() / 255 for j in range(k)
    ]
    parts.append(f"<h2>Nearest neighbours</h2>{img(image_grid(columns), 'retrieval')}{caption}")
    return parts + _views_sections(run_dir, config, train, generator, device)


def _text_retrieval(test, train, queries: torch.Tensor, neighbours: torch.Tensor) -> str:
    """A table of each query text, with its label, then its nearest training texts."""

    def label_of(dataset, index: int) -> str:
        label = int(dataset.labels[index]) if dataset.labelled and dataset.classes else -1
        return dataset.classes[label] if label >= 0 else ""

    rows = []
    for i, query in enumerate(queries.tolist()):
        rows.append([f"query {i + 1}", label_of(test, query), _shorten(test.texts[query])])
        for j, index in enumerate(neighbours[i].tolist()):
            rows.append([f"  {j + 1}", label_of(train, index), _shorten(train.texts[index])])
    return table(["", "label", "text"], rows)


def _shorten(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _views_sections(run_dir: Path, config, train: ImageDataset, generator, device) -> list[str]:
    """The augmented views of 8 training images and, where the method offers it, the
    cross-correlation of its projections; nothing without augmentations (``augment.preset=none``)."""
    from selfsup.augment import ViewAugmenter
    from selfsup.data.pictures import image_grid
    from selfsup.methods import CROSS_CORRELATION, get_method

    if config.augment.preset == "none":
        return []
    originals = train.images[torch.randperm(len(train), generator=generator)[:8]]
    views = ViewAugmenter(config.augment)(originals, torch.Generator().manual_seed(0))
    parts = [
        f"<h2>Augmented views</h2>{img(image_grid([originals.float() / 255] + views), 'views')}"
        f"<p class=caption>Training images (first column) and the views the method saw "
        f"(augment.preset={esc(config.augment.preset or 'custom')}).</p>"
    ]
    if CROSS_CORRELATION in get_method(config.method_name).build.offers:
        parts.append(cross_correlation_section(run_dir, train.images, device))
    return parts


@torch.no_grad()
def cross_correlation_section(run_dir: Path, images: torch.Tensor, device: torch.device) -> str:
    """The cross-correlation matrix (:func:`selfsup.losses.cross_correlation`) of the method's
    projections of two augmented views of 256 of ``images`` (uint8 N×C×H×W): the identity when the
    views agree on every dimension and the dimensions are decorrelated."""
    from selfsup.augment import ViewAugmenter
    from selfsup.losses import cross_correlation

    method, config = runs.load_method(run_dir, str(device))
    batch = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(1))[:256]]
    views = ViewAugmenter(config.augment)(batch.to(device), torch.Generator(device=device).manual_seed(1))
    c = cross_correlation(*method.projections(views)).cpu()
    diagonal = float(torch.diagonal(c).mean())
    off = float(c[~torch.eye(c.shape[0], dtype=torch.bool)].pow(2).mean().sqrt())
    fig = cross_correlation_figure(c, CROSS_CORRELATION_DIMS)
    return (
        f"<h2>Cross-correlation of the two views</h2>{img(fig, 'cross-correlation', plot=True)}"
        f"<p class=caption>C = standardised projections of view 1ᵀ · view 2 / N over {len(batch)} "
        f"training images. Mean of the diagonal {diagonal:.3f} (1 is perfect invariance); root mean "
        f"square off the diagonal {off:.3f} (0 is fully decorrelated).</p>"
    )


def method_pictures(run_dir: Path) -> list[str]:
    """The method's own pictures (``*.png``) and examples (``*.txt``, first 6000 characters) that
    pretraining saved in the run directory, under one heading; none without them."""
    from PIL import Image

    parts = []
    for path in sorted(run_dir.glob("*.png")):
        with Image.open(path) as picture:
            parts.append(
                f"<h3>{esc(path.stem.replace('_', ' '))}</h3>{img(picture.convert('RGB'), path.stem)}"
            )
    for path in sorted(run_dir.glob("*.txt")):
        parts.append(f"<h3>{esc(path.stem.replace('_', ' '))}</h3><pre>{esc(path.read_text()[:6000])}</pre>")
    heading = (
        "<h2>The method's own pictures and examples</h2><p class=caption>Made on test items at the end of "
        "pretraining (train.pictures).</p>"
    )
    return [heading] + parts if parts else []
