"""One chest study from the PACS: claimed once, fetched, analysed like an upload, its result written back as DICOM.

The flow is the upload's (imaging.service.analyse_file: validate, quality gate, calibrated probability, decision,
Grad-CAM), then a structured report and an overlay into the same study (pacs.results). Each (study, model version)
is claimed with one row in the store before anything is fetched, so two watchers, or a watcher and a clinician's
page, never analyse it twice. A study that cannot be fetched or read is tried MAX_ATTEMPTS times, then reported as
failed and left alone. The audit row holds the film's digest and the outcome only: never a name, an id or a UID of
the patient's.

"Done" is only ever what MedCore can prove: its own record in the store, or a report in the study that carries this
installation's signature (pacs.results.verified_result). A watcher that died between writing the report and
recording it finds its signed report and takes the figure and decision from it, so a flagged study stays flagged. A
report that says "MedCore" but does not verify (copied from another study, written by another device) is counted as
a result from another source, and the study is analysed anyway. A film outside the model's intended use (the
patient's age, a non-frontal view, another modality or body part) is refused, and listed as such.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pydicom
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from medcore import access, audit, config, keyed
from medcore.imaging.gradcam import overlay
from medcore.imaging.service import LoadedXrayModel, StudyResult, analyse_dicom, audit_study
from medcore.pacs import results
from medcore.pacs.client import (CHEST_MODALITIES, FilmTooLarge, PacsClient, PacsUnavailable, Study,
                                 medcore_only)
from medcore.store import read, schema, write

STUDIES = schema.pacs_studies
MAX_ATTEMPTS = 3
CLAIM_SECONDS = 300  # a claim this old belongs to a watcher that died: it may be taken over
FRONTAL_FIRST = {"PA": 0, "AP": 1}  # then films without a view (2), then the others (3): refused as not frontal


def study_key(study_uid: str) -> str:
    """How the store refers to a study: a keyed digest (medcore.keyed), so that no patient's UID sits in MedCore's
    tables and nobody holding a UID can find its result there without the installation's secret."""
    return keyed.digest("study", study_uid)[:32]


@dataclass
class StudyAnalysis:
    """What the worklist and the study view show: the result, the film it was made from, and where it lives."""

    study_uid: str
    series_uid: str
    sop_uid: str
    result: StudyResult
    stored: bool  # the SR (and overlay) are in the PACS


class NotAChestStudy(ValueError):
    """The study holds no CR or DX image."""


def chest_instance(client: PacsClient, study_uid: str, series: list[dict] | None = None) -> tuple[str, str]:
    """(series, SOP instance) of the study's chest film to read: a frontal one when the study holds several (a PA
    and a lateral: the order the PACS lists them in must not decide). MedCore writes no CR/DX series, so every
    CR/DX series is a candidate, whatever its Manufacturer says (a label anyone can write must not hide a film)."""
    listed = client.series(study_uid) if series is None else series
    candidates = [(one["series_uid"], sop) for one in listed if one["modality"] in CHEST_MODALITIES
                  for sop in client.instances(study_uid, one["series_uid"])]
    if not candidates:
        raise NotAChestStudy("The study holds no chest radiograph (CR or DX image).")
    if len(candidates) == 1:
        return candidates[0]
    views = {film: client.view_position(study_uid, *film) for film in candidates}
    return min(candidates, key=lambda film: FRONTAL_FIRST.get(views[film], 2 if views[film] == "" else 3))


def fetch(client: PacsClient, study_uid: str, series: list[dict] | None = None
          ) -> tuple[str, str, pydicom.Dataset, bytes]:
    """(series, SOP instance, the film parsed once, the bytes the PACS sent: what its digest is taken of).
    series: the study's series when already listed (one QIDO-RS less per study)."""
    series_uid, sop_uid = chest_instance(client, study_uid, series)
    dataset, data = client.instance_and_bytes(study_uid, series_uid, sop_uid)
    return series_uid, sop_uid, dataset, data


def analyse_dataset(model: LoadedXrayModel, dataset: pydicom.Dataset, data: bytes, user: str) -> StudyResult:
    """The upload's analysis of one film (decoded from the parsed dataset, reduced once), audited as a study from
    the PACS (the digest of the bytes as fetched, and the outcome only)."""
    started = time.perf_counter()
    result = analyse_dicom(model, dataset, "study from the PACS", user=user)
    audit_study(user, result, audit.content_digest(data), "pacs",
                server_ms=round(1000 * (time.perf_counter() - started), 1))
    return result


