"""Clinicians confirm or correct MedCore's finding on a study; the confirmed labels close the loop.

A confirmation is stored against a keyed digest of the film's SOP Instance UID (medcore.keyed), with the model
version and what the model said; the study, series and SOP UIDs, needed to fetch the film again, are kept sealed
(encrypted with a key derived from the installation's secret), never in clear; no pixels, no names. Confirmations
are history: a later one for the same film supersedes the earlier (both kept, the later names the earlier), and
the audit row names the film's digest and the earlier label. The performance page counts MedCore's agreement with
the current confirmations per month (with 95 % Wilson intervals); local validation can run on the confirmed films,
fetched from the PACS (`medcore calibrate xray --from-pacs`).
"""

from __future__ import annotations

import datetime
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import func, insert, select

from medcore import audit, keyed
from medcore.imaging.io import read_radiograph
from medcore.metrics import proportion_interval
from medcore.store import read, schema, write

FEEDBACK = schema.pacs_feedback
LABELS = ("NORMAL", "PNEUMONIA")


def film_key(sop_uid: str) -> str:
    return keyed.digest("film", sop_uid)


def confirm(sop_uid: str, study_uid: str, series_uid: str, label: str, model_version: str,
            probability: float | None, decision: str | None, user: str) -> None:
    """Record the confirmed finding of one film; an earlier confirmation of it is superseded, not erased."""
    if label not in LABELS:
        raise ValueError(f"A confirmed finding is one of {', '.join(LABELS)}.")
    key = film_key(sop_uid)
    with write() as db:
        earlier = db.execute(select(FEEDBACK.c.id, FEEDBACK.c.label, FEEDBACK.c.actor).where(FEEDBACK.c.film_key == key)
                             .order_by(FEEDBACK.c.id.desc()).limit(1)).first()
        db.execute(insert(FEEDBACK).values(film_key=key, sealed_uids=keyed.seal(json.dumps([study_uid, series_uid,
                                                                                              sop_uid])),
                                           label=label, model_version=model_version, probability=probability,
                                           decision=decision, actor=user, at=time.time(),
                                           supersedes=earlier.id if earlier else None))
    audit.record(user, "pacs_feedback", "agrees" if label == decision else "corrects", model_version,
                 film=key[:16], label=label,
                 **({"supersedes_label": earlier.label, "supersedes_by": earlier.actor} if earlier else {}))


def confirmed(model_version: str | None = None) -> list[dict]:
    """The current confirmation of each film (the latest), oldest first, its UIDs unsealed for fetching."""
    latest = select(func.max(FEEDBACK.c.id)).group_by(FEEDBACK.c.film_key)
    with read() as db:
        query = select(FEEDBACK).where(FEEDBACK.c.id.in_(latest)).order_by(FEEDBACK.c.at)
        if model_version:
            query = query.where(FEEDBACK.c.model_version == model_version)
        rows = [dict(row._mapping) for row in db.execute(query)]
    for row in rows:
        row["study_uid"], row["series_uid"], row["sop_instance_uid"] = json.loads(keyed.unseal(row.pop("sealed_uids")))
    return rows


def history(sop_uid: str) -> list[dict]:
    """Every confirmation of one film, oldest first (who said what, when, and which one it replaced)."""
    with read() as db:
        rows = db.execute(select(FEEDBACK.c.id, FEEDBACK.c.label, FEEDBACK.c.actor, FEEDBACK.c.at,
                                 FEEDBACK.c.supersedes).where(FEEDBACK.c.film_key == film_key(sop_uid))
                          .order_by(FEEDBACK.c.id)).mappings().all()
    return [dict(row) for row in rows]


def agreement_by_month(rows: list[dict]) -> list[dict]:
    """Per calendar month: confirmed studies with a decision, how many MedCore got right, with a 95 % interval."""
    months: dict[str, list[bool]] = {}
    for row in rows:
        if row["decision"] in LABELS:
            month = datetime.date.fromtimestamp(row["at"]).strftime("%Y-%m")
            months.setdefault(month, []).append(row["decision"] == row["label"])
    out = []
    for month, agreed in sorted(months.items()):
        low, high = proportion_interval(sum(agreed), len(agreed))
        out.append({"month": month, "n": len(agreed), "agreement": sum(agreed) / len(agreed), "low": low,
                    "high": high})
    return out


def confirmed_films_folder(client, rows: list[dict], folder: Path | None = None) -> Path:
    """The confirmed films fetched from the PACS into NORMAL/ and PNEUMONIA/ as pixels only (16-bit PNG, no
    header): what local validation reads."""
    folder = Path(folder or tempfile.mkdtemp(prefix="medcore-confirmed-"))
    for label in LABELS:
        (folder / label).mkdir(parents=True, exist_ok=True)
    for index, row in enumerate(rows):
        dataset = client.instance(row["study_uid"], row["series_uid"], row["sop_instance_uid"])
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        pixels = read_radiograph(buffer.getvalue(), "confirmed.dcm").pixels
        Image.fromarray(np.round(pixels * 65535).astype(np.uint16)).save(
            folder / row["label"] / f"confirmed{index:05d}_1.png")
    return folder
