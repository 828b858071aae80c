"""`medcore models | jobs | users | audit | settings`: the registry, background training jobs, accounts, who looked
at a patient, and administrators' settings, for the server's operator.
"""

from __future__ import annotations

import argparse

from medcore import config, tasks
from medcore.cli.common import cli_user, emit, iso, listing_output, operator

def _version_row(entry) -> dict:
    metrics = entry.summary.get("metrics", {}).get("validation", {})
    keys = ("auc", "sensitivity", "specificity", "macro_f1", "accuracy", "ece")
    return {"task": entry.task, "version": entry.version, "status": entry.status, "origin": entry.origin,
            "created_by": entry.created_by, "created_at": iso(entry.created_at),
            "data_fingerprint": entry.summary.get("data", {}).get("fingerprint"),
            "validation": {k: metrics[k] for k in keys if k in metrics}}


def cmd_models_list(args: argparse.Namespace) -> int:
    from medcore import registry

    keys = [tasks.get(name).key for name in args.task_name] if args.task_name else tasks.KEYS
    rows = [_version_row(v) for task in keys for v in registry.list_versions(task)]
    return listing_output("versions", rows, args.json,
                    lambda row: f"{row['task']:26s} {row['version']:44s} {row['status']:20s} {row['created_at']}")


def cmd_models_promote(args: argparse.Namespace) -> int:
    from medcore import registry

    task = tasks.get(args.task_name).key
    previous = registry.promote(task, args.version, operator())
    emit({"task": task, "production": args.version, "previous": previous})
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    from medcore import registry

    task = tasks.get(args.task_name).key
    current = registry.production(task)
    version = registry.rollback(task, operator(), to=args.to)
    emit({"task": task, "production": version, "previous": current.version if current else None})
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from medcore import jobs

    rows = [{"id": j.id, "task": j.task, "status": j.status, "created_by": j.created_by,
             "created_at": iso(j.created_at), "finished_at": iso(j.finished_at), "data": j.data_label,
             "candidate_version": j.candidate_version, "error": j.error} for j in jobs.list_jobs(args.limit)]
    return listing_output("jobs", rows, args.json, lambda row: f"{row['id']:32s} {row['task']:26s} {row['status']:10s} "
                                                         f"{row['candidate_version'] or row['error'] or ''}")


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    from medcore import jobs

    jobs.cancel(args.job_id, operator())
    emit({"job": args.job_id, "cancel_requested": True})
    return 0


def _read_new_password(name: str) -> str:
    """From MEDCORE_NEW_PASSWORD (scripts), else typed twice without echo."""
    import getpass

    if scripted := config.new_password_from_environment():
        return scripted
    password = getpass.getpass(f"Password for {name}: ")
    if getpass.getpass("Repeat it: ") != password:
        raise ValueError("The two passwords differ; nothing was changed.")
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    from medcore import audit, auth

    user = auth.add_user(args.name, _read_new_password(args.name), "admin" if args.admin else "clinician", cli_user())
    audit.record(cli_user(), "user_add", "created", account=user.name, role=user.role)
    emit({"user": user.name, "role": user.role})
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from medcore import auth, sso

    emit({"users": [{"name": u.name, "role": u.role, "disabled": u.disabled} for u in auth.list_users()],
          "hospital_accounts": [{"name": a["name"], "issuer": a["issuer"], "subject": a["subject"],
                                 "display_name": a["display_name"], "role": a["role"],
                                 "last_sign_in": iso(a["last_sign_in_at"]), "disabled": a["disabled_at"] is not None}
                                for a in sso.list_accounts()]})
    return 0


def cmd_users_password(args: argparse.Namespace) -> int:
    from medcore import audit, auth

    auth.set_password(args.name, _read_new_password(args.name))
    audit.record(cli_user(), "user_password", "changed", account=args.name)
    emit({"user": args.name, "password": "changed"})
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    from medcore import audit, auth, sso

    if not (args.name.startswith("sso:") and sso.set_disabled(args.name, not args.enable)):  # a hospital account, or
        auth.set_disabled(args.name, not args.enable)  # a local one
    audit.record(cli_user(), "user_disable", "enabled" if args.enable else "disabled", account=args.name)
    emit({"user": args.name, "disabled": not args.enable})
    return 0


