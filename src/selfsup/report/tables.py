"""The tables of results: evaluation (HTML rows), comparison of runs and the augmentation
ablation (Markdown text, printed by the command and saved beside the runs)."""

from __future__ import annotations

from typing import Any


def evaluation_rows(evaluation: dict) -> tuple[list[str], list[list[str]]]:
    """The evaluation table: one row per protocol, one column per label budget, mean ± std.
    Returns the header and the rows."""
    from selfsup.evaluate.harness import PROTOCOLS, result_grid

    budgets, protocols, cell = result_grid(evaluation["results"])
    rows = [[PROTOCOLS.get(p, p)] + [cell.get((p, b), "—") for b in budgets] for p in protocols]
    return ["protocol"] + [f"{b} labels" for b in budgets], rows


def markdown(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table of ``header`` and ``rows``."""
    return "\n".join(
        ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    )


def format_ablation(rows: list[dict]) -> str:
    """Markdown: one row per ablation, kNN and linear accuracy per label budget, and the change
    of each from the full pipeline. ``rows``: the full pipeline's first, each with ``drop`` and
    either ``results`` (the evaluation's) or a ``note`` (why it was not trained)."""
    trained = [r for r in rows if "results" in r]
    budgets = list(dict.fromkeys(x["labels"] for x in trained[0]["results"]))
    columns = [(p, b) for p in ("knn", "linear") for b in budgets]
    full = {(x["protocol"], x["labels"]): x["mean"] for x in trained[0]["results"]}
    lines = [
        "| augmentations | "
        + " | ".join(f"{'kNN' if p == 'knn' else 'linear'} {b}" for p, b in columns)
        + " |",
        "| --- " * (len(columns) + 1) + "|",
    ]
    for row in rows:
        label = "all (full pipeline)" if row["drop"] == "full" else f"without {row['drop']}"
        if "results" not in row:
            lines.append(f"| {label} ({row['note']}) | " + " | ".join("—" for _ in columns) + " |")
            continue
        means = {(x["protocol"], x["labels"]): x for x in row["results"]}
        cells = []
        for key in columns:
            r = means[key]
            delta = "" if row["drop"] == "full" else f" ({r['mean'] - full[key]:+.3f})"
            cells.append(f"{r['mean']:.3f} ± {r['std']:.3f}{delta}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
