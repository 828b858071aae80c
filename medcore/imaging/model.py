"""The chest X-ray network and its self-describing artifact.

An artifact is a folder: `model.keras` (weights + architecture) and `meta.json` (labels,
preprocessing version, image size, calibration, operating threshold, validation metrics, data
fingerprint, training command) plus `quality.npz` (the out-of-distribution reference). Nothing
about a model lives in page code: the page reads it all from here, as torchxrayvision models
carry their own targets and thresholds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from medcore.artifacts import ModelInfo, ModelLoadError, read_model_folder, write_model_folder  # noqa: E402,F401
from medcore.calibration import apply_platt  # noqa: E402
from medcore.imaging.preprocess import PREPROCESS_VERSION  # noqa: E402

LAST_CONV = "last_conv"  # Grad-CAM reads this layer's activations


def _conv_block(x, filters: int, name: str, convs: int = 2):
    for i in range(convs):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_xray_network(image_size: int = 128, width: int = 16, dropout: float = 0.3) -> keras.Model:
    """A small VGG-style CNN (~0.3 M parameters) ending in a named conv layer and one logit.

    The output is a logit, not a probability: calibration (Platt scaling) is applied on top,
    and a logit keeps Grad-CAM gradients from saturating.
    """
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = keras.layers.Conv2D(width, 5, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    x = _conv_block(x, int(width * 1.5), "block1", convs=1)
    x = keras.layers.MaxPooling2D(name="block1_pool")(x)
    x = _conv_block(x, width * 3, "block2")
    x = keras.layers.MaxPooling2D(name="block2_pool")(x)
    x = _conv_block(x, width * 6, "block3")
    x = keras.layers.MaxPooling2D(name="block3_pool")(x)
    x = keras.layers.Conv2D(width * 10, 3, padding="same", use_bias=False, name="block4_conv")(x)
    x = keras.layers.BatchNormalization(name="block4_bn")(x)
    x = keras.layers.Activation("relu", name=LAST_CONV)(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logit = keras.layers.Dense(1, name="logit", dtype="float32")(x)
    return keras.Model(inputs, logit, name="medcore_xray")


@dataclass
class XrayArtifact(ModelInfo):
    """A loaded model with everything needed to use it correctly."""

    network: keras.Model
    meta: dict[str, Any]
    quality_reference: dict[str, np.ndarray]
    path: Path

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Platt scaling fitted on validation data: p = sigmoid(a * logit + b)."""
        return apply_platt(logits, self.meta["calibration"])


def save_artifact(folder: Path, network: keras.Model, meta: dict[str, Any],
                  quality_reference: dict[str, np.ndarray], validation: dict[str, np.ndarray],
                  model_card: str = "") -> Path:
    """Write the model folder atomically.

    validation.npz keeps the validation labels and calibrated probabilities, so every curve
    shown for this model is recomputed from its own predictions.
    """
    return write_model_folder(folder, network, {**meta, "preprocess_version": PREPROCESS_VERSION},
                              {"quality": quality_reference, "validation": validation}, model_card)


def load_artifact(folder: Path) -> XrayArtifact:
    """Load and check a model folder; raise ModelLoadError with a clear reason."""
    network, meta, arrays = read_model_folder(folder, ("quality",), "preprocess_version", PREPROCESS_VERSION)
    return XrayArtifact(network, meta, arrays["quality"], Path(folder))
