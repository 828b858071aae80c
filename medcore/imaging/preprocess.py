"""The one preprocessing contract shared by training, evaluation and serving.

A decoded radiograph (any size, any aspect ratio, values in [0, 1]) becomes a square
`image_size` x `image_size` x 1 float32 array, z-scored per image. The training images were
squashed to a square (aspect ratio not kept) by the data's publisher, so full-size uploads are
squashed the same way; per-image standardisation removes exposure and window differences between
hospitals and DICOM windowing choices. Change anything here and bump PREPROCESS_VERSION: a model
records the version it was trained with and refuses to run under another.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PREPROCESS_VERSION = "gray-squash-box-zscore-v1"


def resize_square(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """Squash a 2-D float image to image_size x image_size (area averaging when shrinking)."""
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    shrinking = min(image.size) >= image_size
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(image.resize((image_size, image_size), method), dtype=np.float32)


def reduce_film(pixels: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink a 2-D float film so that its longer side is max_side (aspect kept), each output pixel the area average
    of the input pixels it covers (Pillow's BOX filter: ~15 ms for 2,000 x 2,000).

    Done once, right after decoding, so that the quality checks, the network's input (a box squash of this), the
    display copy and the overlay never touch the full-size film again; None or a film already small enough is
    returned unchanged."""
    height, width = pixels.shape
    scale = max_side / max(height, width) if max_side else 1.0
    if scale >= 1.0:
        return pixels
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.float32)


def standardize(square: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per image; a flat image becomes all zeros."""
    centred = square - square.mean()
    std = float(centred.std())
    return (centred / std if std > 1e-6 else centred).astype(np.float32)


def to_model_input(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """Decoded radiograph -> (image_size, image_size, 1) float32 network input."""
    return standardize(resize_square(pixels, image_size))[..., np.newaxis]
