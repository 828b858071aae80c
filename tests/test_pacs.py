"""The PACS path against a real Orthanc (issue 23): chest studies listed by QIDO-RS, a film fetched by WADO-RS, the
result written back by STOW-RS as a structured report and an overlay in the same study, read back with pydicom and
highdicom; a refused film gets its SR; each study analysed once; the PACS being down is a message, not a crash.
Needs Orthanc (eval $(.ci/orthanc start)); the SR/SC content checks without it run on their own."""

from __future__ import annotations

import datetime
import io
import os
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from medcore import audit
from medcore.imaging.service import analyse_file
from medcore.pacs import analysis, feedback, results, worklist
from medcore.pacs.client import PacsClient, PacsUnavailable
from medcore.pacs.demo import as_bytes, chest_study
from tests.synthetic import chest_like, text_screenshot

PACS = {"url": os.environ.get("MEDCORE_TEST_PACS_URL"), "user": os.environ.get("MEDCORE_TEST_PACS_USER"),
        "password": os.environ.get("MEDCORE_TEST_PACS_PASSWORD"), "ca_bundle": None}
needs_pacs = pytest.mark.skipif(not PACS["url"], reason="needs Orthanc (eval $(.ci/orthanc start))")


@pytest.fixture()
def pacs(monkeypatch, store):
    for key, value in PACS.items():
        if value:
            monkeypatch.setenv(f"MEDCORE_PACS_{key.upper()}", value)
    return PacsClient()


def _film(xray_model, seed: int, size: int = 1024) -> np.ndarray:
    return chest_like(xray_model.artifact.quality_reference, size, size, seed=seed)


def test_the_report_names_probability_threshold_decision_and_model_and_the_overlay_references_the_film(xray_model,
                                                                                                    tmp_path):
    source = chest_study(_film(xray_model, 1), "Müller^Jürgen", "P-1", "ACC-1")
    result = analyse_file(xray_model, as_bytes(source), "film")
    sr, capture = analysis.result_objects(xray_model, source, result)
    read = results.read_result(results._bytes(sr))
    assert read["probability"] == pytest.approx(result.probability, abs=1e-4)
    assert read["threshold"] == pytest.approx(xray_model.threshold, abs=1e-4)
    assert read["impression"] == ("Pneumonia" if result.flagged else "Normal")
    assert read["model_version"] == xray_model.version and read["source_sop_instance_uid"] == source.SOPInstanceUID
    assert "decision support, not a diagnosis" in read["comment"]
    for made in (sr, capture):
        assert made.StudyInstanceUID == source.StudyInstanceUID and made.SeriesInstanceUID != source.SeriesInstanceUID
        assert made.Manufacturer == "MedCore" and str(made.PatientName) == "Müller^Jürgen"
        written = pydicom.dcmread(io.BytesIO(results._bytes(made)))
        assert str(written.PatientName) == "Müller^Jürgen" and written.SpecificCharacterSet == "ISO_IR 192"
    assert capture.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert capture.pixel_array.shape[-1] == 3
    if shutil.which("dciodvfy"):  # dicom3tools: the objects are valid DICOM of their kind
        for name, made in (("sr", sr), ("sc", capture)):
            (tmp_path / f"{name}.dcm").write_bytes(results._bytes(made))
            check = subprocess.run(["dciodvfy", str(tmp_path / f"{name}.dcm")], capture_output=True)
            errors = [line for line in check.stderr.decode(errors="replace").splitlines() if line.startswith("Error")]
            assert errors == [], (name, errors)


def test_a_refused_film_gets_a_report_that_says_why_and_no_probability(xray_model):
    source = chest_study(text_screenshot(), "Doe^Jane", "P-2", "ACC-2")
    result = analyse_file(xray_model, as_bytes(source), "film")
    (sr,) = analysis.result_objects(xray_model, source, result)
    read = results.read_result(results._bytes(sr))
    assert read["probability"] is None and read["impression"] == "Not analysed: film refused"
    assert "Refused" in read["comment"] and "flat tone" in read["comment"]


