"""Every look at a patient's studies, recorded so that a privacy officer can answer "who opened this patient's
record, and when" without MedCore keeping who the patient is.

A worklist page records each study it showed ("listed"); opening a study records "opened". The row holds the user,
the time, the action and keyed digests (medcore.keyed, HMAC-SHA256 with the installation's secret, which is not in
the database) of the patient id and the accession number: a copy of the database alone names no one, and the
officer, who knows the patient's id, finds the rows by computing the same digest. The table is append-only (a
trigger refuses UPDATE and DELETE on both engines).
"""

from __future__ import annotations

import time
from typing import Iterable

from sqlalchemy import insert, select

from medcore import audit, config, keyed
from medcore.store import read, schema, write

ACCESS = schema.access_log
ACTIONS = ("listed", "opened")


def patient_key(patient_id: str) -> str:
    return keyed.digest("patient", patient_id)


def accession_key(accession: str) -> str:
    return keyed.digest("accession", accession)


def record(user: str, action: str, studies: Iterable[tuple[str, str]]) -> int:
    """One row per (patient id, accession number) the user saw; returns how many. Also one audit row per call."""
    if action not in ACTIONS:
        raise ValueError(f"An access is one of {', '.join(ACTIONS)}.")
    now, server = time.time(), config.server_name()
    rows = [{"at": now, "user": user, "action": action, "patient_key": patient_key(patient_id),
             "accession_key": accession_key(accession), "server": server} for patient_id, accession in studies]
    if rows:
        with write() as db:
            db.execute(insert(ACCESS), rows)
        audit.record(user, f"patient_access:{action}", "recorded", studies=len(rows))
    return len(rows)


def accesses(patient_id: str, accession: str | None = None, actor: str = "privacy officer") -> list[dict]:
    """Who listed or opened this patient's studies (only this accession when given), oldest first. The search
    itself is audited (by digest), since it, too, is a look at a patient."""
    query = select(ACCESS.c.at, ACCESS.c.user, ACCESS.c.action, ACCESS.c.server).where(
        ACCESS.c.patient_key == patient_key(patient_id)).order_by(ACCESS.c.id)
    if accession:
        query = query.where(ACCESS.c.accession_key == accession_key(accession))
    with read() as db:
        found = [dict(row) for row in db.execute(query).mappings()]
    audit.record(actor, "patient_access_search", f"{len(found)} found", patient=patient_key(patient_id)[:16],
                 by_accession=bool(accession))
    return found
