"""The honest reference for every case-note model: TF-IDF of word and character n-grams + logistic regression,
its regularization chosen by cross-validation on the training notes only.

A neural model earns its place only by beating this on the same notes; the page and the model card show both.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

C_GRID = (0.125, 0.5, 2.0, 8.0, 32.0)
FOLDS = 5


def _features():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2,
                                  max_features=150_000)),
    ])


def _classifier(c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=3000, class_weight="balanced")


def cross_validated_macro_f1(fold_features: Callable[[np.ndarray, np.ndarray], tuple[Any, Any]], labels: np.ndarray,
                             grid: tuple[float, ...], make_classifier: Callable[[float], Any], seed: int
                             ) -> dict[float, float]:
    """Mean macro-F1 of each C in grid over stratified folds of the training notes ({} when a class has fewer
    than 2 notes). fold_features(fit_idx, test_idx) gives (x_fit, x_test): features refitted inside each fold,
    or rows of a matrix already built; make_classifier(C) gives an unfitted classifier."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    folds = min(FOLDS, int(np.bincount(labels).min()))
    if folds < 2:
        return {}
    scores = {c: [] for c in grid}
    for fit_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels):
        x_fit, x_test = fold_features(fit_idx, test_idx)
        for c in grid:
            predicted = make_classifier(c).fit(x_fit, labels[fit_idx]).predict(x_test)
            scores[c].append(f1_score(labels[test_idx], predicted, average="macro"))
    return {c: float(np.mean(v)) for c, v in scores.items()}


def choose_c(texts: list[str], labels: np.ndarray, seed: int) -> tuple[float, dict[float, float]]:
    """(best C, mean cross-validated macro-F1 of each C): features refitted inside every fold."""
    def fold_features(fit_idx: np.ndarray, test_idx: np.ndarray):
        features = _features()
        return features.fit_transform([texts[i] for i in fit_idx]), features.transform([texts[i] for i in test_idx])

    means = cross_validated_macro_f1(fold_features, labels, C_GRID, _classifier, seed)
    if not means:  # too few notes of a class to cross-validate: the middle of the grid
        return C_GRID[len(C_GRID) // 2], {}
    return max(means, key=means.get), means


def fit_baseline(texts: list[str], labels: np.ndarray, n_classes: int, seed: int):
    """The tuned baseline fitted on all of `texts`; returns (predict_proba function, description dict)."""
    best_c, means = choose_c(texts, labels, seed)
    features = _features()
    classifier = _classifier(best_c).fit(features.fit_transform(texts), labels)

    def predict_proba(new_texts: list[str]) -> np.ndarray:
        prob = classifier.predict_proba(features.transform(new_texts))
        full = np.zeros((len(new_texts), n_classes))
        full[:, classifier.classes_] = prob
        return full

    return predict_proba, {"model": "TF-IDF (word 1-2-grams + character 2-5-grams) + logistic regression",
                           "C": best_c, "cv_macro_f1": {str(c): round(v, 4) for c, v in means.items()},
                           "folds": FOLDS if means else 0}
