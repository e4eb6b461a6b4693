"""A run's report: one self-contained HTML page (pictures embedded as PNG data) that opens in any
browser without a server, and a page comparing several runs.

What a report shows, each part where the run has what it needs: the configuration, data, machine,
wall time and peak memory (``run.json``); curves over epochs (``metrics.jsonl``); the evaluation
table (``eval.json``) and the pretext task's own test metrics; a 2-D map of test embeddings (t-SNE,
or UMAP when ``umap-learn`` is installed); nearest-neighbour retrieval; the augmented views; Barlow
Twins' and VICReg's cross-correlation matrix; and the method's own pictures and examples.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.errors import SelfsupError
from selfsup.train.loop import read_history

REPORT_FILE = "report.html"
MAP_POINTS = 1000  # test embeddings on the 2-D map
MIN_MAP_POINTS = (
    6  # fewer items make no map (t-SNE's perplexity must stay below their number) and no retrieval
)
QUERIES, NEIGHBOURS = 6, 5  # retrieval
RETRIEVAL_BANK = 2000  # training items searched (a CPU embeds a few hundred CIFAR images per second)
CROSS_CORRELATION_DIMS = 64  # the top-left block of the matrix shown

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; image-rendering: pixelated; }
img.plot { image-rendering: auto; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.caption { color: #555; font-size: 0.9em; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def png_data(image) -> str:
    """A ``data:`` URL of a PIL image or a matplotlib figure (the figure is closed)."""
    buffer = io.BytesIO()
    if hasattr(image, "savefig"):
        import matplotlib.pyplot as plt

        image.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(image)
    else:
        image.save(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(image, alt: str, plot: bool = False) -> str:
    return f'<img{" class=plot" if plot else ""} alt="{_esc(alt)}" src="{png_data(image)}">'


def _table(header: list[str] | None, rows: list[list[Any]], numbers: bool = True) -> str:
    """An HTML table; with ``numbers``, cells that start with a digit are right-aligned."""
    head = "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class=num>{_esc(c)}</td>" if numbers and str(c)[:1].isdigit() else f"<td>{_esc(c)}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _figure(panels: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat[panels:]:
        ax.axis("off")
    return fig, list(axes.flat[:panels])


CURVES = [
    ("loss", "loss (train, mean over the epoch)"),
    ("lr", "learning rate (end of epoch)"),
    ("images_per_s", "images (texts) per second"),
    ("embedding_std", "std of L2-normalised features"),
    ("embedding_rank", "effective rank of the features (RankMe)"),
    ("assignment_information", "assignment information (× ln K)"),
]


def curves_figure(histories: dict[str, list[dict]], relative_loss: bool = False):
    """Curves over epochs of one run (or several, overlaid): loss and any other ``*_loss`` term,
    learning rate, throughput and the collapse monitors, with 1/√D (points spread on the sphere)
    beside the embedding and projection std."""
    keys = set().union(*(r.keys() for h in histories.values() for r in h))
    extra_losses = sorted(k for k in keys if k.endswith("_loss"))
    panels = [(k, t) for k, t in CURVES if k in keys]
    panels[1:1] = [(k, k.replace("_", " ")) for k in extra_losses]
    fig, axes = _figure(len(panels))
    for ax, (key, title) in zip(axes, panels):
        for name, history in histories.items():
            epochs = [r["epoch"] for r in history if key in r]
            values = [r[key] for r in history if key in r]
            if relative_loss and key == "loss" and values:
                values = [v / values[0] for v in values]
            ax.plot(
                epochs,
                values,
                marker="o" if len(values) < 30 else None,
                markersize=3,
                label=name if len(histories) > 1 else key,
            )
            if key == "embedding_std":
                for other, dim_key in (
                    ("projection_std", "projection_dim"),
                    ("embedding_std", "embedding_dim"),
                ):
                    dims = [r[dim_key] for r in history if dim_key in r]
                    if other == "projection_std" and other in keys and len(histories) == 1:
                        ax.plot(
                            [r["epoch"] for r in history if other in r],
                            [r[other] for r in history if other in r],
                            marker="o" if len(history) < 30 else None,
                            markersize=3,
                            label="projection std",
                        )
                    if dims and len(histories) == 1:
                        ax.axhline(1 / math.sqrt(dims[-1]), linestyle="--", linewidth=0.8, color="grey")
        ax.set_title(title + (" / first epoch" if relative_loss and key == "loss" else ""), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if (len(histories) > 1 and ax is axes[0]) or (key == "embedding_std" and len(histories) == 1):
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def evaluation_rows(evaluation: dict) -> tuple[list[str], list[list[str]]]:
    """The evaluation table: one row per protocol, one column per label budget, mean ± std."""
    from selfsup.evaluate.harness import PROTOCOLS, result_grid

    budgets, protocols, cell = result_grid(evaluation["results"])
    rows = [[PROTOCOLS.get(p, p)] + [cell.get((p, b), "—") for b in budgets] for p in protocols]
    return ["protocol"] + [f"{b} labels" for b in budgets], rows


def _scatter(points: np.ndarray, labels: np.ndarray | None, classes: list[str] | None, title: str):
    fig, (ax,) = _figure(1)
    fig.set_size_inches(6.5, 5.5)
    if labels is None or (labels < 0).all():
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.7)
    else:
        import matplotlib.pyplot as plt

        unlabelled = labels < 0
        if unlabelled.any():
            ax.scatter(
                points[unlabelled, 0],
                points[unlabelled, 1],
                s=6,
                alpha=0.5,
                color="lightgrey",
                label="unlabelled",
            )
        cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        for value in np.unique(labels[~unlabelled]):
            chosen = labels == value
            name = classes[value] if classes and 0 <= value < len(classes) else str(value)
            ax.scatter(
                points[chosen, 0], points[chosen, 1], s=6, alpha=0.75, color=cmap(value % cmap.N), label=name
            )
        if len(np.unique(labels)) <= 20:
            ax.legend(fontsize=7, markerscale=2, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return fig


def embedding_map(
    features: torch.Tensor, labels: np.ndarray | None, classes: list[str] | None, seed: int = 0
):
    """2-D map of (up to MAP_POINTS) embeddings: UMAP when installed, else t-SNE; and its name."""
    x = torch.nn.functional.normalize(features.float(), dim=1).numpy()
    try:
        import umap  # the optional extra

        points, name = umap.UMAP(n_components=2, random_state=seed).fit_transform(x), "UMAP"
    except ImportError:
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        points = TSNE(2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)
        name = "t-SNE"
    return _scatter(
        points, labels, classes, f"{name} of {len(x)} test embeddings (cosine), coloured by label"
    ), name


def nearest_neighbours(queries: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """Indices k of the cosine-nearest rows of ``bank`` for each query."""
    q = torch.nn.functional.normalize(queries.float(), dim=1)
    b = torch.nn.functional.normalize(bank.float(), dim=1)
    return (q @ b.T).topk(k, dim=1).indices


def _data_sections(run_dir: Path, config, encoder, device, method_name: str) -> list[str]:
    """Embedding map, retrieval, augmentation grid and cross-correlation: the parts that need the
    run's data (loaded again from ``data.spec``) and its encoder."""
    from selfsup import api
    from selfsup.data import ImageDataset
    from selfsup.evaluate.features import extract_features
    from selfsup.report.images import image_grid

    try:
        splits = api._load(config)
    except SelfsupError as exc:
        return [
            f"<h2>Embeddings</h2><p>The run's data could not be loaded again ({_esc(exc)}): no map, retrieval or "
            "augmented views.</p>"
        ]
    train = splits.train
    test = splits.test if splits.test is not None and len(splits.test) >= MIN_MAP_POINTS else train
    if len(test) < MIN_MAP_POINTS:
        return [
            f"<h2>Embeddings</h2><p>Too few items ({len(test)}) for a map or nearest-neighbour retrieval.</p>"
        ]
    generator = torch.Generator().manual_seed(0)
    parts = []
    chosen = torch.randperm(len(test), generator=generator)[:MAP_POINTS]
    test_features = extract_features(encoder, encoder.inputs(test)[chosen], device)
    labels = test.labels[chosen].numpy() if test.labelled else None
    figure, name = embedding_map(test_features, labels, train.classes)
    parts.append(
        f"<h2>Embedding map</h2>{_img(figure, name + ' map', plot=True)}"
        f"<p class=caption>{name} of the encoder's features of {len(chosen)} test items; nearby points "
        "are items the encoder finds similar.</p>"
    )

    bank_index = torch.randperm(len(train), generator=generator)[:RETRIEVAL_BANK]
    bank = extract_features(encoder, encoder.inputs(train)[bank_index], device)
    queries, k = chosen[:QUERIES], min(NEIGHBOURS, len(bank_index))
    neighbours = bank_index[nearest_neighbours(test_features[:QUERIES], bank, k)]
    caption = (
        f"<p class=caption>{len(queries)} test queries (first column) and their {k} nearest items among "
        f"{len(bank_index)} training items, by cosine similarity of the features, nearest first.</p>"
    )
    if isinstance(train, ImageDataset):
        columns = [test.images[queries].float() / 255] + [
            train.images[neighbours[:, j]].float() / 255 for j in range(k)
        ]
        parts.append(f"<h2>Nearest neighbours</h2>{_img(image_grid(columns), 'retrieval')}{caption}")
        if config.augment.preset != "none":
            from selfsup.augment import ViewAugmenter

            originals = train.images[torch.randperm(len(train), generator=generator)[:8]]
            views = ViewAugmenter(config.augment)(originals, torch.Generator().manual_seed(0))
            parts.append(
                f"<h2>Augmented views</h2>{_img(image_grid([originals.float() / 255] + views), 'views')}"
                f"<p class=caption>Training images (first column) and the views the method saw "
                f"(augment.preset={_esc(config.augment.preset or 'custom')}).</p>"
            )
            if method_name in ("barlow_twins", "vicreg"):
                parts.append(cross_correlation_section(run_dir, train.images, device))
    else:

        def label_of(dataset, index: int) -> str:
            label = int(dataset.labels[index]) if dataset.labelled and dataset.classes else -1
            return dataset.classes[label] if label >= 0 else ""

        rows = []
        for i, query in enumerate(queries.tolist()):
            rows.append([f"query {i + 1}", label_of(test, query), _shorten(test.texts[query])])
            for j, index in enumerate(neighbours[i].tolist()):
                rows.append([f"  {j + 1}", label_of(train, index), _shorten(train.texts[index])])
        parts.append(f"<h2>Nearest neighbours</h2>{_table(['', 'label', 'text'], rows)}{caption}")
    return parts


