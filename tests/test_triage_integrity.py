"""Safe to leave running (issue 31): a study's state is only what MedCore can prove, a flagged study is never shown
as "not flagged", a copied "MedCore" report never stands in for MedCore's own result, the worklist says when no
watcher has triaged, and the watcher survives any one bad study. Against a real Orthanc where the PACS is needed."""

from __future__ import annotations

import datetime
import io
import threading
import time

import pydicom
import pytest
from pydicom.uid import generate_uid

from medcore import audit
from medcore.imaging.service import analyse_file
from medcore.pacs import analysis, results, watcher, worklist
from medcore.pacs.demo import chest_study
from medcore.store import schema, write
from tests.synthetic import chest_like
from tests.test_pacs import needs_pacs, pacs  # noqa: F401 - the PACS fixture

TODAY = datetime.date.today()


def _flagged_study(xray_model, name: str, seed: int) -> pydicom.Dataset:
    """A film the shipped model flags (synthetic chest-like films score far above its threshold)."""
    return chest_study(chest_like(xray_model.artifact.quality_reference, 512, 512, seed=seed), f"Test^{name}",
                       f"I-{name}", f"ACC-{name}", patient_age="003Y")


def _row(pacs, xray_model, study_uid: str) -> worklist.WorklistRow:
    rows = worklist.worklist(pacs, xray_model.version, xray_model.threshold, TODAY, TODAY)
    return next(r for r in rows if r.study.study_uid == study_uid)


@needs_pacs
def test_a_watcher_that_died_between_the_pacs_and_the_store_leaves_the_study_flagged(pacs, xray_model, monkeypatch):
    source = _flagged_study(xray_model, "crash", 1)
    pacs.store([source])
    real_finish = analysis._finish

    def die_before_recording(key, version, status, *args, **kwargs):
        if status in ("done", "refused"):
            raise SystemExit("the watcher was killed after STOW, before the store")
        return real_finish(key, version, status, *args, **kwargs)

    monkeypatch.setattr(analysis, "_finish", die_before_recording)
    with pytest.raises(SystemExit):
        analysis.analyse_study(pacs, xray_model, source.StudyInstanceUID)
    monkeypatch.setattr(analysis, "_finish", real_finish)
    assert analysis.record(source.StudyInstanceUID, xray_model.version)["status"] == "claimed"

    row = _row(pacs, xray_model, source.StudyInstanceUID)  # the store lost the figure; the signed SR has it
    buffer = io.BytesIO()
    source.save_as(buffer, enforce_file_format=True)
    expected = analyse_file(xray_model, buffer.getvalue(), "crash.dcm").probability  # the same film, read directly
    assert expected > xray_model.threshold
    assert row.state == "flagged" and row.probability == pytest.approx(expected, abs=1e-3)
    assert "signed report" in row.detail

    with write() as db:  # the claim went stale: a watcher takes the study again
        db.execute(schema.pacs_studies.update().values(claimed_at=time.time() - 10 * analysis.CLAIM_SECONDS))
    assert analysis.analyse_study(pacs, xray_model, source.StudyInstanceUID) is None  # nothing analysed twice
    record = analysis.record(source.StudyInstanceUID, xray_model.version)
    assert record["status"] == "done" and record["outcome"] == "PNEUMONIA"
    assert record["probability"] == pytest.approx(row.probability, abs=1e-4)
    assert _row(pacs, xray_model, source.StudyInstanceUID).state == "flagged"
    assert len(pacs.medcore_series(source.StudyInstanceUID)) == 2  # no second SR or overlay


def _copy_of_sr_into(pacs, source_study: pydicom.Dataset, target: pydicom.Dataset) -> None:
    """MedCore's SR of one study copied into another with new UIDs, as any device that can write to the PACS
    could."""
    series = next(s for s in pacs.medcore_series(source_study.StudyInstanceUID) if s["modality"] == "SR")
    sop = pacs.instances(source_study.StudyInstanceUID, series["series_uid"])[0]
    copy = pacs.instance(source_study.StudyInstanceUID, series["series_uid"], sop)
    copy.StudyInstanceUID, copy.SeriesInstanceUID = target.StudyInstanceUID, generate_uid()
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    copy.PatientID, copy.PatientName, copy.AccessionNumber = target.PatientID, target.PatientName, target.AccessionNumber
    pacs.store([copy])


