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

from medcore import calibration  # noqa: E402
from medcore.artifacts import ModelInfo, ModelLoadError, read_model_folder, write_model_folder  # noqa: E402,F401
from medcore.imaging.preprocess import PREPROCESS_VERSION  # noqa: E402

LAST_CONV = "last_conv"  # Grad-CAM reads this layer's activations


def _conv_block(x, filters: int, name: str, convs: int = 2):
    for i in range(convs):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _member(inputs, width: int, dropout: float, prefix: str = ""):
    """One VGG-style CNN on `inputs`, every layer name prefixed: its logit tensor."""
    x = keras.layers.Conv2D(width, 5, strides=2, padding="same", use_bias=False, name=f"{prefix}stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name=f"{prefix}stem_bn")(x)
    x = keras.layers.Activation("relu", name=f"{prefix}stem_relu")(x)
    x = _conv_block(x, int(width * 1.5), f"{prefix}block1", convs=1)
    x = keras.layers.MaxPooling2D(name=f"{prefix}block1_pool")(x)
    x = _conv_block(x, width * 3, f"{prefix}block2")
    x = keras.layers.MaxPooling2D(name=f"{prefix}block2_pool")(x)
    x = _conv_block(x, width * 6, f"{prefix}block3")
    x = keras.layers.MaxPooling2D(name=f"{prefix}block3_pool")(x)
    x = keras.layers.Conv2D(width * 10, 3, padding="same", use_bias=False, name=f"{prefix}block4_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}block4_bn")(x)
    x = keras.layers.Activation("relu", name=f"{prefix}{LAST_CONV}")(x)
    x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}gap")(x)
    x = keras.layers.Dropout(dropout, name=f"{prefix}dropout")(x)
    return keras.layers.Dense(1, name=f"{prefix}logit", dtype="float32")(x)


def build_xray_network(image_size: int = 128, width: int = 16, dropout: float = 0.3) -> keras.Model:
    """A small VGG-style CNN (~0.3 M parameters) ending in a named conv layer and one logit.

    The output is a logit, not a probability: calibration (Platt scaling) is applied on top,
    and a logit keeps Grad-CAM gradients from saturating.
    """
    inputs = keras.Input((image_size, image_size, 1), name="image")
    return keras.Model(inputs, _member(inputs, width, dropout), name="medcore_xray")


def build_xray_ensemble(image_size: int = 128, width: int = 16, members: int = 3, dropout: float = 0.3
                        ) -> tuple[keras.Model, list[keras.Model]]:
    """(ensemble, member views): `members` CNNs on one input, the ensemble's logit their mean.

    Each member view shares its layers with the ensemble, so training a member trains the ensemble's
    copy of it; the ensemble is one graph, so Grad-CAM differentiates the logit that is served.
    Averaging independently trained networks is the simplest reliable gain under dataset shift
    (Lakshminarayanan et al. 2017; Ovadia et al. 2019).
    """
    if members == 1:
        network = build_xray_network(image_size, width, dropout)
        return network, [network]
    inputs = keras.Input((image_size, image_size, 1), name="image")
    logits = [_member(inputs, width, dropout, prefix=f"m{i}_") for i in range(members)]
    views = [keras.Model(inputs, logit, name=f"member_{i}") for i, logit in enumerate(logits)]
    mean = keras.layers.Average(name="logit")(logits)
    return keras.Model(inputs, mean, name="medcore_xray_ensemble"), views


def last_conv_layers(network: keras.Model) -> list[str]:
    """Names of the layers Grad-CAM reads: one per member network."""
    return [layer.name for layer in network.layers if layer.name == LAST_CONV or layer.name.endswith("_" + LAST_CONV)]


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
        """The model's calibration map (Platt after training; a local recalibration may choose another)."""
        return calibration.apply(logits, self.meta["calibration"])


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
