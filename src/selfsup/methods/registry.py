"""The registry of pretext-task methods, read from the recipes: every ``recipes/NAME.yaml`` (not
the ``_small`` variants) names its method's family, paper, class and parameters' dataclass in its
``registry`` section. A method's module is imported when it is first asked for, so that reading a
run of one method loads only that method, and adding a method touches one method file and its
recipe (and an image method's ``_small`` variant)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from selfsup.config import read_yaml
from selfsup.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


@dataclass(frozen=True)
class MethodInfo:
    """One method: ``build`` is its :class:`selfsup.methods.base.Method` subclass (called as
    ``build(encoder, params)``), ``params`` its parameters' dataclass, both in
    ``selfsup.methods.MODULE``."""

    name: str
    family: str
    paper: str
    module: str
    class_name: str
    params_name: str

    @property
    def build(self) -> type:
        return getattr(importlib.import_module(f"selfsup.methods.{self.module}"), self.class_name)

    @property
    def params(self) -> type:
        return getattr(importlib.import_module(f"selfsup.methods.{self.module}"), self.params_name)


def read_registry() -> dict[str, MethodInfo]:
    """The methods named by the recipes; raises :class:`ConfigError` for a malformed entry."""
    methods = {}
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        if path.stem.endswith("_small"):
            continue
        entry = read_yaml(path).get("registry")
        if not isinstance(entry, dict) or not {"family", "paper", "class", "params"} <= entry.keys():
            raise ConfigError(f"{path}: its 'registry' section must give family, paper, class and params")
        module, _, class_name = str(entry["class"]).rpartition(".")
        methods[path.stem] = MethodInfo(
            path.stem, entry["family"], entry["paper"], module, class_name, entry["params"]
        )
    return methods


METHODS: dict[str, MethodInfo] = dict(
    sorted(read_registry().items(), key=lambda item: (item[1].family.lower(), item[0]))
)
"""Every method, by name, grouped by family (auto-encoders, auto-regressive, Siamese)."""


def get_method(name: str) -> MethodInfo:
    """The registry's entry of ``name``; raises :class:`ConfigError` for an unknown method."""
    if name not in METHODS:
        raise ConfigError(
            f"unknown method '{name}' (choose from {', '.join(METHODS)}; see `selfsup methods`)"
        )
    return METHODS[name]
