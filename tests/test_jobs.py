"""Retraining through the admin page's code path: a real background run, comparison, promotion, faults."""

import io
import os
import signal
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medcore import audit, auth, jobs, production, registry, tasks
from medcore.training import compare
from medcore.uploads import UploadRejected, save_upload
from tests.synthetic import keyword_notes, write_notes_csv, write_opacity_folder

TINY_XRAY = {"epochs": 8, "image_size": 64, "batch_size": 8, "learning_rate": 3e-3, "members": 1}

ADMIN = auth.operator("admin-test")  # an administrator at the server (the CLI's identity)


@pytest.fixture(autouse=True)
def _data_roots(tmp_data_roots):
    """These tests' data sets lie in pytest's temporary folder: inside the data roots for them."""


@pytest.fixture(scope="module")
def opacity_films(tmp_path_factory, xray_model):
    """40 synthetic films; the PNEUMONIA ones carry an opacity the shipped model has never been taught."""
    return write_opacity_folder(tmp_path_factory.mktemp("films"), xray_model.artifact.quality_reference, 20)


def _optional_mlflow():
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow


def wait(job_id: str, until=lambda job, events: not job.active, timeout: float = 240) -> jobs.Job:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = jobs.get(job_id)
        if until(job, jobs.events(job_id)):
            return job
        time.sleep(0.5)
    pytest.fail(f"job {job_id} did not get there in {timeout} s: {jobs.get(job_id)}")


def test_xray_retraining_runs_in_the_background_and_can_be_promoted_and_rolled_back(store, opacity_films):
    shipped = registry.production("xray").version
    job = jobs.start("xray", opacity_films, TINY_XRAY, ADMIN)
    assert job.status in ("queued", "running") and job.pid != os.getpid()
    job = wait(job.id)
    assert job.status == "succeeded", (job.error, (job.folder / "log.txt").read_text()[-2000:])
    epochs = [e for e in jobs.events(job.id) if e["stage"] == "epoch"]
    assert [e["epoch"] for e in epochs] == list(range(1, 9)) and all("eta_s" in e for e in epochs)

    candidate = registry.get("xray", job.candidate_version)
    assert candidate.status == "candidate" and registry.production("xray").version == shipped
    assert candidate.summary["options"]["image_size"] == 64 and candidate.summary["data"]["fingerprint"]
    result, arrays = compare.load(candidate.path)
    assert result["production_version"] == shipped and not result["same_split_as_production"]
    assert result["n"] == len(arrays["y_true"]) == len(arrays["prob_production"]) >= 8
    # The candidate learned the opacity; production was never taught it. Same held-out films for both.
    assert result["candidate"]["auc"] >= 0.9 > result["production"]["auc"]
    assert {r["metric"] for r in compare.metrics_table(result)} >= {"auc", "sensitivity", "specificity", "ece"}

    registry.promote("xray", candidate.version, ADMIN)
    assert production.load("xray").version == candidate.version
    registry.rollback("xray", ADMIN)
    assert production.load("xray").version == shipped
    actions = [r["action"] for r in audit.recent(20)]
    assert {"train_start:xray", "train:xray", "promote:xray", "rollback:xray"} <= set(actions)


