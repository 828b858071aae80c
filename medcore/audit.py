"""Append-only audit log in the store: who did what, when, with which model, on which server, and the outcome.

No patient content is ever written: no image bytes, no note text, no file names (a name can carry
a patient's name), no DICOM identifiers. A study is referred to by a short SHA-256 digest of its
bytes, which lets an auditor match a known file without the log revealing anything.
"""

from __future__ import annotations

import hashlib
import json
import time

from sqlalchemy import insert, select

from medcore import config
from medcore.spreadsheet import to_csv
from medcore.store import read, schema, write

AUDIT = schema.audit  # UPDATE and DELETE abort in the database itself (a trigger), on SQLite and PostgreSQL


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def record(user: str, action: str, outcome: str, model_version: str | None = None,
           **detail: str | float | int | None) -> None:
    """Append one event. detail must hold only non-identifying values (digests, numbers, codes)."""
    with write() as connection:
        connection.execute(insert(AUDIT).values(at=time.time(), user=user, action=action, model_version=model_version,
                                                outcome=outcome, detail=json.dumps(detail, sort_keys=True),
                                                server=config.server_name()))


def recent(limit: int = 1000) -> list[dict]:
    with read() as connection:
        rows = connection.execute(select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit)).mappings().all()
    return [dict(row) for row in rows]


def events(action: str, since: float) -> list[dict]:
    """Every event of one action since a time (epoch seconds), oldest first, with its detail decoded."""
    with read() as connection:
        rows = connection.execute(select(AUDIT.c.at, AUDIT.c.user, AUDIT.c.model_version, AUDIT.c.outcome,
                                         AUDIT.c.detail, AUDIT.c.server)
                                  .where(AUDIT.c.action == action, AUDIT.c.at >= since).order_by(AUDIT.c.id)).mappings().all()
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
