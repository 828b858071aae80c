"""Occlusion sensitivity (Zeiler & Fergus 2014): the film's evidence found by covering it, patch by patch.

The second explainer beside Grad-CAM, chosen because it is the opposite kind: Grad-CAM reads the network's own
gradients at its last conv layer (cheap, coarse, blind to what earlier layers do), occlusion only asks the model
what happens to the pneumonia logit when a region is hidden, so it depends on no internal detail, needs no baseline
image to be argued for (Integrated Gradients does), and says something a clinician can check: "cover this and the
score drops". A patch is set to the film's mean (0 in the standardised input), so no new edge is drawn.

At 128 px with 16 px patches every 8 px, one film is 225 forward passes in one batch (benchmarks/explainers.py).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

PATCH = 16
STRIDE = 8


class Occlusion:
    """Wraps a network: __call__(model_input (s, s, 1)) -> (grid, grid) drop of the logit per covered patch."""

    def __init__(self, network: keras.Model, patch: int = PATCH, stride: int = STRIDE) -> None:
        self.patch, self.stride = patch, stride
        self._forward = tf.function(lambda x: network(x, training=False),
                                    input_signature=[tf.TensorSpec((None, *network.input_shape[1:]), tf.float32)])

    def positions(self, size: int) -> list[int]:
        return list(range(0, size - self.patch + 1, self.stride))

    def __call__(self, model_input: np.ndarray) -> np.ndarray:
        size = model_input.shape[0]
        starts = self.positions(size)
        batch = np.repeat(model_input[np.newaxis], len(starts) ** 2 + 1, axis=0)
        for index, (row, col) in enumerate((r, c) for r in starts for c in starts):
            batch[index + 1, row:row + self.patch, col:col + self.patch] = 0.0
        logits = self._forward(tf.convert_to_tensor(batch)).numpy().reshape(-1)
        return (logits[0] - logits[1:]).reshape(len(starts), len(starts))  # > 0: the patch held evidence for it