@needs_pacs
def test_a_medcore_report_copied_into_another_study_is_not_taken_as_its_result(pacs, xray_model):
    study_a, study_b = _flagged_study(xray_model, "origin", 2), _flagged_study(xray_model, "target", 3)
    pacs.store([study_a, study_b])
    assert analysis.analyse_study(pacs, xray_model, study_a.StudyInstanceUID) is not None
    _copy_of_sr_into(pacs, study_a, study_b)
    assert analysis.reports_in_study(pacs, study_b.StudyInstanceUID, xray_model.version).unverified == 1

    row = _row(pacs, xray_model, study_b.StudyInstanceUID)
    assert row.state == "not yet analysed" and "result from another source" in row.detail

    done = analysis.analyse_study(pacs, xray_model, study_b.StudyInstanceUID)
    assert done is not None and done.stored and done.result.decision == "PNEUMONIA"  # analysed anyway
    record = analysis.record(study_b.StudyInstanceUID, xray_model.version)
    assert record["status"] == "done" and record["probability"] is not None and record["unverified_reports"] == 1
    row = _row(pacs, xray_model, study_b.StudyInstanceUID)
    assert row.state == "flagged" and "result from another source" in row.detail
    own = analysis.reports_in_study(pacs, study_b.StudyInstanceUID, xray_model.version)
    assert own.own is not None and own.unverified == 1  # MedCore's own SR added beside the copy
    assert any(r["action"] == "pacs_unverified_report" for r in audit.recent(20))


@needs_pacs
def test_a_junk_medcore_report_does_not_stop_the_study(pacs, xray_model):
    study = _flagged_study(xray_model, "junk", 4)
    junk = pydicom.Dataset()
    junk.file_meta = pydicom.dataset.FileMetaDataset()
    junk.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    junk.SOPClassUID = junk.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    junk.SOPInstanceUID = junk.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    junk.StudyInstanceUID, junk.SeriesInstanceUID = study.StudyInstanceUID, generate_uid()
    junk.Modality, junk.Manufacturer, junk.PatientID = "SR", "MedCore", study.PatientID
    pacs.store([study, junk])
    done = analysis.analyse_study(pacs, xray_model, study.StudyInstanceUID)
    assert done is not None and done.result.probability is not None
    assert analysis.record(study.StudyInstanceUID, xray_model.version)["unverified_reports"] == 1


def test_a_report_verifies_only_in_its_own_study_and_unchanged(xray_model):
    source = _flagged_study(xray_model, "sign", 5)
    result = analyse_file(xray_model, results._bytes(source), "film")
    sr = analysis.result_objects(xray_model, source, result)[0]
    stored = pydicom.dcmread(pydicom.filebase.DicomBytesIO(results._bytes(sr)))
    assert results.verified_result(stored, source.StudyInstanceUID)["probability"] == pytest.approx(
        result.probability, abs=1e-4)
    assert results.verified_result(stored, generate_uid()) is None  # another study
    moved = pydicom.dcmread(pydicom.filebase.DicomBytesIO(results._bytes(sr)))
    moved.StudyInstanceUID = other = generate_uid()
    assert results.verified_result(moved, other) is None  # copied into another study
    tampered = pydicom.dcmread(pydicom.filebase.DicomBytesIO(results._bytes(sr)))
    changed = 0
    for item in _items(tampered):
        if "MeasuredValueSequence" in item and "probability" in item.ConceptNameCodeSequence[0].CodeMeaning.lower():
            value = item.MeasuredValueSequence[0]
            value.NumericValue, changed = "0.01", changed + 1
            if "FloatingPointValue" in value:  # highdicom writes the figure twice and reads this one
                value.FloatingPointValue = 0.01
    assert changed == 1 and results.read_result(tampered)["probability"] == 0.01
    assert results.verified_result(tampered, source.StudyInstanceUID) is None  # its figure changed


def _items(node):
    for item in getattr(node, "ContentSequence", []):
        yield item
        yield from _items(item)


def test_a_done_record_without_a_figure_never_reads_as_not_flagged():
    legacy = {"status": "done", "outcome": "reported before", "probability": None}
    assert worklist.state_of(legacy, 0.5)[0] == "not yet analysed"
    assert worklist.state_of({"status": "done", "probability": 0.2}, 0.5)[0] == "not flagged"


