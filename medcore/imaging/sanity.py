"""Sanity checks of the film explanations (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

Model randomisation, cascading: the network's weights are re-drawn from their initialisers block by block from the
top (the logit layer, then the last conv block, ... down to the stem), and after each step the Grad-CAM of the
randomised copy is compared with the trained model's on the same films. Data randomisation: the Grad-CAM of a model
trained on shuffled labels is compared with the trained model's. An explanation that still looks the same has not
been explaining what the model learned. Thresholds (medians over the films):
rank correlation < MAX_RANK_CORRELATION and SSIM < MAX_SSIM once the top block is randomised, and for the
shuffled-label model.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from medcore.explanation_agreement import rank_correlation, structural_similarity
from medcore.imaging.gradcam import GradCam

LAYER_GROUPS = ("logit", "block4", "block3", "block2", "block1", "stem")  # top to bottom, as _member names them
MAX_RANK_CORRELATION = 0.5
MAX_SSIM = 0.5
Explainer = Callable[[keras.Model, np.ndarray], np.ndarray]  # (network, inputs) -> heatmaps (n, h, w)


def gradcam_maps(network: keras.Model, inputs: np.ndarray) -> np.ndarray:
    return GradCam(network)(inputs)[1]


def _group(layer_name: str) -> str | None:
    name = layer_name.split("_", 1)[1] if layer_name[:1] == "m" and layer_name[1:2].isdigit() else layer_name
    return next((g for g in LAYER_GROUPS if name == g or name.startswith(g + "_")), None)


def randomized_copy(network: keras.Model, groups: tuple[str, ...], seed: int = 0) -> keras.Model:
    """A copy with the kernels and biases of the conv and dense layers in `groups` re-drawn from their own
    initialisers (every ensemble member's); batch-normalisation layers are left as trained."""
    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    for index, layer in enumerate(copy.layers):
        if _group(layer.name) not in groups or not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            continue
        initializer = keras.initializers.get({"class_name": "GlorotUniform", "config": {"seed": seed + index}})
        layer.kernel.assign(initializer(layer.kernel.shape))
        if layer.bias is not None:
            layer.bias.assign(keras.initializers.RandomNormal(stddev=0.05, seed=seed + index)(layer.bias.shape))
    return copy


def compare_maps(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Median rank correlation and SSIM between two stacks of heatmaps of the same films."""
    return {"rank_correlation": float(np.median([rank_correlation(a, b) for a, b in zip(reference, other)])),
            "ssim": float(np.median([structural_similarity(a, b) for a, b in zip(reference, other)]))}


def passes(similarity: dict[str, float]) -> bool:
    return similarity["rank_correlation"] < MAX_RANK_CORRELATION and similarity["ssim"] < MAX_SSIM


def cascading_randomization(network: keras.Model, inputs: np.ndarray, explainer: Explainer = gradcam_maps,
                            seed: int = 0) -> list[dict]:
    """One row per step: which groups are randomised so far and how alike the maps still are."""
    reference = explainer(network, inputs)
    rows = []
    for depth in range(1, len(LAYER_GROUPS) + 1):
        groups = LAYER_GROUPS[:depth]
        similarity = compare_maps(reference, explainer(randomized_copy(network, groups, seed), inputs))
        rows.append({"randomized_down_to": groups[-1], **{k: round(v, 4) for k, v in similarity.items()},
                     "passes": passes(similarity)})
    return rows


def data_randomization(network: keras.Model, shuffled: keras.Model, inputs: np.ndarray,
                       explainer: Explainer = gradcam_maps) -> dict:
    similarity = compare_maps(explainer(network, inputs), explainer(shuffled, inputs))
    return {**{k: round(v, 4) for k, v in similarity.items()}, "passes": passes(similarity)}
