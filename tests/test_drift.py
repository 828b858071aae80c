"""Drift monitor from synthetic audit rows: quiet when recent use looks like validation, a warning when it does not."""

from __future__ import annotations

import numpy as np

from medcore import audit, drift


def _audit_studies(model, probabilities, atypicality, first: int = 0, source: str = "upload") -> None:
    for i, (p, a) in enumerate(zip(probabilities, atypicality), start=first):
        outcome = model.positive_label if p >= model.threshold else model.negative_label
        audit.record("dr_drift", "predict_xray", outcome, model.version, study=f"{i:016x}", source=source,
                     probability=float(p), atypicality=float(a))


def test_recent_use_like_validation_raises_no_warning(store, xray_model):
    rng = np.random.default_rng(0)
    reference = xray_model.validation_predictions()["prob"]
    _audit_studies(xray_model, rng.choice(reference, 300), rng.uniform(0.1, 0.7, 300))
    report = drift.report(xray_model, drift.recent_studies(30))
    assert report.n == 300 and len(report.days) == 1 and report.studies_per_day == [300]
    assert report.flagged_share_per_day[0] == report.checks[0].recent  # one definition: among predicted studies
    assert all(check.p_value is not None for check in report.checks) and report.warnings == []


def test_shifted_use_is_flagged_with_its_test(store, xray_model):
    rng = np.random.default_rng(1)
    _audit_studies(xray_model, rng.uniform(0.85, 0.999, 200), rng.uniform(0.5, 1.6, 200))
    report = drift.report(xray_model, drift.recent_studies(30))
    names = {check.name for check in report.warnings}
    assert {"share flagged PNEUMONIA", "probability distribution (KS distance)",
            "share atypical (atypicality > 1.0)"} == names
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