def test_every_study_medcore_has_not_judged_comes_before_those_it_read_as_not_flagged():
    unjudged = ("not yet analysed", "outside intended use", "refused", "could not be analysed")
    assert worklist.ORDER["flagged"] < min(worklist.ORDER[s] for s in unjudged)
    assert max(worklist.ORDER[s] for s in unjudged) < worklist.ORDER["not flagged"]


def test_the_worklist_says_when_no_watcher_has_triaged(store):
    status = worklist.watcher_status()
    assert status.stale and status.last_poll_at is None and "No PACS watcher has run" in status.sentence()
    watcher._put_state(worklist.WATCHER_POLL, '{"at": %f, "server": "w1"}' % time.time())
    assert not worklist.watcher_status().stale
    later = worklist.watcher_status(now=time.time() + 3600)
    assert later.stale and "silent since" in later.sentence()


class _Study:
    def __init__(self, uid: str) -> None:
        self.study_uid, self.study_date = uid, TODAY.strftime("%Y%m%d")


class _Client:
    """A PACS that lists three studies."""

    def chest_studies(self, first, last):
        return [_Study("1.2.3.1"), _Study("1.2.3.2"), _Study("1.2.3.3")]


def test_one_bad_study_does_not_stop_the_others_or_the_watcher(store, xray_model, monkeypatch):
    handled = []

    def analyse(client, model, study_uid, user="pacs-watcher"):
        handled.append(study_uid)
        if study_uid == "1.2.3.2":
            raise KeyError("an odd row from the PACS")
        return object()

    monkeypatch.setattr(analysis, "analyse_study", analyse)
    outcome = watcher.poll_once(_Client(), xray_model)
    assert sorted(handled) == ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
    assert outcome["analysed"] == 2 and outcome["errors"] == 1
    assert not worklist.watcher_status().stale  # the poll itself succeeded and was recorded

    polls, reports = [], []

    def flaky_poll(client, model):
        polls.append(time.time())
        if len(polls) == 1:
            raise RuntimeError("the store went away for a moment")
        return {"listed": 0, "pending": 0, "analysed": 0, "errors": 0}

    monkeypatch.setattr(watcher, "poll_once", flaky_poll)
    monkeypatch.setattr(watcher, "PacsClient", lambda: _Client())
    stop = threading.Event()
    thread = threading.Thread(target=watcher.watch, kwargs={"should_stop": stop.is_set, "poll_seconds": 0.05,
                                                             "report": reports.append})
    thread.start()
    deadline = time.time() + 30
    while len(polls) < 2 and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert len(polls) >= 2, "the watcher stopped after an error that was not the PACS being down"
    assert reports[0]["error"] == "RuntimeError"


@needs_pacs
def test_the_watcher_lists_an_adult_study_as_outside_intended_use(pacs, xray_model):
    adult = chest_study(chest_like(xray_model.artifact.quality_reference, 512, 512, seed=6), "Test^Adult", "I-adult",
                        "ACC-adult", patient_age="045Y")
    pacs.store([adult])
    done = analysis.analyse_study(pacs, xray_model, adult.StudyInstanceUID)
    assert done is not None and done.result.probability is None
    record = analysis.record(adult.StudyInstanceUID, xray_model.version)
    assert record["status"] == "refused" and record["outcome"] == "outside intended use"
    row = _row(pacs, xray_model, adult.StudyInstanceUID)
    assert row.state == "outside intended use" and "validated for children aged 1 to 5" in row.detail
    assert results.verified_result(  # its SR says why, and is MedCore's own
        pacs.instance(adult.StudyInstanceUID, *_sr_of(pacs, adult.StudyInstanceUID)), adult.StudyInstanceUID)


def _sr_of(pacs, study_uid: str) -> tuple[str, str]:
    series = next(s for s in pacs.medcore_series(study_uid) if s["modality"] == "SR")
    return series["series_uid"], pacs.instances(study_uid, series["series_uid"])[0]


