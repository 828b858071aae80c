"""Backup and restore (issue 34): a backup restored elsewhere gives the same service, on SQLite and PostgreSQL; a
damaged backup, a non-empty target, a newer schema and a missing installation secret are refused before anything
is written; a backup taken while the app writes is consistent."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select, text

from medcore import audit, auth, backup, jobs, keyed, registry, tasks
from medcore import store as database
from medcore.backup import manifest as backup_manifest
from medcore.jobs import store as job_store
from medcore.store import schema
from tests.conftest import new_postgres_database, postgres_url
from tests.test_registry import retrained_copy

OPERATOR = auth.operator("cli:tests")


def _candidate(tmp_path: Path, version: str) -> str:
    return retrained_copy("xray", tmp_path, version).version  # the registry tests' candidate


def _fill(tmp_path: Path) -> str:
    """Users, an audited prediction, a promoted version, a finished job with a log, a keyed digest; the digest."""
    auth.add_user("chief", "a long secret phrase", "admin", "tests")
    auth.add_user("dr.lee", "another long phrase", "clinician", "tests")
    version = _candidate(tmp_path, "xray-backup-candidate")
    registry.promote("xray", version, OPERATOR)
    audit.record("dr.lee", "predict_xray", "PNEUMONIA", version, study="0123456789abcdef", source="upload",
                 probability=0.91)
    job_id = job_store._record("xray", tmp_path, "a data set", {}, "chief")
    job_store.add_event(job_id, {"stage": "done"})
    job_store.finish(job_id, "succeeded", version=version)
    job_store.job_folder(job_id).mkdir(parents=True)
    (job_store.job_folder(job_id) / "log.txt").write_text("epoch 1\n")
    return keyed.digest("patient", "PATIENT-0001")  # the store is now used with an installation secret


def _service() -> dict:
    """What a user of the restored store sees: accounts, production, the registry, jobs, the audit log."""
    with database.read() as connection:
        users = [dict(r._mapping) for r in connection.execute(select(schema.users).order_by(schema.users.c.name))]
        audit_rows = [dict(r._mapping) for r in connection.execute(select(schema.audit).order_by(schema.audit.c.id))]
    return {"users": users, "audit": audit_rows,
            "production": {task: registry.production(task).version for task in tasks.KEYS},
            "versions": {task: [(v.version, v.status, v.manifest) for v in registry.list_versions(task)]
                         for task in tasks.KEYS},
            "history": registry.history("xray"),
            "jobs": [(j.id, j.status, j.candidate_version, jobs.events(j.id)) for j in jobs.list_jobs()]}


@contextmanager
def _elsewhere(tmp_path: Path, name: str):
    """A new, empty store of the same engine as the current one (a new folder; a new database on PostgreSQL)."""
    import os

    saved = {key: os.environ.get(key) for key in ("MEDCORE_STORE_DIR", "MEDCORE_DATABASE_URL")}
    database.forget_engines()
    os.environ["MEDCORE_STORE_DIR"] = str(tmp_path / name)
    try:
        if saved["MEDCORE_DATABASE_URL"]:
            with new_postgres_database() as url:
                os.environ["MEDCORE_DATABASE_URL"] = url
                yield tmp_path / name
        else:
            yield tmp_path / name
    finally:
        database.forget_engines()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.both_engines
def test_a_restored_store_gives_the_same_service(store, tmp_path):
    digest = _fill(tmp_path)
    before = _service()
    without_secret = backup.create(tmp_path / "backup")
    assert without_secret["secret_required"] and not without_secret["warnings"]
    with_secret = backup.create(tmp_path / "backup-with-secret", include_secret=True)
    with _elsewhere(tmp_path, "restored") as target:
        with pytest.raises(backup.BackupError, match="installation secret"):
            backup.restore(tmp_path / "backup")  # refused before anything is written
        assert not (target / "models").exists()
        result = backup.restore(tmp_path / "backup-with-secret")
        assert result["files_verified"] == with_secret["files"] and result["secret"] == "restored"
        assert _service() == before
        registry.verify(registry.production("xray"))  # the promoted version's files, checked
        assert keyed.digest("patient", "PATIENT-0001") == digest  # sealed values and signatures still readable
        assert (target / "jobs" / jobs.list_jobs()[0].id / "log.txt").read_text() == "epoch 1\n"
        assert auth.authenticate("chief", "a long secret phrase", "ip:desk")[0].is_admin
        with pytest.raises(Exception, match="append-only"):  # the triggers came back with the tables
            with database.write() as connection:
                connection.execute(text("DELETE FROM audit"))
        audit.record("dr.lee", "sign_in", "success")  # ids go on after the restored ones
        with pytest.raises(backup.BackupError, match="not empty"):
            backup.restore(tmp_path / "backup-with-secret")


def test_a_damaged_backup_is_refused_with_a_clear_message(store, tmp_path):
    registry.promote("xray", _candidate(tmp_path, "xray-damaged"), OPERATOR)
    made = backup.create(tmp_path / "backup")
    weights = next(Path(tmp_path / "backup" / "models" / "xray").rglob("model.keras"))
    intact = weights.read_bytes()
    weights.write_bytes(intact[:-10] + b"0123456789")
    with _elsewhere(tmp_path, "restored") as target:
        with pytest.raises(backup.BackupError, match=r"damaged: models/xray/.*/model.keras \(checksum differs\)"):
            backup.restore(tmp_path / "backup")
        assert not (target / database.SQLITE_FILE).exists() and not (target / "models").exists()
        weights.write_bytes(intact)
        (tmp_path / "backup" / "extra.txt").write_text("slipped in")
        with pytest.raises(backup.BackupError, match=r"extra.txt \(not in the manifest\)"):
            backup.restore(tmp_path / "backup")
        (tmp_path / "backup" / "extra.txt").unlink()
        manifest = tmp_path / "backup" / backup_manifest.MANIFEST
        manifest.write_text(manifest.read_text().replace(made["revision"], "0001", 1))
        with pytest.raises(backup.BackupError, match="manifest does not match"):
            backup.restore(tmp_path / "backup")
        assert not (target / "models").exists()


def test_a_restore_is_refused_from_a_newer_schema_and_into_a_non_empty_store(store, tmp_path):
    backup.create(tmp_path / "backup")
    with pytest.raises(backup.BackupError, match="not empty"):
        backup.restore(tmp_path / "backup")  # into the store it came from
    with pytest.raises(backup.BackupError, match="not an empty folder"):
        backup.create(tmp_path / "backup")  # never over another backup
    folder = tmp_path / "backup"
    data = json.loads((folder / backup_manifest.MANIFEST).read_text())
    data["revision"] = "9999"
    backup_manifest.write(folder, backup_manifest.Manifest(**data))
    with _elsewhere(tmp_path, "restored"):
        with pytest.raises(backup.BackupError, match="newer MedCore"):
            backup.restore(folder)


@pytest.mark.both_engines
def test_a_backup_taken_while_the_app_writes_is_consistent(store, tmp_path):
    """Audit rows written throughout the backup: the copy is one snapshot (its row counts, recorded in the manifest,
    are those the restore finds)."""
    stop, written = threading.Event(), []

    def keep_writing() -> None:
        while not stop.is_set():
            audit.record("someone", "sign_in", "success")
            written.append(1)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        made = backup.create(tmp_path / "backup")
    finally:
        stop.set()
        writer.join()
    assert written and 0 <= made["rows"]["audit"] <= len(written) + 10
    with _elsewhere(tmp_path, "restored"):
        assert backup.restore(tmp_path / "backup")["rows"]["audit"] == made["rows"]["audit"]
        assert len(audit.recent(100_000)) == made["rows"]["audit"]


def test_the_command_line_backs_up_and_restores_a_store_with_a_user_and_a_prediction(tmp_path):
    """What the issue's check does on a fresh clone: `medcore backup create`, then `restore` into an empty store."""
    import os

    environment = {k: v for k, v in os.environ.items() if k != "MEDCORE_DATABASE_URL"}
    source = {**environment, "MEDCORE_STORE_DIR": str(tmp_path / "source")}
    target = {**environment, "MEDCORE_STORE_DIR": str(tmp_path / "target")}

    def medcore(env: dict, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "medcore.cli", *args], env=env, capture_output=True, text=True,
                              timeout=300)

    subprocess.run([sys.executable, "-c", "from medcore import audit, auth, registry; registry.ensure_defaults(); "
                    "auth.add_user('chief', 'a long phrase!', 'admin', 'tests'); "
                    "audit.record('chief', 'predict_xray', 'NORMAL', registry.production('xray').version, "
                    "study='feedfacefeedface', probability=0.1)"], env=source, check=True, timeout=300)
    made = medcore(source, "backup", "create", str(tmp_path / "backup"))
    assert made.returncode == 0, made.stderr[-2000:]
    restored = medcore(target, "backup", "restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr[-2000:]
    rows = json.loads(restored.stdout)["rows"]
    assert rows == json.loads(made.stdout)["rows"] and rows["users"] == 1 and rows["audit"] == 1
    assert json.loads(medcore(target, "users", "list").stdout)["users"] == [
        {"name": "chief", "role": "admin", "disabled": False}]
    again = medcore(target, "backup", "restore", str(tmp_path / "backup"))
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.skipif(postgres_url() is None, reason="no PostgreSQL for tests")
def test_a_sqlite_backup_is_not_restored_into_postgresql(store, tmp_path):
    backup.create(tmp_path / "backup")
    with new_postgres_database() as url, pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDCORE_DATABASE_URL", url)
        patch.setenv("MEDCORE_STORE_DIR", str(tmp_path / "restored"))
        database.forget_engines()
        with pytest.raises(backup.BackupError, match="same engine"):
            backup.restore(tmp_path / "backup")
