"""What the X-ray page and the CLI call: one upload in, one result out; a folder in, metrics out.

Flow for one study: bytes (or a DICOM dataset from the PACS) -> io.read_radiograph / read_dataset (validate, decode,
drop identifiers, reduce to FILM_MAX_SIDE once, refuse a synthetic film) -> preprocess.to_model_input -> GradCam (logit, heatmap and pooled features in one pass) ->
quality.check (rules + how unlike the training films the features are) -> Platt calibration ->
decision at the model's own threshold; a refused study keeps no probability. A bad file becomes a
result with an error, never an exception, so one file cannot stop a batch.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from medcore import audit, incidents, tasks
from medcore.artifacts import ModelInfo
from medcore.imaging import quality
from medcore.imaging.folders import list_image_folder
from medcore.imaging.gradcam import GradCam, normalise
from medcore.imaging.intended_use import OUTSIDE_INTENDED_USE, IntendedUse
from medcore.imaging.io import Radiograph, SyntheticFilm, UnreadableImage, read_dataset, read_radiograph
from medcore.imaging.model import XrayArtifact, load_artifact
from medcore.imaging.occlusion import Occlusion
from medcore.imaging.preprocess import reduce_film, to_model_input
from medcore.metrics import binary_figures

DISPLAY_MAX_SIDE = 1024  # a session keeps display copies, not full-size films
# A film is reduced once, right after decoding, to at most this a side (an area average, preprocess.reduce_film): the
# synthetic-mark check, the quality rules, the network's 128-px input, Grad-CAM and the display copy all come from it,
# never from the full-size film again. Decisions agree with the full-size path (tests/test_film_reduction.py).
FILM_MAX_SIDE = DISPLAY_MAX_SIDE


class InvalidModelOutput(RuntimeError):
    """The network returned NaN or infinity: a fault of the model, reported as an incident, never a decision."""


@dataclass
class LoadedXrayModel(ModelInfo):
    """The artifact with its compiled Grad-CAM pass: what the page, the CLI and the registry serve."""

    artifact: XrayArtifact
    explainer: GradCam

    @property
    def meta(self) -> dict:
        return self.artifact.meta

    @property
    def path(self) -> Path:
        return self.artifact.path

    def predict_inputs(self, inputs: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(calibrated probabilities, heatmaps, pooled features) for preprocessed inputs, in batches."""
        logits, heatmaps, features = self.explain_inputs(inputs, batch_size)
        scale = self.artifact.quality_reference.get("gradcam_scale")
        return self.artifact.calibrate(logits), normalise(heatmaps, None if scale is None else float(scale)), features

    def feature_summary_reference(self) -> np.ndarray | None:
        return self.artifact.quality_reference.get("validation_summary")

    @cached_property
    def intended_use(self) -> IntendedUse:
        """Who and what the model was validated for (its folder's declaration)."""
        return IntendedUse.from_meta(self.meta)

    @cached_property
    def occlusion(self) -> Occlusion:
        """The second explainer, compiled once per loaded model (imaging.second_opinion runs it on demand)."""
        return Occlusion(self.artifact.network)

    def explain_inputs(self, inputs: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw logits, raw heatmaps, pooled features): what a recalibration refits from."""
        outputs = [self.explainer(inputs[start:start + batch_size]) for start in range(0, len(inputs), batch_size)]
        logits, heatmaps, features = (np.concatenate(parts) for parts in zip(*outputs))
        return logits, heatmaps, features


@dataclass
class StudyResult:
    filename: str
    model_version: str
    threshold: float
    labels: tuple[str, str]  # (negative, positive), as the model records them
    probability: float | None = None
    error: str | None = None
    refusal_reasons: list[str] = field(default_factory=list)
    atypicality: float | None = None
    feature_summary: list[float] | None = None  # quality.feature_summary of the film: the drift monitor's input
    heatmap: np.ndarray | None = None  # Grad-CAM at the network's resolution, [0, 1]
    display: np.ndarray | None = None  # the image, at most DISPLAY_MAX_SIDE px, for the page
    model_input: np.ndarray | None = None  # what the network scored, kept for a second explainer on demand
    technical: dict[str, str] = field(default_factory=dict)  # non-identifying DICOM attributes
    synthetic: bool = False  # a film MedCore generated: refused, and not audited as a study
    invalid_output: bool = False  # the model gave no finite number: an error, never a decision
    outside_intended_use: bool = False  # refused: the header places the film outside the model's intended use
    intended_use_warning: str | None = None  # scored outside the validated ages because an administrator allowed it
    population_note: str | None = None  # the film carries no age: the validated population, stated beside it

    @property
    def decision(self) -> str | None:
        if self.probability is None:
            return None
        return self.labels[1] if self.probability >= self.threshold else self.labels[0]

    @property
    def flagged(self) -> bool:
        """At or above the threshold: the model flags the positive class."""
        return self.probability is not None and self.probability >= self.threshold

    @property
    def refusal_outcome(self) -> str:
        """What the audit, the store and the worklist call a film without a probability."""
        if self.invalid_output:
            return "invalid model output"
        if self.outside_intended_use:
            return OUTSIDE_INTENDED_USE
        return "refused" if self.refusal_reasons else "unreadable"

    def as_dict(self) -> dict:
        """JSON-safe summary (no pixels). A refusal keeps decision null and says why in "error"."""
        if self.error:
            return {"error": self.error, "decision": None,
                    **({"outside_intended_use": True} if self.outside_intended_use else {})}
        return {"probability": round(float(self.probability), 4), "decision": self.decision,
                "threshold": round(self.threshold, 4), "model_version": self.model_version,
                "atypicality": round(float(self.atypicality), 3),
                **({"intended_use_warning": self.intended_use_warning} if self.intended_use_warning else {}),
                **({"population": self.population_note} if self.population_note else {})}


def load_xray_model(path: Path | None = None) -> LoadedXrayModel:
    artifact = load_artifact(path or tasks.get("xray").shipped_dir)
    explainer = GradCam(artifact.network)
    explainer(np.zeros((1, artifact.image_size, artifact.image_size, 1), np.float32))  # trace once
    return LoadedXrayModel(artifact, explainer)


def analyse_file(model: LoadedXrayModel, data: bytes, filename: str, with_heatmap: bool = True,
                 user: str = "system", allow_outside_age: Callable[[], bool] | None = None,
                 max_side: int | None = FILM_MAX_SIDE) -> StudyResult:
    """Validate, check and predict one upload. Never raises: a bad file, or a fault of ours while reading it,
    becomes a result with an error, so one file cannot stop a batch (the fault is recorded as an incident).

    allow_outside_age: asked only for a film whose header gives an age outside the model's intended use (the
    administrators' setting, read from the store by default); False refuses it, True scores it with a warning.
    max_side: the film is reduced to this once after decoding (None: full size, the reference it is checked on)."""
    return _analysed(model, lambda: read_radiograph(data, filename, max_side), filename, with_heatmap, user,
                     allow_outside_age)


def analyse_dicom(model: LoadedXrayModel, dataset, filename: str, with_heatmap: bool = True, user: str = "system",
                  allow_outside_age: Callable[[], bool] | None = None,
                  max_side: int | None = FILM_MAX_SIDE) -> StudyResult:
    """analyse_file for a DICOM dataset already parsed (a film from the PACS): decoded from it directly, never
    written back to bytes and parsed again."""
    return _analysed(model, lambda: read_dataset(dataset, max_side), filename, with_heatmap, user, allow_outside_age)


def _analysed(model: LoadedXrayModel, read: Callable[[], Radiograph], filename: str, with_heatmap: bool, user: str,
              allow_outside_age: Callable[[], bool] | None) -> StudyResult:
    result = StudyResult(filename=filename, model_version=model.version, threshold=model.threshold,
                         labels=(model.negative_label, model.positive_label))
    try:
        _analyse(model, read, with_heatmap, result, allow_outside_age or _allowed_by_setting)
    except UnreadableImage as exc:
        result.error, result.synthetic = str(exc), isinstance(exc, SyntheticFilm)
    except InvalidModelOutput as exc:
        incident = incidents.report(exc, user, "chest X-ray model output", message_is_safe=True)
        result.error += f" (Incident {incident}.)"
    except Exception as exc:
        incident = incidents.report(exc, user, "chest X-ray analysis")
        result.error = f"This file could not be analysed because of an error on our side (incident {incident})."
        result.probability = result.heatmap = None
    return result


def _allowed_by_setting() -> bool:
    from medcore import settings

    return settings.allow_outside_age()


def _intended_use(model: LoadedXrayModel, radiograph, result: StudyResult,
                  allow_outside_age: Callable[[], bool]) -> list[str]:
    """Refusals for a film outside the model's intended use (header rules, age); notes and warnings otherwise."""
    intended = model.intended_use
    reasons = intended.header_refusals(radiograph.technical)
    age = radiograph.age_years
    if radiograph.age_problem:  # an age that cannot be read is not "no age": no setting relaxes it
        reasons.insert(0, radiograph.age_problem)
    elif age is None:
        result.population_note = (f"{intended.statement()} This film carries no age: check that the patient "
                                  "belongs to that population.")
    elif not intended.age_allowed(age):
        if allow_outside_age():
            result.intended_use_warning = (f"OUTSIDE INTENDED USE: {intended.age_refusal(age)} Scored because an "
                                           "administrator allowed it; the figure is not validated for this patient.")
        else:
            reasons.insert(0, intended.age_refusal(age))
    result.outside_intended_use = bool(reasons)
    return reasons


