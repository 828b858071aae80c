"""Drift monitor from synthetic audit rows: quiet when recent use looks like validation, a warning when it does not."""

from __future__ import annotations

import numpy as np
import pytest

from medcore import audit, drift


def _audit_studies(model, probabilities, atypicality, first: int = 0, source: str = "upload", features=None) -> None:
    """Audit rows as the X-ray service writes them; `features`: one summary per study (None: rows without one)."""
    features = [None] * len(probabilities) if features is None else features
    for i, (p, a, f) in enumerate(zip(probabilities, atypicality, features), start=first):
        p = float(p)  # as the service decides: a Python float (a float32 compared in float32 can differ at the threshold)
        outcome = model.positive_label if p >= model.threshold else model.negative_label
        audit.record("dr_drift", "predict_xray", outcome, model.version, study=f"{i:016x}", source=source,
                     probability=float(p), atypicality=float(a),
                     features=None if f is None else [round(float(v), 3) for v in f])


def _validation_like(model, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n studies drawn from the model's own validation films: (probabilities, feature summaries)."""
    idx = rng.choice(len(model.validation_predictions()["prob"]), n)
    return model.validation_predictions()["prob"][idx], model.feature_summary_reference()[idx]


def test_recent_use_like_validation_raises_no_warning(store, xray_model):
    rng = np.random.default_rng(0)
    probabilities, features = _validation_like(xray_model, 300, rng)
    _audit_studies(xray_model, probabilities, rng.uniform(0.1, 0.7, 300), features=features)
    report = drift.report(xray_model, drift.recent_studies(30))
    assert report.n == 300 and len(report.days) == 1 and report.studies_per_day == [300]
    assert report.flagged_share_per_day[0] == report.checks[0].recent  # one definition: among predicted studies
    assert all(check.p_value is not None for check in report.checks) and report.warnings == []


def test_shifted_use_is_flagged_with_its_test(store, xray_model):
    rng = np.random.default_rng(1)
    features = _validation_like(xray_model, 200, rng)[1] + [0, 0, 0.6, 0, 0, 0, 0, 0]  # one component moved
    _audit_studies(xray_model, rng.uniform(0.85, 0.999, 200), rng.uniform(0.5, 1.6, 200), features=features)
    report = drift.report(xray_model, drift.recent_studies(30))
    names = {check.name for check in report.warnings}
    assert {"share flagged PNEUMONIA", "probability distribution (KS distance)",
            "share atypical (atypicality > 1.0)", "film features (largest KS distance over components)"} == names
    assert all(check.p_value < drift.ALPHA and check.test for check in report.warnings)


def test_too_few_studies_are_not_tested(store, xray_model):
    _audit_studies(xray_model, [0.99] * 10, [2.0] * 10)
    report = drift.report(xray_model, drift.recent_studies(30))
    assert report.n == 10 and report.warnings == [] and all(c.p_value is None for c in report.checks)


def test_the_performance_page_shows_recent_use(store, xray_model):
    from tests.conftest import signed_in_app

    rng = np.random.default_rng(2)
    _audit_studies(xray_model, rng.uniform(0.85, 0.999, 60), rng.uniform(0.1, 0.5, 60))
    page = signed_in_app("clinician", "views/performance.py")
    assert not page.exception, page.exception
    assert any("Recent use differs from validation" in w.value for w in page.warning)
    assert any("60 studies in the last 30 days" in c.value for c in page.caption)


def test_a_film_counts_once_per_day_and_source(store, xray_model):
    """L10 (issue 21): ten uploads of one film, or a script scoring it again, do not make ten studies."""
    rng = np.random.default_rng(3)
    probabilities, atypicality = rng.choice(xray_model.validation_predictions()["prob"], 40), rng.uniform(0.1, 0.7, 40)
    _audit_studies(xray_model, probabilities, atypicality)
    for _ in range(10):
        _audit_studies(xray_model, [0.99], [0.3], first=0)  # the first film again and again from the page
    _audit_studies(xray_model, probabilities[:5], atypicality[:5], source="cli")  # and from the command line
    audit.record("cli:ops", "predict_xray", "PNEUMONIA", xray_model.version, study=f"{7:016x}", probability=0.9,
                 atypicality=0.2)  # a row written before the source was recorded: the user says "cli"
    report = drift.report(xray_model, drift.recent_studies(30))
    assert report.n == 40 + 5 + 1 and len(report.probabilities) == 46


def test_invalid_model_outputs_are_counted_apart_and_shown(store, xray_model):
    """L3 (issue 21): a study on which the model gave NaN is no decision and no drift statistic, but it is counted."""
    from tests.conftest import signed_in_app

    _audit_studies(xray_model, [0.2] * 35, [0.3] * 35)
    for i in range(3):
        audit.record("dr_drift", "predict_xray", "invalid model output", xray_model.version, study=f"nan{i:013x}",
                     source="upload", probability=None, atypicality=None)
    report = drift.report(xray_model, drift.recent_studies(30))
    assert report.invalid_outputs == 3 and report.n == 35
    page = signed_in_app("clinician", "views/performance.py")
    assert any("On 3 studies the model gave no valid output" in e.value for e in page.error)


def test_the_feature_check_sees_films_move_while_decisions_do_not(store, xray_model):
    """Issue 24: the films change (one component of the feature summary shifts by 0.4 of a standard deviation)
    while the probabilities stay those of validation: only the feature check warns, with its Bonferroni p-value."""
    from scipy import stats

    rng = np.random.default_rng(4)
    probabilities, features = _validation_like(xray_model, 150, rng)
    sd = xray_model.feature_summary_reference().std(axis=0)
    moved = features + np.eye(features.shape[1])[5] * 0.4 * sd[5]
    _audit_studies(xray_model, probabilities, rng.uniform(0.1, 0.7, 150), features=moved)
    report = drift.report(xray_model, drift.recent_studies(30))
    assert [c.name for c in report.warnings] == ["film features (largest KS distance over components)"]
    check = report.warnings[0]
    reference = xray_model.feature_summary_reference()
    recorded = np.round(moved, 3)
    expected = min(1.0, 8 * min(stats.ks_2samp(recorded[:, i], reference[:, i]).pvalue for i in range(8)))
    assert check.p_value == pytest.approx(expected) and "Bonferroni" in check.test


def test_the_same_films_without_the_shift_raise_nothing(store, xray_model):
    rng = np.random.default_rng(4)
    probabilities, features = _validation_like(xray_model, 150, rng)
    _audit_studies(xray_model, probabilities, rng.uniform(0.1, 0.7, 150), features=features)
    assert drift.report(xray_model, drift.recent_studies(30)).warnings == []


def test_the_service_records_the_feature_summary_that_the_check_reads(store, xray_model):
    """The audit row of an analysed film holds the same 8 numbers quality.feature_summary gives for it."""
    from medcore.imaging import quality
    from medcore.imaging.preprocess import to_model_input
    from medcore.imaging.io import read_radiograph
    from medcore.imaging.service import analyse_file, audit_study
    from tests.synthetic import chest_like, encode

    data = encode(chest_like(xray_model.artifact.quality_reference, seed=3), "PNG")
    result = analyse_file(xray_model, data, "film.png", with_heatmap=False)
    audit_study("dr_drift", result, "d" * 16, "upload")
    row = drift.recent_studies(30)[0]
    model_input = to_model_input(read_radiograph(data, "film.png").pixels, xray_model.artifact.image_size)
    _, _, features = xray_model.predict_inputs(model_input[np.newaxis])
    expected = quality.feature_summary(features, xray_model.artifact.quality_reference)[0]
    assert row["detail"]["features"] == pytest.approx(expected, abs=2e-3) and len(expected) == 8


def test_a_model_without_the_summary_says_so(store, xray_model):
    rng = np.random.default_rng(5)
    probabilities, features = _validation_like(xray_model, 40, rng)
    _audit_studies(xray_model, probabilities, rng.uniform(0.1, 0.7, 40), features=features)
    checks = drift.run_checks({"probability": probabilities, "atypicality": np.full(40, 0.3), "features": features},
                              {"probability": xray_model.validation_predictions()["prob"], "features": None}, 0.5)
    assert checks[-1].p_value is None and "quality-refit" in checks[-1].unavailable and not checks[-1].warning


def test_medcore_drift_xray_reports_each_check(store, xray_model, capsys):
    """`medcore drift xray --json`: each check with statistic, p-value and warning, as the page computes them."""
    import json

    from medcore.cli import main

    rng = np.random.default_rng(6)
    probabilities, features = _validation_like(xray_model, 120, rng)
    _audit_studies(xray_model, probabilities, rng.uniform(0.1, 0.7, 120), features=features + np.eye(8)[0] * 0.8 * features.std(axis=0)[0])
    assert main(["drift", "xray", "--days", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    report = drift.report(xray_model, drift.recent_studies(7))
    assert out["studies"] == 120 and out["days"] == 7 and out["warning"] is True and "medcore adapt xray" in out["advice"]
    assert [(c["check"], c["p_value"], c["warning"]) for c in out["checks"]] == [
        (c.name, c.p_value, c.warning) for c in report.checks]
    assert out["checks"][-1]["warning"] and not out["checks"][0]["warning"]


def test_medcore_drift_xray_refuses_a_period_that_means_nothing(store, capsys):
    from medcore.cli import main

    with pytest.raises(SystemExit):
        main(["drift", "xray", "--days", "0"])
    assert "1 to 3650 days" in capsys.readouterr().err
