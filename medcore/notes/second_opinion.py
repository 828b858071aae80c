"""LIME beside SHAP for one note and one class, on demand, with the overlap of their top words."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcore.explanation_agreement import top_k_overlap
from medcore.notes.explain import Attribution
from medcore.notes.lime_explain import LimeExplanation, explain_with_lime
from medcore.notes.model import NotesModel
from medcore.notes.text import Note

TOP_K = 5


@dataclass(frozen=True)
class NoteSecondOpinion:
    lime: LimeExplanation
    shap_top: list[tuple[str, float]]
    lime_top: list[tuple[str, float]]
    overlap: float  # share of SHAP's top words (by position in the note) that LIME also ranks in its top

    def sentence(self) -> str:
        shared = round(self.overlap * len(self.shap_top))
        if self.overlap >= 0.6:
            return (f"SHAP and LIME share {shared} of their top {len(self.shap_top)} words: the coloured words are "
                    "what the model used.")
        return (f"SHAP and LIME share only {shared} of their top {len(self.shap_top)} words: the model leans on "
                "combinations of words more than either method can show. Read the note itself, and trust only the "
                "words both lists name.")


def lime_opinion(model: NotesModel, note: Note, attribution: Attribution, class_index: int) -> NoteSecondOpinion:
    lime = explain_with_lime(model, note, class_index)
    shap_order = list(np.argsort(-np.abs(attribution.values[:, class_index]), kind="stable")[:TOP_K])
    lime_order = [int(i) for i in np.argsort(-np.abs(lime.weights), kind="stable")[:TOP_K] if lime.weights[i] != 0]
    shap_top = [(attribution.tokens[i].text, float(attribution.values[i, class_index])) for i in shap_order]
    lime_top = [(lime.tokens[i].text, float(lime.weights[i])) for i in lime_order]
    return NoteSecondOpinion(lime, shap_top, lime_top, top_k_overlap(shap_order, lime_order))