@needs_pacs
def test_the_watcher_path_writes_an_sr_and_overlay_that_a_query_finds_and_never_twice(pacs, xray_model):
    source = chest_study(_film(xray_model, 3), "Test^Watcher", "W-1", "ACC-W1")
    pacs.store([source])
    first = analysis.analyse_study(pacs, xray_model, source.StudyInstanceUID)
    assert first is not None and first.stored and first.sop_uid == source.SOPInstanceUID
    ours = pacs.medcore_series(source.StudyInstanceUID)
    assert sorted(s["modality"] for s in ours) == ["OT", "SR"]  # SR + secondary capture, in the same study
    sr_series = next(s for s in ours if s["modality"] == "SR")
    sop = pacs.instances(source.StudyInstanceUID, sr_series["series_uid"])[0]
    read = results.read_result(pacs.instance(source.StudyInstanceUID, sr_series["series_uid"], sop))
    assert read["probability"] == pytest.approx(first.result.probability, abs=1e-4)
    assert read["source_sop_instance_uid"] == source.SOPInstanceUID and read["model_version"] == xray_model.version
    assert analysis.analyse_study(pacs, xray_model, source.StudyInstanceUID) is None  # claimed and done: once
    assert len(pacs.medcore_series(source.StudyInstanceUID)) == 2
    rows = [r for r in audit.recent(20) if r["action"] in ("predict_xray", "pacs_result_stored")]
    text = " ".join(str(r) for r in rows)
    assert "Test^Watcher" not in text and "W-1" not in text and source.StudyInstanceUID not in text


@needs_pacs
def test_a_refused_film_from_the_pacs_gets_its_sr_and_a_restart_does_not_repeat_it(pacs, xray_model):
    source = chest_study(text_screenshot(), "Test^Refused", "R-1", "ACC-R1")
    pacs.store([source])
    analysis.analyse_study(pacs, xray_model, source.StudyInstanceUID)
    ours = pacs.medcore_series(source.StudyInstanceUID)
    assert [s["modality"] for s in ours] == ["SR"]
    assert analysis.record(source.StudyInstanceUID, xray_model.version)["status"] == "refused"
    from medcore import store as database
    from medcore.store import schema

    with database.write() as db:  # a store that lost its record (a restored backup): MedCore's signed SR says done
        db.execute(schema.pacs_studies.delete())
    assert analysis.analyse_study(pacs, xray_model, source.StudyInstanceUID) is None
    assert len(pacs.medcore_series(source.StudyInstanceUID)) == 1
    record = analysis.record(source.StudyInstanceUID, xray_model.version)
    assert record["status"] == "refused" and "flat tone" in record["last_error"]  # what the SR itself says


@needs_pacs
def test_the_worklist_is_in_triage_order_with_the_prior_film(pacs, xray_model):
    today = datetime.date.today()
    films = {"high": _film(xray_model, 11), "low": _film(xray_model, 12), "refused": text_screenshot()}
    studies = {name: chest_study(pixels, f"Test^{name}", f"T-{name}", f"ACC-{name}") for name, pixels in films.items()}
    waiting = chest_study(_film(xray_model, 13), "Test^Waiting", "T-waiting", "ACC-waiting")
    earlier = chest_study(_film(xray_model, 14), "Test^high", "T-high", "ACC-old", today - datetime.timedelta(days=30))
    pacs.store([*studies.values(), waiting, earlier])
    for study in studies.values():
        analysis.analyse_study(pacs, xray_model, study.StudyInstanceUID)
    rows = [r for r in worklist.worklist(pacs, xray_model.version, xray_model.threshold, today, today)
            if r.study.patient_id.startswith("T-")]
    states = [r.state for r in rows]
    assert states.index("not yet analysed") < states.index("refused")  # waiting, then refused
    assert states == sorted(states, key=worklist.ORDER.get)  # flagged first, not flagged after all unjudged
    assert all(a.rank <= b.rank for a, b in zip(rows, rows[1:]))  # and within each, highest probability first
    high = next(r for r in rows if r.study.patient_id == "T-high")
    prior = worklist.prior_study(pacs, high.study)
    assert prior is not None and prior.accession_number == "ACC-old"


