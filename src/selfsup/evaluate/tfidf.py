"""The text baseline without any pretraining: TF-IDF features and L2-regularised logistic regression.

The vocabulary and inverse document frequencies come from all training texts (no labels needed, as
the self-supervised methods see all of them); the classifier sees only the labelled subset, and its
C is chosen by stratified cross-validation inside that subset, as for the linear probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from selfsup.evaluate.linear import stratified_folds

if TYPE_CHECKING:  # scikit-learn is imported where it is used: a run that never scores skips it
    from sklearn.linear_model import LogisticRegression

TFIDF_C_GRID = (
    0.1,
    1.0,
    10.0,
    100.0,
)  # sparse TF-IDF rows have unit norm: they need weaker regularisation than standardised features
DEFAULT_C = 10.0  # where the subset is too small to hold out a fold


def _fit(x, y: np.ndarray, c: float) -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000).fit(x, y)


def tfidf_features(train_texts: list[str], test_texts: list[str]):
    """Sparse TF-IDF rows (unigrams and bigrams, sub-linear term frequency, words in at least 2
    documents) of the training and test texts, with the vocabulary fitted on all training texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2).fit(train_texts)
    return vectorizer.transform(train_texts), vectorizer.transform(test_texts)


def tfidf_probe(train_x, labels: torch.Tensor, test_x, seed: int) -> tuple[torch.Tensor, dict]:
    """Predictions for the test rows ``test_x`` of a logistic regression on the labelled TF-IDF rows
    ``train_x`` (see :func:`tfidf_features`) with their ``labels``."""
    y = labels.numpy()
    if len(np.unique(y)) < 2:
        return torch.full((test_x.shape[0],), int(y[0]), dtype=torch.long), {
            "C": None,
            "selection": "single class",
        }
    folds, how = stratified_folds(y, seed)
    if folds is None:
        c = DEFAULT_C
    else:
        scores = np.zeros(len(TFIDF_C_GRID))
        for fit_idx, val_idx in folds:
            for i, c in enumerate(TFIDF_C_GRID):
                scores[i] += float(
                    (_fit(train_x[fit_idx], y[fit_idx], c).predict(train_x[val_idx]) == y[val_idx]).mean()
                )
        c = TFIDF_C_GRID[int(np.argmax(scores))]
    predicted = _fit(train_x, y, c).predict(test_x)
    return torch.as_tensor(predicted, dtype=torch.long), {
        "C": c,
        "selection": how,
        "features": train_x.shape[1],
    }
