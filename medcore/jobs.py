"""Background training runs: one subprocess per job, its state and progress in the store.

The admin page (or any caller) starts a job; a separate Python process (`python -m medcore.jobs
JOB_ID`) trains, compares the candidate with production and registers it. Progress events go to
SQLite, so any page, after a reload or from another browser, shows the same run. A job never
touches production: the model is written under the job's folder and only registered (as a
candidate) once it is complete, so killing the process at any moment leaves production and the
registry as they were. A run whose process has died is marked failed the next time jobs are read.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from medcore import audit, config, registry
from medcore.store import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    data_path TEXT NOT NULL,
    data_label TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    candidate_version TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id);
"""

ACTIVE = ("queued", "running")


class JobError(ValueError):
    """A job that cannot be started or changed, with the reason."""


class Cancelled(Exception):
    """Raised in the training process when the job is cancelled (SIGTERM)."""


@dataclass
class Job:
    id: str
    task: str
    data_path: str
    data_label: str
    options: dict
    status: str
    created_by: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    pid: int | None
    cancel_requested: bool
    candidate_version: str | None
    error: str | None

    @property
    def folder(self) -> Path:
        return jobs_dir() / self.id

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def jobs_dir() -> Path:
    return config.store_dir() / "jobs"


def training_options(task: str, values: dict):
    """The options dataclass of a task from a dict; unknown keys are an error, not ignored."""
    if task == "xray":
        from medcore.training.train_xray import XrayTrainingOptions as Options
    else:
        from medcore.training.train_notes import NotesTrainingOptions as Options
    try:
        return Options(**values)
    except TypeError as exc:
        raise JobError(f"Unknown training option for {task}: {exc}") from exc


