"""Label budgets: how many labelled training items a few-label evaluation may use, and which.

Three kinds, as the user writes them (``--labels``):

* a count, ``20``: 20 items, drawn uniformly at random from the labelled training items or picked
  by a strategy (``--strategy``, :mod:`selfsup.labelling.strategies`): what a user can draw,
  since nothing is known of an item's class before it is labelled;
* a fraction with a decimal point, ``0.01``: that share of each class (``1.0``: every label);
* ``10/class``: that many items of each class.

The last two are class-balanced: they need the labels before anything is labelled, and serve to
compare with papers, which report such budgets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from selfsup.errors import ConfigError

CLASS_BALANCED = "class-balanced"
"""The ``strategy`` of the class-balanced budgets' subsets."""


@dataclass(frozen=True)
class Budget:
    """A label budget as the user gave it: a count of items, a fraction of each class, or a count
    per class."""

    text: str
    fraction: float | None = None
    per_class: int | None = None
    count: int | None = None

    @property
    def balanced(self) -> bool:
        """Whether the budget is class-balanced (needs the labels to be drawn)."""
        return self.count is None


def parse_budget(text: str) -> Budget:
    """``'20'`` (20 items), ``'0.01'`` (1% of each class), ``'1.0'`` (all labels) or ``'10/class'``;
    raises :class:`ConfigError` for anything else."""
    text = str(text).strip()
    match = re.fullmatch(r"(\d+)\s*/\s*class", text)
    if match:
        count = int(match.group(1))
        if count < 1:
            raise ConfigError(f"invalid label budget '{text}': the count per class must be at least 1")
        return Budget(text, per_class=count)
    if re.fullmatch(r"\d+", text):
        if int(text) < 1:
            raise ConfigError(f"invalid label budget '{text}': a count of items must be at least 1")
        return Budget(text, count=int(text))
    try:
        fraction = float(text)
    except ValueError:
        raise ConfigError(
            f"invalid label budget '{text}' (use a count of items such as 20, a fraction in (0, 1] "
            "such as 0.01, or N/class such as 10/class)"
        ) from None
    if not 0 < fraction <= 1:
        raise ConfigError(f"invalid label budget '{text}': a fraction must lie in (0, 1]")
    return Budget(text, fraction=fraction)


def check_count(budget: Budget, labelled: int) -> None:
    """Raise :class:`ConfigError` where a count budget asks for more than the ``labelled`` items."""
    if budget.count is not None and budget.count > labelled:
        raise ConfigError(
            f"label budget '{budget.text}' asks for {budget.count} items; the training split has "
            f"{labelled} labelled"
        )


def select_labelled(labels: torch.Tensor, budget: Budget, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded, class-balanced labelled subset of ``budget`` (a fraction or a
    count per class; counts of items are picked by :mod:`selfsup.labelling.strategies`).

    Per class: ``per_class`` items, or ``round(fraction × class size)`` (at least 1), drawn without
    replacement with a generator seeded by ``seed``; a fraction of 1.0 takes every labelled item.
    Unlabelled items (negative labels) are never chosen. Raises :class:`ConfigError` where a class
    holds too few labelled items."""
    if budget.count is not None:
        raise ConfigError(f"label budget '{budget.text}' is a count of items: pick them with a strategy")
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
