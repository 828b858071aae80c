"""The job store: training runs, their state and progress events in SQLite; starting and cancelling them.

The admin page (or any caller) starts a job here; a separate Python process (`python -m medcore.jobs
JOB_ID`, see jobs.runner) trains, compares the candidate with production and registers it. Progress
events go to SQLite, so any page, after a reload or from another browser, shows the same run. A run
whose process has died is marked failed the next time jobs are read.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from medcore import audit, config, registry, tasks
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


def validate_data(task: str, path: Path) -> str:
    """A one-line description of a usable data set for `task`, or JobError saying what is wrong with it."""
    task = tasks.get(task)
    current = registry.production(task.key)
    try:
        return task.validate(Path(path), current.summary["labels"] if current else None)
    except ValueError as exc:
        raise JobError(str(exc)) from exc


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
    try:
        task = tasks.get(task).key
        options = asdict(tasks.get(task).options(options))
    except ValueError as exc:
        raise JobError(str(exc)) from exc
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


def add_event(job_id: str, event: dict) -> None:
    with connect("jobs", SCHEMA) as db:
        db.execute("INSERT INTO job_events (job_id, at, event) VALUES (?, ?, ?)",
                   (job_id, time.time(), json.dumps(event, default=float)))


def cancel_requested(job_id: str) -> bool:
    with connect("jobs", SCHEMA) as db:
        return bool(db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()[0])


def mark_running(job_id: str) -> None:
    with connect("jobs", SCHEMA) as db:
        db.execute("UPDATE jobs SET status='running', started_at=?, pid=? WHERE id=?",
                   (time.time(), os.getpid(), job_id))


def finish(job_id: str, status: str, error: str | None = None, version: str | None = None) -> None:
    with connect("jobs", SCHEMA) as db:
        db.execute("UPDATE jobs SET status=?, finished_at=?, error=?, candidate_version=? WHERE id=?",
                   (status, time.time(), error, version, job_id))


