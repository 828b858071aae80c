"""The Case notes page flow through Streamlit's AppTest."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import signed_in_app

REPO = Path(__file__).resolve().parents[1]
NOTE = ("I have a high fever, chills and I sweat a lot at night. My muscles ache, I vomit and feel very weak. "
        '<script>alert("x")</script>')


@pytest.fixture()
def notes_page() -> AppTest:
    at = signed_in_app("clinician", "views/notes.py")
    assert not at.exception, at.exception
    return at


def _html(at: AppTest) -> str:
    return " ".join(str(getattr(element, "proto", element)) for element in at.get("html"))


def test_note_gets_classes_bars_and_escaped_coloured_words(notes_page):
    notes_page.selectbox[0].select("symptom2disease").run()
    notes_page.text_area[0].input(NOTE)
    notes_page.button[0].click().run()
    assert not notes_page.exception, notes_page.exception
    assert notes_page.subheader[0].value.startswith("Most likely:")
    assert "baseline" in notes_page.caption[0].value
    html = _html(notes_page)
    assert "SHAP" in html and "rgba(" in html
    assert "<script>" not in html and "&lt;" in html
    explained = notes_page.selectbox[1]
    assert len(explained.options) == 24
    explained.select_index(1).run()  # switching the explained class re-renders without recomputing
    assert not notes_page.exception


@pytest.mark.parametrize("text, message", [("   ", "The note is empty."), ("!!! ... ???", "no words")])
def test_unusable_notes_get_a_clear_message(notes_page, text, message):
    notes_page.text_area[0].input(text)
    notes_page.button[0].click().run()
    assert any(message in e.value for e in notes_page.error)


def test_lime_beside_shap_on_demand(notes_page):
    notes_page.selectbox[0].select("symptom2disease").run()
    notes_page.text_area[0].input(NOTE)
    notes_page.button[0].click().run()
    tables = len(notes_page.dataframe)
    lime = next(b for b in notes_page.button if "LIME" in b.label)
    lime.click().run()
    assert not notes_page.exception, notes_page.exception
    said = " ".join(m.value for m in [*notes_page.success, *notes_page.warning])
    assert "SHAP and LIME share" in said
    assert len(notes_page.dataframe) == tables + 2  # the two top-word lists side by side
    lime_words = notes_page.dataframe[-1].value
    assert list(lime_words.columns) == ["LIME top words", "weight (probability)"] and len(lime_words) >= 3
    notes_page.run()
    assert not any("LIME" in b.label for b in notes_page.button)  # kept for the session: no second click needed
    assert "SHAP and LIME share" in " ".join(m.value for m in [*notes_page.success, *notes_page.warning])


def test_sign_out_forgets_the_note_its_result_and_explanations(notes_page):
    """Sign out clears everything the session held, not only the user name: the next person at this browser sees
    a sign-in form and nothing of the note, its classes or its words."""
    notes_page.selectbox[0].select("symptom2disease").run()
    notes_page.text_area[0].input(NOTE)
    notes_page.button[0].click().run()
    assert notes_page.subheader[0].value.startswith("Most likely:")
    held = [key for key in notes_page.session_state.keys() if key != "auth"]
    assert held  # the page keeps its note and result in the session
    next(b for b in notes_page.sidebar.button if b.label == "Sign out").click().run()
    assert not notes_page.exception, notes_page.exception
    left = set(notes_page.session_state.keys())
    assert "auth" not in left and not left & set(held), left & set(held)
    shown = " ".join(str(getattr(e, "value", "")) for e in notes_page.main) + _html(notes_page)
    assert "fever" not in shown and "Most likely" not in shown
    assert any(b.label == "Sign in" for b in notes_page.button)
