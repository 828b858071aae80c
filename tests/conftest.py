"""Shared fixtures: an isolated store per test session, the shipped model, and the shared data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests never write into the developer's store; set before medcore reads the environment.
os.environ.setdefault("MEDCORE_STORE_DIR", tempfile.mkdtemp(prefix="medcore-test-store-"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from medcore import config  # noqa: E402


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A new store of its own for one test, with the shipped models installed as at the app's first start."""
    from medcore import registry

    monkeypatch.setenv("MEDCORE_STORE_DIR", str(tmp_path / "store"))
    registry.ensure_defaults()
    return tmp_path / "store"


@pytest.fixture(scope="session")
def xray_model():
    """The shipped default model, loaded once."""
    from medcore.imaging.service import load_xray_model

    return load_xray_model()


@pytest.fixture(scope="session")
def xray_train_dir() -> Path:
    path = config.data_dir() / "chest_xray" / "train"
    if not path.is_dir():
        pytest.skip(f"shared data not available at {path}")
    return path


@pytest.fixture(scope="session")
def notes_models():
    """The shipped case-note models, loaded once, by the name their folders record (e.g. medical_abstracts)."""
    from medcore import tasks

    return {task.name: task.load(task.shipped_dir) for task in tasks.notes_tasks()}


@pytest.fixture(scope="session")
def notes_dir() -> Path:
    path = config.data_dir() / "case_notes"
    if not path.is_dir():
        pytest.skip(f"shared data not available at {path}")
    return path


PASSWORDS = {"clinician": "correct horse battery", "admin": "staple admin battery"}


def ensure_user(name: str, role: str) -> None:
    """An account in the test store (created once; bcrypt makes this take a moment)."""
    from medcore import auth

    if auth.get_user(name) is None:
        auth.add_user(name, PASSWORDS[role], role, "tests")


def signed_in_app(role: str = "clinician", page: str | None = None):
    """AppTest of app.py for a signed-in user of `role`, optionally switched to a page."""
    import time

    from streamlit.testing.v1 import AppTest

    name = f"test-{role}"
    ensure_user(name, role)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.session_state["auth"] = {"name": name, "signed_in_at": time.time(), "last_seen": time.time()}
    at.run()
    if page:
        at.switch_page(page).run()
    return at
