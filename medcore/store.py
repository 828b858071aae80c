"""SQLite databases in the store directory: one connection helper for registry, jobs, users and audit.

WAL mode lets readers and one writer work at once: `read()` never takes the write lock, so a page's
lookup never waits behind a sign-in or a training process; `connect()` is one short write transaction
(BEGIN IMMEDIATE), and callers keep slow work (bcrypt, training, file copies) outside it. The schema is
applied once per process and database file, not on every connection.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator

from medcore import config

_prepared: set[tuple[str, int, str]] = set()


def _open(name: str, schema: str) -> sqlite3.Connection:
    path = config.store_dir() / f"{name}.sqlite"
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA busy_timeout=30000")
    key = (str(path), _inode(path), schema)
    if key not in _prepared:  # a new or replaced file gets a new inode, and its schema again
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(schema)
        _prepared.add((str(path), _inode(path), schema))
    return connection


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1


@contextmanager
def _transaction(name: str, schema: str, begin: str, keep: bool) -> Iterator[sqlite3.Connection]:
    with closing(_open(name, schema)) as connection:
        connection.execute(begin)
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT" if keep else "ROLLBACK")


def connect(name: str, schema: str):
    """A write transaction on <store>/<name>.sqlite with `schema` applied; committed on exit, rolled back on error."""
    return _transaction(name, schema, "BEGIN IMMEDIATE", keep=True)


def read(name: str, schema: str):
    """A read-only snapshot (one deferred transaction): never waits for a writer, never blocks one."""
    return _transaction(name, schema, "BEGIN", keep=False)
