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
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from medcore import audit, auth, config, registry, tasks, uploads
from medcore.store import connect, read

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
KEEP_JOB_FOLDERS = 20  # logs of the newest finished runs; older job folders are deleted
KEEP_CACHED_SETS = 3  # preprocessed training sets (each about 40 MB per 5,000 films at 128 px)


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
    """Mark as failed every active job whose process is gone (killed, crashed, machine restarted).

    A read first: the write lock is taken only when a dead job is found, not on every page run.
    """
    with read("jobs", SCHEMA) as db:
        rows = db.execute("SELECT id, pid, status, created_at, data_path FROM jobs "
                          "WHERE status IN ('queued', 'running')").fetchall()
    dead = [row for row in rows if not (row["status"] == "queued" and time.time() - row["created_at"] < 60)
            and not _alive(row["pid"], row["id"])]
    for row in dead:
        with connect("jobs", SCHEMA) as db:
            db.execute("UPDATE jobs SET status='failed', finished_at=?, error=? WHERE id=? AND status IN "
                       "('queued', 'running')", (time.time(), "The training process ended unexpectedly (killed, "
                                                 "crashed or the machine restarted). Production is unchanged.",
                                                 row["id"]))
        uploads.discard(Path(row["data_path"]))


def list_jobs(limit: int = 50) -> list[Job]:
    reconcile()
    with read("jobs", SCHEMA) as db:
        rows = db.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
    return [_row_to_job(r) for r in rows]


def get(job_id: str) -> Job:
    reconcile()
    with read("jobs", SCHEMA) as db:
        row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
    if row is None:
        raise JobError(f"No job {job_id!r}.")
    return _row_to_job(row)


def events(job_id: str) -> list[dict]:
    with read("jobs", SCHEMA) as db:
        rows = db.execute("SELECT at, event FROM job_events WHERE job_id=? ORDER BY rowid", (job_id,)).fetchall()
    return [{"at": r["at"], **json.loads(r["event"])} for r in rows]


def start(task: str, data_path: Path, options: dict, user: auth.User, data_label: str | None = None,
          federated: dict | None = None) -> Job:
    """Validate, record and launch a training job; JobError (nothing started) if anything is wrong.

    An uploaded data set (under <store>/uploads) belongs to the job from here: it is deleted when the job
    ends, and at once when the job is refused. A federated job (federated = {"sites": [...], "rounds": N,
    "strategy": ...}) trains across the sites with Flower; data_path is then the held-out set on which the
    candidate is compared with production.
    """
    try:
        user = auth.require_admin(user)
        if not user.operator:  # the page's "path on the server" fields: only under the allowed data roots
            for path in [data_path, *(federated or {}).get("sites", [])]:
                try:
                    uploads.allowed_data_path(Path(path))
                except uploads.PathNotAllowed as exc:
                    raise JobError(str(exc)) from exc
        try:
            task = tasks.get(task).key
            options = asdict(tasks.get(task).options(options))
        except ValueError as exc:  # an unknown task or training option
            raise JobError(str(exc)) from exc
        if federated is not None:
            if task != "xray" or len(federated.get("sites", [])) < 2:
                raise JobError("Federated training is for the X-ray model, with at least two hospital folders.")
            for site in federated["sites"]:
                validate_data(task, Path(site))
            options["federated"] = {**federated, "sites": [str(Path(s).resolve()) for s in federated["sites"]]}
        description = validate_data(task, Path(data_path))
        job_id = _record(task, Path(data_path), data_label, options, user.name)
    except BaseException:
        uploads.discard(Path(data_path))
        raise
    prune()
    folder = jobs_dir() / job_id
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "log.txt", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "medcore.jobs", job_id], stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL, start_new_session=True, cwd=config.REPO_ROOT,
                                   env=config.child_environment())  # no passwords: a job needs none
    with connect("jobs", SCHEMA) as db:
        db.execute("UPDATE jobs SET pid=? WHERE id=?", (process.pid, job_id))
    current = registry.production(task)
    audit.record(user.name, f"train_start:{task}", "started", current.version if current else None,
                 job=job_id, data=description)
    return get(job_id)


def _record(task: str, data_path: Path, data_label: str | None, options: dict, user: str) -> str:
    """Insert the job row, unless another job is running; return its id."""
    job_id = time.strftime("job-%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    reconcile()
    with connect("jobs", SCHEMA) as db:
        running = db.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')").fetchone()
        if running:
            raise JobError(f"Training job {running[0]} is still running; wait for it or cancel it first.")
        db.execute("INSERT INTO jobs (id, task, data_path, data_label, options, status, created_by, created_at) "
                   "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                   (job_id, task, str(data_path.resolve()), data_label or str(data_path), json.dumps(options),
                    user, time.time()))
    return job_id


def cancel(job_id: str, user: auth.User) -> None:
    """Ask the training process to stop; it ends at once and registers nothing. The user is checked now."""
    user = auth.require_admin(user)
    job = get(job_id)
    if not job.active:
        raise JobError(f"Job {job_id} is not running ({job.status}).")
    with connect("jobs", SCHEMA) as db:
        db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
    if job.pid and _alive(job.pid, job_id):
        os.killpg(job.pid, signal.SIGTERM)
    audit.record(user.name, f"train_cancel:{job.task}", "requested", job=job_id)


def prune(keep_jobs: int = KEEP_JOB_FOLDERS, keep_cache: int = KEEP_CACHED_SETS) -> None:
    """Bound what the store keeps besides models and logs of record: the newest `keep_jobs` job folders
    (logs of finished runs) and the newest `keep_cache` preprocessed training sets in cache/."""
    with read("jobs", SCHEMA) as db:
        active = {r[0] for r in db.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')")}
    folders = sorted((p for p in jobs_dir().glob("job-*") if p.is_dir() and p.name not in active),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in folders[keep_jobs:]:
        shutil.rmtree(folder, ignore_errors=True)
    cached = sorted((config.store_dir() / "cache").glob("images-*.npy"), key=lambda p: p.stat().st_mtime,
                    reverse=True)
    for path in cached[keep_cache:]:
        path.unlink(missing_ok=True)
        path.with_suffix(".skipped.json").unlink(missing_ok=True)


def add_event(job_id: str, event: dict) -> None:
    with connect("jobs", SCHEMA) as db:
        db.execute("INSERT INTO job_events (job_id, at, event) VALUES (?, ?, ?)",
                   (job_id, time.time(), json.dumps(event, default=float)))


def cancel_requested(job_id: str) -> bool:
    with read("jobs", SCHEMA) as db:
        return bool(db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()[0])


def mark_running(job_id: str) -> None:
    with connect("jobs", SCHEMA) as db:
        db.execute("UPDATE jobs SET status='running', started_at=?, pid=? WHERE id=?",
                   (time.time(), os.getpid(), job_id))


def finish(job_id: str, status: str, error: str | None = None, version: str | None = None) -> None:
    """Record how the job ended, and delete its uploaded data set (if it was an upload)."""
    with connect("jobs", SCHEMA) as db:
        db.execute("UPDATE jobs SET status=?, finished_at=?, error=?, candidate_version=? WHERE id=?",
                   (status, time.time(), error, version, job_id))
        row = db.execute("SELECT data_path FROM jobs WHERE id=?", (job_id,)).fetchone()
    if row:
        uploads.discard(Path(row["data_path"]))
