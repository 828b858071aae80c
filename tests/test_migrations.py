"""Schema upgrades from every earlier Alembic revision with data in it (issue 34), on SQLite and PostgreSQL: a store
left at any revision opens at the head with its rows, and a backup made at an older revision restores into a
store at the head. (A store from before the first revision, four SQLite files, is tests/test_store.py's.)"""

from __future__ import annotations

import functools
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, func, select, text
from sqlalchemy.engine import make_url

from medcore import auth, backup, keyed
from medcore import store as database
from medcore.store import migrations, schema
from tests.conftest import new_postgres_database, postgres_url

EARLIER = [s.revision for s in reversed(list(ScriptDirectory(str(migrations.FOLDER)).walk_revisions()))][:-1]
NOW = time.time()
SOP, STUDY, SERIES = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3"
ROWS = {  # one row per table, written with the columns the table has at the revision under test
    "users": {"name": "chief", "role": "admin", "password_hash": None, "created_at": NOW, "created_by": "tests"},
    "versions": {"task": "xray", "version": "xray-old", "folder": "models/xray/xray-old", "created_at": NOW,
                 "created_by": "system", "origin": "shipped", "manifest": "{}", "summary": "{}"},
    "production": {"task": "xray", "version": "xray-old"},
    "promotions": {"task": "xray", "version": "xray-old", "previous": None, "at": NOW, "actor": "system",
                   "action": "install shipped model"},
    "sign_in_failures": {"client": "ip:10.0.0.9", "name": "chief", "at": NOW},
    "jobs": {"id": "job-20260101-000000-abcdef", "task": "xray", "data_path": "/data", "data_label": "data",
             "options": "{}", "status": "succeeded", "created_by": "chief", "created_at": NOW, "finished_at": NOW,
             "cancel_requested": False, "candidate_version": "xray-old"},
    "job_events": {"job_id": "job-20260101-000000-abcdef", "at": NOW, "event": '{"stage": "done"}'},
    "audit": {"at": NOW, "user": "chief", "action": "predict_xray", "outcome": "NORMAL", "detail": "{}"},
    "known_clients": {"name": "chief", "client": "ip:desk", "last_success_at": NOW},
    "pacs_studies": {"study_key": "k" * 64, "model_version": "xray-old", "status": "done",
                     "outcome": "reported before", "probability": None, "attempts": 1},
    "pacs_state": {"key": "watch_first_day", "value": "2026-01-01"},
    "pacs_feedback": {"sop_instance_uid": SOP, "study_uid": STUDY, "series_uid": SERIES, "label": "PNEUMONIA",
                      "actor": "dr.lee", "at": NOW},
    "lockbox_films": {"film": "f" * 64, "model_version": "xray-old", "part": "choosing", "at": NOW,
                      "command": "medcore lockbox", "forced": False, "actor": "chief"},
}


@contextmanager
def _store_at(revision: str, engine_name: str, folder: Path):
    """A store migrated to `revision` only, with ROWS in it; yields after pointing MEDCORE_* at it."""
    saved = {key: os.environ.get(key) for key in ("MEDCORE_STORE_DIR", "MEDCORE_DATABASE_URL")}
    os.environ["MEDCORE_STORE_DIR"] = str(folder)
    database.forget_engines()
    try:
        if engine_name == "sqlite":
            os.environ.pop("MEDCORE_DATABASE_URL", None)
            _fill_at(revision, database._sqlite_engine(database.database_url()))
            yield
        else:
            if postgres_url() is None:
                pytest.skip("no PostgreSQL for tests: run `eval $(.ci/postgres start)` (CI's .ci/run does)")
            with new_postgres_database() as url:
                os.environ["MEDCORE_DATABASE_URL"] = url
                _fill_at(revision, create_engine(make_url(database.database_url())))
                yield
    finally:
        database.forget_engines()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def _fill_at(revision: str, engine) -> None:
    Path(os.environ["MEDCORE_STORE_DIR"]).mkdir(parents=True, exist_ok=True)
    with engine.connect().execution_options(medcore_write=True) as connection:
        command.upgrade(migrations._config(connection), revision)
        connection.commit()
        tables = MetaData()
        tables.reflect(connection)
        for name, row in _rows_at(revision, connection).items():
            if name in tables.tables:
                table = tables.tables[name]
                values = {**row, "password_hash": _password_hash()} if name == "users" else row
                connection.execute(table.insert().values({k: v for k, v in values.items() if k in table.c}))
        connection.commit()
    engine.dispose()


