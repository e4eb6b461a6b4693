"""The text baseline without any pretraining: TF-IDF features and L2-regularised logistic regression.

The vocabulary and inverse document frequencies come from all training texts (no labels needed, as
the self-supervised methods see all of them); the classifier sees only the labelled subset, and its
C is chosen by stratified cross-validation inside that subset, as for the linear probe.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from selfsup.evaluate.linear import MAX_FOLDS

TFIDF_C_GRID = (0.1, 1.0, 10.0, 100.0)  # sparse TF-IDF rows have unit norm: they need weaker regularisation than standardised features
DEFAULT_C = 10.0  # where the subset is too small to hold out a fold


def _fit(x, y: np.ndarray, c: float) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=2000).fit(x, y)


def tfidf_probe(train_texts: list[str], index: torch.Tensor, labels: torch.Tensor, test_texts: list[str],
                seed: int) -> tuple[torch.Tensor, dict]:
    """Predictions for ``test_texts`` of a logistic regression on the TF-IDF (unigrams and bigrams,
    sub-linear term frequency, words in at least 2 documents) of the labelled texts
    ``train_texts[index]`` with their ``labels``."""
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2).fit(train_texts)
    x = vectorizer.transform([train_texts[i] for i in index.tolist()])
    y = labels.numpy()
    if len(np.unique(y)) < 2:
        return torch.full((len(test_texts),), int(y[0]), dtype=torch.long), {"C": None, "selection": "single class"}
    counts = np.bincount(y)[np.unique(y)]
    if counts.min() < 2:
        c, how = DEFAULT_C, "default"
    else:
        folds = StratifiedKFold(n_splits=min(MAX_FOLDS, int(counts.min())), shuffle=True, random_state=seed)
        scores = np.zeros(len(TFIDF_C_GRID))
        for fit_idx, val_idx in folds.split(np.zeros(len(y)), y):
            for i, c in enumerate(TFIDF_C_GRID):
                scores[i] += float((_fit(x[fit_idx], y[fit_idx], c).predict(x[val_idx]) == y[val_idx]).mean())
        c, how = TFIDF_C_GRID[int(np.argmax(scores))], "cross-validated"
    predicted = _fit(x, y, c).predict(vectorizer.transform(test_texts))
    return torch.as_tensor(predicted, dtype=torch.long), {"C": c, "selection": how, "features": len(vectorizer.vocabulary_)}
