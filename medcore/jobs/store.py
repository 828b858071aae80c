"""The job store: training runs, their state, lease and progress events in the store; starting and cancelling them.

The admin page (or any caller) starts a job here. Without a queue (the embedded default) a separate Python
process on this machine runs it (`python -m medcore.jobs JOB_ID`, see jobs.runner); with
MEDCORE_JOB_QUEUE=procrastinate the job is queued in PostgreSQL and a worker, on any machine, runs the same
process (medcore.jobs.queue). Either way the running job holds a lease that it renews every few seconds: a job
whose lease ran out (its process, its worker or its machine died) is marked failed by the next reader, and a job
that lost its lease registers nothing. Progress events go to the store, so any page on any server shows the run;
a cancel is a flag that the job's own process acts on wherever it runs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from sqlalchemy import insert, select, update

from medcore import audit, auth, config, registry, tasks, uploads
from medcore.store import read, schema, write

JOBS, EVENTS = schema.jobs, schema.job_events
ACTIVE = ("queued", "running")
QUEUED_WITHOUT_PROCESS = 60.0  # a local job whose process never claimed it within this is failed
DIED = ("The training process ended unexpectedly (killed, crashed, or its worker or machine stopped). "
        "Production is unchanged.")
KEEP_JOB_FOLDERS = 20  # logs of the newest finished runs; older job folders are deleted
KEEP_CACHED_SETS = 3  # preprocessed training sets (each about 40 MB per 5,000 films at 128 px)
JOB_ID = re.compile(r"job-\d{8}-\d{6}-[0-9a-f]{6}")  # what _record makes; nothing else names a job folder


class JobError(ValueError):
    """A job that cannot be started or changed, with the reason."""


class JobPathRefused(JobError):
    """A path a job would read lies outside where jobs may read. str(): the detail, path included (for whoever typed
    it, and the job's log); `shown`: the same without the path (for the admin page's record of a failed job)."""

    def __init__(self, detail: str, shown: str) -> None:
        super().__init__(detail)
        self.shown = shown


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
    host: str | None = None
    lease_expires_at: float | None = None
    owns_upload: bool = False

    @property
    def folder(self) -> Path:
        return job_folder(self.id)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def jobs_dir() -> Path:
    """Job folders (logs, the model being trained) on the shared folder: the worker and every server see them."""
    return config.shared_dir() / "jobs"


def job_folder(job_id: str) -> Path:
    """A job's folder (its log, the model being trained) under jobs_dir(); JobError for anything but an id that
    _record makes. Ids arrive from the store, a queue and the command line, and `../../x` would put a folder and a
    log outside jobs/: every job folder and log path is built here."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise JobError(f"{str(job_id)[:80]!r} is not a job id (job-YYYYMMDD-HHMMSS- and six hex digits).")
    return jobs_dir() / job_id


def _model_options(task: str) -> list[str]:
    """The training options of `task` that name a model folder a job reads (OptionSpec.path, e.g. teacher)."""
    from dataclasses import fields as option_fields

    return [f.name for f in option_fields(tasks.get(task).family.options.resolve())
            if getattr(f.metadata.get("spec"), "path", None) == "model"]


def check_paths(task: str, data_path: Path, options: dict, owns_upload: bool) -> None:
    """Every path a job reads lies where a job may read, or JobPathRefused: its data set under the allowed data roots
    (uploads.allowed_data_path), or its own upload when the job owns one; the federated sites under the roots; a model
    folder named in its options (a teacher, a film generator) under the roots or among the registered versions.

    Whoever started the job: its process runs from a row of the store (on a worker, possibly elsewhere) and trusts
    nothing in it, so start() and the runner both check."""
    def refuse(what: str, exc: Exception) -> JobPathRefused:
        return JobPathRefused(f"The job's {what}: {exc}", f"The job's {what} lies outside the folders from which a "
                              "job may read (the data roots, MEDCORE_DATA_ROOTS; its own upload; registered models): "
                              "nothing was trained, and production is unchanged. The job's log names the path.")

    try:
        (uploads.own_upload if owns_upload else uploads.allowed_data_path)(Path(data_path))
    except uploads.PathNotAllowed as exc:
        raise refuse("data set", exc) from None
    for site in (options.get("federated") or {}).get("sites", []):
        try:
            uploads.allowed_data_path(Path(site))
        except uploads.PathNotAllowed as exc:
            raise refuse("federated site", exc) from None
    models = registry.models_dir().resolve()
    for name in _model_options(task):
        value = str(options.get(name) or "")
        if not value:
            continue
        try:
            if not Path(value).expanduser().resolve().is_relative_to(models):
                uploads.allowed_data_path(Path(value))
        except uploads.PathNotAllowed as exc:
            raise refuse(f"option {name}", exc) from None