def _analyse(model: LoadedXrayModel, read: Callable[[], Radiograph], with_heatmap: bool, result: StudyResult,
             allow_outside_age: Callable[[], bool]) -> None:
    artifact = model.artifact
    radiograph = read()
    outside = _intended_use(model, radiograph, result, allow_outside_age)
    model_input = to_model_input(radiograph.pixels, artifact.image_size)
    probability, heatmap, features = model.predict_inputs(model_input[np.newaxis])
    if with_heatmap:
        result.display, result.model_input = _display_copy(radiograph.pixels), model_input
    if not np.isfinite(probability[0]):  # a broken model (e.g. NaN weights) must never read as NORMAL
        result.invalid_output = True
        result.error = ("The model gave no valid output for this film (not a finite number), so no decision is "
                        "made. This is a fault of the model, not of the film; an administrator has been told.")
        raise InvalidModelOutput(f"{model.version}: non-finite probability")
    check = quality.check(radiograph, model_input, features[0], artifact.quality_reference, model.intended_use)
    result.atypicality, result.technical = check.atypicality, radiograph.technical
    if "summary_components" in artifact.quality_reference:  # references fitted before it have none
        result.feature_summary = [round(float(v), 3) for v in
                                  quality.feature_summary(features[0], artifact.quality_reference)[0]]
    reasons = outside + [reason for reason in check.reasons if reason not in outside]
    if reasons:
        result.refusal_reasons = reasons
        result.error = "Refused: " + " ".join(reasons)
        return
    result.probability = float(probability[0])
    if with_heatmap:
        result.heatmap = heatmap[0]


