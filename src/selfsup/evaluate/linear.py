"""Linear probe: multinomial logistic regression on frozen features, regularisation chosen without the test set."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)  # inverse L2 strengths tried
DEFAULT_C = 0.1  # used where the labelled subset is too small to hold out a validation fold
MAX_FOLDS = 3


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> LogisticRegression:
    model = LogisticRegression(C=c, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model


def choose_c(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, str]:
    """The C of ``C_GRID`` with the best mean accuracy over stratified folds of the labelled subset.

    Needs at least 2 labelled images in every class; otherwise returns ``DEFAULT_C``.
    """
    present = np.unique(y)
    counts = np.array([np.sum(y == v) for v in present])
    if len(present) < 2 or counts.min() < 2:
        return DEFAULT_C, "default"
    folds = StratifiedKFold(n_splits=min(MAX_FOLDS, int(counts.min())), shuffle=True, random_state=seed)
    scores = []
    for c in C_GRID:
        accuracy = [np.mean(_fit(x[tr], y[tr], c).predict(x[va]) == y[va]) for tr, va in folds.split(x, y)]
        scores.append(np.mean(accuracy))
    return C_GRID[int(np.argmax(scores))], "cross-validated"


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict]:
    """Fit on the labelled features (standardised on them) and predict the test features."""
    scaler = StandardScaler().fit(train_x.numpy())
    x, t = scaler.transform(train_x.numpy()), scaler.transform(test_x.numpy())
    y = train_y.numpy()
    if len(np.unique(y)) < 2:
        return torch.full((len(t),), int(y[0]), dtype=torch.long), {"C": None, "selection": "single class"}
    c, how = choose_c(x, y, seed)
    predictions = _fit(x, y, c).predict(t)
    return torch.as_tensor(predictions, dtype=torch.long), {"C": c, "selection": how}