def result_objects(model: LoadedXrayModel, source: pydicom.Dataset, result: StudyResult) -> list[pydicom.Dataset]:
    """The SR (always) and the Grad-CAM overlay (when there is a probability) for one analysed film."""
    refusal = result.error if result.probability is None else None
    objects = [results.structured_report(source, model.version, result.probability, model.threshold,
                                         result.decision, refusal, result.intended_use_warning)]
    if result.probability is not None and result.display is not None and result.heatmap is not None:
        legend = results.legend_lines(result.probability, model.threshold, result.decision, model.version,
                                      result.intended_use_warning)
        objects.append(results.overlay_capture(source, overlay(result.display, result.heatmap, 0.5), model.version,
                                               legend))
    return objects


def _claim(key: str, version: str) -> bool:
    """Take the study for this model version: a new row, or a stale claim / an earlier failed try to retry."""
    now, me = time.time(), config.server_name()
    with write() as db:
        try:
            nested = db.begin_nested()
            db.execute(insert(STUDIES).values(study_key=key, model_version=version, status="claimed", attempts=1,
                                              claimed_by=me, claimed_at=now, seen_at=now))
            nested.commit()
            return True
        except IntegrityError:
            nested.rollback()
        retaken = db.execute(update(STUDIES).where(
            STUDIES.c.study_key == key, STUDIES.c.model_version == version, STUDIES.c.attempts < MAX_ATTEMPTS,
            ((STUDIES.c.status == "retry") | ((STUDIES.c.status == "claimed") & (STUDIES.c.claimed_at < now - CLAIM_SECONDS))))
            .values(status="claimed", attempts=STUDIES.c.attempts + 1, claimed_by=me, claimed_at=now)).rowcount
        return retaken == 1


def _finish(key: str, version: str, status: str, outcome: str | None = None, probability: float | None = None,
            error: str | None = None, unverified: int | None = None, counted: bool = True) -> None:
    """Record how a try ended. error: why it failed, or what must be said with the result (a warning). counted=False:
    the try failed for a reason outside the study (the PACS down) and is given back."""
    with write() as db:
        row = db.execute(select(STUDIES.c.attempts).where(STUDIES.c.study_key == key,
                                                          STUDIES.c.model_version == version)).first()
        if status == "retry" and counted and row is not None and row.attempts >= MAX_ATTEMPTS:
            status = "failed"  # reported on the worklist, never tried again
        values = {"status": status, "outcome": outcome, "probability": probability, "last_error": error,
                  "finished_at": time.time(), **({"unverified_reports": unverified} if unverified is not None else {}),
                  **({} if counted or row is None else {"attempts": max(0, row.attempts - 1)})}
        db.execute(update(STUDIES).where(STUDIES.c.study_key == key, STUDIES.c.model_version == version)
                   .values(**values))


def record(study_uid: str, version: str) -> dict | None:
    """The store's record of a study for a model version (status, outcome, probability, attempts), or None."""
    with read() as db:
        row = db.execute(select(STUDIES).where(STUDIES.c.study_key == study_key(study_uid),
                                               STUDIES.c.model_version == version)).first()
    return dict(row._mapping) if row else None


def final_uids(study_uids: list[str], version: str, final: tuple[str, ...]) -> set[str]:
    """Which of these studies have a final record for the model version: one query per 500 studies, not one per
    study (a poll over a week of a busy PACS, or a day of a backlog, lists thousands)."""
    keys = {study_key(uid): uid for uid in study_uids}
    found: set[str] = set()
    listed = list(keys)
    with read() as db:
        for start in range(0, len(listed), 500):
            rows = db.execute(select(STUDIES.c.study_key).where(
                STUDIES.c.model_version == version, STUDIES.c.status.in_(final),
                STUDIES.c.study_key.in_(listed[start:start + 500]))).scalars()
            found.update(keys[key] for key in rows)
    return found


@dataclass(frozen=True)
class ReportsInStudy:
    """What the study's "MedCore" reports say: this installation's own result for the model version (verified), and
    how many claim to be MedCore's but are not (a copy, a forgery, another installation's, a junk object)."""

    own: dict | None
    unverified: int


