"""Prediction sets: the per-class coverage promise holds on notes the quantiles did not see, sets are never empty,
and the page, report and command line say the set rather than a single guess."""

import numpy as np
import pytest

from medcore import conformal


def synthetic_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes; class 2 is hard (its notes look like class 1), so a single marginal quantile would under-cover
    it: the class-conditional rule must not."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), labels] += np.where(labels == 2, 0.6, 3.0)
    logits[labels == 2, 1] += 0.8
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probabilities, labels


def test_each_class_is_covered_at_the_level_on_new_notes():
    fit_p, fit_y = synthetic_scores(3000, seed=1)
    new_p, new_y = synthetic_scores(20000, seed=2)
    quantiles = conformal.class_quantiles(fit_p, fit_y, 3, level=0.9)
    result = conformal.evaluate(new_p, new_y, quantiles, ["a", "b", "c"])
    for name, coverage in result["set_coverage_per_class"].items():
        assert 0.88 <= coverage <= 0.94, (name, coverage)
    # A single quantile over all classes (marginal conformal) leaves the hard class under-covered.
    scores = 1 - fit_p[np.arange(len(fit_y)), fit_y]
    marginal = np.full(3, np.sort(scores)[int(np.ceil((len(scores) + 1) * 0.9)) - 1])
    assert conformal.evaluate(new_p, new_y, marginal, ["a", "b", "c"])["set_coverage_per_class"]["c"] < 0.85
    # The price of covering the hard class is paid where it belongs: it joins more sets than an easy class does.
    sets = conformal.prediction_sets(new_p, quantiles)
    assert np.mean([2 in s for s in sets]) > np.mean([0 in s for s in sets]) + 0.05


def test_sets_are_never_empty_and_most_probable_first():
    probabilities = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    assert conformal.prediction_sets(probabilities, np.zeros(3)) == [[0], [2]]  # nothing within: the top class
    every = conformal.prediction_sets(probabilities, np.ones(3))
    assert [sorted(s) for s in every] == [[0, 1, 2], [0, 1, 2]] and every[0][:2] == [0, 1] and every[1][0] == 2
    assert conformal.describe(["flu"]) == "most likely flu"
    assert conformal.describe(["flu", "cold"]) == "one of flu, cold"


def test_too_few_notes_of_a_class_keep_it_in_every_set():
    probabilities = np.array([[0.9, 0.1]] * 20 + [[0.2, 0.8]] * 3)
    labels = np.array([0] * 20 + [1] * 3)
    quantiles = conformal.class_quantiles(probabilities, labels, 2, level=0.9)
    assert quantiles[1] == 1.0 and quantiles[0] < 1.0  # 3 notes cannot support 90 %: the class is never ruled out


def test_split_check_measures_coverage_on_the_held_out_half():
    probabilities, labels = synthetic_scores(4000, seed=3)
    check = conformal.split_check(probabilities, labels, ["a", "b", "c"], repeats=10)
    assert check["repeats"] == 10 and 0.87 <= check["lowest_class_coverage"] <= check["coverage"] <= 0.95
    assert 1.0 <= check["mean_set_size"] <= 3.0


@pytest.mark.parametrize("quantiles, finding", [(0.0, "most likely"), (1.0, "one of")])
def test_the_note_prediction_names_its_set(notes_models, quantiles, finding):
    import copy

    from medcore.notes.service import predict_note

    model = copy.copy(notes_models["symptom2disease"])
    model.meta = {**model.meta, "conformal": {"level": 0.9, "quantiles": [quantiles] * len(model.labels)}}
    prediction = predict_note(model, "I have had a cough with yellow phlegm and a fever for three days.")
    assert prediction.finding.startswith(finding)
    assert prediction.certain == (finding == "most likely")
    assert len(prediction.prediction_set) == (1 if quantiles == 0.0 else len(model.labels))
    assert prediction.prediction_set[0] == prediction.ranked(1)[0][0]


def test_the_level_rule_adds_a_margin_where_calibration_notes_are_few_and_none_where_they_are_many():
    """Issue 32: at level 0.90 the sets held 0.874 of new notes. The rule raises the level until coverage in the worst
    tenth of half-splits reaches the target, from the out-of-fold notes alone."""
    few_p, few_y = synthetic_scores(300, seed=5)
    level, tried = conformal.choose_level(few_p, few_y, ["a", "b", "c"])
    assert level > conformal.TARGET and tried[-1]["coverage_p10"] >= conformal.TARGET
    assert all(row["coverage_p10"] < conformal.TARGET for row in tried[:-1])
    many_p, many_y = synthetic_scores(20000, seed=6)
    assert conformal.choose_level(many_p, many_y, ["a", "b", "c"])[0] == conformal.LEVELS[0]
    new_p, new_y = synthetic_scores(20000, seed=7)  # and the margin is what keeps the target on new notes
    kept = conformal.evaluate(new_p, new_y, conformal.class_quantiles(few_p, few_y, 3, level), ["a", "b", "c"])
    assert kept["set_coverage"] >= conformal.TARGET


def test_pages_state_the_measured_coverage_with_its_spread_never_at_least(notes_models):
    from medcore.notes.service import predict_note

    model = notes_models["medical_abstracts"]
    sentence = conformal.coverage_sentence(model.meta["conformal"])
    check = model.meta["conformal"]["held_out_check"]
    assert f"{check['coverage']:.0%} of held-out notes" in sentence and "10th to 90th percentile" in sentence
    assert "at least" not in sentence
    prediction = predict_note(model, "Patients with chronic heart failure and reduced ejection fraction were "
                                     "followed for two years after the infarction.")
    assert prediction.coverage == sentence


def test_refitting_a_models_sets_uses_the_rule_and_makes_a_new_version(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from medcore.training.train_notes import refit_prediction_sets

    folder = tmp_path / "model"
    shutil.copytree(Path(__file__).resolve().parents[1] / "assets" / "models" / "notes_medical_abstracts", folder)
    meta = json.loads((folder / "meta.json").read_text())
    stored = np.load(folder / "validation.npz")
    meta["conformal"] = {**meta["conformal"], "level": 0.9, "quantiles": conformal.class_quantiles(
        stored["fit_prob"], stored["fit_y"].astype(int), len(meta["labels"]), 0.9).round(6).tolist()}
    meta["version"] = meta["version"].split("-sets")[0]
    (folder / "meta.json").write_text(json.dumps(meta))
    record = refit_prediction_sets(folder, "medcore prediction-sets-refit notes --model X")
    refitted = json.loads((folder / "meta.json").read_text())
    assert record["level"] > 0.9 and record["refit"]["previous_level"] == 0.9
    assert refitted["version"] == meta["version"] + f"-sets{round(record['level'] * 100)}"
    assert f"at level {record['level']:.2f}" in (folder / "model_card.md").read_text()
