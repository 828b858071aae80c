"""The performance page's numbers are recomputed from stored predictions and agree with the model's record."""

from pathlib import Path

import numpy as np
import pytest

from medcore import charts, tasks
from tests.conftest import signed_in_app

REPO = Path(__file__).resolve().parents[1]


def test_xray_report_recomputes_the_recorded_validation_metrics(xray_model):
    stored = xray_model.validation_predictions()
    report = charts.binary_report(stored["y_true"], stored["prob"], xray_model.artifact.threshold)
    recorded = xray_model.artifact.meta["metrics"]["validation"]
    for key in ("n", "tp", "fp", "tn", "fn"):
        assert report["metrics"][key] == recorded[key]
    for key in ("auc", "sensitivity", "specificity", "ece"):
        assert report["metrics"][key] == pytest.approx(recorded[key], abs=1e-4)
    op = report["operating_point"]
    assert op["tpr"] == recorded["sensitivity"] and op["fpr"] == pytest.approx(1 - recorded["specificity"])
    assert charts.binary_confusion(report["metrics"]) == [[recorded["tn"], recorded["fp"]],
                                                           [recorded["fn"], recorded["tp"]]]


def test_notes_report_recomputes_the_recorded_validation_metrics(notes_models):
    for model in notes_models.values():
        stored = model.validation_predictions()
        report = charts.multiclass_report(stored["y_true"], stored["prob"], model.labels)
        recorded = model.meta["metrics"]["validation"]
        assert report["metrics"]["confusion"] == recorded["confusion"]
        assert report["metrics"]["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=1e-9)
        assert sum(report["reliability"]["reliability_count"]) == recorded["n"]


def test_figures_mark_the_operating_point():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    prob = np.clip(y * 0.6 + rng.random(300) * 0.4, 0, 1)
    report = charts.binary_report(y, prob, 0.5)
    roc = charts.roc_figure(report)
    assert [trace.name for trace in roc.data][-1] == "threshold 0.50"
    assert roc.data[-1].x[0] == pytest.approx(1 - report["metrics"]["specificity"])


FIGURES_TABLE = ["evaluation", "films", "AUC", "accuracy", "sensitivity", "specificity", "ECE", "source"]


def test_performance_page_renders_both_tabs(store, xray_model):
    """In a new store (no recent use yet, so the recent-use tab draws its checks table and no figure): each table
    shows the figures of the evaluations it names (issue 34: it only rendered)."""
    at = signed_in_app("clinician", "views/performance.py")
    assert not at.exception, at.exception
    evaluations = xray_model.evaluations()
    # X-ray: ROC and calibration overlays + one confusion matrix per evaluation; notes: 3 figures
    assert len(at.get("plotly_chart")) == 2 + len(evaluations) + 3
    tables = at.dataframe
    assert list(tables[0].value.columns) == FIGURES_TABLE
    assert list(tables[0].value["evaluation"]) == [e.title for e in evaluations]
    from medcore.metrics import binary_figures  # each row's AUC and specificity are its evaluation's, recomputed
    for row, evaluation in zip(tables[0].value.to_dict("records"), evaluations):
        figures = binary_figures(evaluation.y_true, evaluation.prob, evaluation.threshold)
        assert row["films"] == len(evaluation.y_true) and str(row["AUC"]).startswith(f"{figures['auc']:.3f}")
        assert row["specificity"].startswith(f"{figures['specificity']:.1%} ("), (row, figures["specificity"])
    comparison = tables[1].value  # issue 24: what was compared before this release, from the model's metadata
    recorded = xray_model.meta["release_comparison"]["rows"]
    assert len(comparison) == len(recorded) and comparison["variant"][0].startswith("release 2: one network")
    assert comparison["AUC"][0].startswith(f"{recorded[0]['figures']['auc']:.3f}")
    assert list(tables[2].value["check"])[0].startswith("share flagged")  # recent use: nothing tested yet
    shipped = tasks.get(tasks.NOTES_KEYS[0]).load(tasks.get(tasks.NOTES_KEYS[0]).shipped_dir).architecture
    assert list(tables[3].value["model"]) == [f"{shipped} (shipped)", "TF-IDF + logistic regression (baseline)"]
    at.selectbox[0].select("symptom2disease").run()
    assert not at.exception


def test_performance_page_shows_local_validation_beside_the_others(store, xray_model, tmp_path):
    """After a local recalibration is promoted, the page shows its cross-validated local figures as a column."""
    from medcore import auth, registry
    from medcore.training.local_calibration import calibrate_and_register
    from tests.synthetic import write_opacity_folder

    films = write_opacity_folder(tmp_path / "films", xray_model.artifact.quality_reference, 12, seed=3)
    operator = auth.operator("tests")
    result = calibrate_and_register(films, operator, tmp_path / "work")
    registry.promote("xray", result["version"], operator)
    at = signed_in_app("clinician", "views/performance.py")
    assert not at.exception, at.exception
    rows = at.dataframe[0].value
    assert list(rows["evaluation"])[0] == "Internal validation" and list(rows["evaluation"])[-1] == "Local validation"
    assert "cross-validated" in list(rows["source"])[-1]
    assert f"{result['after']['sensitivity']:.1%}" in list(rows["sensitivity"])[-1]


def test_multiclass_intervals_bracket_the_estimate_and_narrow_with_more_notes():
    from sklearn.metrics import f1_score

    from medcore.metrics import _macro_f1, multiclass_intervals, multiclass_metrics

    rng = np.random.default_rng(0)
    widths = []
    for n in (150, 1500):
        y = rng.integers(0, 5, n)
        logits = rng.normal(0, 1, (n, 5)) + 2.0 * np.eye(5)[y]
        prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        assert _macro_f1(y, prob) == pytest.approx(f1_score(y, prob.argmax(1), average="macro"))
        metrics, intervals = multiclass_metrics(y, prob, list("abcde")), multiclass_intervals(y, prob, 400)
        for key in ("accuracy", "macro_f1", "ece"):
            low, high = intervals[key]
            assert low <= metrics[key] <= high
        widths.append(intervals["macro_f1"][1] - intervals["macro_f1"][0])
    assert widths[1] < widths[0] / 2  # ten times the notes: about a third of the width
