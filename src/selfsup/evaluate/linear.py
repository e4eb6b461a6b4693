"""Linear probe: L2-regularised multinomial logistic regression on frozen features.

The regularisation strength is chosen by stratified cross-validation inside the labelled subset,
never on the test set. Fitted with full-batch L-BFGS in PyTorch: on 5,000 CIFAR images of raw
pixels (3,072 features) this takes seconds where scikit-learn's solver took minutes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)  # inverse L2 strengths tried, as scikit-learn's C
DEFAULT_C = 0.1  # used where the labelled subset is too small to hold out a validation fold
MAX_FOLDS = 3
# L-BFGS iterations per fit; 300 gave the same CIFAR pixel-probe accuracy (0.3810 vs 0.3808) in 2.2× the time
MAX_ITERATIONS = 100


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    c: float,
    num_classes: int,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights D×K and bias K minimising  C·Σᵢ ωᵢ·CE(W·xᵢ + b, yᵢ) + ½‖W‖²  (scikit-learn's
    objective with sample weights ``weights``, default 1; the sum is over Σωᵢ items' worth)."""
    n, d = x.shape
    weight = (init[0].clone() if init else torch.zeros(d, num_classes, dtype=x.dtype)).requires_grad_(True)
    bias = (init[1].clone() if init else torch.zeros(num_classes, dtype=x.dtype)).requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=MAX_ITERATIONS,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    size = float(weights.sum()) if weights is not None else n

    def closure():
        optimizer.zero_grad()
        # the objective divided by C·n, so its scale does not depend on C or n
        losses = F.cross_entropy(x @ weight + bias, y, reduction="none")
        fit = (losses * weights).sum() / size if weights is not None else losses.mean()
        loss = fit + weight.pow(2).sum() / (2 * c * size)
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _predict(model: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return (x @ model[0] + model[1]).argmax(dim=1)


def _standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = (
        train.mean(dim=0),
        train.std(dim=0).clamp_min(1e-6) if len(train) > 1 else torch.ones(train.shape[1]),
    )
    return [(t - mean) / std for t in (train, *others)]


def stratified_folds(y: np.ndarray, seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]] | None, str]:
    """Seeded stratified (fit, validation) index folds of a labelled subset for choosing C, and
    how C is then chosen. The classes of 2 or more items are split into up to ``MAX_FOLDS`` folds
    (as many as the smallest of them allows); an item alone in its class (as a random draw of a
    few items leaves some) is in every fit, never validated. None, with the reason, where fewer
    than 2 classes have 2 items: C then takes its default."""
    values, counts = np.unique(y, return_counts=True)
    several = values[counts >= 2]
    if len(several) < 2:
        return None, "default (fewer than 2 classes of 2 or more labelled items to cross-validate)"
    splittable = np.flatnonzero(np.isin(y, several))
    alone = np.flatnonzero(~np.isin(y, several))
    splits = min(MAX_FOLDS, int(counts[counts >= 2].min()))
    from sklearn.model_selection import StratifiedKFold  # here: runs that never fold skip its import

    folds = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    found = [
        (np.sort(np.concatenate([splittable[fit], alone])), splittable[val])
        for fit, val in folds.split(np.zeros(len(splittable)), y[splittable])
    ]
    alone_note = f"{len(alone)} item{'s' if len(alone) != 1 else ''} alone in a class, always fitted"
    how = "cross-validated" + (f" ({alone_note})" if len(alone) else "")
    return found, how


def choose_c(x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int) -> tuple[float, str]:
    """The C of ``C_GRID`` with the best mean accuracy over stratified folds of the labelled subset.

    Needs 2 classes of at least 2 labelled items; otherwise returns ``DEFAULT_C``.
    """
    folds, how = stratified_folds(y.numpy(), seed)
    if folds is None:
        return DEFAULT_C, how
    scores = np.zeros(len(C_GRID))
    for train_idx, val_idx in folds:
        train_idx, val_idx = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
        xt, xv = _standardise(x[train_idx], x[val_idx])
        model = None
        for i, c in enumerate(C_GRID):  # increasing C, each fit warm-started from the previous one
            model = fit_logistic(xt, y[train_idx], c, num_classes, init=model)
            scores[i] += float((_predict(model, xv) == y[val_idx]).float().mean())
    return C_GRID[int(np.argmax(scores))], how


def linear_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, seed: int
) -> tuple[torch.Tensor, dict]:
    """Fit on the labelled features (standardised on them) and predict the test features."""
    train_x, test_x = train_x.float(), test_x.float()
    if len(torch.unique(train_y)) < 2:
        return torch.full((len(test_x),), int(train_y[0]), dtype=torch.long), {
            "C": None,
            "selection": "single class",
        }
    num_classes = int(train_y.max()) + 1
    c, how = choose_c(train_x, train_y, num_classes, seed)
    x, t = _standardise(train_x, test_x)
    return _predict(fit_logistic(x, train_y, c, num_classes), t), {"C": c, "selection": how}
