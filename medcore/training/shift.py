"""Perturbed copies of validation films that imitate films from other hospitals.

A model calibrated on films from its own hospital is over-confident on anyone else's (measured: ECE 0.009
internally, 0.155 on new patients). Fitting the calibration and the threshold on the validation films
*plus* perturbed copies of them (Tomani et al., CVPR 2021, "Post-hoc uncertainty calibration for domain
drift scenarios") spreads the logits the way a shift does, at no cost at prediction time.

The strengths are fixed in advance, from the research note `shared/research/xray-shift.md`: never tuned
on the external sample. They act on the network input (after the per-image z-score), where exposure,
contrast, noise and sharpness differences between machines remain after standardization.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

GAIN = (0.2, 1.8)
OFFSET = 0.8
NOISE = 0.08
BLUR_SHARE = 0.75  # share of copies blurred with a 3 x 3 box filter
COPIES = 2
DESCRIPTION = (f"validation films plus {COPIES} perturbed copies of each (gain {GAIN[0]}-{GAIN[1]}, offset "
               f"±{OFFSET}, Gaussian noise {NOISE}, 3 x 3 blur on {BLUR_SHARE:.0%}) on the z-scored input")


def perturb(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One perturbed copy of a batch of (n, h, w, 1) network inputs."""
    n = len(images)
    out = images.astype(np.float32, copy=True)
    blur = rng.random(n) < BLUR_SHARE
    if blur.any():
        out[blur] = uniform_filter(out[blur], size=(1, 3, 3, 1), mode="reflect")
    gain = rng.uniform(*GAIN, size=(n, 1, 1, 1)).astype(np.float32)
    offset = rng.uniform(-OFFSET, OFFSET, size=(n, 1, 1, 1)).astype(np.float32)
    return out * gain + offset + rng.normal(0.0, NOISE, size=out.shape).astype(np.float32)


def perturbed_logits(predict, images: np.ndarray, labels: np.ndarray, seed: int,
                     copies: int = COPIES) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) of `copies` perturbed copies of the films: with the films' own, what calibration is fitted on.

    predict maps (n, h, w, 1) inputs to logits (n,); copies are made batch by batch to bound memory.
    """
    rng = np.random.default_rng(seed)
    all_logits = []
    for _ in range(copies):
        all_logits += [predict(perturb(images[i:i + 256], rng)) for i in range(0, len(images), 256)]
    return np.concatenate(all_logits), np.tile(labels, copies)
