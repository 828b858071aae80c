"""Training on workers, possibly on other machines, through a PostgreSQL-backed queue (procrastinate).

With MEDCORE_JOB_QUEUE=procrastinate (and MEDCORE_DATABASE_URL on PostgreSQL), starting a job puts its id on the
queue `medcore-training`; `medcore worker` takes one job at a time and runs the same job process as the embedded
default (`python -m medcore.jobs JOB_ID`) as its child, which dies with the worker (a worker killed with -9 leaves
no orphan that could still register a candidate). Everything else is the job's own: its lease, its progress
events, the cancel flag it watches, the comparison with production, the registration. The queue's tables live in
the same database (created by the store's migrations). Why procrastinate: see README, "Deploying on several
machines".
"""

from __future__ import annotations

import functools
import logging
import time

from medcore import config

QUEUE = "medcore-training"
log = logging.getLogger("medcore")


@functools.lru_cache(maxsize=4)
def _app(conninfo: str):
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    @app.task(name="medcore.run_training_job", queue=QUEUE)
    def run_training_job(job_id: str) -> None:
        run_job_here(job_id)

    return app


def _conninfo() -> str:
    from sqlalchemy.engine import make_url

    url = config.database_url()
    if not url or make_url(url).get_backend_name() != "postgresql":
        raise RuntimeError("MEDCORE_JOB_QUEUE=procrastinate needs MEDCORE_DATABASE_URL on PostgreSQL.")
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def enqueue(job_id: str) -> None:
    """Put a recorded job on the queue; a worker on any machine runs it."""
    from medcore import store

    store.engine()  # the queue's tables come with the store's migrations
    app = _app(_conninfo())
    with app.open():
        app.tasks["medcore.run_training_job"].defer(job_id=job_id)


def run_job_here(job_id: str) -> None:
    """What a worker does with one job: run its process (dying with this worker), then make sure the job ended.
    A malformed id (a row or queue entry not made by jobs.start) is failed without a folder or a process."""
    from medcore.jobs import store

    try:
        store.job_folder(job_id)
    except store.JobError as exc:
        log.warning("job refused: %s", exc)
        store.finish(job_id, "failed", "The job's id is not one MedCore makes; it was not run.")
        return
    from medcore.observability import instruments

    with instruments.job_running() as ended:
        process = store.launch_process(job_id, die_with_parent=True)
        returncode = process.wait()
        job = store.get(job_id)
        if job.active and job.host == store.this_host() and job.pid == process.pid:
            store.finish(job_id, "failed", store.DIED)  # it died without saying how (killed, out of memory)
        ended["status"] = store.get(job_id).status
    log.info("job %s ended with exit code %s (%s)", job_id, returncode, ended["status"])


def work(once: bool = False) -> None:
    """`medcore worker`: take training jobs from the queue, one at a time, until stopped (or until the queue is
    empty, with once=True)."""
    app = _app(_conninfo())
    log.info("medcore worker on %s waiting for jobs on queue %s", config.server_name(), QUEUE)
    started = time.time()
    app.run_worker(queues=[QUEUE], concurrency=1, wait=not once, install_signal_handlers=not once)
    log.info("medcore worker stopped after %.0f s", time.time() - started)
