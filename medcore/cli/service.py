"""`medcore worker | db`: the parts of a deployment on several machines (a training worker, the shared store)."""

from __future__ import annotations

import argparse

from medcore.cli.common import configure_logging, emit
from medcore.cli.metrics import add_process_metrics, start_process_metrics


def cmd_worker(args: argparse.Namespace) -> int:
    """`medcore worker`: run training jobs from the queue (MEDCORE_JOB_QUEUE=procrastinate) until stopped."""
    from medcore import config
    from medcore.jobs import queue

    if config.job_queue() != "procrastinate":
        raise ValueError("No queue is configured: set MEDCORE_JOB_QUEUE=procrastinate and MEDCORE_DATABASE_URL "
                         "(PostgreSQL) on the app servers and on this worker.")
    configure_logging()
    start_process_metrics(args)
    queue.work(once=args.once)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    """`medcore db upgrade | current`: bring the store to this code's schema revision, or say where it is."""
    from medcore import store
    from medcore.store import migrations

    store.engine()  # migrates to the head revision under the store's lock (a newer database is refused)
    with store.read() as connection:
        current = migrations.current(connection)
    emit({"database": store.describe(), "revision": current, "head": migrations.head()})
    return 0


def register(commands) -> None:
    worker = commands.add_parser("worker", help="run training jobs from the queue on this machine (PostgreSQL "
                                                "store, MEDCORE_JOB_QUEUE=procrastinate)")
    worker.add_argument("--once", action="store_true", help="stop when the queue is empty (tests, cron)")
    add_process_metrics(worker)
    worker.set_defaults(func=cmd_worker)
    db = commands.add_parser("db", help="the store's schema").add_subparsers(dest="action", required=True)
    for action in ("upgrade", "current"):
        db.add_parser(action, help="upgrade to this code's revision" if action == "upgrade" else
                      "show the store's revision (upgrading it first)").set_defaults(func=cmd_db)
