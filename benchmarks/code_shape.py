"""The shape of the source tree: longest functions, largest files, long lines and import cycles.

    python benchmarks/code_shape.py [--json FILE] [--before REV]

Prints the figures that issue 17 tracks (a function over 60 lines or a file over 400 lines
needs a one-line reason beside it: a comment ``# shape: REASON`` on the ``def`` line or in the
file's first 5 lines), and the cycles among ``selfsup`` modules and among its layers. And what
issue 34 tracks (:func:`newcomer_figures`): the definitions that mean "modality", the modules of the
text side and the packages they sit in, the README's lines and words, the documentation site's
pages; ``--before REV`` prints them for git revision REV (unpacked with ``git archive``) beside
this tree's. Measures, changes nothing.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "selfsup"
TEXT_WORDS = ("text", "token", "corpus", "simcse", "electra", "tfidf")  # modules of the text side
FUNCTION_LIMIT, FILE_LIMIT, LINE_LIMIT = 60, 400, 110
LAYERS = [
    "errors",
    "jsonfile",
    "atomic",
    "distributed",
    "data",
    "labelling",
    "augment",
    "models",
    "config",
    "losses",
    "methods",
    "train",
    "evaluate",
    "task",
    "runs",
    "report",
    "studies",
    "verbs",
    "api",
    "cli",
]
"""The package's layers from the bottom up: a module imports only from its own layer or lower ones.
``selfsup`` itself (``__init__``, which re-exports) and ``selfsup.__main__`` stand outside them."""
EXEMPT = ("selfsup", "selfsup.__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "selfsup"


def _type_checking(node: ast.AST) -> bool:
    """Whether ``node`` is ``if TYPE_CHECKING:`` (imports for type hints only, never run)."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if not _type_checking(child))


