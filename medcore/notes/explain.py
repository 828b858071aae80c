"""SHAP word attributions for a case note, and their safe rendering as HTML.

`explain(model, note) -> Attribution`, whatever runs underneath (as shap.Explainer hides its
algorithm). Underneath: shap's Permutation explainer over word masks. The players are the note's
words. For the TF-IDF models removing a word removes its unigram, its character n-grams and the bigrams
it is part of (neighbours are not joined), and thanks to notes.features a batch of masked notes costs two
sparse products; for the sequence models (notes.sequence) a removed word becomes the [MASK] id they saw
in training, and a batch is one forward pass. Either way the antithetic permutations that shap needs
(2n + 1 evaluations each) stay well under a second for a 250-word note. Attributions are exact for everything additive in the words and unbiased estimates
for the interactions; all classes are explained in the same pass, so switching class is free.
Values are on the log-odds scale of each class's calibrated probability.
"""

from __future__ import annotations

import hashlib
import html
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from medcore.notes.model import NotesModel
from medcore.notes.text import Note, Token

MAX_EXPLAINED_WORDS = 400  # later words stay in the note (held fixed) but get no attribution
EVALUATIONS = 3000  # model calls per explanation (~0.5 s for the linear model on 2 cores)
MIN_PERMUTATIONS, MAX_PERMUTATIONS = 2, 16


def permutations_for(n_words: int) -> int:
    """Antithetic permutations within the evaluation budget: a short note gets many (its few words' values
    converge), a long one at least two. Two alone left the top 5 words of a 200-word abstract largely to chance
    (the same words under another seed: 33 %; with the budget about 55 %)."""
    return int(np.clip(EVALUATIONS // (2 * n_words + 1), MIN_PERMUTATIONS, MAX_PERMUTATIONS))


@dataclass(frozen=True)
class Attribution:
    tokens: list[Token]  # the explained words, with offsets into the note's text
    values: np.ndarray  # (n_words, n_classes) SHAP values, log-odds
    base_values: np.ndarray  # (n_classes,) log-odds with every explained word removed
    full_values: np.ndarray  # (n_classes,) log-odds of the whole note: base + sum(values)
    labels: list[str]
    method: str
    truncated: bool

    def top(self, class_index: int, k: int = 10) -> list[tuple[str, float]]:
        """The k words with the largest |contribution| to one class, signed."""
        order = np.argsort(-np.abs(self.values[:, class_index]))[:k]
        return [(self.tokens[i].text, float(self.values[i, class_index])) for i in order]


def _log_odds(prob: np.ndarray) -> np.ndarray:
    prob = np.clip(prob, 1e-7, 1 - 1e-7)
    return np.log(prob) - np.log1p(-prob)


def explain(model: NotesModel, note: Note, seed: int = 0) -> Attribution:
    import shap

    words = [t.text for t in note.tokens]
    design = model.encoder.design(words)
    n = min(len(words), MAX_EXPLAINED_WORDS)

    def value(masks: np.ndarray) -> np.ndarray:
        full = np.ones((len(masks), len(words)), dtype=np.float32)
        full[:, :n] = masks
        return _log_odds(model.masked_probabilities(design, full))

    masker = shap.maskers.Independent(np.zeros((1, n)), max_samples=1)
    explainer = shap.explainers.Permutation(value, masker, seed=seed)
    permutations = permutations_for(n)
    result = explainer(np.ones((1, n)), max_evals=permutations * (2 * n + 1), silent=True)
    values = np.asarray(result.values[0]).reshape(n, -1)
    base = np.asarray(result.base_values[0]).reshape(-1)
    return Attribution(tokens=note.tokens[:n], values=values, base_values=base, full_values=base + values.sum(0),
                       labels=model.labels, method=f"shap.Permutation over words ({permutations} antithetic "
                       "permutations), log-odds of calibrated probabilities", truncated=len(words) > n)


class ExplanationCache:
    """Per-process cache keyed by (model version, SHA-256 of the note): the note text is not kept."""

    def __init__(self, capacity: int = 256) -> None:
        self._items: OrderedDict[tuple[str, str], Attribution] = OrderedDict()
        self.capacity = capacity

    def get(self, model: NotesModel, note: Note) -> Attribution:
        key = (model.version, hashlib.sha256(note.text.encode()).hexdigest())
        if key not in self._items:
            self._items[key] = explain(model, note)
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        self._items.move_to_end(key)
        return self._items[key]


def _colour(value: float, scale: float) -> str:
    """Red pushes towards the class, blue away; opacity grows with |value|."""
    alpha = min(abs(value) / scale, 1.0) * 0.85 if scale > 0 else 0.0
    rgb = "220, 38, 38" if value > 0 else "37, 99, 235"
    return f"rgba({rgb}, {alpha:.2f})"


def legend_html(label: str) -> str:
    """A colour scale: blue (away from the class) through white to red (towards it)."""
    return ('<div style="display:flex;align-items:center;gap:8px;font-size:0.85rem;margin:4px 0 10px 0">'
            '<span>away from</span><span style="width:180px;height:12px;border-radius:3px;background:linear-'
            'gradient(90deg, rgba(37,99,235,0.85), rgba(255,255,255,1), rgba(220,38,38,0.85))"></span>'
            f'<span>towards <i>{html.escape(label)}</i></span></div>')


def render_html(note: Note, attribution: Attribution, class_index: int) -> str:
    """The note with each explained word coloured by its SHAP value; every piece of user text escaped."""
    values = attribution.values[:, class_index]
    scale = float(np.max(np.abs(values))) if len(values) else 0.0
    parts, cursor = [], 0
    for token, value in zip(attribution.tokens, values):
        parts.append(html.escape(note.text[cursor:token.start]))
        word = html.escape(note.text[token.start:token.end])
        parts.append(f'<span title="SHAP {value:+.3f}" style="background:{_colour(value, scale)};'
                     f'border-radius:3px;padding:0 1px">{word}</span>')
        cursor = token.end
    parts.append(html.escape(note.text[cursor:]))
    body = "".join(parts).replace("\n", "<br>")
    return f'<div style="line-height:1.9;font-size:1.0rem;white-space:normal">{body}</div>'
