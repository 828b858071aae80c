"""The store's guarantees, on SQLite and on PostgreSQL alike (issue 22): one schema through migrations, atomic
promotion against the expected production, an audit log that the database itself keeps append-only, a sign-in
throttle that every server shares, no transaction open during bcrypt; and an old single-machine store upgraded in
place."""

from __future__ import annotations

import json
from contextlib import closing
import shutil
import sqlite3
import subprocess
import sys
import threading
import time

import bcrypt
import pytest
from sqlalchemy import text

from medcore import audit, auth, registry, tasks
from medcore import store as database
from tests.legacy_store import write_legacy_store

pytestmark = pytest.mark.both_engines
OPERATOR = auth.operator("cli:tests")


def _candidate(tmp_path, version: str) -> str:
    folder = tmp_path / version
    shutil.copytree(tasks.get("xray").shipped_dir, folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["version"] = version
    (folder / "meta.json").write_text(json.dumps(meta))
    return registry.register("xray", folder, "tests").version


def test_the_migrated_database_is_exactly_the_declared_schema(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from medcore.store import migrations, schema

    with store_connection() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), schema.metadata)
        assert migrations.current(connection) == migrations.head()
    assert [d for d in differences if not _queue_table(d)] == []


def store_connection():
    return database.engine().connect()


def _queue_table(difference) -> bool:
    """procrastinate's own tables and their indexes (PostgreSQL only) are not ours to declare."""
    item = difference[1]
    table = getattr(item, "table", item)
    return difference[0] in ("remove_table", "remove_index") and table.name.startswith("procrastinate")


def test_two_admins_promoting_at_once_cannot_both_win(store, tmp_path):
    shipped = registry.production("xray").version
    candidates = [_candidate(tmp_path, f"xray-race-{i}") for i in range(6)]
    outcomes, barrier = [], threading.Barrier(len(candidates))

    def promote(version: str) -> None:
        barrier.wait()
        try:
            registry.promote("xray", version, OPERATOR, expected_production=shipped)
            outcomes.append(("won", version))
        except registry.RegistryError as exc:
            outcomes.append(("refused", str(exc)))

    threads = [threading.Thread(target=promote, args=(v,)) for v in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [v for kind, v in outcomes if kind == "won"]
    assert len(winners) == 1 and registry.production("xray").version == winners[0]
    assert all("changed" in message for kind, message in outcomes if kind == "refused")
    promotions = [h for h in registry.history("xray") if h["action"] == "promote"]
    assert len(promotions) == 1 and promotions[0]["previous"] == shipped  # one history row: no half state


def assert_append_only(table: str, change: str) -> None:
    """UPDATE (`change`, a SET clause), DELETE, and on PostgreSQL TRUNCATE of `table` are refused by the database
    itself: one check for every append-only table (audit, lockbox_films, access_log, pacs_feedback)."""
    statements = [f"UPDATE {table} SET {change}", f"DELETE FROM {table}"]
    statements += [f"TRUNCATE {table}"] if database.dialect() == "postgresql" else []
    for statement in statements:
        with pytest.raises(Exception, match="append-only"):
            with database.write() as connection:
                connection.execute(text(statement))


def test_the_audit_log_is_append_only_in_the_database_itself(store):
    audit.record("someone", "test", "ok")
    assert_append_only("audit", "outcome = 'changed'")
    assert audit.recent(1)[0]["outcome"] == "ok"


def test_the_sign_in_throttle_is_shared_by_every_server(store):
    """Failures recorded by one server (this process) slow the same name from the same address on another (a
    second process on the same store)."""
    auth.add_user("chief", "a long secret phrase", "admin", "tests")
    now = time.time()
    for at in [now] * auth.PAIR_FREE_FAILURES + [now + 1.01, now + 3.02, now + 7.03]:  # each after the last wait
        assert auth.authenticate("chief", "wrong guess here", "ip:10.1.1.1", at)[1] == auth.WRONG
    other_server = subprocess.run(
        [sys.executable, "-c", "from medcore import auth; print(auth.authenticate('chief', 'a long secret phrase', "
                               "'ip:10.1.1.1')[1])"], capture_output=True, text=True, timeout=120)
    assert "Too many failed sign-ins" in other_server.stdout, other_server.stderr[-2000:]


def test_no_transaction_is_open_while_bcrypt_works(store, monkeypatch):
    auth.add_user("dr.fast", "a long secret phrase", "clinician", "tests")
    real_checkpw, seen = bcrypt.checkpw, []

    def checkpw_while_another_writes(secret, hashed):
        if database.dialect() == "postgresql":  # no session of ours may sit in an open transaction now
            with database.engine().connect() as other:
                seen.append(other.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE "
                    "'idle in transaction%' AND pid <> pg_backend_pid()")).scalar())
        else:  # the write lock is free: another writer takes it at once ("database is locked" otherwise)
            with closing(sqlite3.connect(store / database.SQLITE_FILE, timeout=0, isolation_level=None)) as other:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                seen.append(0)
        return real_checkpw(secret, hashed)

    monkeypatch.setattr(auth.bcrypt, "checkpw", checkpw_while_another_writes)
    assert auth.authenticate("dr.fast", "a long secret phrase")[0] is not None
    assert auth.authenticate("dr.fast", "not the password")[0] is None
    assert seen == [0, 0]