@needs_pacs
def test_a_film_too_large_to_fetch_fails_at_once_with_its_reason(pacs, xray_model, monkeypatch):
    from medcore import config

    study = _flagged_study(xray_model, "huge", 7)
    pacs.store([study])
    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 64 * 1024)  # the 512 x 512 film is 0.5 MB
    assert analysis.analyse_study(pacs, xray_model, study.StudyInstanceUID) is None
    record = analysis.record(study.StudyInstanceUID, xray_model.version)
    assert record["status"] == "failed" and record["attempts"] == 1 and "MB" in record["last_error"]
    row = _row(pacs, xray_model, study.StudyInstanceUID)
    assert row.state == "could not be analysed" and "limit" in row.detail


@needs_pacs
def test_a_study_with_a_lateral_and_a_frontal_film_is_read_on_the_frontal_one(pacs, xray_model):
    """The order the PACS lists a study's series in varies: the lateral film must never be the one read (it would be
    refused, and the flagged frontal film never scored)."""
    for seed in range(4):  # several studies, so that some list the lateral series first
        frontal = _flagged_study(xray_model, f"twoview{seed}", 40 + seed)
        lateral = chest_study(chest_like(xray_model.artifact.quality_reference, 512, 512, seed=50 + seed),
                              f"Test^twoview{seed}", f"I-twoview{seed}", f"ACC-twoview{seed}", patient_age="003Y",
                              view="LL")
        lateral.StudyInstanceUID = frontal.StudyInstanceUID
        pacs.store([lateral, frontal])
        assert analysis.chest_instance(pacs, frontal.StudyInstanceUID)[1] == frontal.SOPInstanceUID
        done = analysis.analyse_study(pacs, xray_model, frontal.StudyInstanceUID)
        assert done.sop_uid == frontal.SOPInstanceUID and done.result.decision == "PNEUMONIA"


def _signed_report(xray_model):
    source = _flagged_study(xray_model, "tamper", 8)
    result = analyse_file(xray_model, results._bytes(source), "film")
    return source, results._bytes(analysis.result_objects(xray_model, source, result)[0])


def _first(dataset, meaning: str):
    return next(item for item in _items(dataset) if item.ConceptNameCodeSequence[0].CodeMeaning == meaning)


def _ds_only(sr):  # the text copy a viewer prints changed, the float copy MedCore reads kept
    _first(sr, "Probability").MeasuredValueSequence[0].NumericValue = "0.01"


def _second_probability(sr):
    import copy

    parent = next(item for item in _items(sr) if any(
        child.ConceptNameCodeSequence[0].CodeMeaning == "Probability" for child in item.get("ContentSequence", [])))
    extra = copy.deepcopy(_first(sr, "Probability"))
    extra.MeasuredValueSequence[0].NumericValue, extra.MeasuredValueSequence[0].FloatingPointValue = "0.01", 0.01
    parent.ContentSequence.insert(0, extra)


def _impression_code(sr):
    _first(sr, "Impression").ConceptCodeSequence[0].CodeValue = "17621005"  # Normal's code, "Pneumonia" words kept


def _second_comment(sr):
    import copy

    extra = copy.deepcopy(_first(sr, "Comment"))
    extra.TextValue = "No pneumonia (1 %)."
    sr.ContentSequence.insert(0, extra)


def _second_signature(sr):
    import copy

    signature = next(item for item in sr.ContentSequence if results._is_signature(item))
    sr.ContentSequence.insert(0, copy.deepcopy(signature))


@pytest.mark.parametrize("tamper", [_ds_only, _second_probability, _impression_code, _second_comment,
                                    _second_signature])
def test_any_edit_of_a_signed_report_breaks_its_signature(xray_model, tamper):
    source, data = _signed_report(xray_model)
    assert results.verified_result(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)), source.StudyInstanceUID)
    edited = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    tamper(edited)
    rewritten = pydicom.dcmread(pydicom.filebase.DicomBytesIO(results._bytes(edited)))
    assert results.verified_result(rewritten, source.StudyInstanceUID) is None


