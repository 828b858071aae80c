"""Append-only audit log in SQLite: who did what, when, with which model, and the outcome.

No patient content is ever written: no image bytes, no note text, no file names (a name can carry
a patient's name), no DICOM identifiers. A study is referred to by a short SHA-256 digest of its
bytes, which lets an auditor match a known file without the log revealing anything.
"""

from __future__ import annotations

import hashlib
import json
import time

from medcore.spreadsheet import to_csv
from medcore.store import connect, read

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    model_version TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def record(user: str, action: str, outcome: str, model_version: str | None = None,
           **detail: str | float | int | None) -> None:
    """Append one event. detail must hold only non-identifying values (digests, numbers, codes)."""
    with connect("audit", SCHEMA) as connection:
        connection.execute(
            "INSERT INTO audit (at, user, action, model_version, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), user, action, model_version, outcome, json.dumps(detail, sort_keys=True)))


def recent(limit: int = 1000) -> list[dict]:
    with read("audit", SCHEMA) as connection:
        rows = connection.execute(
            "SELECT id, at, user, action, model_version, outcome, detail FROM audit ORDER BY id DESC LIMIT ?",
            (limit,)).fetchall()
    return [dict(row) for row in rows]


def events(action: str, since: float) -> list[dict]:
    """Every event of one action since a time (epoch seconds), oldest first, with its detail decoded."""
    with read("audit", SCHEMA) as connection:
        rows = connection.execute("SELECT at, user, model_version, outcome, detail FROM audit "
                                  "WHERE action=? AND at>=? ORDER BY id", (action, since)).fetchall()
    return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]


def table(rows: list[dict]) -> list[dict]:
    """Rows for people: local ISO time, and the detail fields spread out as text."""
    import datetime

    return [{"time": datetime.datetime.fromtimestamp(r["at"]).isoformat(timespec="seconds"), "user": r["user"],
             "action": r["action"], "model version": r["model_version"] or "", "outcome": r["outcome"],
             "detail": ", ".join(f"{k}={v}" for k, v in json.loads(r["detail"]).items())} for r in rows]


def to_csv_table(rows: list[dict]) -> str:
    """CSV of rows made by table(); cells that a spreadsheet would run as formulas are written as text."""
    return to_csv(rows, ["time", "user", "action", "model version", "outcome", "detail"])
