"""Sphinx configuration of selfsup's documentation site: ``make docs`` builds it into build/docs
with ``-W`` (every warning, e.g. a broken link or a docstring reference that does not resolve,
fails the build). Offline: no remote inventories."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

project = "selfsup"
author = "the selfsup developers"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinxarg.ext",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "pictures/README.md"]
html_theme = "furo"
html_title = "selfsup"

myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

autosummary_generate = True
autodoc_typehints = "none"  # the signatures' types name torch/numpy classes that have no page here
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}

# a reference to selfsup that does not resolve is an error; other libraries have no inventory
# offline, so references into them are not checked
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!selfsup\b).*\..*"),  # torch.Tensor, np.ndarray, ...
    (r"py:.*", r"[A-Za-z_]+"),  # builtins and names in annotations (int, Tensor, Path)
    (r"py:.*", r"'.*"),  # dataclass fields' annotations, kept as strings (from __future__ import annotations)
]
# "more than one target" for a module's short name in autosummary's tables (config.sections and
# report.sections): the tables link the right one
suppress_warnings = ["myst.header", "ref.python"]