def _display_copy(pixels: np.ndarray) -> np.ndarray:
    """The film at most DISPLAY_MAX_SIDE a side: the reduced film itself on the served path (already that size)."""
    return reduce_film(pixels, DISPLAY_MAX_SIDE)


def analyse_uploads(model: LoadedXrayModel, uploads: Iterable[tuple[str, bytes]], cache: dict, user: str,
                    progress: Callable[[int, str], None] | None = None, max_cached: int = 50,
                    source: str = "upload") -> list[StudyResult]:
    """Analyse a batch, reusing results already in `cache` (one per session) and auditing new ones.

    A result is a pure function of (model version, file bytes), so it is computed once per session;
    re-running the page (e.g. moving the opacity slider) costs nothing and logs nothing twice.
    """
    results = []
    for index, (name, data) in enumerate(uploads):
        digest = audit.content_digest(data)
        key = (model.version, digest, name)
        if key not in cache:
            started = time.perf_counter()
            result = analyse_file(model, data, name, user=user)
            audit_study(user, result, digest, source, server_ms=round(1000 * (time.perf_counter() - started), 1))
            cache[key] = result
            while len(cache) > max_cached:
                cache.pop(next(iter(cache)))
        results.append(cache[key])
        if progress:
            progress(index + 1, name)
    return results


