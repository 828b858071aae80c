"""`medcore train | evaluate | predict | calibrate | adapt | drift | check-explanations | federated | gan | models |
jobs | users | audit | settings | worker | db | pacs | backup | metrics`: the public command line (JSON on stdout).

The release check runs `medcore evaluate xray --data DIR --json` on hidden held-out data, so the flags here are a
contract: add, never rename. Progress and warnings go to stderr; stdout carries only the JSON result. Each command
group lives in its own module and registers its own sub-commands.
"""

from __future__ import annotations

import argparse
import sys

from medcore.cli import (
    admin,
    backup,
    calibrate,
    explanations,
    federated,
    gan,
    metrics,
    modelling,
    monitoring,
    pacs,
    service,
)

GROUPS = (modelling, calibrate, monitoring, explanations, federated, gan, admin, service, pacs, backup, metrics)

# commands that neither read nor serve registered models
WITHOUT_REGISTRY = {"train", "quality-refit", "calibration-refit", "prediction-sets-refit", "check-explanations",
                    "users", "worker", "db", "audit", "settings",
                    "backup", "metrics"}  # a restore needs an empty store; metrics only read it
from medcore.pacs.client import PacsUnavailable  # noqa: E402 - a clear message for the PACS being down


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medcore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from medcore import registry
    from medcore.artifacts import ModelLoadError
    from medcore.backup import BackupError
    from medcore.keyed import SecretUnavailable
    from medcore.registry import RegistryError
    from medcore.store import StoreError

    try:  # a clear one-line message, not a traceback, for the failures a user can fix
        if args.command not in WITHOUT_REGISTRY:
            registry.ensure_defaults()  # once, at start: installs the shipped models into a new store
        return args.func(args)
    except ModelLoadError as exc:
        print(f"medcore: {exc}", file=sys.stderr)
        return 3
    except (FileNotFoundError, NotADirectoryError, ValueError, RegistryError, StoreError, PacsUnavailable,
            BackupError, SecretUnavailable) as exc:
        print(f"medcore: {exc}", file=sys.stderr)
        return 2
