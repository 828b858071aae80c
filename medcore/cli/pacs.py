"""`medcore pacs watch | analyse | load-demo`: chest studies from the hospital's PACS, results back as DICOM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medcore.cli.common import cli_user, configure_logging, emit
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
    demo = pacs.add_parser("load-demo", help="demo PACS: each film of DIR as a study of a made-up patient")
    demo.add_argument("--data", required=True, help="a NORMAL/ PNEUMONIA/ folder (e.g. the external sample)")
    demo.set_defaults(func=cmd_pacs_load_demo)
