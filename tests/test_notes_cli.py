"""The notes command line and service on the shipped models."""

import json
from pathlib import Path

import pytest

from medcore.notes.explain import ExplanationCache
from medcore.notes.service import analyse_note, predict_note
from tests.synthetic import write_notes_csv
from tests.test_cli import medcore

NOTE = ("I have a high fever, chills and I sweat a lot at night. My muscles ache, I vomit and feel very "
        "weak, and I have a bad headache.")


def test_predict_notes_prints_classes_and_top_words():
    done = medcore("predict", "notes", "--task", "symptom2disease", "--text", NOTE, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["top"]) == 3 and result["prediction"] == result["top"][0]["label"]
    assert sum(t["probability"] for t in result["top"]) <= 1.0 + 1e-6
    assert len(result["attributions"]) == 10 and all(w["word"] in NOTE.lower() for w in result["attributions"])


def test_predict_notes_explains_an_empty_note():
    done = medcore("predict", "notes", "--task", "medical_abstracts", "--text", "   ", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"error": "The note is empty."}


def test_evaluate_notes_reports_macro_f1_per_class(tmp_path, notes_models):
    labels = notes_models["symptom2disease"].labels
    write_notes_csv(tmp_path / "test.csv", [(labels[0], "my skin has red scaly itchy patches on the elbows"),
                                            (labels[1], "my joints are stiff and swollen in the morning"),
                                            (labels[0], "")])
    done = medcore("evaluate", "notes", "--task", "symptom2disease", "--data", str(tmp_path / "test.csv"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["n"] == 2 and result["dropped_rows"] == 1
    assert set(result["per_class_f1"]) == set(labels) and 0 <= result["macro_f1"] <= 1
    write_notes_csv(tmp_path / "bad.csv", [("Not a disease", "text")])
    done = medcore("evaluate", "notes", "--task", "symptom2disease", "--data", str(tmp_path / "bad.csv"), "--json")
    assert done.returncode == 2 and "labels the model does not know" in done.stderr


def test_page_service_audits_without_the_note_text(notes_models):
    from medcore import audit, config

    cache = ExplanationCache()
    model = notes_models["symptom2disease"]
    prediction, attribution, error = analyse_note(model, NOTE + " Patient: John Smith", cache, "dr_notes")
    assert error is None and attribution.values.shape[0] == len(prediction.note.tokens)
    _, _, error = analyse_note(model, "", cache, "dr_notes")
    assert error == "The note is empty."
    rows = [r for r in audit.recent() if r["user"] == "dr_notes"]
    assert [r["outcome"] for r in rows] == ["rejected", prediction.ranked(1)[0][0]]
    assert json.loads(rows[1]["detail"])["explanation"] == "shap"
    database = b"".join(f.read_bytes() for f in config.store_dir().glob("medcore.sqlite*"))  # with the WAL
    assert json.loads(rows[1]["detail"])["note"].encode() in database and b"John Smith" not in database


def test_shipped_models_predict_sensible_classes(notes_models):
    ranked = predict_note(notes_models["symptom2disease"],
                          "I have been coughing a lot, wheezing, and I get short of breath at night").ranked(3)
    assert "Bronchial Asthma" in [label for label, _ in ranked]
    cardio = predict_note(notes_models["medical_abstracts"], "Acute myocardial infarction and coronary artery "
                          "stenosis treated by angioplasty; left ventricular ejection fraction improved.")
    assert cardio.ranked(1)[0][0] == "cardiovascular diseases"


@pytest.mark.shared_data
@pytest.mark.parametrize("task", ["medical_abstracts", "symptom2disease"])
def test_shipped_notes_models_reproduce_their_validation_metrics(task, notes_models, notes_dir, tmp_path):
    """The recorded validation split, rebuilt from the seed, gives the recorded macro-F1."""
    from medcore.metrics import multiclass_metrics
    from medcore.notes.data import read_labelled_notes, split_notes
    from medcore.notes.service import evaluate_csv

    model = notes_models[task]
    csv = notes_dir / f"{task}_train.csv"
    data = read_labelled_notes(csv)
    assert data.fingerprint == model.meta["data"]["fingerprint"]
    options = model.meta["options"]
    _, val_idx = split_notes(data.labels, options["val_fraction"], options["seed"])
    write_notes_csv(tmp_path / "val.csv", [(data.label_names[data.labels[i]], " ".join(data.words[i]))
                                           for i in val_idx])
    result = evaluate_csv(model, tmp_path / "val.csv")
    recorded = model.meta["metrics"]["validation"]
    assert result["n"] == recorded["n"]
    if model.figures_are_out_of_fold:
        # Refitted on every note, so the served model has seen the validation notes: their recorded figures are the
        # out-of-fold predictions (stored for the performance page), and the served model does at least as well.
        stored = model.validation_predictions()
        assert list(stored["y_true"]) == [data.labels[i] for i in val_idx]
        assert multiclass_metrics(stored["y_true"], stored["prob"], model.labels)["macro_f1"] == pytest.approx(
            recorded["macro_f1"], abs=1e-6)
        assert result["macro_f1"] >= recorded["macro_f1"] - 0.005
    else:
        assert result["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=1e-6)
    # The shipped model may not fall clearly below the tuned baseline on the same notes (on medical_abstracts the two
    # tie: logistic regression is what cross-validation chose, over the MLP).
    assert result["macro_f1"] >= model.meta["metrics"]["baseline_validation"]["macro_f1"] - 0.01


def test_an_older_model_without_sets_says_uncertain_below_its_confidence_threshold(notes_models):
    import copy

    model = copy.copy(notes_models["symptom2disease"])
    for threshold, finding in ((0.0, "most likely"), (0.9999, "uncertain")):
        model.meta = {**{k: v for k, v in model.meta.items() if k != "conformal"},
                      "confidence": {"threshold": threshold, "precision": 0.9, "coverage": 0.5, "min_precision": 0.9}}
        prediction = predict_note(model, NOTE)
        assert prediction.finding == finding and prediction.certain == (finding == "most likely")
        assert prediction.prediction_set is None


def test_predict_notes_json_says_which_finding_applies():
    done = medcore("predict", "notes", "--task", "medical_abstracts", "--text",
                   "Patient reports tiredness and some pain for two weeks.", "--json")
    result = json.loads(done.stdout)
    sets = json.loads((Path(__file__).resolve().parents[1] / "assets" / "models" / "notes_medical_abstracts" / "meta.json").read_text())["conformal"]
    assert result["level"] == sets["level"] == 0.92 and result["prediction_set"][0] == result["prediction"]
    assert result["coverage"] == sets["held_out_check"]["coverage"] and len(result["coverage_range"]) == 2
    expected = (f"most likely {result['prediction']}" if len(result["prediction_set"]) == 1
                else "one of " + ", ".join(result["prediction_set"]))
    assert result["finding"] == expected