def _shorten(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@torch.no_grad()
def cross_correlation_section(run_dir: Path, images: torch.Tensor, device) -> str:
    """Barlow Twins' (and VICReg's) cross-correlation matrix of the batch-standardised projections
    of two augmented views of 256 training images: the identity when the views agree on every
    dimension and the dimensions are decorrelated."""
    import matplotlib.pyplot as plt

    from selfsup import api
    from selfsup.augment import ViewAugmenter

    method, config = api.load_method(run_dir, str(device))
    batch = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(1))[:256]]
    views = ViewAugmenter(config.augment)(batch.to(device), torch.Generator(device=device).manual_seed(1))
    z1, z2 = (method.projector(method.encoder(v)).float() for v in views)
    z1, z2 = ((z - z.mean(0)) / (z.std(0, unbiased=False) + 1e-5) for z in (z1, z2))
    c = (z1.T @ z2 / len(z1)).cpu()
    d = c.shape[0]
    diagonal = float(torch.diagonal(c).mean())
    off = float(c[~torch.eye(d, dtype=torch.bool)].pow(2).mean().sqrt())
    shown = c[:CROSS_CORRELATION_DIMS, :CROSS_CORRELATION_DIMS].numpy()
    fig, (ax,) = _figure(1)
    fig.set_size_inches(5.5, 4.6)
    image = ax.imshow(shown, cmap="RdBu_r", vmin=-1, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(f"cross-correlation, first {len(shown)} of {d} dimensions", fontsize=9)
    plt.setp(ax.get_xticklabels() + ax.get_yticklabels(), fontsize=7)
    return (
        f"<h2>Cross-correlation of the two views</h2>{_img(fig, 'cross-correlation', plot=True)}"
        f"<p class=caption>C = standardised projections of view 1ᵀ · view 2 / N over {len(batch)} training images. "
        f"Mean of the diagonal {diagonal:.3f} (1 is perfect invariance); root mean square off the diagonal "
        f"{off:.3f} (0 is fully decorrelated).</p>"
    )


def _method_pictures(run_dir: Path) -> list[str]:
    parts = []
    for path in sorted(run_dir.glob("*.png")):
        from PIL import Image

        with Image.open(path) as picture:
            parts.append(
                f"<h3>{_esc(path.stem.replace('_', ' '))}</h3>{_img(picture.convert('RGB'), path.stem)}"
            )
    for path in sorted(run_dir.glob("*.txt")):
        text = path.read_text()
        parts.append(f"<h3>{_esc(path.stem.replace('_', ' '))}</h3><pre>{_esc(text[:6000])}</pre>")
    return (
        (
            [
                "<h2>The method's own pictures and examples</h2><p class=caption>Made on test items at the end of "
                "pretraining (train.pictures).</p>"
            ]
            + parts
        )
        if parts
        else []
    )


def write_report(run_dir: str | Path, device: str | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` from what the run directory holds; returns its path."""
    from selfsup.config import load_run_config
    from selfsup.methods import get_method
    from selfsup.models.encoder import load_encoder
    from selfsup.train.device import resolve_device

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise SelfsupError(f"{run_dir} is not a run directory (no config.yaml)")
    config = load_run_config(run_dir)
    info = get_method(config.method_name)
    run = _read_json(run_dir / "run.json") or {}
    history = read_history(run_dir)
    evaluation = _read_json(run_dir / "eval.json")
    test_metrics = _read_json(run_dir / "test_metrics.json")

    title = f"{config.method_name} on {run.get('data', config.data.spec)}"
    overview = [
        ["method", f"{info.name} — {info.family}; {info.paper}"],
        ["data", run.get("data", config.data.spec)],
        ["training / test items", f"{run.get('train_items', '?')} / {run.get('test_items', '?')}"],
        ["backbone", config.model.backbone],
        ["epochs done / planned", f"{history[-1]['epoch'] if history else 0} / {config.train.epochs}"],
        ["batch size (global)", config.train.batch_size],
        [
            "optimiser",
            f"{config.optim.name}, lr {config.optim.lr} ({config.optim.lr_scaling} scaling), "
            f"{config.optim.schedule} schedule",
        ],
    ]
    if run:
        machine = run.get("machine", {})
        overview += [
            ["pretraining wall time", f"{run['seconds']:.0f} s"],
            ["peak memory", f"{run['peak_memory_mb']:.0f} MB"],
            [
                "device",
                f"{run.get('device')} ({run.get('precision')}), {run.get('processes', 1)} process(es)",
            ],
            [
                "machine",
                f"{machine.get('cpu')}, {machine.get('cpu_count')} CPUs"
                + (f", {machine['gpu']}" if machine.get("gpu") else "")
                + f"; torch {machine.get('torch')}",
            ],
            ["finished", run.get("finished", "")],
        ]
    if evaluation:
        overview.append(["evaluation wall time", f"{evaluation.get('seconds', 0):.0f} s"])
    body = [
        f"<h1>selfsup: {_esc(title)}</h1>",
        _table(None, overview, numbers=False),
        f"<details><summary>configuration (config.yaml)</summary><pre>{_esc((run_dir / 'config.yaml').read_text())}"
        "</pre></details>",
    ]

    if history:
        body.append(
            f"<h2>Training curves</h2>{_img(curves_figure({'run': history}), 'training curves', plot=True)}"
            "<p class=caption>The collapse monitors are measured on the last batch of each epoch; the "
            "dashed line is 1/√D, the std of points spread evenly over the sphere (0 = collapse).</p>"
        )
    if evaluation:
        header, rows = evaluation_rows(evaluation)
        seeds = evaluation["results"][0]["seeds"] if evaluation["results"] else 0
        body.append(
            f"<h2>Evaluation</h2>{_table(header, rows)}<p class=caption>Test accuracy, mean ± std over "
            f"{seeds} seeded, class-balanced labelled subsets. {_esc(evaluation.get('note', ''))}</p>"
        )
    else:
        body.append(
            "<h2>Evaluation</h2><p>Not evaluated yet: <code>selfsup evaluate "
            f"{_esc(run_dir)}</code> adds the few-label table here.</p>"
        )
    if test_metrics:
        body.append(
            "<h2>Pretext task on the test split</h2>"
            + _table(
                ["metric", "value"],
                [[k.replace("_", " "), "—" if v is None else f"{v:.4g}"] for k, v in test_metrics.items()],
            )
        )

    if (run_dir / "encoder.safetensors").exists():
        torch_device = resolve_device(device or config.train.device)
        encoder = load_encoder(run_dir, torch_device)
        body += _data_sections(run_dir, config, encoder, torch_device, config.method_name)
    body += _method_pictures(run_dir)

    out = run_dir / REPORT_FILE
    page = (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return out


def comparison(run_dirs: list[str | Path], out: str | Path) -> tuple[Path, str]:
    """A page comparing runs side by side (accuracy per label budget, wall time, curves overlaid) at
    ``out``, and the same table as Markdown text."""
    from selfsup.config import load_run_config
    from selfsup.evaluate.harness import PROTOCOLS, result_grid

    runs = []
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "config.yaml").exists():
            raise SelfsupError(f"{run_dir} is not a run directory (no config.yaml)")
        runs.append(
            (
                run_dir,
                load_run_config(run_dir),
                _read_json(run_dir / "run.json") or {},
                _read_json(run_dir / "eval.json") or {"results": []},
                read_history(run_dir),
            )
        )
    names = _short_names([r[0] for r in runs])
    columns = list(dict.fromkeys((x["protocol"], x["labels"]) for r in runs for x in r[3]["results"]))
    header = ["run", "method", "data", "epochs", "wall s"] + [
        f"{PROTOCOLS.get(p, p)} {b}" for p, b in columns
    ]
    rows = []
    for name, (_run_dir, config, run, evaluation, history) in zip(names, runs):
        cell = result_grid(evaluation["results"])[2]
        rows.append(
            [
                name,
                config.method_name,
                run.get("data", config.data.spec),
                history[-1]["epoch"] if history else 0,
                f"{run['seconds']:.0f}" if "seconds" in run else "—",
            ]
            + [cell.get(c, "—") for c in columns]
        )
    markdown = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    )
    body = [
        "<h1>selfsup: comparison of runs</h1>",
        _table(header, rows),
        "<p class=caption>Test accuracy, mean ± std over the seeded labelled subsets of each run's evaluation; "
        "wall time of the pretraining.</p>",
    ]
    histories = {name: r[4] for name, r in zip(names, runs) if r[4]}
    if histories:
        body.append(
            f"<h2>Curves</h2>{_img(curves_figure(histories, relative_loss=True), 'curves', plot=True)}"
            "<p class=caption>Losses of different methods have different scales: each is shown relative "
            "to its first epoch.</p>"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>selfsup comparison</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )
    return out, markdown


def _short_names(paths: list[Path]) -> list[str]:
    """The runs' directory names, made unique with their parents where two share a name."""
    names = [p.name for p in paths]
    return [str(Path(p.parent.name) / p.name) if names.count(p.name) > 1 else p.name for p in paths]
