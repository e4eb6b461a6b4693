"""Label budgets: how many labelled training images a few-label evaluation may use."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from selfsup.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    """A label budget as the user gave it: a fraction of the training set, or a count per class."""

    text: str
    fraction: float | None = None
    per_class: int | None = None


def parse_budget(text: str) -> Budget:
    """``'0.01'`` (1% of the training labels, stratified), ``'1.0'`` (all), or ``'10/class'``."""
    text = str(text).strip()
    match = re.fullmatch(r"(\d+)\s*/\s*class", text)
    if match:
        count = int(match.group(1))
        if count < 1:
            raise ConfigError(f"invalid label budget '{text}': the count per class must be at least 1")
        return Budget(text, per_class=count)
    try:
        fraction = float(text)
    except ValueError:
        raise ConfigError(
            f"invalid label budget '{text}' "
            "(use a fraction in (0, 1] such as 0.01, or N/class such as 10/class)"
        ) from None
    if not 0 < fraction <= 1:
        raise ConfigError(f"invalid label budget '{text}': a fraction must lie in (0, 1]")
    return Budget(text, fraction=fraction)


def select_labelled(labels: torch.Tensor, budget: Budget, seed: int) -> torch.Tensor:
    """Sorted indices of a class-balanced, seeded labelled subset.

    Per class: ``per_class`` images, or ``round(fraction × class size)`` (at least 1), drawn
    without replacement with a generator seeded by ``seed``. A fraction of 1.0 takes every labelled
    image; unlabelled images (negative labels) are never chosen.
    """
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for value in torch.unique(labels[labels >= 0]):
        members = torch.nonzero(labels == value).flatten()
        if budget.per_class is not None:
            take = budget.per_class
            if take > len(members):
                raise ConfigError(
                    f"label budget '{budget.text}' asks for {take} images of class {int(value)}, "
                    f"which has only {len(members)} in the training split"
                )
        else:
            take = max(1, round(budget.fraction * len(members)))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.sort(torch.cat(chosen)).values
