"""The store: one SQL layer over SQLite (the embedded default) or PostgreSQL (several servers and workers).

`MEDCORE_DATABASE_URL=postgresql://user:password@host:port/db` puts users, the sign-in throttle, the audit log,
the model registry and the jobs in PostgreSQL; without it they live in `<store>/medcore.sqlite`. Callers use
`read()` for a consistent snapshot and `write()` for one short write transaction, with SQLAlchemy Core statements
over the tables of `medcore.store.schema`; nothing outside this package knows which engine runs.

- SQLite: WAL, a busy timeout, foreign keys on; a write transaction is BEGIN IMMEDIATE, so two writers queue
  instead of failing on a lock upgrade, and a reader never waits for a writer.
- PostgreSQL: psycopg 3; reads run at REPEATABLE READ (one snapshot), writes at READ COMMITTED with conditional
  updates whose row counts say what happened.
- The schema is versioned with Alembic (medcore/store/migrations). The first use in a process upgrades the
  database to the code's revision under a lock (an advisory lock on PostgreSQL, the write lock on SQLite), so
  servers started together migrate once; a database made by a newer MedCore is refused, never written.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from medcore import config
from medcore.store import schema  # noqa: F401 - the tables, for callers: `from medcore.store import schema`

SQLITE_FILE = "medcore.sqlite"
MIGRATION_LOCK = 748_213_991  # PostgreSQL advisory lock id held while migrating

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


class StoreError(RuntimeError):
    """The store cannot be used as it is (for example made by a newer MedCore)."""


def database_url() -> str:
    """The SQLAlchemy URL: MEDCORE_DATABASE_URL (postgresql://... is driven by psycopg 3), else the store's file."""
    url = config.database_url()
    if url:
        parsed = make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed.render_as_string(hide_password=False)
    return f"sqlite:///{config.store_dir() / SQLITE_FILE}"


def describe() -> str:
    """What the store is, for logs and the README's commands: engine and place, never the password."""
    return make_url(database_url()).render_as_string(hide_password=True)


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def prepare(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, as asked
        cursor = dbapi_connection.cursor()
        # recursive_triggers: the row an INSERT OR REPLACE removes fires its DELETE trigger, so an append-only
        # table cannot be rewritten that way either
        for pragma in ("busy_timeout=30000", "journal_mode=WAL", "foreign_keys=ON", "recursive_triggers=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get("medcore_write")
                                   else "BEGIN")

    return engine


def engine() -> Engine:
    """The engine for the configured database, created and migrated once per process and URL."""
    url = database_url()
    with _lock:
        if url not in _engines:
            created = _sqlite_engine(url) if url.startswith("sqlite") else create_engine(
                url, pool_pre_ping=True, pool_size=5, max_overflow=5)
            _migrate(created)
            _engines[url] = created
        return _engines[url]


def _migrate(created: Engine) -> None:
    from medcore.store.migrations import upgrade_to_head

    if created.dialect.name == "sqlite":
        Path(created.url.database).parent.mkdir(parents=True, exist_ok=True)
    with created.connect().execution_options(medcore_write=True) as connection:
        if created.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        try:
            upgrade_to_head(connection)
        finally:
            if created.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
                connection.commit()


def dialect() -> str:
    """'sqlite' or 'postgresql': for the few places that must say which (health checks, tests), never for SQL."""
    return engine().dialect.name


@contextmanager
def write() -> Iterator[Connection]:
    """One write transaction: committed on exit, rolled back on error. Keep slow work (bcrypt, training, copies)
    outside it."""
    with engine().connect().execution_options(medcore_write=True) as connection:
        with connection.begin():
            yield connection


@contextmanager
def read() -> Iterator[Connection]:
    """A read-only snapshot: never waits for a writer, never blocks one; nothing it does is kept."""
    options = {"isolation_level": "REPEATABLE READ"} if engine().dialect.name == "postgresql" else {}
    with engine().connect().execution_options(**options) as connection:
        with connection.begin() as transaction:
            yield connection
            transaction.rollback()


def serialize(connection: Connection, key: str) -> None:
    """Within a write transaction: make every other write transaction that serializes on `key` wait for this one
    (an advisory transaction lock on PostgreSQL; on SQLite every write transaction already holds the one lock)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})


def forget_engines() -> None:
    """Close every engine (tests that start from a new database; a process that forks)."""
    with _lock:
        for created in _engines.values():
            created.dispose()
        _engines.clear()
