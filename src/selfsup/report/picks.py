"""The page of ``selfsup select``: the items the user is asked to label, as pictures grouped by
cluster (images) or listed (texts), so that they see what they will label before they start."""

from __future__ import annotations

from pathlib import Path

import torch

from selfsup.data.pictures import image_grid
from selfsup.report.page import document, esc, img, table, write_page

TEXT_CHARS = 400
"""Characters of each text shown."""
ROW = 12
"""Pictures a row."""


def picks_page(path: Path, picks: list[dict], images: torch.Tensor | None, summary: dict) -> Path:
    """Write the page to ``path``: ``picks`` are the CSV's rows (rank, index, path or text,
    cluster, score), ``images`` the picked images (uint8 K×C×H×W in the picks' order; None for
    texts), ``summary`` what ``select`` returns (strategy, budget, note, data, files)."""
    body = [
        f"<h1>{len(picks)} items to label: {esc(summary['strategy'])}</h1>",
        f"<p>{esc(summary['data'])}: {summary['pool']} training items, {summary['labelled']} labelled "
        f"already. {esc(summary['note'])}.</p>",
        f"<p class=caption>Fill in the <code>label</code> column of {esc(summary['csv'])}, or import "
        f"{esc(summary['tasks'])} into Label Studio (interface: {esc(summary['interface'])}), then "
        "pass the file with <code>--labelled</code>.</p>",
    ]
    if images is None:
        rows = [
            [p["rank"], p["index"], p["cluster"], _score(p["score"]), _short(p.get("text", ""))]
            for p in picks
        ]
        body.append(table(["rank", "index", "cluster", "score", "text"], rows, numbers=False))
    else:
        groups: dict[int, list[int]] = {}
        for position, p in enumerate(picks):
            groups.setdefault(int(p["cluster"]), []).append(position)
        for cluster, positions in groups.items():
            title = f"cluster {cluster}" if cluster >= 0 else "picks"
            body.append(f"<h2>{esc(title)}</h2>")
            for start in range(0, len(positions), ROW):
                part = positions[start : start + ROW]
                columns = [images[i : i + 1].float() / 255.0 for i in part]
                body.append(img(image_grid(columns, 96), title))
                caption = ", ".join(f"#{picks[i]['rank']} index {picks[i]['index']}" for i in part)
                body.append(f"<p class=caption>{esc(caption)}</p>")
    return write_page(path, document(f"selfsup select: {summary['strategy']}", body))


def _score(value) -> str:
    return "" if value == "" or value != value else f"{float(value):.4g}"


def _short(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + " …"
