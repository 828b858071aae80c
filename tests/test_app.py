"""The X-ray page flow through Streamlit's AppTest: no browser, the real page script."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import signed_in_app
from tests.synthetic import chest_like, encode, noise

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def app() -> AppTest:
    at = signed_in_app("clinician")
    assert not at.exception, at.exception
    return at


def test_page_states_the_operating_threshold_and_its_validation_figures(app, xray_model):
    text = " ".join(info.value for info in app.info)
    threshold = xray_model.artifact.threshold
    assert f"Operating threshold {threshold:.1%}" in text
    assert "sensitivity" in text and "specificity" in text and xray_model.artifact.version in text


def test_uploading_a_batch_shows_results_refusals_and_a_summary(app, xray_model):
    film = encode(chest_like(xray_model.artifact.quality_reference, seed=1), "PNG")
    app.file_uploader[0].set_value([("film.png", film, "image/png"),
                                    ("noise.png", encode(noise(), "PNG"), "image/png"),
                                    ("cut.png", film[:400], "image/png")]).run()
    assert not app.exception, app.exception
    assert app.subheader[0].value.startswith("3 studies:")
    summary = app.dataframe[0].value
    assert list(summary["file"]) == ["film.png", "noise.png", "cut.png"]
    assert summary["decision"].iloc[0] in ("NORMAL", "PNEUMONIA")
    assert list(summary["decision"].iloc[1:]) == ["no prediction", "no prediction"]
    warnings = [w.value for w in app.warning]
    assert any("unlike the films the model was trained on" in w for w in warnings)
    assert any("corrupt or truncated" in w for w in warnings)
    verdicts = [e.value for e in list(app.success) + list(app.error)]
    assert any("threshold" in v for v in verdicts)


def test_file_names_are_shown_literally(app, xray_model):
    film = encode(chest_like(xray_model.artifact.quality_reference, seed=2), "PNG")
    app.file_uploader[0].set_value([("[click](javascript:alert(1)) <b>x</b>.png", film, "image/png")]).run()
    headings = [m.value for m in app.markdown if m.value.startswith("####")]
    assert headings and "\\[click\\]" in headings[0] and "\\<b\\>" in headings[0]


def test_a_page_run_does_not_reset_keras_under_other_sessions(app, monkeypatch):
    """Streamlit resets Keras after every script run unless app.py stops it: the reset throws away TensorFlow's
    compiled kernels while other sessions' threads run the shared models (benchmarks/concurrency.py: 2 to 4 times
    slower studies under load)."""
    import keras
    from streamlit.runtime.scriptrunner import script_runner

    resets = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: resets.append(1))
    script_runner._clean_problem_modules()  # what Streamlit calls after each run
    app.run()
    assert not app.exception and resets == []


def test_occlusion_beside_gradcam_on_demand(app, xray_model):
    film = encode(chest_like(xray_model.artifact.quality_reference, seed=1), "PNG")
    app.file_uploader[0].set_value([("film.png", film, "image/png")]).run()
    check = next(b for b in app.button if "occlusion" in b.label)
    check.click().run()
    assert not app.exception, app.exception
    said = " ".join(m.value for m in [*app.success, *app.warning])
    assert "The two methods" in said
    assert [m.label for m in app.metric] == ["Rank correlation", "Top 10 % shared"]
    assert -1.0 <= float(app.metric[0].value) <= 1.0
