"""The security review's findings (issue 9), one test each, plus the no-traceback guard and incident records."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from medcore import audit, auth, config, jobs, registry, tasks, uploads
from medcore.jobs import runner
from medcore.jobs import store as job_store
from medcore.notes.explain import ExplanationCache
from medcore.notes.service import analyse_note
from medcore.reports import summary_csv
from tests.synthetic import chest_like, encode, keyword_notes, make_dicom, write_notes_csv

OPERATOR = auth.operator("cli:tests")


def _candidate(tmp_path, version: str) -> str:
    folder = tmp_path / version
    shutil.copytree(tasks.get("xray").shipped_dir, folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["version"] = version
    (folder / "meta.json").write_text(json.dumps(meta))
    return registry.register("xray", folder, "tests").version


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# d. Actions re-check the acting account.
def test_a_disabled_or_demoted_admin_can_no_longer_act_from_an_open_page(store, tmp_path):
    auth.add_user("boss", "a long secret phrase", "admin", "tests")
    seen_at_page_start = auth.get_user("boss")
    candidate = _candidate(tmp_path, "xray-candidate-d")
    auth.set_disabled("boss", True)
    with pytest.raises(auth.NotAllowed):
        registry.promote("xray", candidate, seen_at_page_start)
    with pytest.raises(auth.NotAllowed):
        registry.discard("xray", candidate, seen_at_page_start)
    with pytest.raises(auth.NotAllowed):
        registry.rollback("xray", seen_at_page_start)
    with pytest.raises(auth.NotAllowed):
        jobs.cancel("job-anything", seen_at_page_start)
    with pytest.raises(auth.NotAllowed):
        jobs.start("xray", tmp_path, {}, seen_at_page_start)
    with pytest.raises(auth.NotAllowed):  # a clinician account cannot either, whatever object it passes
        registry.promote("xray", candidate, auth.User("boss", "admin", False))
    assert registry.get("xray", candidate).status == "candidate"


# j. Promote and rollback check what the admin was looking at.
def test_promote_is_refused_when_production_changed_since_the_page_was_drawn(store, tmp_path):
    shown = registry.production("xray").version
    first, second = _candidate(tmp_path, "xray-c1"), _candidate(tmp_path, "xray-c2")
    registry.promote("xray", first, OPERATOR, expected_production=shown)  # the other admin's click
    with pytest.raises(registry.RegistryError, match="changed to xray-c1 since this page was drawn"):
        registry.promote("xray", second, OPERATOR, expected_production=shown)
    with pytest.raises(registry.RegistryError, match="since this page was drawn"):
        registry.rollback("xray", OPERATOR, to=shown, expected_production="xray-c2")
    assert registry.production("xray").version == first


# f. A cancel during the comparison registers nothing.
def test_a_cancel_that_arrives_while_comparing_registers_nothing(store, tmp_path, monkeypatch):
    shipped = tasks.get("xray").shipped_dir

    class ComparingWhenCancelled:
        key, name = "xray", "xray"

        def options(self, values):
            return values

        def train(self, data, out, options, progress, should_stop):
            shutil.copytree(shipped, out)
            meta = json.loads((out / "meta.json").read_text())
            meta["version"] = "xray-cancelled-while-comparing"
            (out / "meta.json").write_text(json.dumps(meta))

        def compare(self, candidate, production, data):
            raise runner.Cancelled()  # what the SIGTERM handler raises, here in the middle of the comparison

    monkeypatch.setattr(runner.tasks, "get", lambda name: ComparingWhenCancelled())
    job_id = job_store._record("xray", tmp_path, "test", {}, "tests")
    with pytest.raises(runner.Cancelled):
        runner._train_compare_register(job_store.get(job_id), tmp_path / "out")
    assert {v.origin for v in registry.list_versions("xray")} == {"shipped"}  # no candidate registered


# g. Identical uploads at the same time; M3 (issue 21): nothing in use is ever deleted by a twin's end.
def test_identical_uploads_each_get_their_own_complete_set(store, xray_model):
    films = {f"set/{label}/person{i}_{label.lower()}_{i}.png":
             encode(chest_like(xray_model.artifact.quality_reference, 256, 256, seed=i), "PNG")
             for label in ("NORMAL", "PNEUMONIA") for i in range(40)}
    data = _zip(films)
    with ThreadPoolExecutor(4) as pool:
        roots = list(pool.map(lambda _: uploads.save_upload("xray", "films.zip", data), range(4)))
    assert len(set(roots)) == 4 and all(len(list(root.rglob("*.png"))) == 80 for root in roots)
    assert not [p for p in (store / "uploads").iterdir() if p.name.startswith(".tmp")]


def test_a_refused_start_or_a_finished_validation_never_deletes_a_twin_in_use(store, tmp_path):
    csv = tmp_path / "notes.csv"
    write_notes_csv(csv, keyword_notes(60))
    in_use = uploads.save_upload("notes_medical_abstracts", "notes.csv", csv.read_bytes())  # a running job's
    twin = uploads.save_upload("notes_medical_abstracts", "notes.csv", csv.read_bytes())  # the same file again
    with pytest.raises(jobs.JobError, match="exactly the classes"):
        jobs.start("notes_medical_abstracts", twin, {}, OPERATOR, uploaded=True)  # refused: its upload is discarded
    assert not twin.exists() and in_use.exists()  # ... and only its own
    third = uploads.save_upload("notes_medical_abstracts", "notes.csv", csv.read_bytes())
    uploads.discard(third)  # what the end of a local validation does
    assert in_use.exists() and in_use.read_bytes() == csv.read_bytes()


def test_only_decoded_pixels_of_accepted_images_are_stored(store, xray_model):
    """L1 (issue 21): a DICOM without its preamble named .png, a note and a spreadsheet in the zip, a truncated film:
    nothing but the pixels of accepted images reaches the disk; what was dropped is counted."""
    reference = xray_model.artifact.quality_reference
    dicom = make_dicom((chest_like(reference, 128, 128, seed=1) * 4000).astype(np.uint16), bits=12,
                       patient_name="Doe^Jane", patient_id="MRN-77123")
    entries = {f"set/{label}/person{i}_{label.lower()}.png": encode(chest_like(reference, 128, 128, seed=i), "PNG")
               for label in ("NORMAL", "PNEUMONIA") for i in range(4)}
    entries.update({"set/NORMAL/person9_normal.png": dicom[128:],  # no preamble, named .png
                    "set/NORMAL/person8_normal.dcm": dicom,
                    "set/notes_Jane_Doe.txt": b"Jane Doe, MRN-77123, admitted with cough",
                    "set/PNEUMONIA/list.csv": b"name,id\nJane Doe,MRN-77123\n",
                    "set/PNEUMONIA/person7_virus.jpeg": encode(chest_like(reference, 128, 128, seed=7), "JPEG")[:300]})
    stale = store / "uploads" / ".tmp-crashed"
    stale.mkdir(parents=True)
    (stale / "person1.dcm").write_bytes(dicom)
    os.utime(stale, (time.time() - 7 * 3600, time.time() - 7 * 3600))
    root = uploads.save_upload("xray", "films.zip", _zip(entries))
    stored = [p for p in (store / "uploads").rglob("*") if p.is_file()]
    assert not stale.exists()
    everything = b"".join(p.read_bytes() for p in stored)
    assert b"Doe" not in everything and b"MRN-77123" not in everything and b"DICM" not in everything
    assert {p.suffix for p in stored if p.name != uploads.COMPLETE} == {".png"}
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in stored if p.name != uploads.COMPLETE)
    assert not [p for p in stored if "Jane" in p.name or p.suffix in (".txt", ".csv")]
    counts = json.loads((root.parent / uploads.COMPLETE).read_text())
    assert counts == {"files": 9, "dropped_not_data": 2, "dropped_unreadable": 2, "dropped_synthetic": 0}


# a. Uploaded DICOM keeps no identifiers; uploads are deleted after use; the store is owner-only and bounded.
def test_uploaded_dicom_is_kept_as_pixels_only(store, xray_model):
    reference = xray_model.artifact.quality_reference
    entries = {f"{label}/person{i}_{label.lower()}.dcm": make_dicom(
        (chest_like(reference, 128, 128, seed=i) * 4000).astype(np.uint16), bits=12,
        patient_name="Smith^John", patient_id="MRN-99812") for label in ("NORMAL", "PNEUMONIA") for i in range(5)}
    root = uploads.save_upload("xray", "dicoms.zip", _zip(entries))
    files = [p for p in root.rglob("*") if p.is_file() and p.name != uploads.COMPLETE]
    assert len(files) == 10 and all(p.suffix == ".png" for p in files)
    everything = b"".join(p.read_bytes() for p in (store / "uploads").rglob("*") if p.is_file())
    assert b"Smith" not in everything and b"MRN-99812" not in everything
    assert "5 NORMAL and 5 PNEUMONIA images" in jobs.validate_data("xray", root)


def test_an_uploaded_set_is_deleted_when_its_job_is_refused_or_ends(store, tmp_path):
    csv = tmp_path / "notes.csv"
    write_notes_csv(csv, keyword_notes(60))
    root = uploads.save_upload("notes_medical_abstracts", "notes.csv", csv.read_bytes())
    with pytest.raises(jobs.JobError, match="exactly the classes"):
        jobs.start("notes_medical_abstracts", root, {}, OPERATOR, uploaded=True)
    assert not root.exists()
    good = tmp_path / "good.csv"
    write_notes_csv(good, keyword_notes(120, keywords={label: f"kw{i}" for i, label in enumerate(
        registry.production("notes_symptom2disease").summary["labels"])}))
    root = uploads.save_upload("notes_symptom2disease", "good.csv", good.read_bytes())
    job = jobs.start("notes_symptom2disease", root, {"epochs": 2, "hidden": 16}, OPERATOR, uploaded=True)
    deadline = time.time() + 240
    while jobs.get(job.id).active and time.time() < deadline:
        time.sleep(0.5)
    assert jobs.get(job.id).status == "succeeded", (job.folder / "log.txt").read_text()[-2000:]
    assert not root.exists() and list((store / "uploads").iterdir()) == []


def test_the_store_is_owner_only(tmp_path, monkeypatch):
    loose = tmp_path / "loose-store"
    loose.mkdir(mode=0o755)
    monkeypatch.setenv("MEDCORE_STORE_DIR", str(loose))
    assert stat.S_IMODE(config.store_dir().stat().st_mode) == 0o700
    monkeypatch.setenv("MEDCORE_STORE_DIR", str(tmp_path / "new-store"))
    assert stat.S_IMODE(config.store_dir().stat().st_mode) == 0o700


def test_job_folders_and_cached_training_sets_are_bounded(store):
    for i in range(jobs.store.KEEP_JOB_FOLDERS + 5):
        folder = jobs.jobs_dir() / f"job-20200101-0000{i:02d}-0000{i:02d}"
        folder.mkdir(parents=True)
        os.utime(folder, (1_000_000 + i, 1_000_000 + i))
    cache = store / "cache"
    cache.mkdir()
    for i in range(jobs.store.KEEP_CACHED_SETS + 2):
        (cache / f"images-{i}.npy").write_bytes(b"x")
        os.utime(cache / f"images-{i}.npy", (1_000_000 + i, 1_000_000 + i))
    job_store.prune()
    kept = sorted(p.name for p in jobs.jobs_dir().iterdir())
    assert len(kept) == jobs.store.KEEP_JOB_FOLDERS and "job-20200101-000000-000000" not in kept
    assert sorted(p.name for p in cache.iterdir()) == ["images-2.npy", "images-3.npy", "images-4.npy"]


# i. Spreadsheet-safe CSV.
def test_csv_exports_never_write_a_formula(store):
    rows = [{"file": "=HYPERLINK(\"http://evil\",\"x\").png", "decision": "NORMAL", "note": ""},
            {"file": "\t=cmd|' /C calc'!A0.png", "decision": "NORMAL", "note": "\r+1"}]
    text = summary_csv(rows)
    assert "'=HYPERLINK" in text and "'\t=cmd" in text and "'\r+1" in text
    audit.record("\t=evil", "predict_xray", "-1+1", detail="@SUM(1)")
    exported = audit.to_csv_table(audit.table(audit.recent(1)))
    assert "'\t=evil" in exported and "'-1+1" in exported


# 2. No tracebacks to users; incidents recorded; the audit row survives a failed explanation.
def test_an_unexpected_error_shows_an_incident_id_and_no_traceback(store, monkeypatch):
    from medcore.notes import service
    from tests.conftest import signed_in_app

    def broken(model, text):
        raise RuntimeError("boom at /srv/secret/medcore/notes/service.py with the note text inside")

    page = signed_in_app("clinician", "views/notes.py")
    monkeypatch.setattr(service, "predict_note", broken)
    page.text_area[0].input("High fever and a productive cough for three days.")
    page.button[0].click().run()
    assert not page.exception, page.exception
    shown = " ".join(str(e.value) for e in [*page.error, *page.markdown, *page.warning])
    assert "incident" in shown and "/srv/secret" not in shown and "Traceback" not in shown
    incident = next(r for r in audit.recent(10) if r["action"] == "incident")
    assert incident["outcome"] == "RuntimeError" and json.loads(incident["detail"])["incident"] in shown
    assert "note text" not in json.dumps(incident)


def test_a_failed_explanation_keeps_the_prediction_and_its_audit_row(store, notes_models):
    class BrokenCache(ExplanationCache):
        def get(self, model, note):
            raise MemoryError("explainer ran out of memory")

    model = notes_models["symptom2disease"]
    prediction, attribution, error = analyse_note(model, "High fever, cough and chills.", BrokenCache(), "dr_e")
    assert prediction is not None and attribution is None and "incident" in error
    row = next(r for r in audit.recent(5) if r["user"] == "dr_e")
    assert row["outcome"] == prediction.ranked(1)[0][0] and "failed (incident" in json.loads(row["detail"])[
        "explanation"]


# k. A note can come on standard input, out of the process list.
def test_predict_notes_reads_the_note_from_standard_input(store):
    done = subprocess.run([sys.executable, "-m", "medcore.cli", "predict", "notes", "--task", "symptom2disease",
                           "--json"], input="I have a high fever, chills and a cough with phlegm.",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["prediction"] and result["attributions"]


def test_a_stored_folder_name_or_label_is_shown_literally(xray_model, monkeypatch):
    """L4 (issue 21): the folder name of an uploaded local-validation zip reaches the X-ray banner as text, not as a
    link; class labels in charts are text, not Plotly markup."""
    from medcore.charts import class_probabilities_figure, confusion_figure
    from medcore.reports import xray_banner

    evil = "[click](http://evil.example) ![x](http://evil.example/p.png) <b>bold</b>"
    monkeypatch.setitem(xray_model.artifact.meta, "local_validation", {
        "n_normal": 60, "n_pneumonia": 60, "source": evil, "after": xray_model.validation_metrics})
    banner = xray_banner(xray_model)
    assert "[click](" not in banner and "![x](" not in banner and "<b>" not in banner
    assert "\\[click\\]\\(http" in banner
    figure = class_probabilities_figure([("<a href='http://evil.example'>Flu</a>", 0.9)])
    assert "<a href" not in str(figure.data[0].y) and "&lt;a href" in str(figure.data[0].y)
    heatmap = confusion_figure([[1, 0], [0, 1]], ["<b>A</b>", "B"], "t")
    assert "<b>" not in str(heatmap.data[0].x)


def test_a_failed_job_shows_a_short_reason_and_an_incident_never_a_path(store, tmp_path, caplog, tmp_data_roots):
    """L7 (issue 21): what the admin page shows of a failed job names no server path and no traceback."""
    import logging

    hidden = tmp_path / "secret-server-path"
    hidden.mkdir()
    job_id = job_store._record("xray", hidden, "tests", {"epochs": 1, "image_size": 64, "members": 1}, "tests")
    with caplog.at_level(logging.ERROR, logger="medcore"):
        assert runner.run(job_id) == 1
    job = jobs.get(job_id)
    assert job.status == "failed" and "incident" in job.error and "production is unchanged" in job.error
    assert "secret-server-path" not in job.error and "Traceback" not in job.error and "/" not in job.error
    incident = job.error.split("incident ")[1][:8]
    assert incident in caplog.text  # the details are in the server log, under the same id


def test_child_processes_get_no_secrets(store, tmp_path, monkeypatch, tmp_data_roots):
    """L8/L11 (issue 21): a training job and the Flower processes do not inherit the first admin's password (or any
    other secret); Flower processes get no MEDCORE_* setting at all."""
    monkeypatch.setenv("MEDCORE_ADMIN_USER", "chief")
    monkeypatch.setenv("MEDCORE_ADMIN_PASSWORD", "the first admin's secret")
    monkeypatch.setenv("MEDCORE_PACS_PASSWORD", "pacs secret")
    monkeypatch.setenv("SOME_API_TOKEN", "token")
    for name in ("OPENAI_API_KEY", "AWS_ACCESS_KEY_ID", "DB_PASSWD", "SMTP_PASS", "MYSQL_PWD",
                 "AZURE_STORAGE_CONNECTION_STRING"):
        monkeypatch.setenv(name, "secret")
    monkeypatch.setenv("MEDCORE_DATABASE_URL", "")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlflow secret")
    seen = []

    class Recorder:
        pid = 999_999_999

        def __init__(self, command, **kwargs):
            seen.append((command, kwargs.get("env")))

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    csv = tmp_path / "notes.csv"
    write_notes_csv(csv, keyword_notes(120, keywords={label: f"kw{i}" for i, label in enumerate(
        registry.production("notes_symptom2disease").summary["labels"])}))
    jobs.start("notes_symptom2disease", csv, {"epochs": 1}, OPERATOR)
    (command, env), = seen
    assert command[-2:][0] == "medcore.jobs" and env is not None
    assert env["MEDCORE_STORE_DIR"] == os.environ["MEDCORE_STORE_DIR"]  # what the job needs stays
    for secret in ("MEDCORE_ADMIN_PASSWORD", "MEDCORE_ADMIN_USER", "MEDCORE_PACS_PASSWORD", "SOME_API_TOKEN",
                   "OPENAI_API_KEY", "DB_PASSWD", "SMTP_PASS", "MYSQL_PWD", "AZURE_STORAGE_CONNECTION_STRING"):
        assert secret not in env, secret
    assert env["MLFLOW_TRACKING_PASSWORD"] == "mlflow secret" and "AWS_ACCESS_KEY_ID" in env  # a job mirrors to MLflow
    flower = config.child_environment(with_medcore=False)
    assert not [name for name in flower if name.startswith("MEDCORE_")] and "PATH" in flower
    assert "MLFLOW_TRACKING_PASSWORD" not in flower and "AWS_ACCESS_KEY_ID" not in flower
    auth.create_admin_from_environment()  # the first start: the password leaves this process's environment
    assert "MEDCORE_ADMIN_PASSWORD" not in os.environ


def test_paths_on_the_server_are_limited_to_the_data_roots(store, tmp_path, monkeypatch):
    """L9 (issue 21): the admin page's "path on the server" fields read only under MEDCORE_DATA_ROOTS (default: the
    data folder) or an upload; `..` and links cannot lead out. The operator at the shell is not limited."""
    from medcore.training.local_calibration import LocalDataError, calibrate_and_register
    from tests.conftest import ensure_user

    allowed = tmp_path / "allowed"
    (allowed / "NORMAL").mkdir(parents=True)
    (allowed / "PNEUMONIA").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    monkeypatch.setenv("MEDCORE_DATA_ROOTS", str(allowed))
    ensure_user("test-admin", "admin")
    admin = auth.get_user("test-admin")
    for path in (outside, allowed / ".." / "outside", allowed / "link", "/etc"):
        with pytest.raises(jobs.JobError, match="outside the folders from which data sets may be read"):
            jobs.start("xray", Path(path), {}, admin)
        with pytest.raises(LocalDataError, match="MEDCORE_DATA_ROOTS"):
            calibrate_and_register(Path(path), admin, tmp_path / "work")
    (allowed / "link").unlink()
    with pytest.raises(jobs.JobError, match="outside the folders"):
        jobs.start("xray", allowed, {}, admin, federated={"sites": [str(allowed), "/etc"], "rounds": 1,
                                                          "strategy": "fedavg"})
    with pytest.raises(jobs.JobError) as inside:  # inside the root: refused for its content, not for its place
        jobs.start("xray", allowed, {}, admin)
    assert "outside the folders" not in str(inside.value)
    assert uploads.allowed_data_path(allowed / "NORMAL") == (allowed / "NORMAL").resolve()
    (allowed / "PNEUMONIA" / "p.jpeg").symlink_to(outside / "elsewhere.jpeg")  # a file link out of the root
    with pytest.raises(jobs.JobError, match="a link to a file outside"):
        jobs.start("xray", allowed, {}, admin)
    (allowed / "PNEUMONIA" / "p.jpeg").unlink()
    other_upload = uploads.save_upload("notes_medical_abstracts", "n.csv", b"label,text\nx,y\n")
    monkeypatch.setenv("MEDCORE_DATA_ROOTS", str(store))  # even a root that holds the uploads
    with pytest.raises(jobs.JobError, match="outside the folders"):  # another user's upload, by its path
        jobs.start("notes_medical_abstracts", other_upload, {}, admin)
    assert other_upload.exists()  # and the refusal deleted nothing


def test_streamlit_table_export_is_off_so_every_csv_goes_through_the_formula_guard():
    """Item i (issue 21): the tables' built-in CSV download would write `=HYPERLINK(...)` file names as formulas."""
    import tomllib

    settings = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert settings["client"]["disableDataExport"] is True
