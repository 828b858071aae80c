"""The clinicians' PACS worklist: chest studies of a day or a range, in triage order, a page at a time.

Order, safest first: flagged studies (highest probability first); then every study MedCore has not judged (not yet
analysed, outside the model's intended use, refused, could not be analysed), since any of them may be the sick
child; the studies MedCore read as not flagged come last. A state is only ever what MedCore can prove: its record
in the store or its own signed report in the study (pacs.analysis); a study without either is "not yet analysed",
never "not flagged".

Names, ids, dates and accession numbers come from the PACS for the page only; nothing here writes them anywhere.
What a user saw is recorded in the access log by keyed digests (medcore.access): each page of the list, each study
opened. A list covers at most config.WORKLIST_MAX_DAYS days and is shown a page (config.worklist_page_size(), 50 by
default) at a time.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass

from sqlalchemy import select

from medcore import access, config
from medcore.imaging.intended_use import OUTSIDE_INTENDED_USE
from medcore.pacs import analysis, results
from medcore.pacs.client import PacsClient, Study
from medcore.store import read, schema

ORDER = {"flagged": 0, "not yet analysed": 1, OUTSIDE_INTENDED_USE: 2, "refused": 3, "could not be analysed": 4,
         "not flagged": 5}
WATCHER_POLL = "watch_last_poll"  # pacs_state: when a watcher last listed the PACS successfully (JSON)
ANOTHER_SOURCE = ("result from another source: the study holds a report labelled MedCore that this MedCore did not "
                  "write (a copy or another device's); it is not MedCore's result")


@dataclass(frozen=True)
class WorklistRow:
    study: Study
    state: str  # a key of ORDER
    probability: float | None
    detail: str  # why refused or failed, where the figure came from, a result from another source

    @property
    def rank(self) -> tuple:
        return (ORDER[self.state], -(self.probability or 0.0), self.study.study_date, self.study.study_uid)


def state_of(record: dict | None, threshold: float) -> tuple[str, float | None, str]:
    """The state the store's record proves; a record without a figure never reads as "not flagged"."""
    if record is None or record["status"] in ("claimed", "retry"):
        return "not yet analysed", None, ""
    if record["status"] == "refused":
        state = OUTSIDE_INTENDED_USE if record.get("outcome") == OUTSIDE_INTENDED_USE else "refused"
        return state, None, record.get("last_error") or record.get("outcome") or ""
    if record["status"] == "failed":
        return "could not be analysed", None, record.get("last_error") or record.get("outcome") or ""
    probability = record.get("probability")
    if probability is None:  # a "done" without a figure proves nothing (rows of older versions): not triaged
        return "not yet analysed", None, "no figure recorded: to be analysed again"
    return ("flagged" if probability >= threshold else "not flagged"), probability, record.get("last_error") or ""


def check_range(first_day: datetime.date, last_day: datetime.date) -> None:
    """A worklist covers a bounded range: a whole year of patients is not a worklist."""
    if first_day > last_day:
        raise ValueError("The first day comes after the last day.")
    if (last_day - first_day).days + 1 > config.WORKLIST_MAX_DAYS:
        raise ValueError(f"A worklist covers at most {config.WORKLIST_MAX_DAYS} days; choose a shorter range.")


def worklist(client: PacsClient, model_version: str, threshold: float, first_day: datetime.date,
             last_day: datetime.date) -> list[WorklistRow]:
    """Every chest study of the range in triage order. Studies the store has no final result for are looked up in
    the PACS for MedCore's own signed report (a watcher that stopped between the PACS and the store), so a flagged
    study the store lost still reads as flagged."""
    check_range(first_day, last_day)
    rows = []
    for study in client.chest_studies(first_day, last_day):
        record = analysis.record(study.study_uid, model_version)
        state, probability, detail = state_of(record, threshold)
        unverified = bool(record and record.get("unverified_reports"))
        if state in ("not yet analysed", "could not be analysed"):  # MedCore's own signed report may be there
            found = analysis.reports_in_study(client, study.study_uid, model_version)
            if found.own is not None:
                state, probability, detail = _from_report(found.own, threshold)
            unverified = found.unverified > 0
        if unverified:
            detail = "; ".join(part for part in (detail, ANOTHER_SOURCE) if part)
        rows.append(WorklistRow(study, state, probability, detail))
    return sorted(rows, key=lambda row: row.rank)


def _from_report(report: dict, threshold: float) -> tuple[str, float | None, str]:
    source = "from MedCore's signed report in the PACS (the store has no record yet)"
    if report["probability"] is None:
        return "refused", None, f"{report['comment']} ({source})"
    flagged = report["impression"] == results.PNEUMONIA[2] or report["probability"] >= threshold
    warning = results.report_warning(report)
    return ("flagged" if flagged else "not flagged"), report["probability"], f"{warning} ({source})" if warning \
        else source


def page_count(rows: list[WorklistRow]) -> int:
    return max(1, -(-len(rows) // config.worklist_page_size()))


def shown_page(rows: list[WorklistRow], page: int, user: str) -> list[WorklistRow]:
    """One page of the list (1-based), recorded in the access log as listed to this user: what was on screen."""
    page, size = min(max(1, page), page_count(rows)), config.worklist_page_size()
    shown = rows[(page - 1) * size: page * size]
    access.record(user, "listed", [(row.study.patient_id, row.study.accession_number) for row in shown])
    return shown


def prior_study(client: PacsClient, study: Study) -> Study | None:
    """The patient's most recent earlier chest study, if the PACS holds one."""
    if not study.patient_id:
        return None
    earlier = [s for s in client.patient_chest_studies(study.patient_id)
               if s.study_date < study.study_date and s.study_uid != study.study_uid]
    return earlier[-1] if earlier else None


@dataclass(frozen=True)
class WatcherStatus:
    last_poll_at: float | None  # when a watcher last listed the PACS successfully; None: never
    stale: bool  # no successful poll within config.pacs_watcher_stale_seconds()
    server: str | None

    def sentence(self) -> str:
        if self.last_poll_at is None:
            return ("No PACS watcher has run: MedCore has not triaged these studies by itself. Studies marked "
                    "\"not yet analysed\" have not been looked at; read them in your usual order.")
        when = datetime.datetime.fromtimestamp(self.last_poll_at).strftime("%Y-%m-%d %H:%M:%S")
        return (f"The PACS watcher last checked for new studies at {when} and has been silent since: studies that "
                "arrived after that have not been triaged. Studies marked \"not yet analysed\" have not been looked "
                "at; read them in your usual order, and tell IT.")


def watcher_status(now: float | None = None) -> WatcherStatus:
    """Is a watcher triaging the PACS? Its last successful poll, from the store every watcher writes to."""
    with read() as db:
        value = db.execute(select(schema.pacs_state.c.value).where(schema.pacs_state.c.key == WATCHER_POLL)).scalar()
    if not value:
        return WatcherStatus(None, True, None)
    state = json.loads(value)
    age = (now or time.time()) - float(state["at"])
    return WatcherStatus(float(state["at"]), age > config.pacs_watcher_stale_seconds(), state.get("server"))
