"""The report's matplotlib figures: training curves, the 2-D map of embeddings and the
cross-correlation matrix. Each function returns an open figure (:func:`selfsup.report.page.img`
embeds and closes it)."""

from __future__ import annotations

import math

import numpy as np
import torch

CURVES = [
    ("loss", "loss (train, mean over the epoch)"),
    ("lr", "learning rate (end of epoch)"),
    ("images_per_s", "images (texts) per second"),
    ("embedding_std", "std of L2-normalised features"),
    ("embedding_rank", "effective rank of the features (RankMe)"),
    ("assignment_information", "assignment information (× ln K)"),
]
"""The epoch records' keys drawn as curves, and their titles, in the order of the panels."""


def figure(panels: int):
    """A figure of ``panels`` panels, three to a row, and its axes (the unused ones hidden)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat[panels:]:
        ax.axis("off")
    return fig, list(axes.flat[:panels])


def curves_figure(histories: dict[str, list[dict]], relative_loss: bool = False):
    """Curves over epochs of one run (or several, overlaid; ``histories``: name -> epoch records):
    loss and any other ``*_loss`` term, learning rate, throughput and the collapse monitors, with
    1/√D (points spread on the sphere) beside the embedding and projection std. ``relative_loss``:
    each loss divided by its first epoch's."""
    keys = set().union(*(r.keys() for h in histories.values() for r in h))
    extra_losses = sorted(k for k in keys if k.endswith("_loss"))
    panels = [(k, t) for k, t in CURVES if k in keys]
    panels[1:1] = [(k, k.replace("_", " ")) for k in extra_losses]
    fig, axes = figure(len(panels))
    for ax, (key, title) in zip(axes, panels):
        for name, history in histories.items():
            epochs = [r["epoch"] for r in history if key in r]
            values = [r[key] for r in history if key in r]
            if relative_loss and key == "loss" and values:
                values = [v / values[0] for v in values]
            label = name if len(histories) > 1 else key
            ax.plot(epochs, values, marker="o" if len(values) < 30 else None, markersize=3, label=label)
            if key == "embedding_std" and len(histories) == 1:
                _spread_lines(ax, history, keys)
        ax.set_title(title + (" / first epoch" if relative_loss and key == "loss" else ""), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if (len(histories) > 1 and ax is axes[0]) or (key == "embedding_std" and len(histories) == 1):
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _spread_lines(ax, history: list[dict], keys: set[str]) -> None:
    """Beside one run's embedding std: its projection std, and 1/√D of the projection and the
    embedding (dashed)."""
    for other, dim_key in (("projection_std", "projection_dim"), ("embedding_std", "embedding_dim")):
        dims = [r[dim_key] for r in history if dim_key in r]
        if other == "projection_std" and other in keys:
            ax.plot(
                [r["epoch"] for r in history if other in r],
                [r[other] for r in history if other in r],
                marker="o" if len(history) < 30 else None,
                markersize=3,
                label="projection std",
            )
        if dims:
            ax.axhline(1 / math.sqrt(dims[-1]), linestyle="--", linewidth=0.8, color="grey")


def scatter(points: np.ndarray, labels: np.ndarray | None, classes: list[str] | None, title: str):
    """A scatter plot of 2-D ``points`` (N×2), coloured by ``labels`` (N; negative: unlabelled, in
    grey) named by ``classes``, with a legend up to 20 labels."""
    fig, (ax,) = figure(1)
    fig.set_size_inches(6.5, 5.5)
    if labels is None or (labels < 0).all():
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.7)
    else:
        import matplotlib.pyplot as plt

        unlabelled = labels < 0
        if unlabelled.any():
            x, y = points[unlabelled, 0], points[unlabelled, 1]
            ax.scatter(x, y, s=6, alpha=0.5, color="lightgrey", label="unlabelled")
        cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        for value in np.unique(labels[~unlabelled]):
            chosen = labels == value
            name = classes[value] if classes and 0 <= value < len(classes) else str(value)
            x, y = points[chosen, 0], points[chosen, 1]
            ax.scatter(x, y, s=6, alpha=0.75, color=cmap(value % cmap.N), label=name)
        if len(np.unique(labels)) <= 20:
            ax.legend(fontsize=7, markerscale=2, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return fig


def embedding_map(
    features: torch.Tensor, labels: np.ndarray | None, classes: list[str] | None, seed: int = 0
):
    """2-D map of N×D ``features`` (cosine: L2-normalised first): UMAP when installed, else t-SNE;
    the figure and the name of the projection."""
    x = torch.nn.functional.normalize(features.float(), dim=1).numpy()
    try:
        import umap  # the optional extra

        points, name = umap.UMAP(n_components=2, random_state=seed).fit_transform(x), "UMAP"
    except ImportError:
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        points = TSNE(2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)
        name = "t-SNE"
    title = f"{name} of {len(x)} test embeddings (cosine), coloured by label"
    return scatter(points, labels, classes, title), name


def cross_correlation_figure(c: torch.Tensor, shown_dims: int):
    """The top-left ``shown_dims`` × ``shown_dims`` block of a D×D cross-correlation matrix ``c``,
    from -1 (blue) to 1 (red)."""
    import matplotlib.pyplot as plt

    shown = c[:shown_dims, :shown_dims].numpy()
    fig, (ax,) = figure(1)
    fig.set_size_inches(5.5, 4.6)
    image = ax.imshow(shown, cmap="RdBu_r", vmin=-1, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(f"cross-correlation, first {len(shown)} of {c.shape[0]} dimensions", fontsize=9)
    plt.setp(ax.get_xticklabels() + ax.get_yticklabels(), fontsize=7)
    return fig
