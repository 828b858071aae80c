"""Versioned schema migrations (Alembic), run by the store at first use in a process, under a lock.

`upgrade_to_head(connection)` brings a database to this code's revision; a database whose revision this code does
not know was made by a newer MedCore and is refused. `medcore db upgrade` / `medcore db current` run the same from
the command line.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

FOLDER = Path(__file__).resolve().parent


def _config(connection: Connection) -> Config:
    alembic = Config()
    alembic.set_main_option("script_location", str(FOLDER))
    alembic.attributes["connection"] = connection
    return alembic


def head() -> str:
    return ScriptDirectory(str(FOLDER)).get_current_head()


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(connection: Connection) -> None:
    from medcore.store import StoreError

    revision = current(connection)
    scripts = ScriptDirectory(str(FOLDER))
    if revision is not None and revision not in {s.revision for s in scripts.walk_revisions()}:
        raise StoreError(f"The database is at schema revision {revision}, which this MedCore does not know: it was "
                         "made by a newer version. Upgrade this server before it uses the database.")
    if revision != scripts.get_current_head():
        command.upgrade(_config(connection), "head")
    if connection.in_transaction():
        connection.commit()
