"""SQLite databases in the store directory: one connection helper for registry, jobs, users and audit.

WAL mode lets the app read while a training process writes; a busy timeout instead of "database
is locked" errors when two processes write at once.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing, contextmanager
from typing import Iterator

from medcore import config


@contextmanager
def connect(name: str, schema: str) -> Iterator[sqlite3.Connection]:
    """A connection to <store>/<name>.sqlite with `schema` applied; one transaction, committed on exit."""
    connection = sqlite3.connect(config.store_dir() / f"{name}.sqlite", timeout=30, isolation_level=None)
    connection.row_factory = sqlite3.Row
    with closing(connection):
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA busy_timeout=30000")
        connection.executescript(schema)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
