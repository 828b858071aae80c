"""Paths and limits in one place, each overridable by an environment variable (MEDCORE_*).

Nothing else in the package reads the environment, so a test or a deployment changes behaviour
by setting a variable, never by editing code.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent


def _path(var: str, default: Path) -> Path:
    return Path(os.environ.get(var, str(default))).expanduser()


def data_dir() -> Path:
    """Where the labelled training data lives (read-only; never copied into the repo)."""
    return _path("MEDCORE_DATA_DIR", REPO_ROOT.parent / "shared" / "data")


def store_dir() -> Path:
    """One directory for everything the app writes: registry and model versions, jobs, users, audit log, caches."""
    path = _path("MEDCORE_STORE_DIR", REPO_ROOT / "medcore_store")
    path.mkdir(parents=True, exist_ok=True)
    return path


def assets_dir() -> Path:
    """Shipped default models (trained by `medcore train`, with model cards)."""
    return _path("MEDCORE_ASSETS_DIR", REPO_ROOT / "assets")


def xray_model_dir() -> Path:
    return _path("MEDCORE_XRAY_MODEL", assets_dir() / "models" / "xray")


def _model_variable(task: str) -> str:
    return "MEDCORE_XRAY_MODEL" if task == "xray" else f"MEDCORE_{task.upper()}_MODEL"


def explicit_model_dir(task: str) -> Path | None:
    """A model folder pinned by the environment (bypasses the registry), or None."""
    value = os.environ.get(_model_variable(task))
    return Path(value).expanduser() if value else None


# Upload limits. A chest radiograph DICOM is typically 5-30 MB; anything far larger is refused
# before it is decoded, and a decoded image may not exceed MAX_PIXELS (decompression bombs).
MAX_UPLOAD_BYTES = int(os.environ.get("MEDCORE_MAX_UPLOAD_MB", "64")) * 1024 * 1024
MAX_PIXELS = int(os.environ.get("MEDCORE_MAX_PIXELS", str(50_000_000)))
MIN_SIDE = 64  # smaller images carry too little detail to read a chest film

NOTES_TASKS = ("medical_abstracts", "symptom2disease")
NOTES_TASK_TITLES = {"medical_abstracts": "Condition category (5 classes, clinical text)",
                     "symptom2disease": "Disease from symptoms (24 classes, patient's words)"}


def notes_model_dir(task: str) -> Path:
    """The shipped model of a notes task (MEDCORE_NOTES_<TASK>_MODEL pins another folder)."""
    return _path(_model_variable(f"notes_{task}"), assets_dir() / "models" / f"notes_{task}")
