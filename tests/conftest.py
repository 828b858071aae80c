"""Shared fixtures: an isolated store per test session, the shipped model, and the shared data."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

# Tests never write into the developer's store or database; set before medcore reads the environment.
os.environ.setdefault("MEDCORE_STORE_DIR", tempfile.mkdtemp(prefix="medcore-test-store-"))
for _variable in ("MEDCORE_DATABASE_URL", "MEDCORE_JOB_QUEUE", "MEDCORE_SHARED_DIR", "MEDCORE_DATA_ROOTS"):
    os.environ.pop(_variable, None)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from medcore import config  # noqa: E402


ENGINES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc):
    """Tests marked `both_engines` run once per store engine: every guarantee of the store holds on both."""
    if "store" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_engines"):
        metafunc.parametrize("store", ENGINES, indirect=True)


def postgres_url() -> str | None:
    """A PostgreSQL server the tests may create databases on (.ci/postgres start prints it)."""
    return os.environ.get("MEDCORE_TEST_POSTGRES_URL") or None


@contextmanager
def new_postgres_database():
    """A new, empty database on the test server for one test (dropped afterwards); yields its URL."""
    import secrets

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = make_url(postgres_url()).set(drivername="postgresql+psycopg")
    name = f"medcore_test_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name, drivername="postgresql").render_as_string(hide_password=False)
    finally:
        from medcore import store as medcore_store

        medcore_store.forget_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture()
def store(request, tmp_path, monkeypatch):
    """A new store of its own for one test, with the shipped models installed as at the app's first start:
    SQLite in the store folder, or (for tests marked both_engines, second run) a new PostgreSQL database."""
    from medcore import registry

    engine = getattr(request, "param", "sqlite")
    monkeypatch.setenv("MEDCORE_STORE_DIR", str(tmp_path / "store"))
    if engine == "sqlite":
        monkeypatch.delenv("MEDCORE_DATABASE_URL", raising=False)
        registry.ensure_defaults()
        yield tmp_path / "store"
        return
    if postgres_url() is None:
        pytest.skip("no PostgreSQL for tests: run `eval $(.ci/postgres start)` (CI's .ci/run does)")
    with new_postgres_database() as url:
        monkeypatch.setenv("MEDCORE_DATABASE_URL", url)
        registry.ensure_defaults()
        yield tmp_path / "store"


@pytest.fixture()
def tmp_data_roots(monkeypatch, tmp_path_factory):
    """The data roots (MEDCORE_DATA_ROOTS) widened to this session's temporary folders: a job reads only under the
    roots (or its own upload), whoever starts it, and the tests' data sets are written there."""
    roots = [str(config.data_dir()), str(tmp_path_factory.getbasetemp())]
    monkeypatch.setenv("MEDCORE_DATA_ROOTS", os.pathsep.join(roots))
    return roots


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


CHROMIUM = Path("/usr/bin/chromium")  # Debian's; never `playwright install`


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for the browser tests of one module (tests/test_e2e.py, test_pacs_e2e.py,
    test_multiserver.py)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()