def imports(path: Path) -> set[str]:
    """The ``selfsup`` modules ``path`` imports when it runs (at any depth: a deferred import
    counts too; one under ``if TYPE_CHECKING:`` does not). ``from selfsup.pkg import sub`` of a
    submodule ``sub`` imports ``selfsup.pkg.sub``, and ``selfsup.pkg`` itself only where it also
    takes a name defined there."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("selfsup"):
            for alias in node.names:
                sub = SRC.parent.joinpath(*node.module.split("."), alias.name)
                if sub.with_suffix(".py").exists() or (sub / "__init__.py").exists():
                    found.add(f"{node.module}.{alias.name}")  # `from selfsup import api`: the submodule
                else:
                    found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("selfsup"))
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(SRC.rglob("*.py"))}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return out


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a lower layer imports a higher one."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for module, targets in graph.items():
        for target in targets:
            a, b = layer(module), layer(target)
            if a in rank and b in rank and rank[b] > rank[a]:
                bad.append((module, target))
    return sorted(bad)


def unlayered(graph: dict[str, set[str]]) -> list[str]:
    """The modules (not :data:`EXEMPT`) whose layer is not in :data:`LAYERS`."""
    return sorted(m for m in graph if m not in EXEMPT and layer(m) not in LAYERS)


def functions(path: Path) -> list[tuple[int, str, int, str]]:
    """(lines, name, first line, reason) of each function in ``path``."""
    lines = path.read_text().splitlines()
    out = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            reason = lines[node.lineno - 1].partition("# shape:")[2].strip()
            out.append((node.end_lineno - first + 1, node.name, node.lineno, reason))
    return out


def file_reason(path: Path) -> str:
    head = path.read_text().splitlines()[:5]
    return next((line.partition("# shape:")[2].strip() for line in head if "# shape:" in line), "")


def measure() -> dict:
    files = sorted(SRC.rglob("*.py"))
    sizes = sorted(
        ((len(p.read_text().splitlines()), str(p.relative_to(SRC.parent)), file_reason(p)) for p in files),
        reverse=True,
    )
    funcs = sorted(
        (
            (n, f"{p.relative_to(SRC.parent)}:{line} {name}", reason)
            for p in files
            for n, name, line, reason in functions(p)
        ),
        reverse=True,
    )
    total = sum(len(p.read_text().splitlines()) for p in files)
    long_lines = sum(len(line) > LINE_LIMIT for p in files for line in p.read_text().splitlines())
    over_100 = sum(len(line) > 100 for p in files for line in p.read_text().splitlines())
    graph = import_graph()
    layer_graph: dict[str, set[str]] = {}
    for module, targets in graph.items():
        layer_graph.setdefault(layer(module), set()).update(
            layer(t) for t in targets if layer(t) != layer(module)
        )
    return {
        "source_lines": total,
        "files": len(files),
        "longest_functions": [{"lines": n, "where": w, "reason": r} for n, w, r in funcs[:10]],
        "functions_over_limit": [
            {"lines": n, "where": w, "reason": r} for n, w, r in funcs if n > FUNCTION_LIMIT
        ],
        "largest_files": [{"lines": n, "file": f, "reason": r} for n, f, r in sizes[:8]],
        "files_over_limit": [{"lines": n, "file": f, "reason": r} for n, f, r in sizes if n > FILE_LIMIT],
        f"lines_over_{LINE_LIMIT}": long_lines,
        "lines_over_100": over_100,
        "lines_over_100_percent": round(100 * over_100 / total, 1),
        "module_cycles": cycles(graph),
        "layer_cycles": cycles({k: v for k, v in layer_graph.items()}),
        "upward_imports": [f"{a} -> {b}" for a, b in upward_imports(graph)],
        "unlayered_modules": unlayered(graph),
    }


def newcomer_figures(root: Path) -> dict:
    """Issue 34's figures of the checkout at ``root``: every class, function, assignment or
    attribute whose name holds "modality" (and ``MODALITIES``), the modules named for text (and the
    packages holding them), the README's lines and words, and the site's pages (``docs/*.md``)."""
    src = root / "src" / "selfsup"
    names = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                found = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found = [t.id for t in targets if isinstance(t, ast.Name)]
                found += [t.attr for t in targets if isinstance(t, ast.Attribute)]
            else:
                continue
            rel = path.relative_to(src.parent)
            names += [f"{rel}:{node.lineno} {n}" for n in found if "modalit" in n.lower()]
    text = [p for p in sorted(src.rglob("*.py")) if any(w in p.stem for w in TEXT_WORDS)]
    text += [p for p in sorted(src.rglob("*.py")) if "text" in p.parent.name and p not in text]
    readme = (root / "README.md").read_text()
    return {
        "modality_definitions": len(names),
        "modality_definition_list": names,
        "text_modules": len(text),
        "text_packages": len({p.parent for p in text}),
        "text_module_list": [str(p.relative_to(src.parent)) for p in text],
        "readme_lines": len(readme.splitlines()),
        "readme_words": len(readme.split()),
        "site_pages": len(list((root / "docs").glob("*.md"))) if (root / "docs").exists() else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also save the figures to this file")
    parser.add_argument("--before", help="a git revision whose newcomer figures are shown beside")
    args = parser.parse_args()
    figures = measure()
    figures["newcomer"] = {"this tree": newcomer_figures(ROOT)}
    if args.before:
        import tempfile

        from revision import unpacked

        with tempfile.TemporaryDirectory() as tmp:
            figures["newcomer"][args.before] = newcomer_figures(unpacked(args.before, Path(tmp)))
    for name, shape in figures["newcomer"].items():
        print(
            f"{name}: {shape['modality_definitions']} definitions named for modality; "
            f"{shape['text_modules']} text modules in {shape['text_packages']} packages; README "
            f"{shape['readme_lines']} lines, {shape['readme_words']} words; {shape['site_pages']} site pages"
        )
    print(f"source: {figures['source_lines']} lines in {figures['files']} files")
    print(f"functions over {FUNCTION_LIMIT} lines: {len(figures['functions_over_limit'])}; longest:")
    for f in figures["longest_functions"][:5]:
        print(f"  {f['lines']:4d}  {f['where']}" + (f"  ({f['reason']})" if f["reason"] else ""))
    print(f"files over {FILE_LIMIT} lines: {len(figures['files_over_limit'])}; largest:")
    for f in figures["largest_files"][:5]:
        print(f"  {f['lines']:4d}  {f['file']}" + (f"  ({f['reason']})" if f["reason"] else ""))
    print(
        f"lines over 100 chars: {figures['lines_over_100']} ({figures['lines_over_100_percent']}%); "
        f"over {LINE_LIMIT}: {figures[f'lines_over_{LINE_LIMIT}']}"
    )
    print(f"module import cycles: {len(figures['module_cycles'])}")
    for c in figures["module_cycles"]:
        print("  " + " <-> ".join(c))
    print(
        f"layer cycles: {len(figures['layer_cycles'])}  "
        + "; ".join(" <-> ".join(c) for c in figures["layer_cycles"])
    )
    print(f"upward imports (layer order {' < '.join(LAYERS)}): {len(figures['upward_imports'])}")
    for line in figures["upward_imports"]:
        print("  " + line)
    if figures["unlayered_modules"]:
        print("modules in no layer: " + ", ".join(figures["unlayered_modules"]))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
