"""The clinicians' PACS worklist: chest studies of a day or a range, in triage order.

Flagged studies first (highest probability first), then the others that were analysed (highest probability
first), then those not yet analysed, then those refused or that could not be analysed. Names, ids, dates and
accession numbers come from the PACS for the page only; nothing here writes them anywhere.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from medcore.pacs import analysis
from medcore.pacs.client import PacsClient, Study

ORDER = {"flagged": 0, "not flagged": 1, "not yet analysed": 2, "refused": 3, "could not be analysed": 4}


@dataclass(frozen=True)
class WorklistRow:
    study: Study
    state: str  # a key of ORDER
    probability: float | None
    detail: str  # why refused or failed

    @property
    def rank(self) -> tuple:
        return (ORDER[self.state], -(self.probability or 0.0), self.study.study_date, self.study.study_uid)


def state_of(record: dict | None, threshold: float) -> tuple[str, float | None, str]:
    if record is None or record["status"] in ("claimed", "retry"):
        return "not yet analysed", None, ""
    if record["status"] == "refused":
        return "refused", None, record.get("outcome") or ""
    if record["status"] == "failed":
        return "could not be analysed", None, record.get("last_error") or record.get("outcome") or ""
    probability = record.get("probability")
    if probability is None:  # reported before by another MedCore: its SR holds the figure
        return "not flagged", None, record.get("outcome") or ""
    return ("flagged" if probability >= threshold else "not flagged"), probability, ""


def worklist(client: PacsClient, model_version: str, threshold: float, first_day: datetime.date,
             last_day: datetime.date) -> list[WorklistRow]:
    rows = []
    for study in client.chest_studies(first_day, last_day):
        state, probability, detail = state_of(analysis.record(study.study_uid, model_version), threshold)
        rows.append(WorklistRow(study, state, probability, detail))
    return sorted(rows, key=lambda row: row.rank)


def prior_study(client: PacsClient, study: Study) -> Study | None:
    """The patient's most recent earlier chest study, if the PACS holds one."""
    if not study.patient_id:
        return None
    earlier = [s for s in client.patient_chest_studies(study.patient_id)
               if s.study_date < study.study_date and s.study_uid != study.study_uid]
    return earlier[-1] if earlier else None
