"""What the Case notes page and the CLI call: a note in, classes with probabilities and attributions out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcore import audit, conformal, incidents
from medcore.metrics import multiclass_metrics
from medcore.notes.data import read_labelled_notes
from medcore.notes.explain import Attribution, ExplanationCache, explain
from medcore.notes.model import NotesModel, load_notes_model
from medcore.notes.text import Note, NoteRejected, prepare


@dataclass
class NotePrediction:
    note: Note
    probabilities: np.ndarray  # (n_classes,) calibrated
    labels: list[str]
    model_version: str
    confidence_threshold: float = 0.0  # models without prediction sets: below it the finding is "uncertain"
    quantiles: np.ndarray | None = None  # the model's conformal quantiles per class (medcore.conformal)
    level: float | None = None  # their conformal level
    coverage: str | None = None  # what the sets' coverage was, measured (conformal.coverage_sentence)

    def ranked(self, k: int | None = None) -> list[tuple[str, float]]:
        order = np.argsort(-self.probabilities)[:k]
        return [(self.labels[i], float(self.probabilities[i])) for i in order]

    @property
    def prediction_set(self) -> list[str] | None:
        """The classes that hold the note's true class with the model's stated coverage (None: no sets)."""
        if self.quantiles is None:
            return None
        return [self.labels[k] for k in conformal.prediction_sets(self.probabilities, self.quantiles)[0]]

    @property
    def certain(self) -> bool:
        """One class: the set holds only the top class (or, without sets, the top class is probable enough)."""
        if self.quantiles is not None:
            return len(self.prediction_set) == 1
        return float(self.probabilities.max()) >= self.confidence_threshold

    @property
    def finding(self) -> str:
        if self.quantiles is not None:
            return conformal.describe(self.prediction_set)
        return "most likely" if self.certain else "uncertain"


def load_for_serving(folder: Path) -> NotesModel:
    """A notes model ready to answer at once: loaded, and its first explanation done here.

    The first explanation in a process costs about 8 s on 2 cores (importing shap, compiling its kernels,
    tracing the network for masked batches); paid at load, under the page's "Loading the model" spinner, a
    clinician's first note takes the usual fraction of a second.
    """
    model = load_notes_model(Path(folder))
    explain(model, prepare("Warm-up note: fever, cough and chills for three days."))
    return model


def predict_note(model: NotesModel, text: str) -> NotePrediction:
    """Raises NoteRejected for unusable text; warnings travel on the result's note."""
    note = prepare(text)
    probabilities = model.predict_words([[t.text for t in note.tokens]])[0]
    sets = model.meta.get("conformal")
    return NotePrediction(note, probabilities, model.labels, model.version, model.confidence_threshold,
                          np.asarray(sets["quantiles"]) if sets else None, sets["level"] if sets else None,
                          conformal.coverage_sentence(sets) if sets else None)


def analyse_note(model: NotesModel, text: str, cache: ExplanationCache, user: str
                 ) -> tuple[NotePrediction | None, Attribution | None, str | None]:
    """Prediction + explanation for the page and the CLI, audited (digest and outcome only, never the text).

    A failed explanation does not lose the prediction: it is returned without attributions, with an error
    that says why, and its audit row is written all the same (naming the incident).
    """
    digest = audit.content_digest(text.encode("utf-8", "replace")) if text else "empty"
    action = f"predict_notes:{model.task}"
    try:
        prediction = predict_note(model, text)
    except NoteRejected as exc:
        audit.record(user, action, "rejected", model.version, note=digest)
        return None, None, str(exc)
    if not np.isfinite(prediction.probabilities).all():  # a broken model must never name a class
        incident = incidents.report(RuntimeError(f"{model.version}: non-finite probabilities"), user,
                                    "case-note model output", message_is_safe=True)
        audit.record(user, action, "invalid model output", model.version, note=digest)
        return None, None, (f"The model gave no valid output for this note (not a finite number), so no finding is "
                            f"shown (incident {incident}). This is a fault of the model; an administrator has been "
                            "told.")
    attribution, error, explanation = None, None, "shap"
    try:
        attribution = cache.get(model, prediction.note)
    except Exception as exc:
        incident = incidents.report(exc, user, "case-note explanation")
        explanation = f"failed (incident {incident})"
        error = (f"The word-level explanation could not be computed (incident {incident}); the prediction "
                 "stands.")
    top_label, top_probability = prediction.ranked(1)[0]
    audit.record(user, action, top_label if prediction.certain else
                 ("uncertain" if prediction.quantiles is None else "several classes"), model.version, note=digest,
                 probability=round(top_probability, 4), explanation=explanation)
    return prediction, attribution, error


def evaluate_csv(model: NotesModel, csv_path: Path) -> dict:
    data = read_labelled_notes(Path(csv_path), label_names=model.labels)
    if not data.words:
        raise ValueError(f"No usable rows in {csv_path}.")
    prob = model.predict_words(data.words)
    sets = model.meta.get("conformal")
    coverage = conformal.evaluate(prob, data.labels, np.asarray(sets["quantiles"]), model.labels) if sets else {}
    return {**multiclass_metrics(data.labels, prob, model.labels), **coverage, "model_version": model.version,
            "task": model.task, "dropped_rows": data.dropped}
