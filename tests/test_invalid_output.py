"""L3 (issue 21): a model that outputs NaN gives an error and an incident, never "probability nan, decision NORMAL";
the audit row says so, and figures refuse to be computed from it."""

from __future__ import annotations

import numpy as np
import pytest

from medcore import audit, tasks
from medcore.imaging.service import InvalidModelOutput, analyse_uploads, load_xray_model, score_files
from medcore.notes.explain import ExplanationCache
from medcore.notes.service import analyse_note
from tests.synthetic import chest_like, encode


@pytest.fixture()
def broken_xray_model():
    model = load_xray_model()  # its own copy: the shared fixture stays intact
    weights = model.artifact.network.get_weights()
    weights[-1] = np.full_like(weights[-1], np.nan)  # a head bias: a NaN before a ReLU would be absorbed
    model.artifact.network.set_weights(weights)
    return model


def test_a_nan_model_gives_no_decision_on_a_film(store, broken_xray_model, tmp_path):
    film = encode(chest_like(broken_xray_model.artifact.quality_reference, 512, 512, seed=2), "PNG")
    (result,) = analyse_uploads(broken_xray_model, [("film.png", film)], {}, "dr.nan")
    assert result.probability is None and result.decision is None and not result.flagged
    assert "no valid output" in result.error and "Incident" in result.error
    assert result.as_dict() == {"error": result.error, "decision": None}
    rows = audit.recent(5)
    assert [r["outcome"] for r in rows if r["action"] == "predict_xray"] == ["invalid model output"]
    assert any(r["action"] == "incident" for r in rows)
    path = tmp_path / "film.png"
    path.write_bytes(film)
    with pytest.raises(InvalidModelOutput, match="no finite output"):
        score_files(broken_xray_model, [path])


def test_a_nan_notes_model_names_no_class(store):
    task = tasks.get("notes_symptom2disease")
    model = task.load(task.shipped_dir)
    weights = model.network.get_weights()
    weights[-1] = np.full_like(weights[-1], np.nan)
    model.network.set_weights(weights)
    prediction, attribution, error = analyse_note(model, "fever, cough and chills for three days", ExplanationCache(1),
                                                  "dr.nan")
    assert prediction is None and attribution is None and "no valid output" in error
    assert audit.recent(5)[0]["outcome"] == "invalid model output"
