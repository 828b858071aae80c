"""Sanity checks of the note explanations (after Adebayo et al., NeurIPS 2018), by top-k word overlap.

Model randomisation: every weight matrix of the network is shuffled within each output column (each class keeps its
scale; which word carries which weight is lost) and SHAP's top words for the note's predicted class are compared
with the trained model's. Data randomisation: the same comparison with a model trained on shuffled labels. The
reference is SHAP against itself with another random seed, so "unlike" is measured against SHAP's own noise.
Passes (mean over notes): overlap with each randomised model < MAX_OVERLAP and at most half of SHAP's own agreement
(clearly unlike, measured against SHAP's noise). SHAP's own agreement below MIN_STABILITY is reported as noisy top
words (long notes), a property of the explainer's budget rather than a failed check.
"""

from __future__ import annotations

import copy

import numpy as np

from medcore.explanation_agreement import top_k_overlap
from medcore.notes.explain import explain
from medcore.notes.model import NotesModel
from medcore.notes.text import prepare

TOP_K = 5
MAX_OVERLAP = 0.4
MIN_STABILITY = 0.8


def randomized_copy(model: NotesModel, seed: int = 0) -> NotesModel:
    """The model with each weight matrix's columns shuffled (biases too); encoder and calibration kept."""
    import keras

    rng = np.random.default_rng(seed)
    network = keras.models.clone_model(model.network)
    network.set_weights([rng.permuted(w, axis=0) if w.ndim == 2 else rng.permutation(w)
                         for w in model.network.get_weights()])
    randomized = copy.copy(model)
    randomized.network = network
    randomized.__post_init__()
    return randomized


def top_positions(model: NotesModel, text: str, k: int = TOP_K, seed: int = 0,
                  class_index: int | None = None) -> list[int]:
    """Positions of the k words with the largest |SHAP| for the class (default: the model's predicted class)."""
    note = prepare(text)
    attribution = explain(model, note, seed=seed)
    if class_index is None:
        class_index = int(np.argmax(attribution.full_values))
    return list(np.argsort(-np.abs(attribution.values[:, class_index]), kind="stable")[:k])


def compare(model: NotesModel, other: NotesModel, notes: list[str], k: int = TOP_K) -> float:
    """Mean top-k overlap of the two models' SHAP words, each for the trained model's predicted class."""
    overlaps = []
    for text in notes:
        note = prepare(text)
        predicted = int(np.argmax(model.predict_words([[t.text for t in note.tokens]])[0]))
        overlaps.append(top_k_overlap(top_positions(model, text, k, class_index=predicted),
                                      top_positions(other, text, k, class_index=predicted)))
    return float(np.mean(overlaps))


def stability(model: NotesModel, notes: list[str], k: int = TOP_K) -> float:
    """SHAP against itself with another seed: the reference for "unlike"."""
    return float(np.mean([top_k_overlap(top_positions(model, text, k, seed=0), top_positions(model, text, k, seed=1))
                          for text in notes]))


def check(model: NotesModel, notes: list[str], shuffled: NotesModel | None = None, k: int = TOP_K) -> dict:
    result = {"top_k": k, "notes": len(notes), "shap_stability": round(stability(model, notes, k), 4),
              "randomized_weights_overlap": round(compare(model, randomized_copy(model), notes, k), 4)}
    if shuffled is not None:
        result["shuffled_labels_overlap"] = round(compare(model, shuffled, notes, k), 4)
    randomized = [result["randomized_weights_overlap"], result.get("shuffled_labels_overlap", 0.0)]
    result["passes"] = all(o < MAX_OVERLAP and o <= result["shap_stability"] / 2 for o in randomized)
    result["stable"] = result["shap_stability"] >= MIN_STABILITY
    return result
