"""Prediction sets with a coverage guarantee for the case-note classifiers (split conformal, class-conditional).

Instead of "most likely A" or "uncertain", the page names the set of classes the note may belong to: with the
class-conditional (Mondrian) rule of Vovk et al. (2005), each true class is inside the set for at least `level` of
notes of that class (not only on average over classes), under exchangeability with the notes the quantiles were fitted
on. The score of a note for a class is 1 - its calibrated probability; each class has its own quantile, taken over
the held-out (out-of-fold) notes of that class at rank ceil((n + 1) level). A set that would be empty holds the most
probable class. One class in the set: "most likely A"; more: "one of A, B".
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_LEVEL = 0.9


def class_quantiles(probabilities: np.ndarray, labels: np.ndarray, n_classes: int,
                    level: float = DEFAULT_LEVEL) -> np.ndarray:
    """Per class, the score (1 - probability of the true class) at the conformal rank; 1.0 (every note's set holds
    the class) when the class has too few held-out notes for the level."""
    scores = 1.0 - np.asarray(probabilities)[np.arange(len(labels)), labels]
    quantiles = np.ones(n_classes)
    for k in range(n_classes):
        own = np.sort(scores[labels == k])
        rank = math.ceil((len(own) + 1) * level)
        if 0 < rank <= len(own):
            quantiles[k] = own[rank - 1]
    return quantiles


def prediction_sets(probabilities: np.ndarray, quantiles: np.ndarray) -> list[list[int]]:
    """The classes whose score is within their quantile, most probable first; never empty."""
    probabilities = np.atleast_2d(probabilities)
    sets = []
    for row in probabilities:
        members = [int(k) for k in np.argsort(-row) if 1.0 - row[k] <= quantiles[k] + 1e-12]
        sets.append(members or [int(np.argmax(row))])
    return sets


def evaluate(probabilities: np.ndarray, labels: np.ndarray, quantiles: np.ndarray,
             label_names: list[str]) -> dict:
    """Coverage (overall and per class) and the mean set size of labelled notes."""
    sets = prediction_sets(probabilities, quantiles)
    covered = np.array([y in s for y, s in zip(labels, sets)])
    per_class = {name: (float(covered[labels == k].mean()) if (labels == k).any() else None)
                 for k, name in enumerate(label_names)}
    return {"set_coverage": float(covered.mean()), "mean_set_size": float(np.mean([len(s) for s in sets])),
            "set_coverage_per_class": per_class, "singletons": float(np.mean([len(s) == 1 for s in sets]))}


def describe(labels: list[str]) -> str:
    """What the page says of a set: "most likely A" or "one of A, B"."""
    return f"most likely {labels[0]}" if len(labels) == 1 else "one of " + ", ".join(labels)


def split_check(probabilities: np.ndarray, labels: np.ndarray, label_names: list[str],
                level: float = DEFAULT_LEVEL, repeats: int = 20, seed: int = 0) -> dict:
    """How the guarantee holds on notes the quantiles did not see: `repeats` stratified half-splits, quantiles fitted
    on one half and measured on the other. Medians over the splits, and the lowest class's median coverage."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    results = []
    for _ in range(repeats):
        fit = np.zeros(len(labels), bool)
        for k in range(len(label_names)):
            members = rng.permutation(np.flatnonzero(labels == k))
            fit[members[: len(members) // 2]] = True
        quantiles = class_quantiles(probabilities[fit], labels[fit], len(label_names), level)
        results.append(evaluate(probabilities[~fit], labels[~fit], quantiles, label_names))
    per_class = {name: float(np.median([r["set_coverage_per_class"][name] for r in results
                                        if r["set_coverage_per_class"][name] is not None] or [np.nan]))
                 for name in label_names}
    return {"repeats": repeats, "level": level,
            "coverage": float(np.median([r["set_coverage"] for r in results])),
            "coverage_per_class": per_class, "lowest_class_coverage": float(np.nanmin(list(per_class.values()))),
            "mean_set_size": float(np.median([r["mean_set_size"] for r in results])),
            "singletons": float(np.median([r["singletons"] for r in results]))}
