"""Adaptation without labels (issue 24 item 3): AdaBN moves the batch-normalisation statistics to the local films,
EM finds the local share of pneumonia, the candidate is registered; folders' names are never read as labels; fewer
than 200 films are refused."""

from __future__ import annotations

import numpy as np
import pytest

from medcore import auth, registry
from medcore.training import adaptation
from medcore.training.local_calibration import adapt_and_register
from tests.synthetic import encode, write_opacity_folder


def test_em_recovers_a_shifted_prevalence():
    rng = np.random.default_rng(0)
    trained = 0.7
    # calibrated posteriors for a population with 30 % positives, from a model calibrated at 70 %
    labels = rng.random(4000) < 0.3
    x = np.where(labels, rng.normal(1.5, 1.0, 4000), rng.normal(-1.5, 1.0, 4000))
    likelihood_ratio = np.exp(3.0 * x)  # N(1.5, 1) against N(-1.5, 1): the exact ratio at x
    odds = likelihood_ratio * trained / (1 - trained)
    posteriors = odds / (1 + odds)
    assert adaptation.estimate_prevalence(posteriors, trained) == pytest.approx(0.3, abs=0.03)
    assert adaptation.logit_shift(0.3, 0.7) == pytest.approx(np.log(0.3 / 0.7) - np.log(0.7 / 0.3))


def test_adabn_sets_the_statistics_to_the_local_films(xray_model):
    from medcore.imaging.service import load_xray_model

    model = load_xray_model()
    rng = np.random.default_rng(1)
    local = (rng.random((40, 128, 128, 1)) * 0.5 + 0.4).astype(np.float32)  # brighter films than training's
    import keras

    first = next(layer for layer in model.artifact.network.layers if isinstance(layer, keras.layers.BatchNormalization))
    probe = keras.Model(model.artifact.network.inputs, first.input)
    expected = np.asarray(probe(local)).mean(axis=(0, 1, 2))
    assert not np.allclose(first.moving_mean.numpy(), expected, atol=1e-3)
    layers = [layer for layer in model.artifact.network.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert adaptation.adapt_batch_norm(model.artifact.network, local) == len(layers) >= 7  # every one of them
    assert np.allclose(first.moving_mean.numpy(), expected, atol=1e-3)


def test_an_adapted_candidate_is_registered_from_any_layout_and_small_sets_are_refused(store, tmp_path, xray_model):
    films = tmp_path / "films"
    write_opacity_folder(films / "ward-3" / "2026", xray_model.artifact.quality_reference, 10, seed=3)
    (films / "PNEUMONIA").mkdir()  # a folder named like a label: not read as one
    (films / "PNEUMONIA" / "a.png").write_bytes(encode(np.full((256, 256), 0.5), "PNG"))
    operator = auth.operator("cli:tests")
    with pytest.raises(adaptation.AdaptationRefused, match="at least 200"):
        adapt_and_register("xray", films, operator, tmp_path / "work")
    result = adaptation.adapt_xray(registry.production("xray").path, films, tmp_path / "adapted", min_films=20)
    assert result["films"] == 21 and result["prevalence"]["estimated_local"] > 0
    assert result["batch_norm"]["layers"] == sum(  # every batch-normalisation layer of the network
        type(layer).__name__ == "BatchNormalization" for layer in xray_model.artifact.network.layers)
    version = registry.register("xray", tmp_path / "adapted", "tests", origin="adaptation").version
    assert registry.get("xray", version).status == "candidate" and "-adapted-" in version
