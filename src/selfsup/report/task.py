"""The page of a task model (``MODEL_DIR/report.html``): how it was fitted, its cross-validated
accuracy on the labels and, where the data have a labelled test split, its accuracy per class,
the confusion matrix, and its most and least confident predictions (pictures, or texts)."""

from __future__ import annotations

from pathlib import Path

import torch

from selfsup.data.pictures import image_grid
from selfsup.report.page import document, esc, img, table, write_page

SHOWN = 12
"""Predictions shown among the most and the least confident."""


def task_page(path: Path, facts: dict, scored: dict | None, examples: dict | None) -> Path:
    """Write the page: ``facts`` (``classifier.json``), ``scored`` (``classes``, ``per_class``
    accuracies, ``confusion`` K×K rows = true class; None without a labelled test split) and
    ``examples`` (``most``/``least``: lists of (probability, predicted, true or None, image
    tensor C×H×W uint8 or text))."""
    body = [
        f"<h1>Task model: {len(facts['classes'])} classes</h1>",
        table(
            ["setting", "value"],
            [
                ["run", facts["run_dir"]],
                ["data", facts["data"]],
                ["labels", facts["labels"]],
                ["protocol", f"{facts['protocol']} ({facts['protocol_choice']})"],
                ["unlabelled items", facts["semi"]],
                [
                    "validation accuracy (cross-validated on the labels)",
                    _accuracy(facts["validation_accuracy"]),
                ],
                ["test accuracy", _accuracy(facts.get("test_accuracy"))],
            ],
            numbers=False,
        ),
        "<p class=caption>" + esc("; ".join(facts.get("notes", []))) + "</p>",
    ]
    if scored is not None:
        classes = scored["classes"]
        body.append("<h2>Accuracy per class (test split)</h2>")
        body.append(
            table(["class", "accuracy", "items"], [[c, _accuracy(a), n] for c, a, n in scored["per_class"]])
        )
        body.append("<h2>Confusion matrix (rows: true class; columns: predicted)</h2>")
        body.append(table([""] + classes, [[c] + row for c, row in zip(scored["rows"], scored["confusion"])]))
    for kind, title in (("most", "Most confident predictions"), ("least", "Least confident predictions")):
        shown = (examples or {}).get(kind) or []
        if not shown:
            continue
        body.append(f"<h2>{title}</h2>")
        if isinstance(shown[0][3], str):
            rows = [[f"{p:.3f}", predicted, true or "", text[:300]] for p, predicted, true, text in shown]
            body.append(table(["probability", "predicted", "true", "text"], rows, numbers=False))
        else:
            columns = [item[3][None].float() / 255.0 for item in shown]
            body.append(img(image_grid(columns, 96), title))
            caption = ", ".join(
                f"{predicted} {p:.2f}" + (f" (true {true})" if true else "")
                for p, predicted, true, _ in shown
            )
            body.append(f"<p class=caption>{esc(caption)}</p>")
    return write_page(path, document("selfsup task model", body))


def _accuracy(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def confident_examples(probabilities: torch.Tensor, classes: list[str], truth, items) -> dict:
    """The :data:`SHOWN` most and least confident predictions: (probability, predicted class, true
    class or None, the item)."""
    top, predicted = probabilities.max(dim=1)
    order = torch.argsort(top, descending=True)

    def entry(i: int):
        return float(top[i]), classes[int(predicted[i])], truth[i] if truth is not None else None, items(i)

    return {
        "most": [entry(int(i)) for i in order[:SHOWN]],
        "least": [entry(int(i)) for i in order.flip(0)[:SHOWN]],
    }