def cmd_audit_accesses(args: argparse.Namespace) -> int:
    """`medcore audit accesses --patient-id ID`: who listed or opened this patient's studies, and when (the id is
    turned into its keyed digest here; it is never stored or printed)."""
    from medcore import access

    if not args.patient_id.strip():
        raise ValueError("Give the patient's id (--patient-id).")
    rows = [{**row, "at": iso(row["at"])} for row in access.accesses(args.patient_id, args.accession, cli_user())]
    return listing_output("accesses", rows, args.json,
                          lambda row: f"{row['at']}  {row['user']:24s} {row['action']:8s} {row['server'] or ''}")


def cmd_settings(args: argparse.Namespace) -> int:
    """`medcore settings show | set KEY VALUE`."""
    from medcore import settings

    if args.action == "set":
        settings.set_value(args.key, args.value, operator())
    emit({key: settings.get(key) for key in settings.DEFAULTS})
    return 0


def register(commands) -> None:
    every = (*tasks.TASKS, *tasks.GENERATORS)
    audit_commands = commands.add_parser("audit", help="the audit trail").add_subparsers(dest="action", required=True)
    accesses = audit_commands.add_parser("accesses", help="who listed or opened a patient's studies, and when")
    accesses.add_argument("--patient-id", required=True, help="the patient's id in the PACS (never stored)")
    accesses.add_argument("--accession", help="only this accession number")
    accesses.add_argument("--json", action="store_true")
    accesses.set_defaults(func=cmd_audit_accesses)
    setting_commands = commands.add_parser("settings", help="administrators' settings (each change audited)"
                                           ).add_subparsers(dest="action", required=True)
    setting_commands.add_parser("show").set_defaults(func=cmd_settings)
    change = setting_commands.add_parser("set", help="e.g. `set xray_allow_outside_age on` (default off)")
    change.add_argument("key")
    change.add_argument("value")
    change.set_defaults(func=cmd_settings)
    models = commands.add_parser("models", help="the model registry").add_subparsers(dest="action", required=True)
    listing = models.add_parser("list", help="every version with its status and validation metrics")
    listing.add_argument("--task", dest="task_name", action="append", choices=tasks.names(every))
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_models_list)
    promote = models.add_parser("promote", help="make a version the production model (atomic)")
    promote.add_argument("task_name", choices=tasks.names(every))
    promote.add_argument("version")
    promote.set_defaults(func=cmd_models_promote)
    rollback = models.add_parser("rollback", help="put an earlier version back in production")
    rollback.add_argument("task_name", choices=tasks.names(every))
    rollback.add_argument("--to", help="version to restore (default: the one production replaced)")
    rollback.set_defaults(func=cmd_models_rollback)

    job_commands = commands.add_parser("jobs", help="background training jobs").add_subparsers(
        dest="action", required=True)
    listing = job_commands.add_parser("list", help="recent jobs, newest first")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_jobs_list)
    cancel = job_commands.add_parser("cancel", help="stop a running job (nothing is registered)")
    cancel.add_argument("job_id")
    cancel.set_defaults(func=cmd_jobs_cancel)

    users = commands.add_parser("users", help="accounts (passwords are read without echo, stored as bcrypt "
                                              "hashes)").add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="create an account (clinician unless --admin)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true")
    add.set_defaults(func=cmd_users_add)
    users.add_parser("list").set_defaults(func=cmd_users_list)
    password = users.add_parser("password", help="set a new password (also clears a lock-out)")
    password.add_argument("name")
    password.set_defaults(func=cmd_users_password)
    disable = users.add_parser("disable", help="block an account at once (its open sessions end)")
    disable.add_argument("name")
    disable.add_argument("--enable", action="store_true", help="unblock it instead")
    disable.set_defaults(func=cmd_users_disable)
