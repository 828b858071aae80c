"""`medcore pacs watch | analyse | backfill | load-demo`: chest studies from the PACS, results back as DICOM."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from medcore.cli.common import cli_user, configure_logging, emit, progress_to_stderr
from medcore.cli.metrics import add_process_metrics, start_process_metrics


def cmd_pacs_watch(args: argparse.Namespace) -> int:
    """`medcore pacs watch`: analyse each new chest study once and write the result back, until stopped."""
    from medcore.pacs.watcher import watch

    configure_logging()
    start_process_metrics(args)
    watch(report=(lambda row: print(row, file=sys.stderr, flush=True)) if args.verbose else None)
    return 0


def cmd_pacs_analyse(args: argparse.Namespace) -> int:
    """`medcore pacs analyse STUDY_UID`: one study now (claimed like the watcher's; nothing twice)."""
    from medcore import access, production
    from medcore.pacs import analysis
    from medcore.pacs.client import PacsClient

    model, client = production.load("xray").model, PacsClient()
    study = client.study(args.study_uid)
    if study is None:
        raise ValueError("The PACS holds no study with that Study Instance UID.")
    access.record(cli_user(), "opened", [(study.patient_id, study.accession_number)])  # its result is printed
    done = analysis.analyse_study(client, model, args.study_uid, user=cli_user())
    record = analysis.record(args.study_uid, model.version) or {}
    result = {"study": args.study_uid, "model_version": model.version, "status": record.get("status"),
              "outcome": record.get("outcome"), "probability": record.get("probability"),
              "stored": bool(done and done.stored)}
    if done is not None and done.result.error:
        result["error"] = done.result.error
    emit(result)
    return 0


def cmd_pacs_backfill(args: argparse.Namespace) -> int:
    """`medcore pacs backfill --from DATE --to DATE`: each chest study of the range analysed once (claimed like the
    watcher's), progress on stderr, a JSON summary on stdout; Ctrl-C stops after the studies in flight, and the same
    command resumes. Exit 1 when it stopped before the end."""
    import signal

    from medcore import production
    from medcore.pacs.backfill import backfill, date_range
    from medcore.pacs.client import PacsClient

    start, end = date_range(args.first, args.last)  # refused before anything is loaded or listed
    configure_logging()
    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        if stop.is_set():  # a second Ctrl-C: leave now (claims in flight are taken over once stale)
            raise KeyboardInterrupt
        print("medcore: stopping after the studies in flight; run the same command again to resume",
              file=sys.stderr, flush=True)
        stop.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        model, client = production.load("xray").model, PacsClient()
        summary = backfill(client, model, start, end, workers=args.workers, should_stop=stop.is_set,
                           progress=None if args.quiet else progress_to_stderr)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    emit({**summary.as_dict(), "model_version": model.version})
    return 1 if summary.stopped else 0


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError("between 1 and 16")
    return value


def cmd_pacs_load_demo(args: argparse.Namespace) -> int:
    """`medcore pacs load-demo --data DIR`: every film as a study of a made-up patient, stored in the PACS."""
    from medcore.pacs.client import PacsClient
    from medcore.pacs.demo import demo_studies

    client = PacsClient()
    studies = demo_studies(Path(args.data))
    for start in range(0, len(studies), 20):
        client.store(studies[start:start + 20])
    emit({"studies": len(studies), "patients": "made up (Demo^PatientNNNN)"})
    return 0


def register(commands) -> None:
    pacs = commands.add_parser("pacs", help="studies from the PACS (DICOMweb: MEDCORE_PACS_URL, _USER, _PASSWORD)"
                               ).add_subparsers(dest="action", required=True)
    watch = pacs.add_parser("watch", help="analyse each new chest study once, write an SR and an overlay back")
    watch.add_argument("--verbose", action="store_true", help="one line per poll on stderr")
    add_process_metrics(watch)
    watch.set_defaults(func=cmd_pacs_watch)
    analyse = pacs.add_parser("analyse", help="analyse one study now and write its result back")
    analyse.add_argument("study_uid")
    analyse.add_argument("--json", action="store_true", help="print one JSON object (always JSON)")
    analyse.set_defaults(func=cmd_pacs_analyse)
    backfill = pacs.add_parser("backfill", help="analyse every chest study of a date range once (resumable)")
    backfill.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD", help="first study date")
    backfill.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD", help="last study date (inclusive)")
    backfill.add_argument("--workers", type=_positive, default=2,
                          help="studies at a time in this process (default 2); run several processes for more")
    backfill.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    backfill.set_defaults(func=cmd_pacs_backfill)
    demo = pacs.add_parser("load-demo", help="demo PACS: each film of DIR as a study of a made-up patient")
    demo.add_argument("--data", required=True, help="a NORMAL/ PNEUMONIA/ folder (e.g. the external sample)")
    demo.set_defaults(func=cmd_pacs_load_demo)
