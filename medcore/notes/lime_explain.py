"""LIME word weights for a case note (Ribeiro et al. 2016, the `lime` package), the second explainer beside SHAP.

LIME fits a local weighted linear model to the note's predictions with random sets of words removed; SHAP averages
each word's marginal contribution over orders. Agreement of the two on the top words is evidence that the words
shown are what the model used; disagreement means the model depends on word combinations more than either method
captures, and neither list should be read alone.

The words are the same players as SHAP's (the note's word positions; a removed word is removed as SHAP removes
it, through the encoder's `masked`), and neighbours are drawn as `lime.lime_text` draws them (a uniform number of
words removed, cosine distance, exponential kernel of width 25); the local model is `lime.lime_base.LimeBase`'s.
Weights are on the probability scale of each class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcore.notes.explain import MAX_EXPLAINED_WORDS
from medcore.notes.model import NotesModel
from medcore.notes.text import Note, Token

SAMPLES = 1000
KERNEL_WIDTH = 25.0


@dataclass(frozen=True)
class LimeExplanation:
    tokens: list[Token]
    weights: np.ndarray  # (n_words,) for one class; 0 for words LIME did not select
    class_index: int
    score: float  # R^2 of the local linear model on its neighbours: how well a linear story fits here

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        order = np.argsort(-np.abs(self.weights), kind="stable")[:k]
        return [(self.tokens[i].text, float(self.weights[i])) for i in order if self.weights[i] != 0]


def explain_with_lime(model: NotesModel, note: Note, class_index: int, features: int = 10,
                      samples: int = SAMPLES, seed: int = 0) -> LimeExplanation:
    from lime.lime_base import LimeBase
    from sklearn.metrics.pairwise import cosine_distances

    words = [t.text for t in note.tokens]
    n = min(len(words), MAX_EXPLAINED_WORDS)
    rng = np.random.default_rng(seed)
    masks = np.ones((samples, n), dtype=np.float32)
    for row, removed in zip(masks[1:], rng.integers(1, max(n, 2), samples - 1)):
        row[rng.choice(n, size=min(int(removed), n), replace=False)] = 0.0
    design = model.encoder.design(words)
    full = np.ones((samples, len(words)), dtype=np.float32)
    full[:, :n] = masks
    probabilities = model.masked_probabilities(design, full)
    distances = cosine_distances(masks, masks[:1]).ravel() * 100

    def kernel(d: np.ndarray) -> np.ndarray:
        return np.sqrt(np.exp(-(d ** 2) / KERNEL_WIDTH ** 2))

    base = LimeBase(kernel, random_state=seed)
    _, pairs, score, _ = base.explain_instance_with_data(masks, probabilities, distances, class_index,
                                                         min(features, n), feature_selection="auto")
    weights = np.zeros(n)
    for position, weight in pairs:
        weights[position] = weight
    return LimeExplanation(note.tokens[:n], weights, class_index, float(score))