def test_a_version_is_seen_by_other_servers_only_once_complete(store, tmp_path, monkeypatch):
    """A registration copies into a hidden folder beside the final one and renames it; the row comes last. A server
    that lists versions while the copy runs sees nothing half-made."""
    folder = tmp_path / "xray-copying"
    shutil.copytree(tasks.get("xray").shipped_dir, folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["version"] = "xray-copying"
    (folder / "meta.json").write_text(json.dumps(meta))
    seen_during_copy = []
    real_copytree = shutil.copytree

    def slow_copy(source, destination, *args, **kwargs):
        result = real_copytree(source, destination, *args, **kwargs)
        seen_during_copy.append([v.version for v in registry.list_versions("xray")])
        assert not (registry.models_dir() / "xray" / "xray-copying").exists()  # still under its hidden name
        return result

    monkeypatch.setattr(registry.shutil, "copytree", slow_copy)
    entry = registry.register("xray", folder, "tests", origin="shipped")  # shipped: copied, never moved
    assert seen_during_copy and "xray-copying" not in seen_during_copy[0]
    registry.verify(entry)


def test_an_old_single_machine_store_is_upgraded_in_place(tmp_path, monkeypatch):
    """A store made by the code before the shared SQL layer (four SQLite files) opens with everything in it."""
    folder = tmp_path / "old-store"
    shipped = {}
    for key in tasks.KEYS:
        source = tasks.get(key).shipped_dir
        version = json.loads((source / "meta.json").read_text())["version"]
        shutil.copytree(source, folder / "models" / key / version)
        shipped[key] = version
    candidate = ("xray", "xray-old-candidate")
    shutil.copytree(tasks.get("xray").shipped_dir, folder / "models" / "xray" / candidate[1])
    expected = write_legacy_store(folder, auth.hash_password("a long secret phrase"), shipped, candidate)
    monkeypatch.setenv("MEDCORE_STORE_DIR", str(folder))
    monkeypatch.delenv("MEDCORE_DATABASE_URL", raising=False)
    assert {k: registry.production(k).version for k in tasks.KEYS} == expected["production"]
    assert registry.get("xray", candidate[1]).status == "production"
    assert registry.history("xray")[0]["by"] == "chief"
    registry.verify(registry.production("xray"))
    assert auth.authenticate("chief", "a long secret phrase", "ip:desk")[0].is_admin  # the old bcrypt hash
    assert [r["action"] for r in audit.recent(10)].count("sign_in") == expected["audit_rows"]
    from medcore import jobs

    job = jobs.get("job-old-1")
    assert job.status == "succeeded" and [e["stage"] for e in jobs.events("job-old-1")] == ["loading", "done"]
    assert sorted(p.name for p in folder.glob("*.migrated")) == [
        f"{n}.sqlite.migrated" for n in ("audit", "jobs", "registry", "users")]
    with pytest.raises(Exception, match="append-only"):  # the triggers came with the new tables
        with database.write() as connection:
            connection.execute(text("DELETE FROM audit"))


def test_a_database_made_by_a_newer_medcore_is_refused(store):
    with database.write() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    database.forget_engines()
    with pytest.raises(database.StoreError, match="newer version"):
        database.engine()
    database.forget_engines()


def test_parallel_sign_in_attempts_count_against_each_other(store, monkeypatch):
    """30 wrong passwords sent at the same moment from one address: only the free ones get a real password check."""
    auth.add_user("chief", "a long secret phrase", "admin", "tests")
    real_checkpw, checked = bcrypt.checkpw, []

    def counting_checkpw(secret, hashed):
        if hashed != auth._dummy():
            checked.append(1)
        return real_checkpw(secret, hashed)

    monkeypatch.setattr(auth.bcrypt, "checkpw", counting_checkpw)
    barrier = threading.Barrier(30)

    def attempt(_: int) -> str:
        barrier.wait()
        return auth.authenticate("chief", "wrong guess here", "ip:203.0.113.5")[1]

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(attempt, range(30)))
    assert len(checked) == auth.PAIR_FREE_FAILURES
    assert answers.count(auth.WRONG) == auth.PAIR_FREE_FAILURES


def test_strangers_elsewhere_cannot_slow_an_admin_at_their_own_desk(store, monkeypatch):
    auth.add_user("chief", "a long secret phrase", "admin", "tests")
    monkeypatch.setattr(auth.bcrypt, "checkpw", lambda secret, hashed: secret == b"a long secret phrase")
    now = time.time()
    assert auth.authenticate("chief", "a long secret phrase", "ip:chief-desk", now)[0]  # a known address now
    for second in range(120):  # a botnet, one guess a second from new addresses
        auth.authenticate("chief", "wrong guess here", f"ip:bot{second}", now + second)
    assert auth.authenticate("chief", "a long secret phrase", "ip:chief-desk", now + 120.5)[0].is_admin
    assert "try again" in auth.authenticate("chief", "a long secret phrase", "ip:new-laptop", now + 120.5)[1]


def test_a_read_block_sees_one_snapshot_while_others_commit(store):
    """Issue 31: read() is one snapshot (REPEATABLE READ on PostgreSQL; a read transaction in WAL mode on SQLite):
    a write committed by another connection during the block is not seen by the block's later reads, so what a page
    computes from several reads is consistent."""
    from sqlalchemy import func, select

    from medcore.store import schema

    audit.record("someone", "snapshot-test", "before")
    with database.read() as connection:
        query = select(schema.audit.c.id, schema.audit.c.outcome).where(schema.audit.c.action == "snapshot-test")
        first = connection.execute(query).all()
        audit.record("someone", "snapshot-test", "during")  # its own connection, committed at once
        second = connection.execute(query).all()
        count = connection.execute(select(func.count()).select_from(schema.audit)).scalar()
    assert [row.outcome for row in first] == ["before"] and second == first
    with database.read() as connection:  # a new block sees it
        assert connection.execute(query).all()[-1].outcome == "during"
        assert connection.execute(select(func.count()).select_from(schema.audit)).scalar() == count + 1
