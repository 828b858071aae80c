"""The store's database copied consistently while the app runs, and put back into an empty database.

- SQLite: the online backup API (`sqlite3.Connection.backup`, all pages in one step) copies the database as one
  transaction saw it; writers in WAL mode go on meanwhile, and the copy is a plain SQLite file.
- PostgreSQL: `pg_dump -Fc` of the server's version or newer. It dumps in one REPEATABLE READ snapshot without
  blocking writers; we export that snapshot from our own transaction (`pg_export_snapshot`) and read the schema
  revision and the row counts in it, so the manifest describes exactly the rows dumped. `pg_restore
  --single-transaction` puts it back all or nothing, triggers (the append-only rule), sequences and the queue's
  tables included. Why not a row-by-row copy through SQLAlchemy: pg_dump is the tool hospitals' DBAs already
  trust and restore by hand, and it keeps what our tables do not declare (procrastinate's functions and types).

Nothing here opens the store's own engine: that would migrate the database, and a backup copies what is there.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from medcore import config
from medcore.backup.manifest import BackupError

SQLITE_COPY = "database/medcore.sqlite"
POSTGRES_COPY = "database/medcore.pgdump"
SECRET_CHECK = "SELECT value FROM settings WHERE key = 'installation_secret_check'"


class Snapshot:
    """What one consistent copy holds besides its file: revision, rows per table, versions, jobs, secret check."""

    def __init__(self, revision: str | None, rows: dict[str, int], versions: list[dict], jobs: list[dict],
                 secret_check: str | None) -> None:
        self.revision, self.rows, self.versions, self.jobs, self.secret_check = (
            revision, rows, versions, jobs, secret_check)


def _read_snapshot(connection) -> Snapshot:
    """From a connection inside the copy's snapshot (SQLAlchemy or sqlite3, both through `text` SQL)."""
    run = (lambda sql: connection.execute(text(sql)).all()) if hasattr(connection, "dialect") else \
        (lambda sql: connection.execute(sql).fetchall())
    tables = _tables(connection)
    rows = {table: int(run(f'SELECT count(*) FROM "{table}"')[0][0]) for table in tables}
    revision = run("SELECT version_num FROM alembic_version")[0][0] if "alembic_version" in tables else None
    versions = [dict(zip(("task", "version", "folder", "manifest"), row))
                for row in run("SELECT task, version, folder, manifest FROM versions")] if "versions" in tables else []
    jobs = [dict(zip(("id", "status"), row)) for row in run("SELECT id, status FROM jobs")] if "jobs" in tables else []
    check = run(SECRET_CHECK) if "settings" in tables else []
    return Snapshot(revision, rows, versions, jobs, check[0][0] if check else None)


def _tables(connection) -> list[str]:
    if hasattr(connection, "dialect"):
        return sorted(inspect(connection).get_table_names())
    return sorted(row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))


def _url() -> URL:
    from medcore import store

    return make_url(store.database_url())


def engine_name() -> str:
    return "postgresql" if _url().get_backend_name() == "postgresql" else "sqlite"


# --- copy ---------------------------------------------------------------------------------------------------------

def copy(folder: Path) -> tuple[str, Snapshot]:
    """Copy the configured store's database into folder; (its path in the backup, what the copy holds)."""
    return _copy_sqlite(folder) if engine_name() == "sqlite" else _copy_postgres(folder)


def _copy_sqlite(folder: Path) -> tuple[str, Snapshot]:
    source_path = Path(_url().database)
    if not source_path.is_file():
        raise BackupError(f"There is no store database at {source_path}: nothing to back up.")
    destination = folder / SQLITE_COPY
    destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with closing(sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)) as source, \
            closing(sqlite3.connect(destination)) as target:
        source.backup(target)  # pages=-1: every page in one step, one consistent state
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        snapshot = _read_snapshot(target)
    destination.chmod(0o600)
    return SQLITE_COPY, snapshot