def reports_in_study(client: PacsClient, study_uid: str, version: str,
                     series: list[dict] | None = None) -> ReportsInStudy:
    own, unverified = None, 0
    listed = client.series(study_uid) if series is None else series
    for series in medcore_only(listed):
        if series["modality"] != "SR":
            continue
        for sop in client.instances(study_uid, series["series_uid"]):
            try:
                result = results.verified_result(client.instance(study_uid, series["series_uid"], sop), study_uid)
            except FilmTooLarge:  # no report of MedCore's is that large: another source, and the study goes on
                result = None
            if result is None:
                unverified += 1
            elif result["model_version"] == version:
                own = result
    return ReportsInStudy(own, unverified)


def _recovered(key: str, version: str, own: dict, unverified: int, user: str) -> None:
    """The store lost a result that MedCore wrote and signed (it died between the PACS and the store): record the
    report's own figure and decision, so the worklist shows what the report says."""
    if own["probability"] is None:
        _finish(key, version, "refused", "refused", error=own["comment"][:300], unverified=unverified)
    else:
        decision = "PNEUMONIA" if own["impression"] == results.PNEUMONIA[2] else "NORMAL"
        warning = results.report_warning(own)
        _finish(key, version, "done", decision, own["probability"], error=warning and warning[:300],
                unverified=unverified)
    audit.record(user, "pacs_result_recovered", "from MedCore's signed report", version, study=key[:16])


def analyse_study(client: PacsClient, model: LoadedXrayModel, study_uid: str, user: str = "pacs-watcher",
                  write_back: bool = True) -> StudyAnalysis | None:
    """Claim, fetch, analyse and write back one study; None when another process has it, or when MedCore's own
    signed report was already in the study (its figure is then recorded from the report).

    PacsUnavailable (the PACS is down) propagates: the study goes back to "retry" and the caller backs off.
    """
    key = study_key(study_uid)
    if not _claim(key, model.version):
        return None
    unverified = 0
    try:
        series = client.series(study_uid)  # once: for MedCore's own reports and for the film to read
        if write_back:
            found = reports_in_study(client, study_uid, model.version, series)
            unverified = found.unverified
            if found.own is not None:
                _recovered(key, model.version, found.own, unverified, user)
                return None
            if unverified:
                audit.record(user, "pacs_unverified_report", "result from another source", model.version,
                             study=key[:16], reports=unverified)
        series_uid, sop_uid, dataset, data = fetch(client, study_uid, series)
        result = analyse_dataset(model, dataset, data, user)
        if write_back:
            client.store(result_objects(model, dataset, result))
    except NotAChestStudy as exc:
        _finish(key, model.version, "failed", "not a chest study", error=str(exc), unverified=unverified)
        audit.record(user, "pacs_analysis", "not a chest study", model.version, study=key[:16])
        return None
    except FilmTooLarge as exc:  # trying again fetches the same bytes: failed at once, listed with the reason
        _finish(key, model.version, "failed", "film too large", error=str(exc), unverified=unverified)
        audit.record(user, "pacs_analysis", "film too large", model.version, study=key[:16])
        return None
    except PacsUnavailable as exc:  # the PACS, not the study: this try does not count towards MAX_ATTEMPTS
        _finish(key, model.version, "retry", error=str(exc), counted=False)
        raise
    except Exception as exc:  # an unreadable object from the PACS: tried again, then reported
        _finish(key, model.version, "retry", error=f"{type(exc).__name__}")
        audit.record(user, "pacs_analysis", "error", model.version, study=key[:16], error=type(exc).__name__)
        return None
    status = "done" if result.probability is not None else "refused"
    outcome = result.decision if result.probability is not None else result.refusal_outcome
    _finish(key, model.version, status, outcome, result.probability,
            error=(" ".join(result.refusal_reasons) or result.intended_use_warning or "")[:300] or None,
            unverified=unverified)
    audit.record(user, "pacs_result_stored" if write_back else "pacs_analysis", status, model.version,
                 study=key[:16], objects=2 if result.probability is not None else 1)
    return StudyAnalysis(study_uid, series_uid, sop_uid, result, write_back)


def view_study(client: PacsClient, model: LoadedXrayModel, study: Study, user: str) -> StudyAnalysis:
    """A study opened on the worklist: recorded as a look at the patient (access log), then its film analysed for
    the page (the same result view as an upload), without writing anything back (the watcher does that once)."""
    access.record(user, "opened", [(study.patient_id, study.accession_number)])
    series_uid, sop_uid, dataset, data = fetch(client, study.study_uid)
    return StudyAnalysis(study.study_uid, series_uid, sop_uid, analyse_dataset(model, dataset, data, user),
                         stored=False)

