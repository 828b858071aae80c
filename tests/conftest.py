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
    """The shipped case-note models, loaded once, by task."""
    from medcore.notes.service import load_task_model

    return {task: load_task_model(task) for task in config.NOTES_TASKS}


@pytest.fixture(scope="session")
def notes_dir() -> Path:
    path = config.data_dir() / "case_notes"
    if not path.is_dir():
        pytest.skip(f"shared data not available at {path}")
    return path
