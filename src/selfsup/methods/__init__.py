"""The registry of pretext-task methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from selfsup.errors import ConfigError
from selfsup.methods.base import Method
from selfsup.methods.simclr import SimCLR, SimCLRParams


@dataclass(frozen=True)
class MethodInfo:
    name: str
    family: str
    paper: str
    params: type
    build: Callable[[Any, Any], Method]


METHODS: dict[str, MethodInfo] = {
    "simclr": MethodInfo("simclr", "Siamese, contrastive",
                         "Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations",
                         SimCLRParams, SimCLR),
}


def get_method(name: str) -> MethodInfo:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}' (choose from {', '.join(METHODS)}; see `selfsup methods`)")
    return METHODS[name]


__all__ = ["METHODS", "Method", "MethodInfo", "get_method"]