def audit_study(user: str, result: StudyResult, digest: str, source: str, server_ms: float | None = None) -> None:
    """One audit row per analysed study: digest, outcome and where it came from (`upload`, `cli`, ...), never the
    name or pixels. A synthetic film is no study: its row says only that one was refused.
    """
    if result.synthetic:
        audit.record(user, "refused_synthetic_film", "refused", model_version=result.model_version, upload=digest)
        return
    outcome = result.refusal_outcome if result.error else (result.decision or "unknown")
    atypicality = None if result.atypicality is None else round(float(result.atypicality), 3)
    audit.record(user, "predict_xray", outcome, model_version=result.model_version,
                 study=digest, source=source, probability=result.probability, atypicality=atypicality,
                 features=result.feature_summary,
                 explanation="grad-cam" if result.heatmap is not None else None, server_ms=server_ms,
                 **({"outside_intended_use": "age, allowed by an administrator"}
                    if result.intended_use_warning else {}))


@dataclass
class FolderScores:
    """A model's scores on a list of image files: what evaluation, comparison and recalibration need."""

    readable: np.ndarray  # (n_files,) bool: the rest could not be read and have no score
    logits: np.ndarray  # (n_readable,) raw network output
    probabilities: np.ndarray  # (n_readable,) calibrated by the model's own map
    atypical: np.ndarray  # (n_readable,) bool: the quality gate would refuse it


def score_files(model: LoadedXrayModel, files: list[Path], workers: int = 4) -> FolderScores:
    """Score image files; every readable image is scored, including those the quality gate would refuse
    (flagged atypical): metrics describe the model, not the gate.
    """
    artifact = model.artifact

    def prepare(path: Path) -> tuple[np.ndarray | None, bool]:
        """(model input, refused by a rule); full-size pixels are not kept."""
        try:
            radiograph = read_radiograph(path.read_bytes(), path.name)
        except (UnreadableImage, OSError):
            return None, False
        refused = bool(quality.rule_reasons(radiograph, model.intended_use))
        return to_model_input(radiograph.pixels, artifact.image_size), refused

    with ThreadPoolExecutor(workers) as pool:
        prepared = list(pool.map(prepare, files))
    readable = np.array([x is not None for x, _ in prepared], dtype=bool)
    if not readable.any():
        raise ValueError(f"None of the {len(prepared)} images could be read.")
    inputs = np.stack([x for x, _ in prepared if x is not None])
    logits, _, features = model.explain_inputs(inputs, batch_size=128)
    if not np.isfinite(logits).all():
        raise InvalidModelOutput(f"Model {model.version} gave no finite output for {int((~np.isfinite(logits)).sum())} "
                                 "of the films: the model is broken, and no figure can be computed from it.")
    rule_refused = [flag for x, flag in prepared if x is not None]
    atypical = np.array([refused or quality.atypicality(x, f, artifact.quality_reference) > 1.0
                         for x, f, refused in zip(inputs, features, rule_refused)])
    return FolderScores(readable, logits, artifact.calibrate(logits), atypical)


def evaluate_folder(model: LoadedXrayModel, data_dir: Path, workers: int = 4) -> dict:
    """Metrics on a labelled folder at the model's own threshold: the release-check numbers."""
    folder = list_image_folder(Path(data_dir), tuple(model.labels))
    scores = score_files(model, folder.files, workers)
    labels = folder.labels[scores.readable]
    return {**binary_figures(labels, scores.probabilities, model.threshold), "model_version": model.version,
            "n_positive": int(labels.sum()), "n_negative": int((labels == 0).sum()),
            "n_unreadable": int((~scores.readable).sum()),
            "n_atypical": int(scores.atypical.sum()),
            "labels": model.labels}
