"""Local validation and recalibration: a new version with the same weights, a map chosen by cross-validation,
honest before/after figures, registered as a candidate and promoted like any other."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from medcore import auth, registry
from medcore.imaging.service import load_xray_model
from medcore.training.local_calibration import (METHODS, LocalDataError, calibrate_and_register, choose_method,
                                                 cross_validated)
from tests.synthetic import write_opacity_folder

ADMIN = auth.operator("tests")


@pytest.fixture(scope="module")
def local_films(tmp_path_factory, xray_model):
    return write_opacity_folder(tmp_path_factory.mktemp("local"), xray_model.artifact.quality_reference, 24, seed=7)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cross_validated_figures_never_see_their_own_films():
    """A map fitted on all films would fit shifted logits perfectly; out-of-fold it must still help but each
    film's probability must come from a fold fitted without it (different from the all-films fit)."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(150), np.ones(150)].astype(int)
    logits = rng.normal(0, 1.5, 300) + 3.0 * y + 2.5  # ranks well, far too confident for pneumonia
    prob, decisions = cross_validated(logits, y, "platt", {"method": "platt", "a": 1.0, "b": 0.0}, 0.95, seed=0)
    raw = 1 / (1 + np.exp(-logits))
    from medcore.metrics import expected_calibration_error
    assert expected_calibration_error(y, prob) < expected_calibration_error(y, raw) / 2
    assert decisions[y == 1].mean() >= 0.85 and decisions.dtype == bool


def test_each_films_cross_validated_probability_comes_from_a_map_fitted_without_it(monkeypatch):
    """The figures a hospital is shown are out-of-fold: every map is fitted on a part of the films, and each film's
    probability is what a map fitted without that film says (a fit on all films fails here)."""
    from medcore import calibration

    fits, real_fit = [], calibration.fit

    def spy(method, logits, y, base):
        params = real_fit(method, logits, y, base)
        fits.append((set(np.asarray(logits).tolist()), params))
        return params

    monkeypatch.setattr(calibration, "fit", spy)
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(60), np.ones(60)].astype(int)
    logits = rng.normal(0, 1.5, 120) + 3.0 * y - 1.0
    prob, _ = cross_validated(logits, y, "platt", {"method": "platt", "a": 1.0, "b": 0.0}, 0.95, seed=0)
    assert fits and all(len(seen) < len(y) for seen, _ in fits)
    for logit, p in zip(logits, prob):
        without = [params for seen, params in fits if float(logit) not in seen]
        assert any(np.isclose(calibration.apply(np.array([logit]), params)[0], p) for params in without)


def test_calibration_registers_a_candidate_with_the_same_weights(store, local_films):
    production = registry.production("xray")
    result = calibrate_and_register(local_films, ADMIN, store / "work")
    assert result["status"] == "candidate" and result["based_on"] == production.version
    assert result["method"] in ("intercept", "platt", "isotonic")
    assert set(result["cv_log_loss"]) == set(result["cv_ece"]) == {"unchanged", "intercept", "platt", "isotonic"}
    assert result["method"] == min(("intercept", "platt", "isotonic"), key=result["cv_ece"].get)
    for side in ("before", "after"):
        figures = result[side]
        for key in ("auc", "sensitivity", "specificity", "accuracy", "ece"):
            low, high = figures["intervals"][key]
            assert low <= figures[key] <= high, (side, key)
    assert result["warnings"] and "24 films" in result["warnings"][0]  # a small set says so
    if result["before"]["intervals"]["auc"][1] < 0.85:  # the shipped model cannot rank synthetic opacities
        assert "do not promote" in result["warnings"][-1]
    assert registry.production("xray").version == production.version  # nothing promoted by itself

    entry = registry.get("xray", result["version"])
    for name in ("model.keras", "quality.npz"):
        assert _digest(entry.path / name) == _digest(production.path / name)
    model = load_xray_model(entry.path)
    assert model.threshold == pytest.approx(result["threshold_after"])
    assert model.meta["calibration"]["method"] == result["method"]
    assert "Local validation" in model.model_card() and model.meta["local_validation"]["fingerprint"][:16] in \
        model.model_card()
    kinds = [e.kind for e in model.evaluations()]
    assert kinds[0] == "internal" and "local" in kinds
    assert model.operating_evidence()["source"].startswith("local validation")

    registry.promote("xray", result["version"], ADMIN, expected_production=production.version)
    assert registry.production("xray").version == result["version"]


def test_calibration_refuses_a_clinician_and_a_tiny_set(store, local_films, tmp_path, xray_model):
    clinician = auth.User("someone", "clinician", False)
    with pytest.raises(auth.NotAllowed):
        calibrate_and_register(local_films, clinician, store / "work")
    tiny = write_opacity_folder(tmp_path / "tiny", xray_model.artifact.quality_reference, 4)
    with pytest.raises(LocalDataError, match="at least 10"):
        calibrate_and_register(tiny, ADMIN, store / "work")
    assert {v.origin for v in registry.list_versions("xray")} == {"shipped"}  # nothing registered


def test_cli_prints_one_json_object_with_the_version_and_both_figures(store, local_films):
    done = subprocess.run([sys.executable, "-m", "medcore.cli", "calibrate", "xray", "--data", str(local_films),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert {"version", "before", "after", "method", "warnings"} <= set(result)
    assert "warning" in done.stderr  # the small-set warning also reaches a person at a terminal
    assert registry.get("xray", result["version"]).status == "candidate"


def test_external_sample_recalibration_improves_calibration(store, xray_train_dir):
    external = xray_train_dir.parent / "external_sample"
    if not external.is_dir():
        pytest.skip("no external sample")
    result = calibrate_and_register(external, ADMIN, store / "work")
    assert result["after"]["ece"] < 0.06 and result["after"]["sensitivity"] >= 0.93
    assert not result["warnings"]


def test_ties_go_to_the_map_with_fewer_parameters():
    assert METHODS == ("intercept", "platt", "isotonic")  # 1, 2 and as many as steps
    assert choose_method({"unchanged": 0.2, "intercept": 0.05, "platt": 0.05, "isotonic": 0.05}) == "intercept"
    assert choose_method({"intercept": 0.06, "platt": 0.05002, "isotonic": 0.04998}) == "platt"  # equal to 4 decimals
    assert choose_method({"intercept": 0.06, "platt": 0.0502, "isotonic": 0.0498}) == "isotonic"
