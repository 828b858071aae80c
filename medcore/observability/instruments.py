"""In-process metrics of the long-running commands: the PACS watcher's polls, errors and study latency, and the
worker's jobs. They live in prometheus_client's default registry (with its process metrics) and are served by the
process itself (`medcore pacs watch --metrics-port P`, `medcore worker --metrics-port P`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import Counter, Gauge, Histogram

STUDY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
JOB_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)

PACS_POLLS = Counter("medcore_pacs_polls", "Polls of the PACS by the watcher, by result", ["result"])
PACS_ERRORS = Counter("medcore_pacs_errors", "Errors talking to the PACS or handling a study, by kind", ["kind"])
PACS_UP = Gauge("medcore_pacs_up", "1 when the watcher's last poll reached the PACS, 0 when it was refused")
PACS_LAST_POLL = Gauge("medcore_pacs_watcher_poll_timestamp_seconds",
                       "When this watcher last listed the PACS successfully (epoch seconds)")
PACS_STUDY_SECONDS = Histogram("medcore_pacs_study_duration_seconds",
                               "Time to claim, fetch, analyse and write back one study, by outcome", ["outcome"],
                               buckets=STUDY_BUCKETS)
PACS_POLL_SECONDS = Histogram("medcore_pacs_poll_duration_seconds", "Time of one whole poll of the PACS",
                              buckets=STUDY_BUCKETS)

WORKER_JOBS = Counter("medcore_worker_jobs", "Training jobs this worker ran, by how they ended", ["status"])
WORKER_JOB_SECONDS = Histogram("medcore_worker_job_duration_seconds", "Wall time of a training job on this worker",
                               buckets=JOB_BUCKETS)
WORKER_BUSY = Gauge("medcore_worker_busy", "1 while this worker runs a training job")

STUDY_OUTCOMES = ("analysed", "skipped", "error")


def study_handled(outcome: str, seconds: float) -> None:
    """One study of a poll: 'analysed', 'skipped' (another had it, or it was done) or 'error'."""
    PACS_STUDY_SECONDS.labels(outcome if outcome in STUDY_OUTCOMES else "error").observe(seconds)
    if outcome == "error":
        PACS_ERRORS.labels("study").inc()


def poll_succeeded(seconds: float) -> None:
    PACS_POLLS.labels("ok").inc()
    PACS_POLL_SECONDS.observe(seconds)
    PACS_UP.set(1)
    PACS_LAST_POLL.set(time.time())


def poll_failed(pacs_unavailable: bool) -> None:
    """A poll that failed: the PACS refused or could not be reached, or something else (the store, a model)."""
    kind = "pacs_unavailable" if pacs_unavailable else "error"
    PACS_POLLS.labels(kind).inc()
    PACS_ERRORS.labels("unavailable" if pacs_unavailable else "poll").inc()
    if pacs_unavailable:
        PACS_UP.set(0)


@contextmanager
def job_running() -> Iterator[dict]:
    """Around one job on a worker; the caller puts the job's final status in the yielded dict."""
    ended = {"status": "failed"}
    WORKER_BUSY.set(1)
    started = time.monotonic()
    try:
        yield ended
    finally:
        WORKER_BUSY.set(0)
        WORKER_JOB_SECONDS.observe(time.monotonic() - started)
        WORKER_JOBS.labels(ended["status"]).inc()
