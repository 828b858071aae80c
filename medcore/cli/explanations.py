"""`medcore check-explanations xray|notes`: sanity checks of a model folder's explanations and the agreement of its
two explainers, written into the folder's metadata and card (training.explanation_checks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medcore.cli.common import emit


def cmd_check_explanations(args: argparse.Namespace) -> int:
    from medcore.training import explanation_checks

    if args.kind == "xray":
        if not args.external or not args.train:
            raise ValueError("check-explanations xray needs --external (the external sample: its choosing part is "
                             "used) and --train (training films for the shuffled-label network).")
        results = explanation_checks.check_xray(Path(args.model), Path(args.external), Path(args.train))
    else:
        if not args.data:
            raise ValueError("check-explanations notes needs --data (the model's training CSV: its validation "
                             "notes are used).")
        results = explanation_checks.check_notes(Path(args.model), Path(args.data))
    explanation_checks.write(Path(args.model), results)
    if args.json:
        emit(results)
    else:
        print(f"explanation checks written to {args.model}/model_card.md", file=sys.stderr)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("check-explanations", help="sanity checks of a model folder's explanations (writes "
                                                            "them into its card)")
    parser.add_argument("kind", choices=("xray", "notes"))
    parser.add_argument("--model", required=True, help="an unregistered model folder, e.g. assets/models/xray")
    parser.add_argument("--external", help="xray: the external sample folder (its choosing part is used)")
    parser.add_argument("--train", help="xray: the training films (for a network trained on shuffled labels)")
    parser.add_argument("--data", help="notes: the model's training CSV (its own validation notes are used)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=cmd_check_explanations)
