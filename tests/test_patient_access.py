"""Every look at a patient recorded, without storing who the patient is in clear (issue 31): each worklist page and
each opened study writes an access row with keyed digests of the patient id and accession number; `medcore audit
accesses --patient-id` answers who listed or opened the patient, when; no table holds names, ids, accession numbers
or UIDs in clear (confirmations included, kept as history); the worklist's range is bounded and paged."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import DBAPIError

from medcore import access, audit, config, keyed
from medcore.pacs import analysis, feedback, worklist
from medcore.pacs.client import Study
from medcore.pacs.demo import chest_study
from medcore.store import engine, read, schema, write
from tests.synthetic import chest_like
from tests.test_pacs import needs_pacs, pacs  # noqa: F401 - the PACS fixture

TODAY = datetime.date.today()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medcore.cli", *args], capture_output=True, text=True, timeout=300)


def _all_stored_text() -> str:
    """Every value of every table of the store, as text: what someone with a copy of the database could read."""
    text = []
    with read() as db:
        for table in inspect(engine()).get_table_names():
            text += [repr(tuple(row)) for row in db.execute(select(schema.metadata.tables[table]))
                     ] if table in schema.metadata.tables else []
    return "\n".join(text)


@needs_pacs
def test_who_listed_and_opened_a_patient_is_answered_and_nothing_names_the_patient(pacs, xray_model, monkeypatch):
    import secrets

    monkeypatch.setenv("MEDCORE_WORKLIST_PAGE_SIZE", "500")  # the PACS holds other tests' studies too
    tag = secrets.token_hex(3).upper()  # the PACS may hold earlier runs' studies: this patient is new
    patient, accession = f"MRN-PRIV-{tag}", f"ACC-PRIV-{tag}"
    source = chest_study(chest_like(xray_model.artifact.quality_reference, 512, 512, seed=31), f"Privacy^P{tag}",
                         patient, accession, patient_age="002Y")
    pacs.store([source])
    rows = worklist.worklist(pacs, xray_model.version, xray_model.threshold, TODAY, TODAY)
    shown = worklist.shown_page(rows, 1, "dr.lister")
    assert any(r.study.patient_id == patient for r in shown)
    study = next(r.study for r in rows if r.study.patient_id == patient)
    opened = analysis.view_study(pacs, xray_model, study, "dr.opener")
    feedback.confirm(opened.sop_uid, opened.study_uid, opened.series_uid, "PNEUMONIA", xray_model.version,
                     opened.result.probability, opened.result.decision, "dr.opener")

    found = access.accesses(patient)
    assert [(r["user"], r["action"]) for r in found] == [("dr.lister", "listed"), ("dr.opener", "opened")]
    assert access.accesses(patient, "ACC-OTHER") == []
    assert access.accesses("MRN-SOMEONE-ELSE") == []

    out = _cli("audit", "accesses", "--patient-id", patient, "--accession", accession, "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)["accesses"]
    assert [(r["user"], r["action"]) for r in listed] == [("dr.lister", "listed"), ("dr.opener", "opened")]
    assert patient not in out.stdout

    stored = _all_stored_text()
    for secret in (patient, accession, "Privacy", source.StudyInstanceUID, source.SeriesInstanceUID,
                   source.SOPInstanceUID):
        assert secret not in stored, f"{secret} is in the store in clear"
    assert access.patient_key(patient) in stored  # only its keyed digest


def test_the_installation_secret_is_kept_apart_and_never_silently_replaced(store, tmp_path, monkeypatch):
    """The key is beside the store folder, owner-only; a store that was used with one refuses a missing, another,
    weak or world-readable key instead of making a new one (which would make "nobody opened this patient" the answer
    for every earlier look)."""
    first = access.patient_key("MRN-1")
    path = keyed.secret_path()
    assert path.exists() and path.parent != config.store_dir() and (path.stat().st_mode & 0o077) == 0
    assert first == access.patient_key(" MRN-1 ") and first != access.accession_key("MRN-1")
    assert first != hashlib.sha256(b"MRN-1").hexdigest()  # not a plain hash: the key is needed to match an id
    original = path.read_bytes()
    cases = [("missing", lambda: path.unlink(), "is missing"),
             ("another", lambda: path.write_bytes(os.urandom(32)), "not the one this store was used with"),
             ("weak", lambda: path.write_bytes(bytes(40)), "not random"),
             ("readable", lambda: path.chmod(0o644), "readable by others")]
    for name, damage, message in cases:
        keyed._cache.clear()
        damage()
        if path.exists() and name != "readable":
            path.chmod(0o600)
        with pytest.raises(keyed.SecretUnavailable, match=message):
            access.patient_key("MRN-1")
        path.write_bytes(original)
        path.chmod(0o600)
    keyed._cache.clear()
    assert access.patient_key("MRN-1") == first


@pytest.mark.both_engines
def test_the_access_log_and_the_confirmations_are_append_only(store):
    from sqlalchemy import text

    access.record("dr.a", "listed", [("MRN-2", "ACC-2")])
    feedback.confirm("1.2.9", "1.2.8", "1.2.7", "NORMAL", "v1", 0.1, "NORMAL", "dr.a")
    replace = ("INSERT OR REPLACE INTO access_log (id, at, \"user\", action, patient_key, accession_key) "
               "VALUES (1, 0, 'nobody', 'opened', 'x', 'x')" if engine().dialect.name == "sqlite" else
               "INSERT INTO access_log (id, at, \"user\", action, patient_key, accession_key) VALUES "
               "(1, 0, 'nobody', 'opened', 'x', 'x') ON CONFLICT (id) DO UPDATE SET \"user\" = 'nobody'")
    for statement in (schema.access_log.update().values(user="someone else"), schema.access_log.delete(),
                      text(replace), schema.pacs_feedback.update().values(label="PNEUMONIA"),
                      schema.pacs_feedback.delete()):
        with pytest.raises(DBAPIError):
            with write() as db:
                db.execute(statement)
    assert [r["user"] for r in access.accesses("MRN-2")] == ["dr.a"]
    assert [h["label"] for h in feedback.history("1.2.9")] == ["NORMAL"]


def _study(n: int) -> Study:
    return Study(f"1.2.{n}", f"P^{n}", f"MRN-{n}", TODAY.strftime("%Y%m%d"), f"ACC-{n}", ("DX",), "")


def test_the_worklist_range_is_bounded_and_a_page_records_only_what_it_shows(store):
    with pytest.raises(ValueError, match=f"at most {config.WORKLIST_MAX_DAYS} days"):
        worklist.check_range(TODAY - datetime.timedelta(days=config.WORKLIST_MAX_DAYS), TODAY)
    worklist.check_range(TODAY - datetime.timedelta(days=config.WORKLIST_MAX_DAYS - 1), TODAY)
    with pytest.raises(ValueError, match="first day comes after"):
        worklist.check_range(TODAY, TODAY - datetime.timedelta(days=1))
    rows = [worklist.WorklistRow(_study(n), "not yet analysed", None, "") for n in range(config.worklist_page_size() + 5)]
    assert worklist.page_count(rows) == 2
    second = worklist.shown_page(rows, 2, "dr.pager")
    assert [r.study.patient_id for r in second] == [f"MRN-{n}" for n in range(config.worklist_page_size(),
                                                                              config.worklist_page_size() + 5)]
    assert access.accesses("MRN-0") == [] and len(access.accesses(f"MRN-{config.worklist_page_size()}")) == 1


def test_a_later_confirmation_supersedes_and_both_are_kept(store):
    feedback.confirm("1.2.3.sop", "1.2.3.study", "1.2.3.series", "NORMAL", "v1", 0.2, "NORMAL", "dr.first")
    feedback.confirm("1.2.3.sop", "1.2.3.study", "1.2.3.series", "PNEUMONIA", "v1", 0.2, "NORMAL", "dr.second")
    history = feedback.history("1.2.3.sop")
    assert [(h["label"], h["actor"]) for h in history] == [("NORMAL", "dr.first"), ("PNEUMONIA", "dr.second")]
    assert history[1]["supersedes"] == history[0]["id"]
    current = feedback.confirmed()
    assert len(current) == 1 and current[0]["label"] == "PNEUMONIA" and current[0]["sop_instance_uid"] == "1.2.3.sop"
    row = audit.recent(1)[0]
    detail = json.loads(row["detail"])
    assert row["outcome"] == "corrects" and detail["supersedes_label"] == "NORMAL"
    assert detail["film"] == feedback.film_key("1.2.3.sop")[:16]
    with read() as db:
        stored = [tuple(r) for r in db.execute(select(schema.pacs_feedback))]
    assert "1.2.3" not in repr(stored)  # UIDs only sealed
    assert keyed.unseal(stored[0][2]).count("1.2.3") == 3


@needs_pacs
def test_every_opening_on_the_page_is_recorded_and_header_text_stays_text(pacs, xray_model, monkeypatch):
    """The worklist page (AppTest): a study opened, closed and opened again from the session's cache is recorded
    each time it is shown; the prior study's header date is shown as text, never as markdown (an image link would
    tell a third party who opened the patient)."""
    import secrets
    import time

    from streamlit.testing.v1 import AppTest

    from tests.conftest import ensure_user
    from tests.test_pacs import PACS

    for key, value in PACS.items():
        if value:
            monkeypatch.setenv(f"MEDCORE_PACS_{key.upper()}", value)
    monkeypatch.setenv("MEDCORE_WORKLIST_PAGE_SIZE", "500")
    tag = secrets.token_hex(3).upper()
    now = chest_study(chest_like(xray_model.artifact.quality_reference, 512, 512, seed=63), f"Reopen^P{tag}",
                      f"MRN-RE-{tag}", f"ACC-RE-{tag}", patient_age="003Y")
    old = chest_study(chest_like(xray_model.artifact.quality_reference, 512, 512, seed=64), f"Reopen^P{tag}",
                      f"MRN-RE-{tag}", f"ACC-OLD-{tag}", TODAY - datetime.timedelta(days=40), patient_age="002Y")
    old.StudyDate = "![](http://e.vil/t.png)"
    pacs.store([now, old])
    ensure_user("test-clinician", "clinician")
    at = AppTest.from_file(str(config.REPO_ROOT / "app.py"), default_timeout=300)
    at.session_state["auth"] = {"name": "test-clinician", "signed_in_at": time.time(), "last_seen": time.time()}
    at.run()
    at.switch_page("views/worklist.py").run()
    opened = lambda: [r["action"] for r in access.accesses(f"MRN-RE-{tag}")].count("opened")  # noqa: E731
    at.selectbox(key="worklist-study").set_value(str(now.StudyInstanceUID)).run()
    assert not at.exception, at.exception
    first = opened()
    assert first >= 1
    assert not [m.value for m in at.markdown if "](http" in m.value]
    at.selectbox(key="worklist-study").set_value(None).run()
    at.selectbox(key="worklist-study").set_value(str(now.StudyInstanceUID)).run()
    assert opened() == first + 1


@needs_pacs
def test_the_command_line_analysis_of_one_study_is_recorded_as_a_look(pacs, xray_model):
    import secrets

    tag = secrets.token_hex(3).upper()
    study = chest_study(chest_like(xray_model.artifact.quality_reference, 512, 512, seed=65), f"Cli^P{tag}",
                        f"MRN-CLI-{tag}", f"ACC-CLI-{tag}", patient_age="003Y")
    pacs.store([study])
    out = _cli("pacs", "analyse", study.StudyInstanceUID, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["probability"] is not None
    assert [r["action"] for r in access.accesses(f"MRN-CLI-{tag}")] == ["opened"]