def _copy_postgres(folder: Path) -> tuple[str, Snapshot]:
    url = _url()
    destination = folder / POSTGRES_COPY
    destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
            with connection.begin():
                snapshot_id = connection.execute(text("SELECT pg_export_snapshot()")).scalar()
                version = connection.execute(text("SHOW server_version_num")).scalar()
                _run(_tool("pg_dump", int(version)), ["-Fc", "--no-owner", "--no-privileges",
                                                      f"--snapshot={snapshot_id}", "-f", str(destination),
                                                      "-d", "{dbname}"], url)
                snapshot = _read_snapshot(connection)  # the same snapshot the dump saw
    finally:
        engine.dispose()
    destination.chmod(0o600)
    return POSTGRES_COPY, snapshot


# --- restore ------------------------------------------------------------------------------------------------------

def check_empty() -> None:
    """Refuse a target database that holds anything: a restore never merges into, or overwrites, a store."""
    url = _url()
    if engine_name() == "sqlite":
        path = Path(url.database)
        if path.exists():
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
                tables = _tables(connection)
            if tables:
                raise BackupError(f"The store database {path} is not empty ({len(tables)} tables): a backup is "
                                  "restored only into a new store. Point MEDCORE_STORE_DIR at an empty folder.")
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            objects = connection.execute(text(
                "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public') + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n "
                "ON n.oid = p.pronamespace WHERE n.nspname = 'public')")).scalar()
    finally:
        engine.dispose()
    if objects:
        raise BackupError(f"The database {url.render_as_string(hide_password=True)} is not empty ({objects} "
                          "objects in schema public): a backup is restored only into a new, empty database.")


def restore(folder: Path, relative: str) -> Snapshot:
    """Put the copy back into the (empty) configured database; what the restored database holds."""
    source = folder / relative
    url = _url()
    if engine_name() == "sqlite":
        path = Path(url.database)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):  # an empty file left by a first look at the store
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        staging = path.with_name(f".{path.name}.restoring")
        shutil.copyfile(source, staging)
        staging.chmod(0o600)
        with closing(sqlite3.connect(staging)) as connection:
            if connection.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                staging.unlink()
                raise BackupError(f"The database copy in {folder} fails SQLite's integrity check.")
        staging.rename(path)
        with closing(sqlite3.connect(path)) as connection:
            return _read_snapshot(connection)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            version = int(connection.execute(text("SHOW server_version_num")).scalar())
        _run(_tool("pg_restore", version), ["--no-owner", "--no-privileges", "--exit-on-error",
                                            "--single-transaction", "-d", "{dbname}", str(source)], url)
        with engine.connect() as connection, connection.begin():
            return _read_snapshot(connection)
    finally:
        engine.dispose()


# --- PostgreSQL's tools -------------------------------------------------------------------------------------------

def _tool(name: str, server_version_num: int) -> str:
    """pg_dump / pg_restore at least as new as the server (an older pg_dump refuses a newer server)."""
    server_major = server_version_num // 10000
    chosen = config.postgres_bin_dir()
    if chosen is None:
        found = sorted((int(m.group(1)), p) for p in Path("/usr/lib/postgresql").glob("*/bin")
                       if (m := re.fullmatch(r"(\d+)", p.parent.name)) and int(m.group(1)) >= server_major)
        chosen = found[0][1] if found else None
    path = str(chosen / name) if chosen else shutil.which(name)
    if not path or not Path(path).is_file():
        raise BackupError(f"{name} for PostgreSQL {server_major} or newer was not found: install the PostgreSQL "
                          f"client tools (Debian: postgresql-client-{server_major}) or set MEDCORE_PG_BIN_DIR.")
    return path


def _run(tool: str, arguments: list[str], url: URL) -> None:
    """Run a PostgreSQL tool against url, the password in its environment (never on the command line)."""
    dbname = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    environment = {**os.environ, **({"PGPASSWORD": str(url.password)} if url.password else {})}
    arguments = [dbname if a == "{dbname}" else a for a in arguments]
    done = subprocess.run([tool, *arguments], env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{Path(tool).name} failed: {done.stderr.strip()[-800:]}")
