"""Grad-CAM (Selvaraju et al. 2017) on the last conv layer, as in the keras-io example.

For an ensemble, the gradient of the ensemble's own logit is taken with respect to every member's
last conv layer and the weighted maps are summed: with global average pooling and a linear head this
is exactly each spatial cell's share of the served logit, so the heatmap explains the ensemble.

One compiled function returns the logits and the heatmaps together: the forward pass that
predicts is the one that is explained, so a prediction and its heatmap can never disagree.
The heatmap shows where evidence *for pneumonia* (the positive logit) lies.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from medcore.imaging.model import last_conv_layers


class GradCam:
    """Wraps a network: __call__(images) -> (logits (n,), raw heatmaps (n, h, w) >= 0, features (n, c)).

    features are the pooled last-conv activations (the network's own view of the image), which the
    quality gate compares with the training films.
    """

    def __init__(self, network: keras.Model, layer_names: list[str] | None = None) -> None:
        names = layer_names or last_conv_layers(network)
        self._model = keras.Model(network.inputs, [[network.get_layer(n).output for n in names], network.output])
        size = network.input_shape[1:]
        self._compiled = tf.function(self._explain, input_signature=[tf.TensorSpec((None, *size), tf.float32)])

    def _explain(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            activations, logits = self._model(images, training=False)
            # Samples are independent at inference, so one gradient of the sum serves the batch.
            target = tf.reduce_sum(logits)
        grads = tape.gradient(target, activations)
        cams = tf.add_n([tf.reduce_sum(a * tf.reduce_mean(g, axis=(1, 2), keepdims=True), axis=-1)
                         for a, g in zip(activations, grads)])
        features = tf.concat([tf.reduce_mean(a, axis=(1, 2)) for a in activations], axis=-1)
        return tf.reshape(logits, [-1]), tf.nn.relu(cams), features

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, cams, features = self._compiled(tf.convert_to_tensor(images, dtype=tf.float32))
        return logits.numpy(), cams.numpy(), features.numpy()


def normalise(cams: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Raw heatmaps -> [0, 1].

    With a model-wide scale (the 95th percentile of heatmap peaks on validation films), weak evidence
    stays faint, so a confidently normal film does not show a bright spot. Without one, each heatmap
    is divided by its own peak, which shows where evidence lies but not how much.
    """
    if scale:
        return np.clip(cams / scale, 0.0, 1.0)
    peak = cams.max(axis=(1, 2), keepdims=True)
    return np.divide(cams, peak, out=np.zeros_like(cams), where=peak > 0)


def _jet(values: np.ndarray) -> np.ndarray:
    """The familiar blue-cyan-yellow-red colour map, values in [0, 1] -> RGB in [0, 1]."""
    anchors = np.array([0.0, 0.35, 0.5, 0.65, 1.0])
    red = np.interp(values, anchors, [0, 0, 0.5, 1, 1])
    green = np.interp(values, anchors, [0, 0.8, 1, 0.8, 0])
    blue = np.interp(values, anchors, [0.6, 1, 0.5, 0, 0])
    return np.stack([red, green, blue], axis=-1)


def upsample(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    image = Image.fromarray(heatmap.astype(np.float32), mode="F")
    return np.clip(np.asarray(image.resize((width, height), Image.Resampling.BICUBIC)), 0.0, 1.0)


JET_LEVELS = 1024  # the colour map as a table: one lookup per pixel instead of three interpolations
_JET_TABLE: np.ndarray | None = None


def _jet_table() -> np.ndarray:
    global _JET_TABLE
    if _JET_TABLE is None:
        _JET_TABLE = np.round(_jet(np.linspace(0.0, 1.0, JET_LEVELS)) * 255).astype(np.uint8)
    return _JET_TABLE


def overlay(pixels: np.ndarray, heatmap: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """Blend a heatmap over a grayscale image, weighted by its intensity: uint8 RGB (h, w, 3).

    Cold regions keep the film visible; opacity scales how strongly hot regions are tinted. The blend is Pillow's
    composite of 8-bit images (the film, the coloured heat, heat x opacity as the mask): ~3x faster than float maths
    on a 1,024 px film, and within two gray levels of it.
    """
    height, width = pixels.shape
    heat = upsample(heatmap, height, width)
    gray = Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8), mode="L").convert("RGB")
    colour = Image.fromarray(_jet_table()[np.rint(heat * (JET_LEVELS - 1)).astype(np.intp)], mode="RGB")
    mask = Image.fromarray(np.rint(np.clip(opacity, 0.0, 1.0) * heat * 255).astype(np.uint8), mode="L")
    return np.asarray(Image.composite(colour, gray, mask))


def peak_location(heatmap: np.ndarray) -> tuple[float, float]:
    """(row, col) of the hottest cell as fractions of the image: for tests and reports."""
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return (row + 0.5) / heatmap.shape[0], (col + 0.5) / heatmap.shape[1]
