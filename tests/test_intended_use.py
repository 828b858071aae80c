"""The X-ray model's intended use (issue 31): frontal CR/DX chest films of children aged 1 to 5, declared in the model
folder, stated on the card and the page, enforced on every DICOM film (age, view, modality, body part) with a refusal
that names the reason; a film without an age is scored with the population stated; an administrator may allow
scoring outside the age range, and every such result says so (page, PDF, SR, audit)."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from medcore import audit, auth, settings
from medcore.imaging import intended_use
from medcore.imaging.intended_use import SHIPPED_TRAINING_DATA, IntendedUse, age_from_header
from medcore.imaging.service import analyse_file
from medcore.pacs import analysis, results
from medcore.pacs.demo import as_bytes, chest_study
from tests.synthetic import chest_like, encode


ADMIN = auth.operator("test-admin")


def _film(xray_model, age: str = "", view: str = "PA", birth: str = "", seed: int = 0) -> bytes:
    study = chest_study(chest_like(xray_model.artifact.quality_reference, 512, 512, seed=seed), "Doe^Jane", "P-1",
                        "A-1", patient_age=age, view=view)
    if birth:
        study.PatientBirthDate = birth
    return as_bytes(study)


@pytest.mark.parametrize("age, birth, study_date, years", [
    ("045Y", "", "", 45.0), ("006M", "", "", 0.5), ("003Y", "", "", 3.0), ("", "19800101", "20250102", 45.0),
    ("", "20211201", "20261201", 5.0), ("", "", "20250101", None), (" 045y", "", "", 45.0), ("45Y", "", "", 45.0),
    ("004Y", "20221201", "20261201", 4.0)])
def test_the_age_comes_from_patient_age_else_birth_and_study_dates(age, birth, study_date, years):
    found = age_from_header(age, birth, study_date)
    assert (found is None) if years is None else found == pytest.approx(years, abs=0.01)


@pytest.mark.parametrize("age, birth, study_date, message", [
    ("045", "", "", "PatientAge '045' cannot be read"), ("45 YEARS", "", "", "cannot be read"),
    ("0045Y", "", "", "cannot be read"), ("abc", "", "", "cannot be read"),
    ("", "1980.01.01", "20260101", "birth date '1980.01.01' cannot be read"), ("", "2021", "2026", "cannot be read"),
    ("", "20300101", "20260101", "after the study date"), ("003Y", "19800101", "20260101", "disagree")])
def test_an_age_that_cannot_be_read_or_contradicts_itself_is_no_age_at_all(age, birth, study_date, message):
    with pytest.raises(intended_use.UnreadableAge, match=message):
        age_from_header(age, birth, study_date)


def test_a_film_whose_age_cannot_be_read_gets_no_decision_whatever_the_setting(xray_model, store):
    settings.set_value(intended_use.ALLOW_OUTSIDE_AGE, "on", ADMIN)
    for age, birth in (("045", ""), ("003Y", "19800101")):
        result = analyse_file(xray_model, _film(xray_model, age=age, birth=birth), "odd.dcm")
        assert result.probability is None and result.outside_intended_use and "no decision" in result.error


@pytest.mark.parametrize("body_part", ["CHEST_LATERAL", "ABDOMEN/CHEST", "CSPINE CHEST"])
def test_a_body_part_that_only_contains_chest_is_not_the_chest(xray_model, store, body_part):
    study = chest_study(chest_like(xray_model.artifact.quality_reference, 512, 512), "Doe^Jane", "P-1", "A-1",
                        patient_age="004Y")
    study.BodyPartExamined = body_part
    result = analyse_file(xray_model, as_bytes(study), "part.dcm")
    assert result.probability is None and "not the chest" in result.error


def test_an_adult_film_gets_no_decision_and_a_refusal_that_names_the_reason(xray_model, store):
    result = analyse_file(xray_model, _film(xray_model, age="045Y"), "adult.dcm")
    assert result.probability is None and result.decision is None and result.outside_intended_use
    assert "Patient aged 45: this model is validated for children aged 1 to 5." in result.error
    assert result.as_dict()["decision"] is None and result.refusal_outcome == "outside intended use"
    by_dates = analyse_file(xray_model, _film(xray_model, birth="19800101"), "adult.dcm")  # no PatientAge
    assert by_dates.probability is None and "validated for children aged 1 to 5" in by_dates.error
    infant = analyse_file(xray_model, _film(xray_model, age="011M"), "infant.dcm")
    assert infant.probability is None and "Patient aged 11 months" in infant.error


def test_a_lateral_film_of_a_child_is_refused_and_no_setting_relaxes_it(xray_model, store):
    settings.set_value(intended_use.ALLOW_OUTSIDE_AGE, "on", ADMIN)
    result = analyse_file(xray_model, _film(xray_model, age="004Y", view="LL"), "lateral.dcm")
    assert result.probability is None and result.outside_intended_use
    assert "The DICOM view is LL: this model is validated for frontal (PA/AP) films only." in result.error


def test_a_child_in_range_is_scored_without_a_note_and_a_png_with_the_population_stated(xray_model, store):
    child = analyse_file(xray_model, _film(xray_model, age="005Y"), "child.dcm")
    assert child.probability is not None and child.population_note is None and child.intended_use_warning is None
    png = analyse_file(xray_model, encode(chest_like(xray_model.artifact.quality_reference, 400, 400), "PNG"), "f.png")
    assert png.probability is not None and "children aged 1 to 5" in png.population_note
    assert "carries no age" in png.as_dict()["population"]


def test_an_administrator_may_allow_other_ages_and_every_result_then_says_so(xray_model, store):
    assert not settings.allow_outside_age()  # the default refuses
    settings.set_value(intended_use.ALLOW_OUTSIDE_AGE, "on", ADMIN)
    assert any(r["action"] == "setting_changed" and r["outcome"] == "on" for r in audit.recent(5))
    data = _film(xray_model, age="045Y")
    result = analyse_file(xray_model, data, "adult.dcm")
    assert result.probability is not None and "OUTSIDE INTENDED USE" in result.intended_use_warning
    assert "intended_use_warning" in result.as_dict()
    from medcore.imaging.service import audit_study
    from medcore.pdf_reports import study_report_pdf

    audit_study("test", result, audit.content_digest(data), "test")
    assert "age, allowed" in audit.recent(1)[0]["detail"]
    pdf = study_report_pdf(result, xray_model.operating_evidence())
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True).stdout.decode()
    assert "OUTSIDE INTENDED USE" in text
    import pydicom

    source = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    sr = analysis.result_objects(xray_model, source, result)[0]
    assert "OUTSIDE INTENDED USE" in results.read_result(results._bytes(sr))["comment"]
    with pytest.raises(ValueError, match="one of on, off"):
        settings.set_value(intended_use.ALLOW_OUTSIDE_AGE, "yes", ADMIN)
    clinician = auth.User("dr.no", "clinician", False)
    with pytest.raises(auth.NotAllowed):
        settings.set_value(intended_use.ALLOW_OUTSIDE_AGE, "off", clinician)
    assert settings.allow_outside_age()


def test_the_command_line_keeps_its_contract_for_an_adult_film(xray_model, tmp_path, store):
    (tmp_path / "adult.dcm").write_bytes(_film(xray_model, age="045Y"))
    out = subprocess.run([sys.executable, "-m", "medcore.cli", "predict", "xray", "--json", str(tmp_path / "adult.dcm")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["decision"] is None and "Patient aged 45" in row["error"] and "children aged 1 to 5" in row["error"]


def test_the_model_folder_declares_its_intended_use_and_the_card_states_it(xray_model):
    assert xray_model.meta["intended_use"]["min_age_years"] == 1 and xray_model.meta["intended_use"]["max_age_years"] == 5
    assert xray_model.intended_use == SHIPPED_TRAINING_DATA
    card = (xray_model.path / "model_card.md").read_text()
    assert SHIPPED_TRAINING_DATA.statement() in card and "outside intended use" in card
    assert IntendedUse.from_meta({}) == SHIPPED_TRAINING_DATA  # a folder that predates the declaration
    assert not SHIPPED_TRAINING_DATA.age_allowed(0.99) and SHIPPED_TRAINING_DATA.age_allowed(5.99)
    assert not SHIPPED_TRAINING_DATA.age_allowed(6.0)


def test_pixels_do_not_matter_to_the_rule(xray_model, store):
    """The refusal comes from the header alone: the same pixels of a child are scored."""
    adult = analyse_file(xray_model, _film(xray_model, age="030Y", seed=3), "a.dcm")
    child = analyse_file(xray_model, _film(xray_model, age="003Y", seed=3), "c.dcm")
    assert adult.probability is None and child.probability is not None and np.isfinite(child.probability)


def test_an_open_admin_page_never_reverts_another_admins_change(store):
    """The review's case: admin A's page is drawn with the setting on; admin B turns it off; A's page reruns (any
    widget) without A touching the toggle: the store must stay off. A's click then changes it, audited as A's."""
    import time

    from streamlit.testing.v1 import AppTest

    from tests.conftest import ensure_user

    settings.set_value(intended_use.ALLOW_OUTSIDE_AGE, "on", ADMIN)
    ensure_user("test-admin", "admin")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180)
    at.session_state["auth"] = {"name": "test-admin", "signed_in_at": time.time(), "last_seen": time.time()}
    at.run()
    at.switch_page("views/admin.py").run()
    assert at.toggle(key="allow-outside-age").value is True
    settings.set_value(intended_use.ALLOW_OUTSIDE_AGE, "off", auth.operator("admin-b"))
    at.run()
    assert settings.get(intended_use.ALLOW_OUTSIDE_AGE) == "off" and at.toggle(key="allow-outside-age").value is False
    at.toggle(key="allow-outside-age").set_value(True).run()
    assert settings.get(intended_use.ALLOW_OUTSIDE_AGE) == "on"
    assert audit.recent(1)[0]["user"] == "test-admin" and any("Saved" in s.value for s in at.success)
