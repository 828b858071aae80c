"""View helpers shared by the pages: cached model loading and the signed-in user."""

from __future__ import annotations

import streamlit as st

from medcore.imaging.service import LoadedXrayModel, load_xray_model


@st.cache_resource(show_spinner="Loading the chest X-ray model…")
def xray_model() -> LoadedXrayModel:
    """Loaded once per server process and shared read-only by every session."""
    return load_xray_model()


def current_user() -> str:
    return st.session_state.get("user", "anonymous")


_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:")


def escape_markdown(text: str) -> str:
    """User-supplied text (a file name) shown literally: no links, no markup, no HTML."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)


@st.cache_resource(show_spinner="Loading the case-note model…")
def notes_model(task: str):
    from medcore.notes.service import load_task_model

    return load_task_model(task)
