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