@needs_pacs
def test_confirmed_findings_are_counted_by_month_and_fetched_for_local_validation(pacs, xray_model, tmp_path):
    source = chest_study(_film(xray_model, 21), "Test^Feedback", "F-1", "ACC-F1")
    pacs.store([source])
    done = analysis.analyse_study(pacs, xray_model, source.StudyInstanceUID)
    feedback.confirm(done.sop_uid, done.study_uid, done.series_uid, "NORMAL", xray_model.version,
                     done.result.probability, done.result.decision, "dr.test")
    rows = feedback.confirmed()
    assert len(rows) == 1 and rows[0]["label"] == "NORMAL" and "Test^Feedback" not in str(rows)
    month = feedback.agreement_by_month(rows)[0]
    assert month["n"] == 1 and month["agreement"] == (1.0 if done.result.decision == "NORMAL" else 0.0)
    folder = feedback.confirmed_films_folder(pacs, rows, tmp_path / "confirmed")
    assert len(list((folder / "NORMAL").glob("*.png"))) == 1 and not list((folder / "PNEUMONIA").glob("*.png"))


def test_the_pacs_being_down_is_a_message_not_a_crash(store, xray_model):
    client = PacsClient({"url": "http://127.0.0.1:9/dicom-web", "user": "medcore", "password": "secret value",
                         "ca_bundle": None})
    with pytest.raises(PacsUnavailable) as down:
        client.chest_studies(datetime.date.today(), datetime.date.today())
    assert "cannot be reached" in str(down.value)
    assert "secret value" not in str(down.value) and "127.0.0.1" not in str(down.value)


@needs_pacs
def test_wrong_credentials_are_named_without_showing_them(store):
    client = PacsClient({**PACS, "password": "not the password"})
    with pytest.raises(PacsUnavailable, match="refused MedCore's credentials") as refused:
        client.chest_studies(datetime.date.today(), datetime.date.today())
    assert "not the password" not in str(refused.value)


def test_the_overlay_carries_its_legend_below_the_film_and_the_report_says_one_view(xray_model):
    """Viewers that do not render SR still show the finding, the figure, the decision, the model and the disclaimer
    (burned in below the film, never over the lungs); the SR's procedure is a single frontal view."""
    source = chest_study(_film(xray_model, 41, 600), "Legend^Test", "L-1", "ACC-L1")
    result = analyse_file(xray_model, as_bytes(source), "film")
    sr, capture = analysis.result_objects(xray_model, source, result)
    lines = results.legend_lines(result.probability, xray_model.threshold, result.decision, xray_model.version)
    assert lines[0] == f"MedCore decision: {result.decision}" and f"{result.probability:.1%}" in lines[1]
    assert xray_model.version in lines[2] and lines[3] == "Decision support, not a diagnosis"
    pixels = capture.pixel_array
    height = result.display.shape[0]
    assert pixels.shape[0] > height and pixels.shape[1] == result.display.shape[1]
    plain = results.overlay_capture(source, __import__("medcore.imaging.gradcam", fromlist=["overlay"]).overlay(
        result.display, result.heatmap, 0.5), xray_model.version).pixel_array
    assert np.array_equal(pixels[:height], plain)  # the film itself untouched
    band = pixels[height:]
    assert (band > 200).any(axis=-1).mean() > 0.01  # words written in the band
    warned = results.legend_lines(0.9, 0.3, "PNEUMONIA", "v", warning="OUTSIDE INTENDED USE: ...")
    assert warned[0] == "OUTSIDE INTENDED USE"
    assert sr.ConceptNameCodeSequence and "36554-4" in str(sr) and "36643-5" not in str(sr)
