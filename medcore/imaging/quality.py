"""Is this like the frontal chest films the model learned from? Refuse what the model was never trained on.

Two kinds of evidence, each with a reason a clinician can read:
- rules: colour photographs, blank images, images mostly of one flat tone (documents, screenshots,
  graphics), DICOM headers outside the model's intended use (another modality, body part, a non-frontal view);
- two learned references, fitted on the training films when the model is trained, each with a
  threshold set on validation films:
  * the network's own view: Mahalanobis distance of its pooled last-conv features from the
    training films' (Lee et al. 2018). It separates photos, gradients, noise and text from films
    by a factor of two on this data, where pixel statistics alone do not;
  * pixel layout: the residual of a 32 x 32 thumbnail outside the PCA ("eigen-chest") subspace.
atypicality is the larger of the two distances, each divided by its threshold: above 1 is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcore.imaging.intended_use import SHIPPED_TRAINING_DATA, IntendedUse
from medcore.imaging.io import Radiograph
from medcore.imaging.preprocess import resize_square, standardize

THUMB = 32
N_COMPONENTS = 24
SUMMARY_COMPONENTS = 8  # principal components of the pooled features that the audit log keeps per study (drift)
MAX_SATURATION = 0.12  # mean HSV saturation; grayscale films saved as RGB stay near 0
MIN_CONTRAST = 0.02  # pixel standard deviation on the [0, 1] scale
MAX_ASPECT = 2.5
MAX_FLAT_FRACTION = 0.45  # share of pixels at the single commonest gray level; films stay below 0.25


@dataclass(frozen=True)
class QualityResult:
    ok: bool
    reasons: list[str]
    atypicality: float  # reconstruction error / threshold; > 1 means unlike the training films


def thumbnail_vector(model_input: np.ndarray) -> np.ndarray:
    """32 x 32 summary of the preprocessed network input, so training and serving share it."""
    return standardize(resize_square(np.squeeze(model_input, axis=-1), THUMB)).ravel()


def fit_reference(train_thumbs: np.ndarray, val_thumbs: np.ndarray, train_features: np.ndarray,
                  val_features: np.ndarray, margin: float = 1.25) -> dict[str, np.ndarray]:
    """Both references; each threshold = margin x the 99.5th percentile of validation films' scores."""
    mean = train_thumbs.mean(axis=0)
    _, _, vt = np.linalg.svd(train_thumbs - mean, full_matrices=False)
    reference = {"mean": mean.astype(np.float32), "components": vt[:N_COMPONENTS].astype(np.float32)}
    reference["threshold"] = np.float32(margin * np.percentile(reconstruction_error(val_thumbs, reference), 99.5))
    covariance = np.cov(train_features.T)
    covariance += np.eye(len(covariance)) * 1e-3 * np.trace(covariance) / len(covariance)  # shrinkage
    reference["feature_mean"] = train_features.mean(axis=0).astype(np.float32)
    reference["feature_precision"] = np.linalg.inv(covariance).astype(np.float32)
    reference["feature_threshold"] = np.float32(margin * np.percentile(
        feature_distance(val_features, reference), 99.5))
    reference.update(fit_feature_summary(train_features, val_features))
    return reference


def fit_feature_summary(train_features: np.ndarray, val_features: np.ndarray) -> dict[str, np.ndarray]:
    """A few numbers per film that say where the network places it: the leading principal components of the
    standardised pooled features, fitted on the training films. The validation films' summaries are the drift
    monitor's reference (films no choice of the projection was made on); the audit log keeps each study's summary,
    which says nothing about the patient but lets the monitor see a change in the films the network cannot name."""
    mean, scale = train_features.mean(axis=0), train_features.std(axis=0) + 1e-6
    _, _, vt = np.linalg.svd((train_features - mean) / scale, full_matrices=False)
    summary = {"summary_mean": mean.astype(np.float32), "summary_scale": scale.astype(np.float32),
               "summary_components": vt[:SUMMARY_COMPONENTS].astype(np.float32)}
    summary["validation_summary"] = feature_summary(val_features, summary).astype(np.float32)
    return summary


def feature_summary(features: np.ndarray, reference: dict[str, np.ndarray]) -> np.ndarray:
    """(n, SUMMARY_COMPONENTS) projection of pooled features; models whose reference predates it: KeyError."""
    standardised = (np.atleast_2d(features).astype(np.float64) - reference["summary_mean"]) / reference["summary_scale"]
    return standardised @ reference["summary_components"].T.astype(np.float64)


def feature_distance(features: np.ndarray, reference: dict[str, np.ndarray]) -> np.ndarray:
    """Mahalanobis distance of pooled network features from the training films' distribution."""
    centred = np.atleast_2d(features).astype(np.float64) - reference["feature_mean"]
    return np.sqrt(np.einsum("ij,jk,ik->i", centred, reference["feature_precision"], centred))


def reconstruction_error(thumbs: np.ndarray, reference: dict[str, np.ndarray]) -> np.ndarray:
    """Mean squared residual of each thumbnail after projection onto the chest subspace."""
    centred = np.atleast_2d(thumbs) - reference["mean"]
    projected = centred @ reference["components"].T @ reference["components"]
    return ((centred - projected) ** 2).mean(axis=1)


def check(radiograph: Radiograph, model_input: np.ndarray, features: np.ndarray,
          reference: dict[str, np.ndarray], intended: IntendedUse = SHIPPED_TRAINING_DATA) -> QualityResult:
    """All reasons to refuse this image, and how unlike a training radiograph it looks."""
    reasons = rule_reasons(radiograph, intended)
    score = atypicality(model_input, features, reference)
    if score > 1.0 and not reasons:
        # What is measured is distance from the training films, not what the image is: an adult's chest film or
        # another hospital's exposure can be just as far as a photograph. Say that, and no more.
        reasons.append("It is unlike the films the model was trained on (atypicality "
                       f"{score:.1f}, limit 1.0): another kind of image, another population or an unusual "
                       "exposure, so no reading is given.")
    return QualityResult(ok=not reasons, reasons=reasons, atypicality=score)


def rule_reasons(radiograph: Radiograph, intended: IntendedUse = SHIPPED_TRAINING_DATA) -> list[str]:
    """Reasons that need no model: the header against the intended use, colour, flatness, shape."""
    reasons = intended.header_refusals(radiograph.technical)
    if radiograph.colour_saturation > MAX_SATURATION:
        reasons.append("It is a colour image; radiographs are grayscale (a photograph or screenshot?).")
    pixels = radiograph.pixels
    if float(pixels.std()) < MIN_CONTRAST:
        reasons.append("The image is blank or nearly uniform.")
    else:
        counts = np.bincount((pixels * 255 + 0.5).astype(np.uint8).ravel(), minlength=256)
        if counts.max() / pixels.size > MAX_FLAT_FRACTION:
            reasons.append("Most of the image is one flat tone (a document, screenshot or graphic?); "
                           "radiographs are not.")
    height, width = pixels.shape
    if max(height, width) / min(height, width) > MAX_ASPECT:
        reasons.append(f"The image is {width} x {height}: far too elongated for a chest film.")
    return reasons


def atypicality(model_input: np.ndarray, features: np.ndarray, reference: dict[str, np.ndarray]) -> float:
    """The larger of the two learned distances, each relative to its threshold (> 1: refuse)."""
    error = float(reconstruction_error(thumbnail_vector(model_input), reference)[0])
    distance = float(feature_distance(features, reference)[0])
    return max(error / float(reference["threshold"]), distance / float(reference["feature_threshold"]))