def validate_data(task: str, path: Path) -> str:
    """A one-line description of a usable data set for `task`, or JobError saying what is wrong with it."""
    task = tasks.get(task)
    current = registry.production(task.key)
    try:
        return task.validate(Path(path), current.summary["labels"] if current else None)
    except ValueError as exc:
        raise JobError(str(exc)) from exc


def _row_to_job(row) -> Job:
    values = {f.name: getattr(row, f.name) for f in fields(Job)}
    values["options"] = json.loads(values["options"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return Job(**values)


def this_host() -> str:
    return socket.gethostname()


def _alive_here(pid: int | None, job_id: str) -> bool:
    """Is the job's own process still running on this machine (not just some process that reused the pid)?"""
    if not pid:
        return False
    if pid == os.getpid():  # this very process runs it
        return True
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


def _dead(row, now: float) -> bool:
    """A job that will never finish: its lease ran out, its process on this machine is gone, or (without a queue)
    its process never claimed it."""
    if row.status == "running":
        if row.host == this_host() and not _alive_here(row.pid, row.id):
            return True
        return row.lease_expires_at is not None and row.lease_expires_at < now
    if config.job_queue() != "local":  # queued for a worker: it waits for one
        return False
    return now - row.created_at > QUEUED_WITHOUT_PROCESS and not (
        row.host == this_host() and _alive_here(row.pid, row.id))


def reconcile() -> None:
    """Mark as failed every active job that will never finish (see _dead), with a conditional update, so a job
    that renewed its lease meanwhile is left alone. A read first: no write on a page run unless one died."""
    now = time.time()
    with read() as db:
        rows = db.execute(select(JOBS).where(JOBS.c.status.in_(ACTIVE))).all()
    for row in [r for r in rows if _dead(r, now)]:
        condition = [JOBS.c.id == row.id, JOBS.c.status == row.status]
        if row.status == "running":
            condition.append(JOBS.c.lease_expires_at == row.lease_expires_at)
        with write() as db:
            failed = db.execute(update(JOBS).where(*condition).values(
                status="failed", finished_at=time.time(), error=DIED)).rowcount
        if failed and row.owns_upload:
            uploads.discard(Path(row.data_path))


def list_jobs(limit: int = 50) -> list[Job]:
    reconcile()
    with read() as db:
        rows = db.execute(select(JOBS).order_by(JOBS.c.created_at.desc()).limit(limit)).all()
    return [_row_to_job(r) for r in rows]


def get(job_id: str) -> Job:
    reconcile()
    with read() as db:
        row = db.execute(select(JOBS).where(JOBS.c.id == job_id)).first()
    if row is None:
        raise JobError(f"No job {job_id!r}.")
    return _row_to_job(row)


def events(job_id: str) -> list[dict]:
    with read() as db:
        rows = db.execute(select(EVENTS.c.at, EVENTS.c.event).where(EVENTS.c.job_id == job_id)
                          .order_by(EVENTS.c.id)).all()
    return [{"at": r.at, **json.loads(r.event)} for r in rows]


def start(task: str, data_path: Path, options: dict, user: auth.User, data_label: str | None = None,
          federated: dict | None = None, uploaded: bool = False) -> Job:
    """Validate, record and launch a training job; JobError (nothing started) if anything is wrong.

    uploaded: data_path is the caller's own upload (uploads.save_upload), which belongs to the job from here: it is
    deleted when the job ends, and at once when the job is refused. A path typed on the page must lie under the
    allowed data roots, every file in it too (links cannot lead out), never in another upload; so must every path
    a job reads, whoever starts it (check_paths: the job's process checks again). A federated job
    (federated = {"sites": [...], "rounds": N, "strategy": ...}) trains across the sites with Flower; data_path is
    then the held-out set on which the candidate is compared with production.
    """
    try:
        user = auth.require_admin(user)
        try:
            uploads.check_data_source(Path(data_path), uploaded, user.operator)
            if not user.operator:  # the federated sites, typed on the page
                for site in (federated or {}).get("sites", []):
                    uploads.allowed_data_path(Path(site))
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
            options["federated"] = {**federated, "sites": [str(Path(s).resolve()) for s in federated["sites"]]}
        check_paths(task, Path(data_path), options, uploaded)  # before anything there is read
        for site in (federated or {}).get("sites", []):
            validate_data(task, Path(site))
        description = validate_data(task, Path(data_path))
        job_id = _record(task, Path(data_path), data_label, options, user.name, uploaded)
    except BaseException:
        if uploaded:
            uploads.discard(Path(data_path))
        raise
    prune()
    job_folder(job_id).mkdir(parents=True, exist_ok=True)
    if config.job_queue() == "local":
        launch_process(job_id)
    else:
        from medcore.jobs import queue

        queue.enqueue(job_id)
    current = registry.production(task)
    audit.record(user.name, f"train_start:{task}", "started", current.version if current else None,
                 job=job_id, data=description, queue=config.job_queue())
    return get(job_id)


def launch_process(job_id: str, die_with_parent: bool = False) -> subprocess.Popen:
    """The job's own process on this machine (its output in the job's log), with the environment minus secrets.
    die_with_parent: a worker's child is killed with the worker (a worker killed with -9 leaves no orphan that
    could still register a candidate)."""
    folder = job_folder(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "log.txt", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "medcore.jobs", job_id], stdout=log, stderr=log,
                                   stdin=subprocess.DEVNULL, start_new_session=True,  # its group: cancel stops all
                                   cwd=config.REPO_ROOT, env=config.child_environment(),
                                   preexec_fn=_die_with_parent if die_with_parent else None)
    with write() as db:
        db.execute(update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status == "queued")
                   .values(pid=process.pid, host=this_host()))
    return process


