"""`medcore backup create DIR | restore DIR`: a consistent copy of the installation's store, and its restore."""

from __future__ import annotations

import argparse

from medcore.cli.common import emit


def cmd_backup_create(args: argparse.Namespace) -> int:
    """Copy the configured store (database, model versions, job logs, manifest of checksums) into DIR."""
    from medcore import backup

    emit(backup.create(args.dir, include_secret=args.include_secret))
    return 0


def cmd_backup_restore(args: argparse.Namespace) -> int:
    """Verify the backup in DIR and restore it into the configured, empty store."""
    from medcore import backup

    emit(backup.restore(args.dir))
    return 0


def register(commands) -> None:
    group = commands.add_parser("backup", help="back up the store while the app runs, or restore it into an "
                                               "empty store").add_subparsers(dest="action", required=True)
    create = group.add_parser("create", help="write a consistent copy of the store into DIR (new or empty)")
    create.add_argument("dir", help="the backup folder to write (must not exist, or be empty)")
    create.add_argument("--include-secret", action="store_true",
                        help="also copy the installation secret (then guard the backup like the secret itself)")
    create.add_argument("--json", action="store_true", help="print one JSON object (always JSON)")
    create.set_defaults(func=cmd_backup_create)
    restore = group.add_parser("restore", help="verify DIR and restore it into the configured empty store")
    restore.add_argument("dir", help="a folder written by `medcore backup create`")
    restore.add_argument("--json", action="store_true", help="print one JSON object (always JSON)")
    restore.set_defaults(func=cmd_backup_restore)
