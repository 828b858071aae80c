"""`medcore calibrate xray`: local validation of production on a hospital's own labelled films (a folder, or the
studies clinicians confirmed on the PACS worklist)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medcore import config
from medcore.cli.common import emit, operator


def cmd_calibrate_xray(args: argparse.Namespace) -> int:
    """`medcore calibrate xray`: local validation, a new calibration and threshold, registered as a candidate."""
    import shutil

    from medcore.training.local_calibration import calibrate_and_register

    data, fetched = (Path(args.data), None) if args.data else (None, _confirmed_from_pacs())
    try:
        result = calibrate_and_register(data or fetched, operator(), config.store_dir() / "local-calibration",
                                        args.min_sensitivity)
    finally:
        if fetched is not None:
            shutil.rmtree(fetched, ignore_errors=True)
    for warning in result["warnings"]:
        print(f"medcore: warning: {warning}", file=sys.stderr)
    if args.json:
        emit(result)
    else:
        for name in ("before", "after"):
            figures = result[name]
            print(f"{name:7s} sensitivity {figures['sensitivity']:.3f} specificity {figures['specificity']:.3f} "
                  f"ECE {figures['ece']:.3f}")
        print(f"registered {result['version']} ({result['status']}); promote with: medcore models promote xray "
              f"{result['version']}")
    return 0


def _confirmed_from_pacs() -> Path:
    """The films clinicians confirmed on the worklist, fetched from the PACS into a temporary labelled folder."""
    from medcore.pacs import feedback
    from medcore.pacs.client import PacsClient

    rows = feedback.confirmed()
    if not rows:
        raise ValueError("No study has a confirmed finding yet (PACS worklist: confirm or correct a result).")
    print(f"medcore: fetching {len(rows)} confirmed films from the PACS", file=sys.stderr)
    return feedback.confirmed_films_folder(PacsClient(), rows)


def cmd_adapt_xray(args: argparse.Namespace) -> int:
    """`medcore adapt xray --data DIR`: production adapted to unlabelled local films, registered as a candidate."""
    from medcore.training.local_calibration import adapt_and_register

    result = adapt_and_register("xray", Path(args.data), operator(), config.store_dir() / "adaptation",
                                batch_norm=not args.no_batch_norm, prevalence=not args.no_prevalence)
    for warning in result["adaptation"]["warnings"]:
        print(f"medcore: warning: {warning}", file=sys.stderr)
    emit({"version": result["version"], "status": result["status"], **result["adaptation"]})
    return 0


def register(commands) -> None:
    calibrate = commands.add_parser("calibrate", help="local validation and recalibration of production on your "
                                                      "own labelled films").add_subparsers(dest="task", required=True)
    xray = calibrate.add_parser("xray", help="score production on DIR (NORMAL/ PNEUMONIA/), refit its calibration "
                                             "and threshold, register the result as a candidate version")
    source = xray.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="folder with NORMAL/ and PNEUMONIA/ films of your patients")
    source.add_argument("--from-pacs", action="store_true", help="the studies clinicians confirmed on the PACS "
                                                                 "worklist, fetched from the PACS")
    xray.add_argument("--min-sensitivity", type=float, help="sensitivity target of the new threshold "
                                                           "(default: the model's own, 0.95)")
    xray.add_argument("--json", action="store_true", help="print one JSON object")
    xray.set_defaults(func=cmd_calibrate_xray)

    adapt = commands.add_parser("adapt", help="adapt production to a hospital's films without labels (a candidate "
                                              "version)").add_subparsers(dest="task", required=True)
    xray = adapt.add_parser("xray", help="re-estimate batch-normalisation statistics (AdaBN) and the share of "
                                         "pneumonia (EM) on DIR's films, searched recursively (folder names ignored)")
    xray.add_argument("--data", required=True, help="any folder of films (at least 200)")
    xray.add_argument("--no-batch-norm", action="store_true", help="leave the batch-normalisation statistics")
    xray.add_argument("--no-prevalence", action="store_true", help="leave the share of pneumonia")
    xray.add_argument("--json", action="store_true", help="print one JSON object (always JSON)")
    xray.set_defaults(func=cmd_adapt_xray)
