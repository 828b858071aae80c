"""Bring in a store made before the shared SQL layer: four SQLite files in the store folder.

Until this revision MedCore kept `registry.sqlite`, `users.sqlite`, `jobs.sqlite` and `audit.sqlite` beside each
other. Their rows are copied into the new tables (ids, times and order kept; the unused throttle columns of
`users` dropped), then each old file is renamed `*.sqlite.migrated` (kept, never deleted). Nothing to do on
PostgreSQL or in a new store.

Revision ID: 0002
Revises: 0001
"""

import sqlite3
from contextlib import closing
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# old file -> [(old table, new table, {new column: old column})]
LEGACY = {
    "registry": [("versions", "versions", {}), ("production", "production", {}),
                 ("promotions", "promotions", {"actor": "by"})],
    "users": [("users", "users", {}), ("sign_in_failures", "sign_in_failures", {})],
    "jobs": [("jobs", "jobs", {}), ("job_events", "job_events", {"id": "rowid"})],
    "audit": [("audit", "audit", {})],
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite" or not bind.engine.url.database:
        return
    folder = Path(bind.engine.url.database).parent
    tables = sa.MetaData()
    tables.reflect(bind)
    for name, copies in LEGACY.items():
        old = folder / f"{name}.sqlite"
        if not old.is_file():
            continue
        with closing(sqlite3.connect(old)) as source:
            source.row_factory = sqlite3.Row
            present = {row[0] for row in source.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            for old_table, new_table, renamed in copies:
                if old_table not in present:
                    continue
                target = tables.tables[new_table]
                columns = [c.name for c in target.columns]
                selected = ", ".join(f'"{renamed.get(c, c)}" AS "{c}"' for c in columns
                                     if renamed.get(c, c) in _columns(source, old_table) | {"rowid"})
                rows = [dict(r) for r in source.execute(f'SELECT {selected} FROM "{old_table}" ORDER BY rowid')]
                if rows:
                    op.bulk_insert(target, rows)
        for suffix in ("", "-wal", "-shm"):
            path = folder / f"{name}.sqlite{suffix}"
            if path.exists():
                path.rename(path.with_name(path.name + ".migrated"))


def _columns(source: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in source.execute(f'PRAGMA table_info("{table}")')}