def test_notes_retraining_learns_planted_keywords_and_keeps_the_task_classes(store, tmp_path, monkeypatch):
    mlflow = _optional_mlflow()
    if mlflow:  # the [test] extra installs it, so the optional MLflow mirror is exercised too
        monkeypatch.setenv("MEDCORE_MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a local stand-in for a tracking server
    labels = registry.production("notes_medical_abstracts").summary["labels"]
    keywords = dict(zip(labels, ["zorblax", "quintessa", "vexillum", "murbleth", "plonkite"]))
    csv = tmp_path / "notes.csv"
    write_notes_csv(csv, keyword_notes(150, seed=3, keywords=keywords))
    job = wait(jobs.start("notes_medical_abstracts", csv, {"epochs": 15}, ADMIN).id)
    assert job.status == "succeeded", job.error
    result, _ = compare.load(registry.get("notes_medical_abstracts", job.candidate_version).path)
    assert result["candidate"]["macro_f1"] >= 0.9 > result["production"]["macro_f1"]
    if mlflow:
        run_id = next(e["run_id"] for e in jobs.events(job.id) if e["stage"] == "mlflow")
        run = mlflow.MlflowClient((tmp_path / "mlruns").as_uri()).get_run(run_id)
        assert run.data.tags["medcore.version"] == job.candidate_version and run.data.params["epochs"] == "15"
        assert run.data.metrics["validation_macro_f1"] >= 0.9

    wrong = tmp_path / "wrong.csv"
    write_notes_csv(wrong, keyword_notes(60))
    with pytest.raises(jobs.JobError, match="exactly the classes of the production model"):
        jobs.start("notes_medical_abstracts", wrong, {}, ADMIN)


def test_killing_the_training_process_mid_run_leaves_production_and_the_registry_intact(store, opacity_films):
    before = {task: [v.version for v in registry.list_versions(task)] for task in tasks.KEYS}
    job = jobs.start("xray", opacity_films, {**TINY_XRAY, "epochs": 200}, ADMIN)
    wait(job.id, until=lambda job, events: any(e["stage"] == "epoch" for e in events))
    os.killpg(jobs.get(job.id).pid, signal.SIGKILL)  # as the OOM killer or a power cut would
    job = wait(job.id, timeout=30)
    assert job.status == "failed" and "ended unexpectedly" in job.error
    assert {task: [v.version for v in registry.list_versions(task)] for task in tasks.KEYS} == before
    served = production.load("xray")
    assert served.version == before["xray"][0] and not served.warnings
    # and the next run starts normally
    job = jobs.start("xray", opacity_films, {**TINY_XRAY, "epochs": 1}, ADMIN)
    assert wait(job.id).status == "succeeded"


def test_a_cancelled_run_stops_and_registers_nothing(store, opacity_films):
    job = jobs.start("xray", opacity_films, {**TINY_XRAY, "epochs": 200}, ADMIN)
    with pytest.raises(jobs.JobError, match="still running"):
        jobs.start("xray", opacity_films, TINY_XRAY, ADMIN)
    wait(job.id, until=lambda job, events: any(e["stage"] == "epoch" for e in events))
    jobs.cancel(job.id, ADMIN)
    job = wait(job.id, timeout=60)
    assert job.status == "cancelled" and job.candidate_version is None
    assert {v.origin for v in registry.list_versions("xray")} == {"shipped"} and not (job.folder / "model").exists()


def test_a_second_cancel_signal_during_the_cleanup_still_ends_cancelled(store, opacity_films, monkeypatch):
    """The app's cancel and the heartbeat each send SIGTERM; the second may land while the first is being handled
    (it once turned a cancel into "failed": the process died in its cleanup and the job was reaped as dead)."""
    from medcore.jobs import runner, store as job_store

    job_id = job_store._record("xray", opacity_films, None, TINY_XRAY, ADMIN.name, False)
    (job_store.jobs_dir() / job_id).mkdir(parents=True, exist_ok=True)

    def training_that_is_cancelled(job, out):
        os.kill(os.getpid(), signal.SIGTERM)  # the app's cancel
        time.sleep(5)  # the training, interrupted by the handler
        raise AssertionError("the SIGTERM did not interrupt the training")

    cleanup = runner.shutil.rmtree

    def cleanup_interrupted(*args, **kwargs):  # the heartbeat's SIGTERM, in the middle of the cleanup
        os.kill(os.getpid(), signal.SIGTERM)
        return cleanup(*args, **kwargs)

    monkeypatch.setattr(runner, "_heartbeat", lambda job_id, stop: None)  # its signal is the one simulated above
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # run() rewrites it for the model card
    monkeypatch.setattr(runner, "_train_compare_register", training_that_is_cancelled)
    monkeypatch.setattr(runner.shutil, "rmtree", cleanup_interrupted)
    before = signal.getsignal(signal.SIGTERM)
    try:
        assert runner.run(job_id) == 1
    finally:
        signal.signal(signal.SIGTERM, before)
    assert jobs.get(job_id).status == "cancelled"


@pytest.mark.parametrize("options, message", [({"epochs": 2, "learning_rat": 1.0}, "Unknown training option")])
def test_bad_requests_start_nothing(store, tmp_path, opacity_films, options, message):
    with pytest.raises(jobs.JobError, match=message):
        jobs.start("xray", opacity_films, options, ADMIN)
    with pytest.raises(jobs.JobError, match="NORMAL"):
        jobs.start("xray", tmp_path, {}, ADMIN)
    assert jobs.list_jobs() == []


def _zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_uploaded_data_sets_are_unpacked_safely(store, opacity_films):
    entries = {f"set/{p.parent.name}/{p.name}": p.read_bytes() for p in opacity_films.rglob("*.png")}
    root = save_upload("xray", "films.zip", _zip(entries))
    assert (root / "NORMAL").is_dir() and root.is_relative_to(store / "uploads")
    assert jobs.validate_data("xray", root).startswith("20 NORMAL and 20 PNEUMONIA images")
    with pytest.raises(UploadRejected, match="outside its folder"):
        save_upload("xray", "evil.zip", _zip({"../../escape.png": b"x"}))
    with pytest.raises(UploadRejected, match="decompression bomb"):
        save_upload("xray", "bomb.zip", _zip({"NORMAL/a.png": bytes(60 * 1024**2)}))
    with pytest.raises(UploadRejected, match="corrupt|Upload a .zip"):
        save_upload("xray", "broken.zip", b"PK\x03\x04 not really")
    with pytest.raises(UploadRejected, match="exactly one CSV"):
        save_upload("notes_symptom2disease", "two.zip", _zip({"a.csv": b"label,text\n", "b.csv": b"label,text\n"}))
    assert not list((store / "uploads").glob("*.tmp"))
    assert np.all([not p.name.endswith(".tmp") for p in (store / "uploads").iterdir()])


def test_the_admin_page_shows_a_running_job_and_cancels_it(store, opacity_films):
    from tests.conftest import signed_in_app

    job = jobs.start("xray", opacity_films, {**TINY_XRAY, "epochs": 200}, ADMIN)
    wait(job.id, until=lambda job, events: any(e["stage"] == "epoch" for e in events))
    page = signed_in_app("admin", "views/admin.py")
    assert not page.exception, page.exception
    assert page.subheader[0].value == "Training: Chest X-ray (pneumonia)"
    assert "Epoch" in page.get("progress")[0].proto.text and len(page.get("plotly_chart")) == 1
    assert not [b for b in page.button if b.label == "Start retraining"]  # one run at a time
    next(b for b in page.button if b.label == "Cancel training").click().run()
    ended = wait(job.id, timeout=60)
    assert ended.status == "cancelled", (ended.status, ended.error, (job.folder / "log.txt").read_text()[-2000:]
                                         if (job.folder / "log.txt").is_file() else "no log")
    assert [r["outcome"] for r in audit.recent(5) if r["action"] == "train_cancel:xray"] == ["requested"]


# Issue 31: a job id is checked before any path is built from it, and a job's process checks the paths of its row.
MALFORMED = ("../../x", "job-x/../../y", "job-20260101-000000-abcdef/../../z", "job-20260101-000000-ABCDEF", "")


def _files_under(root) -> set:
    return {p for p in root.rglob("*")}


def test_a_malformed_job_id_builds_no_path_anywhere(store, tmp_path, monkeypatch):
    import subprocess

    from sqlalchemy import insert

    from medcore.jobs import queue, runner, store as job_store
    from medcore.store import schema, write

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # run() rewrites it for the model card
    before = _files_under(tmp_path)
    for bad in MALFORMED:
        for build in (job_store.job_folder, job_store.launch_process, runner.run):
            with pytest.raises(jobs.JobError, match="not a job id"):
                build(bad)
    with write() as db:  # a row (and a queue entry) nobody made through jobs.start
        db.execute(insert(schema.jobs).values(id="../../x", task="xray", data_path="/data", data_label="x",
                                              options="{}", status="queued", created_by="tests", created_at=time.time(),
                                              cancel_requested=False))
    queue.run_job_here("../../x")  # what a worker does with it
    assert jobs.get("../../x").status == "failed"
    with pytest.raises(jobs.JobError, match="not a job id"):
        jobs.get("../../x").folder
    process = subprocess.run([sys.executable, "-m", "medcore.jobs", "../../x"], capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == 2 and "not a job id" in process.stderr
    assert _files_under(tmp_path) - before <= _files_under(job_store.jobs_dir())  # nothing outside jobs/


def _forged(data_path: str, options: dict | None = None) -> str:
    """A job row written straight into the store (not through jobs.start): a well-formed id, unchecked paths."""
    import json
    import secrets

    from sqlalchemy import insert

    from medcore.store import schema, write

    job_id = time.strftime("job-%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    with write() as db:
        db.execute(insert(schema.jobs).values(id=job_id, task="xray", data_path=data_path, data_label="forged",
                                              options=json.dumps({**TINY_XRAY, "epochs": 1, **(options or {})}),
                                              status="queued", created_by="tests", created_at=time.time(),
                                              cancel_requested=False))
    return job_id


def test_the_training_process_refuses_a_row_whose_paths_lie_outside_the_roots(store, opacity_films, monkeypatch,
                                                                           capsys):
    import shutil
    import tempfile

    from medcore.jobs import runner

    outside = Path(tempfile.mkdtemp(prefix="medcore-outside-roots-"))  # not under the data roots (nor pytest's tmp)
    try:
        shutil.copytree(opacity_films, outside / "films")  # a usable data set: only its place is wrong
        monkeypatch.setattr(sys, "argv", list(sys.argv))
        monkeypatch.setattr(runner, "_heartbeat", lambda job_id, stop: None)
        rows = {"data set": _forged("/etc"), "data set ": _forged(str(outside / "films")),
                "option teacher": _forged(str(opacity_films), {"teacher": "/etc"}),
                "option synthetic_generator": _forged(str(opacity_films), {"synthetic_generator": str(outside)}),
                "federated site": _forged(str(opacity_films), {"federated": {
                    "sites": [str(opacity_films), "/etc"], "rounds": 1, "strategy": "fedavg"}})}
        for what, job_id in rows.items():
            assert runner.run(job_id) == 1
            job = jobs.get(job_id)
            assert job.status == "failed" and job.candidate_version is None
            assert f"The job's {what.strip()} lies outside the folders from which a job may read" in job.error
            assert "/" not in job.error  # the page shows no server path...
            assert job_id in capsys.readouterr().err  # ...the job's log says which
        assert {v.origin for v in registry.list_versions("xray")} == {"shipped"}  # no candidate registered
        with pytest.raises(jobs.JobError, match="outside the folders"):  # and jobs.start refuses it, whoever asks
            jobs.start("xray", outside / "films", TINY_XRAY, ADMIN)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