def _rows_at(revision: str, connection) -> dict[str, dict]:
    """ROWS as the code of `revision` wrote them: from 0007 on, a confirmation keeps a keyed digest of the film and
    its UIDs sealed, never the UIDs in clear."""
    if revision < "0007":
        return ROWS
    feedback = {"film_key": keyed.digest("film", SOP, connection),  # on the fill's own connection (one writer)
                "sealed_uids": keyed.seal(json.dumps([STUDY, SERIES, SOP]), connection),
                "label": "PNEUMONIA", "actor": "dr.lee", "at": NOW}
    return {**ROWS, "pacs_feedback": feedback}


@functools.lru_cache(maxsize=1)
def _password_hash() -> str:
    return auth.hash_password("a long secret phrase")


def _count(table) -> int:
    with database.read() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar()


@pytest.mark.parametrize("engine_name", ["sqlite", "postgresql"])
@pytest.mark.parametrize("revision", EARLIER)
def test_a_store_at_every_earlier_revision_upgrades_with_its_data(revision, engine_name, tmp_path):
    with _store_at(revision, engine_name, tmp_path / "store"):
        database.engine()  # the first use migrates to the head
        with database.read() as connection:
            assert migrations.current(connection) == migrations.head()
        for name in ("users", "versions", "production", "promotions", "sign_in_failures", "jobs", "job_events",
                     "audit"):
            assert _count(schema.metadata.tables[name]) == 1, name
        assert auth.authenticate("chief", "a long secret phrase", "ip:desk")[0].is_admin
        with database.read() as connection:
            job = connection.execute(select(schema.jobs)).one()
        assert job.status == "succeeded" and job.owns_upload is False  # a column added later, its default
        if revision >= "0005":  # carried over keyed and sealed (0007)
            with database.read() as connection:
                feedback = connection.execute(select(schema.pacs_feedback)).one()
                study = connection.execute(select(schema.pacs_studies)).one()
            assert feedback.film_key == keyed.digest("film", SOP) and STUDY in keyed.unseal(feedback.sealed_uids)
            if revision < "0007":  # 0007 itself sends them back; a later row is the code's own
                assert study.status == "retry"  # "reported before" without a figure is examined again
        if revision >= "0006":
            assert _count(schema.lockbox_films) == 1
        with pytest.raises(Exception, match="append-only"):
            with database.write() as connection:
                connection.execute(text("DELETE FROM audit"))


def test_a_backup_made_at_an_older_revision_restores_at_the_head(tmp_path):
    with _store_at("0004", "sqlite", tmp_path / "old"):
        made = backup.create(tmp_path / "backup")
    assert made["revision"] == "0004" and made["rows"]["audit"] == 1
    with _store_at_nothing(tmp_path / "new"):
        restored = backup.restore(tmp_path / "backup")
        assert (restored["revision_in_backup"], restored["revision"]) == ("0004", migrations.head())
        assert _count(schema.audit) == 1 and _count(schema.known_clients) == 1 and _count(schema.lockbox_films) == 0
        assert auth.get_user("chief").is_admin


@contextmanager
def _store_at_nothing(folder: Path):
    saved = os.environ.get("MEDCORE_STORE_DIR")
    os.environ["MEDCORE_STORE_DIR"] = str(folder)
    database.forget_engines()
    try:
        yield
    finally:
        database.forget_engines()
        os.environ["MEDCORE_STORE_DIR"] = saved
