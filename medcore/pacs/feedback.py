"""Clinicians confirm or correct MedCore's finding on a study; the confirmed labels close the loop.

A confirmation is stored against the film's SOP Instance UID (with its study and series UIDs, to fetch it again),
the model version and what the model said; no pixels, no names. The performance page counts MedCore's agreement
with confirmed findings per month (with 95 % Wilson intervals); local validation can run on the confirmed films,
fetched from the PACS (`medcore calibrate xray --from-pacs`).
"""

from __future__ import annotations

import datetime
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import delete, insert, select

from medcore import audit
from medcore.imaging.io import read_radiograph
from medcore.metrics import proportion_interval
from medcore.store import read, schema, write

FEEDBACK = schema.pacs_feedback
LABELS = ("NORMAL", "PNEUMONIA")


def confirm(sop_uid: str, study_uid: str, series_uid: str, label: str, model_version: str,
            probability: float | None, decision: str | None, user: str) -> None:
    """Record (or replace) the confirmed finding of one film."""
    if label not in LABELS:
        raise ValueError(f"A confirmed finding is one of {', '.join(LABELS)}.")
    with write() as db:
        db.execute(delete(FEEDBACK).where(FEEDBACK.c.sop_instance_uid == sop_uid))
        db.execute(insert(FEEDBACK).values(sop_instance_uid=sop_uid, study_uid=study_uid, series_uid=series_uid,
                                           label=label, model_version=model_version, probability=probability,
                                           decision=decision, actor=user, at=time.time()))
    audit.record(user, "pacs_feedback", "agrees" if label == decision else "corrects", model_version)


def confirmed(model_version: str | None = None) -> list[dict]:
    with read() as db:
        query = select(FEEDBACK).order_by(FEEDBACK.c.at)
        if model_version:
            query = query.where(FEEDBACK.c.model_version == model_version)
        return [dict(row._mapping) for row in db.execute(query)]


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