@needs_pacs
def test_the_pacs_failing_does_not_use_up_a_studys_tries_and_its_own_report_is_found(pacs, xray_model, monkeypatch):
    """A study whose SR reached the PACS but whose reply was lost, then failed for good, still reads flagged."""
    from medcore.pacs.client import PacsUnavailable

    study = _flagged_study(xray_model, "outage", 9)
    pacs.store([study])
    real_store = pacs.store
    for _ in range(analysis.MAX_ATTEMPTS + 1):  # the PACS down at fetch time, again and again
        monkeypatch.setattr(analysis, "fetch", lambda *a: (_ for _ in ()).throw(PacsUnavailable("down")))
        with pytest.raises(PacsUnavailable):
            analysis.analyse_study(pacs, xray_model, study.StudyInstanceUID)
    record = analysis.record(study.StudyInstanceUID, xray_model.version)
    assert record["status"] == "retry" and record["attempts"] == 0  # the outages used up nothing
    monkeypatch.undo()

    def stored_but_reply_lost(datasets):
        real_store(datasets)
        raise PacsUnavailable("the PACS did not answer")

    monkeypatch.setattr(pacs, "store", stored_but_reply_lost)
    with pytest.raises(PacsUnavailable):
        analysis.analyse_study(pacs, xray_model, study.StudyInstanceUID)
    with write() as db:  # whatever made it fail for good afterwards
        db.execute(schema.pacs_studies.update().values(status="failed", last_error="KeyError"))
    row = _row(pacs, xray_model, study.StudyInstanceUID)
    assert row.state == "flagged" and "signed report" in row.detail


@needs_pacs
def test_a_result_scored_outside_the_validated_ages_keeps_its_warning_on_the_worklist(pacs, xray_model):
    from medcore import auth, settings

    settings.set_value("xray_allow_outside_age", "on", auth.operator("test"))
    adult = chest_study(chest_like(xray_model.artifact.quality_reference, 512, 512, seed=10), "Test^Allowed",
                        "I-allowed", "ACC-allowed", patient_age="045Y")
    pacs.store([adult])
    assert analysis.analyse_study(pacs, xray_model, adult.StudyInstanceUID).result.probability is not None
    row = _row(pacs, xray_model, adult.StudyInstanceUID)
    assert row.state == "flagged" and row.detail.startswith("OUTSIDE INTENDED USE: Patient aged 45")
    with write() as db:  # the store lost the result: the signed SR brings the warning back with the figure
        db.execute(schema.pacs_studies.delete())
    row = _row(pacs, xray_model, adult.StudyInstanceUID)
    assert row.state == "flagged" and row.detail.startswith("OUTSIDE INTENDED USE: Patient aged 45")


def test_a_study_dated_before_the_cursor_that_arrives_late_is_still_triaged(store, xray_model, monkeypatch):
    listed = []

    class Client:
        def chest_studies(self, first, last):
            listed.append(first)
            return []

    watcher.set_cursor(TODAY)
    watcher.poll_once(Client(), xray_model, today=TODAY)
    assert listed[-1] <= TODAY - datetime.timedelta(days=7)  # yesterday's study that reached the PACS today


def test_the_store_keys_a_study_by_a_keyed_digest_not_a_plain_hash(store):
    import hashlib

    uid = "1.2.826.0.1.3680043.8.498.1"
    assert analysis.study_key(uid) != hashlib.sha256(uid.encode()).hexdigest()[:32]
    assert analysis.study_key(uid) == analysis.study_key(uid) and len(analysis.study_key(uid)) == 32


@needs_pacs
def test_an_oversized_medcore_labelled_object_counts_as_another_source_and_the_study_is_read(pacs, xray_model,
                                                                                           monkeypatch):
    from medcore import config

    study = _flagged_study(xray_model, "bigsr", 11)
    pacs.store([study])
    other = _flagged_study(xray_model, "bigsr-origin", 12)
    pacs.store([other])
    assert analysis.analyse_study(pacs, xray_model, other.StudyInstanceUID) is not None
    _copy_of_sr_into(pacs, other, study)
    real_instance = pacs.instance

    def limited(study_uid, series_uid, sop_uid):  # every report over the limit; the film itself under it
        if series_uid != study.SeriesInstanceUID:
            monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 1024)
        try:
            return real_instance(study_uid, series_uid, sop_uid)
        finally:
            monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 64 * 2**20)

    monkeypatch.setattr(pacs, "instance", limited)
    done = analysis.analyse_study(pacs, xray_model, study.StudyInstanceUID)
    assert done is not None and done.result.decision == "PNEUMONIA"
    assert analysis.record(study.StudyInstanceUID, xray_model.version)["unverified_reports"] == 1
