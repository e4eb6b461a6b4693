"""Imports go one way: a module imports only from its own layer or lower ones, and no selfsup
modules import each other in a cycle. The layers and the import graph are those of
``benchmarks/code_shape.py`` (its ``LAYERS`` is the one list of them)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

CODE_SHAPE = Path(__file__).resolve().parents[1] / "benchmarks" / "code_shape.py"


@pytest.fixture(scope="module")
def shape():
    spec = importlib.util.spec_from_file_location("code_shape", CODE_SHAPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("code_shape", module)  # dataclasses and the like look modules up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def graph(shape) -> dict[str, set[str]]:
    return shape.import_graph()


def test_no_module_imports_a_higher_layer(shape, graph):
    upward = [f"{a} imports {b}" for a, b in shape.upward_imports(graph)]
    assert upward == [], f"layers from the bottom up: {' < '.join(shape.LAYERS)}"


def test_no_import_cycles_among_modules_or_layers(shape, graph):
    assert shape.cycles(graph) == []
    layers: dict[str, set[str]] = {}
    for module, targets in graph.items():
        layers.setdefault(shape.layer(module), set()).update(
            shape.layer(t) for t in targets if shape.layer(t) != shape.layer(module)
        )
    assert shape.cycles(layers) == []


def test_every_module_is_in_a_layer(shape, graph):
    assert "selfsup.cli" in graph and "selfsup.runs" in graph  # the graph is the package's
    assert shape.unlayered(graph) == [], "add its layer to LAYERS in benchmarks/code_shape.py"


def test_the_checks_catch_what_they_look_for(shape, tmp_path):
    """An upward import, a cycle, and what counts as an import: deferred ones do, type hints' don't."""
    assert shape.upward_imports({"selfsup.data.x": {"selfsup.api"}, "selfsup.api": {"selfsup.data"}}) == [
        ("selfsup.data.x", "selfsup.api")
    ]
    assert shape.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from selfsup import runs, __version__\n"
        "from selfsup.report.page import esc\n"
        "if TYPE_CHECKING:\n"
        "    from selfsup.cli import main\n"
        "def f():\n"
        "    import selfsup.api\n"
    )
    assert shape.imports(source) == {"selfsup", "selfsup.runs", "selfsup.report.page", "selfsup.api"}
