"""Metrics read from the store when Prometheus scrapes (a prometheus_client custom collector).

Why at scrape time: the audit log, the jobs table, the registry and the watcher's heartbeat are already the
truth, written by every app server, worker and watcher of the installation; counting them here gives one set of
numbers however many processes there are, survives restarts, and needs no counter in the app. The audit log is
append-only, so counts of its rows only grow: they are exposed as counters. What is read is reused for a few
seconds (config.metrics_cache_seconds) and the drift checks for minutes (config.metrics_drift_seconds).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select

from medcore import config
from medcore.imaging.intended_use import OUTSIDE_INTENDED_USE
from medcore.observability import drift_state
from medcore.store import read, schema

log = logging.getLogger("medcore")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
PACS_STATUSES = ("claimed", "retry", "done", "refused", "failed")
WATCHER_POLL = "watch_last_poll"  # pacs_state's heartbeat key (pacs.worklist.WATCHER_POLL; the pacs layer is above)
JOB_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)
# audit outcome of an X-ray study -> (result, reason code); anything else is an analysed study's decision
XRAY_OUTCOMES = {"refused": ("refused", "quality"), "unreadable": ("refused", "unreadable"),
                 OUTSIDE_INTENDED_USE: ("refused", "outside_intended_use"),
                 "invalid model output": ("failed", "invalid_output")}
PACS_OUTCOMES = {"not a chest study": ("refused", "not_chest"), "film too large": ("refused", "too_large"),
                 "error": ("failed", "error")}  # pacs_analysis rows of studies that got no predict_xray row
NOTES_OUTCOMES = {"rejected": "rejected", "invalid model output": "failed"}


@dataclass
class Readings:
    """One consistent read of the store."""
    studies: dict[tuple[str, str], int] = field(default_factory=dict)  # (result, reason or decision) -> rows
    notes: dict[tuple[str, str], int] = field(default_factory=dict)  # (task, result) -> rows
    jobs: dict[str, int] = field(default_factory=dict)
    oldest_queued_at: float | None = None
    job_seconds: list[float] = field(default_factory=list)
    production: dict[str, str] = field(default_factory=dict)
    pacs: dict[str, int] = field(default_factory=dict)
    last_poll_at: float | None = None


def read_store() -> Readings:
    audit, jobs = schema.audit, schema.jobs
    found = Readings()
    with read() as db:
        rows = db.execute(select(audit.c.action, audit.c.outcome, func.count()).where(or_(
            audit.c.action.in_(("predict_xray", "refused_synthetic_film", "pacs_analysis")),
            audit.c.action.like("predict_notes:%"))).group_by(audit.c.action, audit.c.outcome)).all()
        for action, outcome, count in rows:
            _count_audit(found, action, outcome, count)
        found.jobs = dict(db.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all())
        found.oldest_queued_at = db.execute(select(func.min(jobs.c.created_at)).where(jobs.c.status == "queued")
                                            ).scalar()
        found.job_seconds = [float(s) for s in db.execute(select(jobs.c.finished_at - jobs.c.started_at).where(
            jobs.c.status == "succeeded", jobs.c.started_at.is_not(None), jobs.c.finished_at.is_not(None))).scalars()]
        found.production = dict(db.execute(select(schema.production.c.task, schema.production.c.version)).all())
        studies = schema.pacs_studies
        found.pacs = dict(db.execute(select(studies.c.status, func.count()).group_by(studies.c.status)).all())
        beat = db.execute(select(schema.pacs_state.c.value).where(schema.pacs_state.c.key == WATCHER_POLL)).scalar()
    if beat:
        found.last_poll_at = float(json.loads(beat)["at"])
    return found


def _count_audit(found: Readings, action: str, outcome: str, count: int) -> None:
    def add(table: dict, key: tuple, n: int) -> None:
        table[key] = table.get(key, 0) + n

    if action == "predict_xray":
        add(found.studies, XRAY_OUTCOMES.get(outcome, ("analysed", outcome)), count)
    elif action == "refused_synthetic_film":
        add(found.studies, ("refused", "synthetic"), count)
    elif action == "pacs_analysis" and outcome in PACS_OUTCOMES:
        add(found.studies, PACS_OUTCOMES[outcome], count)
    elif action.startswith("predict_notes:"):
        add(found.notes, (action.split(":", 1)[1], NOTES_OUTCOMES.get(outcome, "analysed")), count)


def families(found: Readings, now: float) -> Iterable:
    """The metric families of one reading."""
    analysed = CounterMetricFamily("medcore_studies_analysed", "X-ray studies that got a probability (uploads, the "
                                   "command line and the PACS), by decision", labels=["decision"])
    refused = CounterMetricFamily("medcore_studies_refused", "X-ray studies refused, by reason", labels=["reason"])
    failed = CounterMetricFamily("medcore_studies_failed", "X-ray studies that failed, by reason", labels=["reason"])
    by_result = {"analysed": analysed, "refused": refused, "failed": failed}
    for (result, label), count in sorted(found.studies.items()):
        by_result[result].add_metric([label], count)
    for reason in ("quality", "unreadable", "outside_intended_use", "synthetic", "not_chest", "too_large"):
        if ("refused", reason) not in found.studies:
            refused.add_metric([reason], 0)
    for reason in ("invalid_output", "error"):
        if ("failed", reason) not in found.studies:
            failed.add_metric([reason], 0)
    yield from by_result.values()
    notes = CounterMetricFamily("medcore_notes", "Case notes analysed, rejected or failed, by task", labels=["task",
                                                                                                       "result"])
    for (task, result), count in sorted(found.notes.items()):
        notes.add_metric([task, result], count)
    yield notes
    jobs = GaugeMetricFamily("medcore_jobs", "Training jobs by state", labels=["status"])
    for status in sorted(set(JOB_STATUSES) | set(found.jobs)):
        jobs.add_metric([status], found.jobs.get(status, 0))
    yield jobs
    yield GaugeMetricFamily("medcore_job_queue_depth", "Training jobs waiting to run", value=found.jobs.get("queued", 0))
    yield GaugeMetricFamily("medcore_job_oldest_queued_age_seconds", "How long the oldest waiting job has waited "
                            "(0 when none waits)", value=max(0.0, now - found.oldest_queued_at)
                            if found.oldest_queued_at else 0.0)
    yield _histogram("medcore_training_job_duration_seconds", "Wall time of succeeded training jobs",
                     found.job_seconds, JOB_BUCKETS)
    info = InfoMetricFamily("medcore_production_version", "The production version of each task", labels=["task"])
    for task, version in sorted(found.production.items()):
        info.add_metric([task], {"version": version})
    yield info
    pacs = GaugeMetricFamily("medcore_pacs_studies", "PACS studies MedCore claimed or analysed, by state",
                             labels=["status"])
    for status in sorted(set(PACS_STATUSES) | set(found.pacs)):
        pacs.add_metric([status], found.pacs.get(status, 0))
    yield pacs
    if found.last_poll_at is not None:  # absent until a watcher has polled: absent() alerts on it
        yield GaugeMetricFamily("medcore_pacs_watcher_last_poll_timestamp_seconds", "When a PACS watcher last "
                                "listed the PACS successfully (epoch seconds)", value=found.last_poll_at)


def _histogram(name: str, documentation: str, values: list[float], buckets: tuple[float, ...]):
    cumulative = [(str(float(edge)), sum(v <= edge for v in values)) for edge in buckets]
    cumulative.append(("+Inf", len(values)))
    return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=float(sum(values)))


class StoreCollector(Collector):
    """Reads the store at most once per cache period, whoever scrapes; a failed read is `medcore_store_up 0`."""

    def __init__(self, cache_seconds: float | None = None, wait_for_drift: bool = False) -> None:
        self._cache_seconds = config.metrics_cache_seconds() if cache_seconds is None else cache_seconds
        self._wait_for_drift = wait_for_drift
        self._lock = threading.Lock()
        self._cached: tuple[float, Readings] | None = None

    def describe(self) -> Iterable:
        return []  # nothing read at registration; names are known only from a reading

    def collect(self) -> Iterable:
        now = time.time()
        try:
            with self._lock:
                if self._cached is None or now - self._cached[0] >= self._cache_seconds:
                    self._cached = (now, read_store())
                found = self._cached[1]
        except Exception as exc:  # the store is down: say so, and nothing else
            log.warning("metrics: the store could not be read (%s)", type(exc).__name__)
            yield GaugeMetricFamily("medcore_store_up", "1 when the store could be read", value=0)
            return
        yield GaugeMetricFamily("medcore_store_up", "1 when the store could be read", value=1)
        yield from families(found, now)
        yield from drift_state.families(wait=self._wait_for_drift)
