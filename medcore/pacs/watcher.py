"""`medcore pacs watch`: analyse each new chest study in the PACS once, and write the result back.

Every few seconds it lists the chest studies from its durable cursor (the first day not yet fully seen, kept in the
store, less a look-back of a few days: a study dated yesterday can reach the PACS today) to today, and hands each
one the store has no final record of to pacs.analysis (which claims it, so a second watcher or a restart never
repeats one). Studies are analysed two at a time. When the PACS is down it says so and
backs off (2 s doubling to a minute), never crashes; when production changes it loads the new model.

Left unattended it must keep going: an error in one study (or one odd row of the PACS's answer) is counted, logged
by its type only, and the rest go on; an error of the whole poll backs off like the PACS being down. Each successful
listing and each study handled is recorded in the store (worklist.WATCHER_POLL), so the worklist can say when no
watcher is triaging.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from medcore import config, production
from medcore.observability import instruments
from medcore.pacs import analysis, worklist
from medcore.pacs.client import PacsClient, PacsUnavailable
from medcore.store import read, schema, write

log = logging.getLogger("medcore")
STATE = schema.pacs_state
CURSOR = "watch_first_day"
FINAL = ("done", "refused", "failed")
MAX_BACKOFF_S = 60.0


def cursor(default: datetime.date) -> datetime.date:
    with read() as db:
        value = db.execute(select(STATE.c.value).where(STATE.c.key == CURSOR)).scalar()
    return datetime.date.fromisoformat(value) if value else default


def set_cursor(day: datetime.date) -> None:
    _put_state(CURSOR, day.isoformat())


def _put_state(key: str, value: str) -> None:
    with write() as db:
        if not db.execute(update(STATE).where(STATE.c.key == key).values(value=value)).rowcount:
            try:
                nested = db.begin_nested()
                db.execute(STATE.insert().values(key=key, value=value))
                nested.commit()
            except IntegrityError:
                nested.rollback()


def _beat() -> None:
    """The watcher is alive and working: after each listing of the PACS and each study handled (a backlog of
    thousands takes longer than the worklist's patience, and must not read as a stalled watcher)."""
    _put_state(worklist.WATCHER_POLL, json.dumps({"at": time.time(), "server": config.server_name()}))


def _analyse_safely(client: PacsClient, model, study) -> str:
    """One study, whatever goes wrong with it: 'analysed', 'skipped' (another has it, or done) or 'error'.
    PacsUnavailable still propagates: the whole PACS is down, and the poll backs off."""
    started, outcome = time.monotonic(), "error"
    try:
        outcome = "analysed" if analysis.analyse_study(client, model, study.study_uid) is not None else "skipped"
        return outcome
    except PacsUnavailable:
        outcome = "pacs_unavailable"  # the PACS, not the study: counted as the poll's error
        raise
    except Exception as exc:  # one bad study must not stop the others, nor the watcher
        log.warning("A study could not be handled (%s); the others go on", type(exc).__name__)
        return "error"
    finally:
        instruments.study_handled(outcome, time.monotonic() - started)
        _beat()


def not_final(studies: list, version: str) -> list:
    """The studies with no final record for this model version, in their order (one query per 500 studies)."""
    done = analysis.final_uids([s.study_uid for s in studies], version, FINAL)
    return [s for s in studies if s.study_uid not in done]


def poll_once(client: PacsClient, model, workers: int = 2, today: datetime.date | None = None) -> dict:
    """One pass: the studies from the cursor to today that have no final record for this model version."""
    today = today or datetime.date.today()
    first = cursor(today) - datetime.timedelta(days=config.pacs_lookback_days())  # studies that arrive late
    studies = client.chest_studies(first, today)
    _beat()
    pending = not_final(studies, model.version)
    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(lambda s: _analyse_safely(client, model, s), pending))
    if not [s for s in not_final(pending, model.version) if s.study_date < today.strftime("%Y%m%d")]:
        set_cursor(today)  # every earlier day is settled: start there next time
    return {"listed": len(studies), "pending": len(pending), "analysed": outcomes.count("analysed"),
            "errors": outcomes.count("error")}


def watch(should_stop: Callable[[], bool] = lambda: False, poll_seconds: float | None = None,
          report: Callable[[dict], None] | None = None) -> None:
    """Poll until should_stop(); the PACS being down is a message and a back-off, never an exception."""
    poll_seconds = config.pacs_poll_seconds() if poll_seconds is None else poll_seconds
    client, served, backoff = PacsClient(), None, poll_seconds
    while not should_stop():
        try:
            version = production.current_version("xray")
            if served is None or served.version != version:
                served = production.load("xray").model
            started = time.monotonic()
            outcome = poll_once(client, served)
            instruments.poll_succeeded(time.monotonic() - started)
            backoff = poll_seconds
            if report:
                report({"at": time.time(), **outcome})
        except PacsUnavailable as exc:
            instruments.poll_failed(pacs_unavailable=True)
            backoff = min(MAX_BACKOFF_S, max(backoff * 2, poll_seconds))
            log.warning("PACS unavailable (%s); trying again in %.0f s", exc, backoff)
            if report:
                report({"at": time.time(), "error": str(exc), "retry_in_s": backoff})
        except Exception as exc:  # the store, a model load, an odd answer: back off and go on, never stop watching
            instruments.poll_failed(pacs_unavailable=False)
            backoff = min(MAX_BACKOFF_S, max(backoff * 2, poll_seconds))
            log.warning("The poll failed (%s); trying again in %.0f s", type(exc).__name__, backoff)
            if report:
                report({"at": time.time(), "error": type(exc).__name__, "retry_in_s": backoff})
        deadline = time.time() + backoff
        while time.time() < deadline and not should_stop():
            time.sleep(0.2)
