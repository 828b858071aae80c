"""Grad-CAM must point at the evidence: a small model of the production architecture is trained in
the test to detect a planted blob, and its heatmap must peak where the blob is."""

import numpy as np
import pytest

from medcore.imaging.gradcam import GradCam, normalise, overlay, peak_location, upsample
from medcore.imaging.model import build_xray_ensemble
from medcore.imaging.preprocess import to_model_input
from tests.synthetic import lesion_dataset, train_lesion_network

SIZE = 64


@pytest.fixture(scope="module")
def lesion_model():
    return train_lesion_network(SIZE)


def test_model_learned_the_lesion(lesion_model):
    images, labels, _ = lesion_dataset(100, SIZE, seed=2)
    logits = lesion_model.predict(np.stack([to_model_input(i, SIZE) for i in images]), verbose=0).ravel()
    assert ((logits > 0) == labels).mean() >= 0.9


def test_heatmap_peaks_on_the_planted_lesion(lesion_model):
    images, labels, centres = lesion_dataset(40, SIZE, seed=3)
    positives = labels == 1
    inputs = np.stack([to_model_input(i, SIZE) for i in images[positives]])
    logits, raw, _ = GradCam(lesion_model)(inputs)
    heatmaps = normalise(raw)
    assert heatmaps.shape[0] == positives.sum() and heatmaps.min() >= 0 and heatmaps.max() == 1
    hits = 0
    for heatmap, (row, col) in zip(heatmaps, centres[positives]):
        peak_row, peak_col = peak_location(heatmap)
        cell = 1.0 / heatmap.shape[0]  # one heatmap cell, as a fraction of the image
        distance = np.hypot(peak_row - row / SIZE, peak_col - col / SIZE)
        hits += distance <= cell
    assert hits / positives.sum() >= 0.85, f"heatmap peak on the lesion in only {hits}/{positives.sum()} images"


def test_heatmap_moves_with_the_lesion(lesion_model):
    """The same blob planted in opposite corners gives heatmaps peaking in opposite corners."""
    base, _, _ = lesion_dataset(1, SIZE, seed=4)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    peaks = []
    for row, col in [(14, 14), (50, 50)]:
        image = np.clip(base[0] + 0.6 * np.exp(-((y - row) ** 2 + (x - col) ** 2) / 18.0), 0, 1)
        _, heatmaps, _ = GradCam(lesion_model)(to_model_input(image, SIZE)[None])
        peaks.append(peak_location(heatmaps[0]))
    assert peaks[0][0] < 0.5 < peaks[1][0] and peaks[0][1] < 0.5 < peaks[1][1]


def test_ensemble_heatmap_explains_the_ensemble_output(lesion_model):
    """Two members: one is the lesion model, one has a silent head (constant logit). The ensemble's logit is half
    the lesion model's plus a constant, so its Grad-CAM must be exactly half the lesion model's heatmap: it
    explains the served (mean) logit, not one member."""
    ensemble, members = build_xray_ensemble(SIZE, width=8, members=2, dropout=0.0)
    members[0].set_weights(lesion_model.get_weights())
    silent = lesion_model.get_weights()
    silent[-2] = np.zeros_like(silent[-2])  # the head's kernel: this member ignores the image
    members[1].set_weights(silent)
    images, labels, _ = lesion_dataset(8, SIZE, seed=5)
    inputs = np.stack([to_model_input(i, SIZE) for i in images])
    single_logits, single_maps, single_features = GradCam(lesion_model)(inputs)
    logits, maps, features = GradCam(ensemble)(inputs)
    np.testing.assert_allclose(logits, (single_logits + silent[-1][0]) / 2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(maps, single_maps / 2, rtol=1e-3, atol=1e-5)
    assert features.shape == (8, 2 * single_features.shape[1])  # every member's view, for the quality gate


def test_model_wide_scale_keeps_weak_evidence_faint():
    raw = np.stack([np.full((4, 4), 0.1), np.full((4, 4), 4.0)]).astype(np.float32)
    raw[:, 0, 0] *= 2
    assert normalise(raw)[0].max() == 1.0  # per-image: weak evidence looks as hot as strong
    scaled = normalise(raw, scale=2.0)
    assert scaled[0].max() == pytest.approx(0.1) and scaled[1].max() == 1.0


def test_overlay_keeps_cold_regions_unchanged_and_tints_hot_ones():
    pixels = np.full((40, 60), 0.5, dtype=np.float32)
    heatmap = np.zeros((4, 4), dtype=np.float32)
    heatmap[0, 0] = 1.0
    blended = overlay(pixels, heatmap, opacity=0.8)
    assert blended.shape == (40, 60, 3) and blended.dtype == np.uint8
    assert np.all(blended[-1, -1] == 127)  # far from the hot cell: still the gray film
    assert blended[0, 0, 0] > 200 and blended[0, 0, 2] < 60  # hot cell: red
    assert np.array_equal(overlay(pixels, heatmap, opacity=0.0)[..., 0], (pixels * 255).astype(np.uint8))
    assert upsample(heatmap, 40, 60).shape == (40, 60)
