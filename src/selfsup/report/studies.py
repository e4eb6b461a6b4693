"""Tables and figures of the augmentation studies (:mod:`selfsup.studies`): the pair heat map of
SimCLR's Figure 5 and the curve of a one-setting sweep."""

from __future__ import annotations

import numpy as np

from selfsup.report.figures import figure as new_figure


def _means(row: dict, protocol: str) -> dict[str, tuple[float, float]]:
    return {r["labels"]: (r["mean"], r["std"]) for r in row["results"] if r["protocol"] == protocol}


def format_pairs(rows: list[dict], names: list[str]) -> tuple[str, dict, str]:
    """Markdown of the pair study and its matrices: ``{"linear": n×n, "knn": n×n}`` of mean
    accuracy at the largest label budget (the last the evaluation lists), entry (i, j) the run with
    augmentations i and j (the diagonal: i alone), and that budget. ``rows``: each with ``run``
    (``a+b``, ``a`` or ``none``) and the evaluation's ``results``."""
    budget = list(_means(rows[0], "linear"))[-1]
    by_run = {row["run"]: row for row in rows}
    matrices, lines = {}, []
    for protocol, title in (("linear", "linear probe"), ("knn", "kNN")):
        matrix = [[float("nan")] * len(names) for _ in names]
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                run = by_run.get(a if a == b else f"{a}+{b}") or by_run.get(f"{b}+{a}")
                if run is not None:
                    matrix[i][j] = _means(run, protocol)[budget][0]
        matrices[protocol] = matrix
        lines += [
            f"{title}, {budget} labels (rows and columns: the two augmentations; diagonal: one alone)",
            "",
            "| | " + " | ".join(names) + " |",
            "| --- " * (len(names) + 1) + "|",
            *(
                f"| {a} | " + " | ".join("—" if np.isnan(v) else f"{v:.3f}" for v in matrix[i]) + " |"
                for i, a in enumerate(names)
            ),
            "",
        ]
        if "none" in by_run:
            lines += [f"no augmentation at all: {_means(by_run['none'], protocol)[budget][0]:.3f}", ""]
    return "\n".join(lines).rstrip(), matrices, budget


def pair_heat_map(matrices: dict, names: list[str], title: str):
    """The heat map of linear-probe accuracy (``matrices["linear"]``), each cell annotated."""
    fig, (ax,) = new_figure(1)
    values = np.array(matrices["linear"], dtype=float)
    fig.set_size_inches(1.0 * len(names) + 2.5, 0.9 * len(names) + 1.5)
    low, high = np.nanmin(values) - 0.02, np.nanmax(values)
    shown = ax.imshow(values, cmap="Greens", vmin=low, vmax=high)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("second augmentation")
    ax.set_ylabel("first augmentation")
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(values[i, j]):
                dark = (values[i, j] - low) > 0.6 * (high - low)  # black text would vanish there
                colour = "white" if dark else "black"
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=9, color=colour)
    ax.set_title(title)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    return fig


def format_sweep(rows: list[dict], key: str) -> str:
    """Markdown: one row per value of ``key``, kNN and linear accuracy (mean ± std) per budget."""
    budgets = list(_means(rows[0], "linear"))
    columns = [(p, b) for p in ("knn", "linear") for b in budgets]
    lines = [
        f"| {key} | " + " | ".join(f"{'kNN' if p == 'knn' else 'linear'} {b}" for p, b in columns) + " |",
        "| --- " * (len(columns) + 1) + "|",
    ]
    for row in rows:
        cells = [_means(row, p)[b] for p, b in columns]
        lines.append(f"| {row['run']} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in cells) + " |")
    return "\n".join(lines)


def sweep_curves(rows: list[dict], key: str, method: str):
    """Accuracy against the swept value: one line per protocol and budget, with ± std bars; the
    values are spaced evenly where any is not a number."""
    fig, (ax,) = new_figure(1)
    try:
        x = [float(row["run"]) for row in rows]
    except ValueError:
        x = list(range(len(rows)))
        ax.set_xticks(x, [row["run"] for row in rows])
    for protocol, style in (("linear", "-o"), ("knn", "--s")):
        for budget in _means(rows[0], protocol):
            stats = [_means(row, protocol)[budget] for row in rows]
            ax.errorbar(
                x,
                [m for m, _ in stats],
                yerr=[s for _, s in stats],
                fmt=style,
                capsize=3,
                label=f"{'linear' if protocol == 'linear' else 'kNN'} {budget}",
            )
    ax.set_xlabel(key)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{method}: {key}")
    ax.legend(fontsize=8)
    return fig
