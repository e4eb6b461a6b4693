"""HTML pieces of the report pages: escaping, tables, pictures embedded as PNG ``data:`` URLs and
the page itself (self-contained: it opens in any browser without a server)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from selfsup.atomic import write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; } th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; image-rendering: pixelated; }
img.plot { image-rendering: auto; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.caption { color: #555; font-size: 0.9em; }
"""


def esc(value: Any) -> str:
    """``value`` as text, HTML-escaped."""
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


def img(image, alt: str, plot: bool = False) -> str:
    """An ``<img>`` of a PIL image or matplotlib figure; ``plot``: smoothed when scaled (not pixelated)."""
    return f'<img{" class=plot" if plot else ""} alt="{esc(alt)}" src="{png_data(image)}">'


def table(header: list[str] | None, rows: list[list[Any]], numbers: bool = True) -> str:
    """An HTML table; with ``numbers``, cells that start with a digit are right-aligned."""
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" if header else ""

    def cell(c: Any) -> str:
        return f"<td class=num>{esc(c)}</td>" if numbers and str(c)[:1].isdigit() else f"<td>{esc(c)}</td>"

    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def document(title: str, body: list[str]) -> str:
    """A whole HTML page: ``title`` (escaped) and the HTML pieces of ``body``."""
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def write_page(path: Path, page: str) -> Path:
    """Write ``page`` to ``path`` whole or not at all (:func:`selfsup.atomic.write_text`);
    returns ``path``."""
    write_text(path, page)
    return path
