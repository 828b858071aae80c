"""`medcore pacs backfill --from DATE --to DATE`: every chest study of a date range analysed once, resumably.

A month of studies that arrived before MedCore did (or while it was stopped) is a backlog the watcher's look-back
never reaches. The backfill lists the range from the PACS day by day (QIDO-RS, every page), and hands each study
with no final record to the watcher's own per-study path (pacs.analysis.analyse_study through
watcher._analyse_safely): the same claim row in the store, so a watcher running meanwhile, a second backfill or a
restart never repeats a study, and a backfill run again after a stop simply finds the finished ones done.

A stop (Ctrl-C, SIGTERM, should_stop()) takes no new study; those in flight finish and are recorded. A process
killed outright leaves at most `workers` studies claimed: another process takes them over once the claim is stale
(analysis.CLAIM_SECONDS), and until then the summary counts them as held. One bad study is counted and the others
go on; the PACS being down backs off and tries again, then stops with the range left resumable.
"""

from __future__ import annotations

import datetime
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator

from medcore.pacs import analysis, watcher
from medcore.pacs.client import PacsClient, PacsUnavailable

MAX_DAYS = 3660  # ten years: a longer range is a typing mistake, not a backlog
OUTAGE_TRIES = 5  # the PACS down this many times in a row (2 s doubling): stop, resumable


@dataclass
class BackfillSummary:
    """What a backfill did; printed as JSON at the end, and as progress after each day."""

    first_day: str
    last_day: str
    days: int = 0  # days listed so far
    listed: int = 0  # chest studies in the days listed
    already_done: int = 0  # a final record existed before this run looked
    analysed: int = 0  # analysed by this run (a result or a refusal stored)
    skipped: int = 0  # taken meanwhile by another process (a watcher, another backfill), or its own report found
    errors: int = 0  # studies that failed this run (tried again up to analysis.MAX_ATTEMPTS, then reported)
    held: int = 0  # not final at the end of the run: claimed by another process, or tries left (run it again)
    stopped: bool = False  # stopped before the range was finished: run the same command again to resume
    error: str | None = None  # why it stopped (the PACS down), never a patient's identifier
    seconds: float = 0.0
    studies_per_second: float = 0.0
    per_day: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def parse_day(text: str) -> datetime.date:
    """YYYY-MM-DD, or ValueError that says what was expected."""
    try:
        return datetime.date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"{text!r} is not a date: write YYYY-MM-DD, e.g. 2024-03-01.") from None


def date_range(first: str, last: str, today: datetime.date | None = None) -> tuple[datetime.date, datetime.date]:
    """The range a user typed, checked: both dates readable, in order, not in the future, at most MAX_DAYS."""
    start, end, today = parse_day(first), parse_day(last), today or datetime.date.today()
    if start > end:
        raise ValueError(f"--from {start} is after --to {end}: the range is empty.")
    if end > today:
        raise ValueError(f"--to {end} is in the future (today is {today}); the PACS holds no studies from then.")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValueError(f"The range covers {(end - start).days + 1} days, more than {MAX_DAYS}; split it.")
    return start, end


def days(start: datetime.date, end: datetime.date) -> Iterator[datetime.date]:
    for offset in range((end - start).days + 1):
        yield start + datetime.timedelta(days=offset)


def bounded(items: Iterable, handle: Callable, workers: int, should_stop: Callable[[], bool]) -> Iterator:
    """handle(item) for each item, `workers` at a time, each result as it comes: no new item once should_stop(),
    and those in flight are always waited for (so a stop never leaves a half-written study)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        running: set[Future] = set()
        try:
            for item in items:
                if len(running) >= workers:  # a free slot first, then the stop is asked: a stop seen late costs one
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
                if should_stop():
                    break
                running.add(pool.submit(handle, item))
        finally:
            done, _ = wait(running)
            results = [future.result() for future in done]
        yield from results


def backfill_day(client: PacsClient, model, day: datetime.date, workers: int, should_stop: Callable[[], bool]) -> dict:
    """One day: list it, analyse what has no final record; a failed study is tried again while it has tries left."""
    studies = client.chest_studies(day, day)
    pending = watcher.not_final(studies, model.version)
    row = {"day": day.isoformat(), "listed": len(studies), "already_done": len(studies) - len(pending),
           "analysed": 0, "skipped": 0, "errors": 0}
    for _ in range(analysis.MAX_ATTEMPTS):
        outcomes = list(bounded(pending, lambda study: watcher._analyse_safely(client, model, study), workers,
                                should_stop))
        for key in ("analysed", "skipped"):
            row[key] += outcomes.count(key)
        row["errors"] += outcomes.count("error")
        pending = watcher.not_final(pending, model.version)
        if "error" not in outcomes or should_stop() or not pending:
            break
    row["held"] = len(pending)
    return row


def backfill(client: PacsClient, model, start: datetime.date, end: datetime.date, workers: int = 2,
             should_stop: Callable[[], bool] = lambda: False,
             progress: Callable[[dict], None] | None = None, sleep: Callable[[float], None] = time.sleep
             ) -> BackfillSummary:
    """Analyse every chest study from start to end (inclusive) that has no final record for model's version."""
    summary = BackfillSummary(start.isoformat(), end.isoformat())
    began, outages = time.perf_counter(), 0
    day_list = list(days(start, end))
    index = 0
    while index < len(day_list):
        if should_stop():
            summary.stopped = True
            break
        try:
            row = backfill_day(client, model, day_list[index], workers, should_stop)
        except PacsUnavailable as exc:
            outages += 1
            if outages >= OUTAGE_TRIES:
                summary.stopped, summary.error = True, str(exc)
                break
            sleep(min(watcher.MAX_BACKOFF_S, 2.0 * 2 ** (outages - 1)))
            continue  # the same day again: its finished studies are skipped
        outages, index = 0, index + 1
        _add(summary, row)
        summary.seconds = round(time.perf_counter() - began, 2)
        summary.studies_per_second = round(summary.analysed / summary.seconds, 2) if summary.seconds else 0.0
        if progress:
            progress({**row, "days_done": summary.days, "days": len(day_list), "analysed_total": summary.analysed,
                      "studies_per_second": summary.studies_per_second})
        if should_stop() and row["held"]:
            summary.stopped = True
            break
    summary.seconds = round(time.perf_counter() - began, 2)
    summary.studies_per_second = round(summary.analysed / summary.seconds, 2) if summary.seconds else 0.0
    return summary


def _add(summary: BackfillSummary, row: dict) -> None:
    summary.days += 1
    summary.per_day.append(row)
    for key in ("listed", "already_done", "analysed", "skipped", "errors", "held"):
        setattr(summary, key, getattr(summary, key) + row[key])
