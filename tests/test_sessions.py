"""M4 (issue 21): sessions end on time even when nobody clicks, and a download made on click re-checks the session
and never puts an exception's message in Streamlit's log. (The unattended page in a real browser:
tests/test_e2e.py::test_an_unattended_page_clears_itself_when_the_session_ends.)"""

from __future__ import annotations

import logging

from streamlit.testing.v1 import AppTest


def _download_in_session(idle_seconds: float, fails: bool = False) -> str:
    def script(idle_seconds: float, fails: bool) -> None:
        import time

        import streamlit as st

        from views.common import deferred_download

        now = time.time()
        st.session_state["auth"] = {"name": "dr.clock", "signed_in_at": now - idle_seconds,
                                    "last_seen": now - idle_seconds}

        def make() -> bytes:
            if fails:
                patient = "Jane" + " Doe"  # the stack's source line must not hold the name either
                raise ValueError(f"{patient}'s film could not be drawn")
            return b"%PDF the report"

        import threading

        made = []
        download = deferred_download(make, "a test report")
        # As Streamlit does when the button is clicked: on a thread of its own, outside the script run.
        clicked = threading.Thread(target=lambda: made.append(download()))
        clicked.start()
        clicked.join()
        st.text(made[0].decode("latin-1"))

    at = AppTest.from_function(script, args=(idle_seconds, fails), default_timeout=60).run()
    assert not at.exception, at.exception
    return at.text[0].value


def test_a_deferred_download_is_made_only_for_a_live_session():
    assert _download_in_session(idle_seconds=5) == "%PDF the report"
    ended = _download_in_session(idle_seconds=3 * 3600)
    assert ended.startswith("%PDF") and "the report" not in ended


def test_a_failing_download_gives_an_incident_never_the_message(caplog, store):
    from medcore import audit

    with caplog.at_level(logging.INFO):
        made = _download_in_session(idle_seconds=5, fails=True)
    assert made.startswith("%PDF") and "Jane" not in made
    incident = [row for row in audit.recent(5) if row["action"] == "incident" and row["user"] == "dr.clock"]
    assert incident and incident[0]["outcome"] == "ValueError" and "Jane" not in str(incident)
    assert "Jane" not in caplog.text