def _die_with_parent() -> None:
    """In the child, before it runs: Linux sends it SIGKILL when the process that started it dies."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _record(task: str, data_path: Path, data_label: str | None, options: dict, user: str,
            uploaded: bool = False) -> str:
    """Insert the job row, unless another job is active; return its id. One training at a time, across servers:
    the check and the insert are one write transaction (on PostgreSQL, serialized by a lock on the table)."""
    job_id = time.strftime("job-%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    reconcile()
    with write() as db:
        if db.dialect.name == "postgresql":
            db.exec_driver_sql("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
        running = db.execute(select(JOBS.c.id).where(JOBS.c.status.in_(ACTIVE))).first()
        if running:
            raise JobError(f"Training job {running[0]} is still running; wait for it or cancel it first.")
        db.execute(insert(JOBS).values(id=job_id, task=task, data_path=str(data_path.resolve()),
                                       data_label=data_label or str(data_path), options=json.dumps(options),
                                       status="queued", created_by=user, created_at=time.time(),
                                       cancel_requested=False, owns_upload=uploaded))
    return job_id


def cancel(job_id: str, user: auth.User) -> None:
    """Ask the job to stop; it ends and registers nothing, wherever it runs (its own process watches the flag;
    on this machine it is also signalled at once). A job still waiting in the queue is cancelled outright."""
    user = auth.require_admin(user)
    job = get(job_id)
    if not job.active:
        raise JobError(f"Job {job_id} is not running ({job.status}).")
    with write() as db:
        db.execute(update(JOBS).where(JOBS.c.id == job_id).values(cancel_requested=True))
        waiting = db.execute(update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status == "queued",
                                                JOBS.c.pid.is_(None)).values(
            status="cancelled", finished_at=time.time(), error="Cancelled by an administrator before it started."
        )).rowcount
    if waiting and job.owns_upload:
        uploads.discard(Path(job.data_path))
    elif job.host == this_host() and _alive_here(job.pid, job_id):
        os.killpg(job.pid, signal.SIGTERM)
    audit.record(user.name, f"train_cancel:{job.task}", "requested", job=job_id)


def prune(keep_jobs: int = KEEP_JOB_FOLDERS, keep_cache: int = KEEP_CACHED_SETS) -> None:
    """Bound what the store keeps besides models and logs of record: the newest `keep_jobs` job folders
    (logs of finished runs) and the newest `keep_cache` preprocessed training sets in cache/."""
    with read() as db:
        active = set(db.execute(select(JOBS.c.id).where(JOBS.c.status.in_(ACTIVE))).scalars())
    folders = sorted((job_folder(p.name) for p in jobs_dir().glob("job-*")  # only folders a job id names
                      if JOB_ID.fullmatch(p.name) and p.is_dir() and p.name not in active),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in folders[keep_jobs:]:
        shutil.rmtree(folder, ignore_errors=True)
    cached = sorted((config.store_dir() / "cache").glob("images-*.npy"), key=lambda p: p.stat().st_mtime,
                    reverse=True)
    for path in cached[keep_cache:]:
        path.unlink(missing_ok=True)
        path.with_suffix(".skipped.json").unlink(missing_ok=True)


def add_event(job_id: str, event: dict) -> None:
    with write() as db:
        db.execute(insert(EVENTS).values(job_id=job_id, at=time.time(), event=json.dumps(event, default=float)))


def cancel_requested(job_id: str) -> bool:
    with read() as db:
        return bool(db.execute(select(JOBS.c.cancel_requested).where(JOBS.c.id == job_id)).scalar())


def claim(job_id: str) -> bool:
    """The job's process takes the job: queued -> running, with this process, this host and a first lease.
    False when it is not there to take (cancelled meanwhile, or another process took it)."""
    now = time.time()
    with write() as db:
        return db.execute(update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status == "queued",
                                             JOBS.c.cancel_requested.is_(False))
                          .values(status="running", started_at=now, pid=os.getpid(), host=this_host(),
                                  lease_expires_at=now + config.job_lease_seconds())).rowcount == 1


def renew_lease(job_id: str) -> bool:
    """Extend this process's lease; False when the job is no longer this process's to finish (marked failed after
    a stall, or taken over): it must then stop and register nothing."""
    with write() as db:
        return db.execute(update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status == "running",
                                             JOBS.c.pid == os.getpid(), JOBS.c.host == this_host())
                          .values(lease_expires_at=time.time() + config.job_lease_seconds())).rowcount == 1


def heartbeat_seconds() -> float:
    return config.job_lease_seconds() / 6


def holds_lease(job_id: str, margin: float | None = None) -> bool:
    """Is the job still this process's, with at least `margin` seconds of lease left (checked before registering)?"""
    margin = heartbeat_seconds() if margin is None else margin
    with read() as db:
        row = db.execute(select(JOBS).where(JOBS.c.id == job_id)).first()
    return (row is not None and row.status == "running" and row.pid == os.getpid() and row.host == this_host()
            and (row.lease_expires_at or 0) > time.time() + margin)


def finish(job_id: str, status: str, error: str | None = None, version: str | None = None) -> None:
    """Record how the job ended (only if it is still running: a job already failed for a lost lease stays failed),
    and delete its uploaded data set (if it was an upload)."""
    with write() as db:
        db.execute(update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status.in_(ACTIVE))
                   .values(status=status, finished_at=time.time(), error=error, candidate_version=version))
        row = db.execute(select(JOBS.c.data_path, JOBS.c.owns_upload).where(JOBS.c.id == job_id)).first()
    if row is not None and row.owns_upload:
        uploads.discard(Path(row.data_path))