def validate_data(task: str, path: Path) -> str:
    """A one-line description of a usable data set, or JobError saying what is wrong with it."""
    path = Path(path)
    if task == "xray":
        from medcore.training.datasets import list_image_folder

        try:
            folder = list_image_folder(path)
        except FileNotFoundError as exc:
            raise JobError(str(exc)) from exc
        counts = [int((folder.labels == k).sum()) for k in (0, 1)]
        patients = [len({g for g, y in zip(folder.groups, folder.labels) if y == k}) for k in (0, 1)]
        if min(patients) < 4:
            raise JobError(f"{path} needs images of at least 4 patients per class to hold some out "
                           f"(found {patients[0]} NORMAL, {patients[1]} PNEUMONIA).")
        return f"{counts[0]} NORMAL and {counts[1]} PNEUMONIA images from {sum(patients)} patients"
    import pandas as pd

    if not path.is_file():
        raise JobError(f"{path} is not a CSV file.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise JobError(f"{path.name} cannot be read as CSV: {exc}") from exc
    if not {"label", "text"} <= set(frame.columns):
        raise JobError(f"{path.name} needs the columns 'label' and 'text'.")
    current = registry.production(task)
    expected = sorted(current.summary["labels"]) if current else None
    found = sorted(frame["label"].unique())
    if expected and found != expected:
        raise JobError(f"{path.name} must have exactly the classes of the production model "
                       f"({len(expected)}: {', '.join(expected[:6])}…); it has {len(found)}.")
    if frame["label"].value_counts().min() < 5:
        raise JobError(f"{path.name} needs at least 5 notes per class.")
    return f"{len(frame)} notes in {len(found)} classes"


def _row_to_job(row) -> Job:
    values = dict(row)
    values["options"] = json.loads(values["options"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return Job(**values)


def _alive(pid: int | None, job_id: str) -> bool:
    """Is the job's own process still running (not just some process that reused the pid)?"""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return job_id.encode() in cmdline and state != "Z"


def reconcile() -> None:
    """Mark as failed every active job whose process is gone (killed, crashed, machine restarted)."""
    with connect("jobs", SCHEMA) as db:
        rows = db.execute("SELECT id, pid, status, created_at FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        for row in rows:
            starting = row["status"] == "queued" and time.time() - row["created_at"] < 60
            if not starting and not _alive(row["pid"], row["id"]):
                db.execute("UPDATE jobs SET status='failed', finished_at=?, error=? WHERE id=?",
                           (time.time(), "The training process ended unexpectedly (killed, crashed or the machine "
                                         "restarted). Production is unchanged.", row["id"]))


def list_jobs(limit: int = 50) -> list[Job]:
    reconcile()
    with connect("jobs", SCHEMA) as db:
        rows = db.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
    return [_row_to_job(r) for r in rows]


def get(job_id: str) -> Job:
    reconcile()
    with connect("jobs", SCHEMA) as db:
        row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
    if row is None:
        raise JobError(f"No job {job_id!r}.")
    return _row_to_job(row)


def events(job_id: str) -> list[dict]:
    with connect("jobs", SCHEMA) as db:
        rows = db.execute("SELECT at, event FROM job_events WHERE job_id=? ORDER BY rowid", (job_id,)).fetchall()
    return [{"at": r["at"], **json.loads(r["event"])} for r in rows]


def start(task: str, data_path: Path, options: dict, user: str, data_label: str | None = None) -> Job:
    """Validate, record and launch a training job; JobError (nothing started) if anything is wrong."""
    if task not in registry.TASKS:
        raise JobError(f"Unknown task {task!r}.")
    registry.ensure_defaults()
    options = asdict(training_options(task, options))
    description = validate_data(task, Path(data_path))
    job_id = time.strftime("job-%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    reconcile()
    with connect("jobs", SCHEMA) as db:
        running = db.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')").fetchone()
        if running:
            raise JobError(f"Training job {running[0]} is still running; wait for it or cancel it first.")
        db.execute("INSERT INTO jobs (id, task, data_path, data_label, options, status, created_by, created_at) "
                   "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                   (job_id, task, str(Path(data_path).resolve()), data_label or str(data_path), json.dumps(options),
                    user, time.time()))
    folder = jobs_dir() / job_id
    folder.mkdir(parents=True)
    with open(folder / "log.txt", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "medcore.jobs", job_id], stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL, start_new_session=True, cwd=config.REPO_ROOT)
    with connect("jobs", SCHEMA) as db:
        db.execute("UPDATE jobs SET pid=? WHERE id=?", (process.pid, job_id))
    current = registry.production(task)
    audit.record(user, f"train_start:{task}", "started", current.version if current else None,
                 job=job_id, data=description)
    return get(job_id)


def cancel(job_id: str, user: str) -> None:
    """Ask the training process to stop; it ends at once and registers nothing."""
    job = get(job_id)
    if not job.active:
        raise JobError(f"Job {job_id} is not running ({job.status}).")
    with connect("jobs", SCHEMA) as db:
        db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
    if job.pid and _alive(job.pid, job_id):
        os.killpg(job.pid, signal.SIGTERM)
    audit.record(user, f"train_cancel:{job.task}", "requested", job=job_id)


def _add_event(job_id: str, event: dict) -> None:
    with connect("jobs", SCHEMA) as db:
        db.execute("INSERT INTO job_events (job_id, at, event) VALUES (?, ?, ?)",
                   (job_id, time.time(), json.dumps(event, default=float)))


def _finish(job_id: str, status: str, error: str | None = None, version: str | None = None) -> None:
    with connect("jobs", SCHEMA) as db:
        db.execute("UPDATE jobs SET status=?, finished_at=?, error=?, candidate_version=? WHERE id=?",
                   (status, time.time(), error, version, job_id))


def run(job_id: str) -> int:
    """The training process: train into the job folder, compare with production, register the candidate."""
    def on_sigterm(signum, frame):
        raise Cancelled()

    signal.signal(signal.SIGTERM, on_sigterm)
    sys.argv = [sys.argv[0], f"(admin retraining, job {job_id})"]  # what the model card records as the command
    with connect("jobs", SCHEMA) as db:
        db.execute("UPDATE jobs SET status='running', started_at=?, pid=? WHERE id=?", (time.time(), os.getpid(), job_id))
    job = get(job_id)
    out = job.folder / "model"
    try:
        version = _train_compare_register(job, out)
    except Cancelled:
        shutil.rmtree(out, ignore_errors=True)
        _finish(job_id, "cancelled", "Cancelled by an administrator.")
        audit.record(job.created_by, f"train:{job.task}", "cancelled", job=job_id)
        return 1
    except Exception as exc:
        traceback.print_exc()
        _finish(job_id, "failed", f"{type(exc).__name__}: {exc}")
        audit.record(job.created_by, f"train:{job.task}", "failed", job=job_id)
        return 1
    _finish(job_id, "succeeded", version=version)
    audit.record(job.created_by, f"train:{job.task}", "candidate registered", version, job=job_id)
    return 0


def _train_compare_register(job: Job, out: Path) -> str:
    from medcore.training import compare

    def progress(event: dict) -> None:
        _add_event(job.id, event)

    def should_stop() -> bool:
        with connect("jobs", SCHEMA) as db:
            return bool(db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job.id,)).fetchone()[0])

    options = training_options(job.task, job.options)
    data = Path(job.data_path)
    if job.task == "xray":
        from medcore.training.train_xray import train_xray

        train_xray(data, out, options, progress=progress, should_stop=should_stop)
    else:
        from medcore.training.train_notes import train_notes

        train_notes(job.task.removeprefix("notes_"), data, out, options, progress=progress, should_stop=should_stop)
    if should_stop():
        raise Cancelled()
    progress({"stage": "comparing"})
    current = registry.production(job.task)
    if current is not None:
        compare_fn = compare.compare_xray if job.task == "xray" else compare.compare_notes
        try:
            result, arrays = compare_fn(out, current.path, data)
        except Exception as exc:  # the trained candidate is kept; the page shows why there is no comparison
            traceback.print_exc()
            result, arrays = {"error": f"{type(exc).__name__}: {exc}"}, {}
        compare.save(out, result, arrays)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from here the run finishes: no half-cancelled registration
    entry = registry.register(job.task, out, job.created_by)
    progress({"stage": "registered", "version": entry.version})
    _mirror(entry, job.id, progress)
    return entry.version


def _mirror(entry: registry.ModelVersion, job_id: str, progress) -> None:
    """Log the new version to MLflow when a tracking URI is configured; a failure is reported, not fatal."""
    from medcore import tracking

    try:
        run_id = tracking.mirror_version(entry, job_id)
    except Exception as exc:
        traceback.print_exc()
        progress({"stage": "mlflow", "error": f"Not logged to MLflow ({tracking.tracking_uri()}): {exc}"})
    else:
        if run_id:
            progress({"stage": "mlflow", "run_id": run_id})


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
