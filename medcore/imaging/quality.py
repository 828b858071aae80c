"""Is this a frontal chest radiograph at all? Refuse what the model was never trained on.

Two kinds of evidence, each with a reason a clinician can read:
- rules: colour photographs, blank images, DICOM headers naming another modality, body part
  or a lateral view;
- a learned reference: a PCA ("eigen-chest") subspace of 32 x 32 thumbnails of the training
  radiographs. A chest film is reconstructed well from it; noise, text, photos and other body
  parts are not. The threshold is set on validation radiographs when the model is trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcore.imaging.io import Radiograph
from medcore.imaging.preprocess import resize_square, standardize

THUMB = 32
N_COMPONENTS = 24
MAX_SATURATION = 0.12  # mean HSV saturation; grayscale films saved as RGB stay near 0
MIN_CONTRAST = 0.02  # pixel standard deviation on the [0, 1] scale
MAX_ASPECT = 2.5
RADIOGRAPH_MODALITIES = {"CR", "DX", "DR", "RG", "PX"}
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"}


@dataclass(frozen=True)
class QualityResult:
    ok: bool
    reasons: list[str]
    atypicality: float  # reconstruction error / threshold; > 1 means unlike the training films


def thumbnail_vector(model_input: np.ndarray) -> np.ndarray:
    """32 x 32 summary of the preprocessed network input, so training and serving share it."""
    return standardize(resize_square(np.squeeze(model_input, axis=-1), THUMB)).ravel()


def fit_reference(train_thumbs: np.ndarray, val_thumbs: np.ndarray, margin: float = 1.25) -> dict[str, np.ndarray]:
    """PCA on training thumbnails; threshold = margin x the 99.5th percentile of validation errors."""
    mean = train_thumbs.mean(axis=0)
    _, _, vt = np.linalg.svd(train_thumbs - mean, full_matrices=False)
    reference = {"mean": mean.astype(np.float32), "components": vt[:N_COMPONENTS].astype(np.float32)}
    errors = reconstruction_error(val_thumbs, reference)
    reference["threshold"] = np.float32(margin * np.percentile(errors, 99.5))
    return reference


def reconstruction_error(thumbs: np.ndarray, reference: dict[str, np.ndarray]) -> np.ndarray:
    """Mean squared residual of each thumbnail after projection onto the chest subspace."""
    centred = np.atleast_2d(thumbs) - reference["mean"]
    projected = centred @ reference["components"].T @ reference["components"]
    return ((centred - projected) ** 2).mean(axis=1)


def check(radiograph: Radiograph, model_input: np.ndarray, reference: dict[str, np.ndarray]) -> QualityResult:
    """All reasons to refuse this image, and how unlike a training radiograph it looks."""
    reasons = _header_reasons(radiograph.technical)
    if radiograph.colour_saturation > MAX_SATURATION:
        reasons.append("It is a colour image; radiographs are grayscale (a photograph or screenshot?).")
    pixels = radiograph.pixels
    if float(pixels.std()) < MIN_CONTRAST:
        reasons.append("The image is blank or nearly uniform.")
    height, width = pixels.shape
    if max(height, width) / min(height, width) > MAX_ASPECT:
        reasons.append(f"The image is {width} x {height}: far too elongated for a chest film.")
    error = float(reconstruction_error(thumbnail_vector(model_input), reference)[0])
    atypicality = error / float(reference["threshold"])
    if atypicality > 1.0 and not reasons:
        reasons.append("It does not look like a frontal chest radiograph (unlike every film the "
                       f"model was trained on: atypicality {atypicality:.1f}, limit 1.0).")
    return QualityResult(ok=not reasons, reasons=reasons, atypicality=atypicality)


def _header_reasons(technical: dict[str, str]) -> list[str]:
    reasons = []
    modality = technical.get("Modality", "").upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        reasons.append(f"The DICOM modality is {modality}, not a plain radiograph (CR/DX).")
    body_part = technical.get("BodyPartExamined", "").upper()
    if body_part and "CHEST" not in body_part and "THORAX" not in body_part:
        reasons.append(f"The DICOM body part is {body_part}, not the chest.")
    view = technical.get("ViewPosition", "").upper()
    if view in LATERAL_VIEWS:
        reasons.append(f"The DICOM view is {view} (lateral); the model reads frontal PA/AP films only.")
    return reasons
