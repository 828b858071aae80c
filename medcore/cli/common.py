"""What every command group shares: JSON on stdout, progress on stderr, the acting operator, the served model."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

from medcore import tasks

# Libraries that name patients' studies at INFO: dicomweb-client logs study, series and instance UIDs on every call.
QUIET_LOGGERS = ("dicomweb_client",)


def emit(obj: dict) -> None:
    print(json.dumps(finite(obj)), flush=True)


def finite(obj):
    """NaN is not JSON: write null instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


def configure_logging() -> None:
    """INFO on stderr for the long-running commands (`pacs watch`, `worker`), but WARNING for QUIET_LOGGERS and
    their children: a log is read by people who may not see which patients were examined."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
        for child in [n for n in list(logging.root.manager.loggerDict) if n.startswith(name + ".")]:
            logging.getLogger(child).setLevel(logging.WARNING)  # NOTSET ones inherit it anyway; set ones too


def progress_to_stderr(event: dict) -> None:
    print(json.dumps(finite(event)), file=sys.stderr, flush=True)


def served_model(task: str, model_arg: str | None):
    """The model in --model, or the registry's production model (warnings, e.g. a fallback, to stderr)."""
    from medcore import production

    if model_arg:
        return tasks.get(task).load(Path(model_arg))
    served = production.load(task)
    for warning in served.warnings:
        print(f"medcore: {warning}", file=sys.stderr)
    return served.model


def cli_user() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def operator():
    """Whoever runs the CLI on the server administers it (auth.operator)."""
    from medcore import auth

    return auth.operator(cli_user())


def iso(timestamp: float | None) -> str | None:
    import datetime

    return None if timestamp is None else datetime.datetime.fromtimestamp(timestamp).isoformat(timespec="seconds")


def listing_output(key: str, rows: list[dict], as_json: bool, line) -> int:
    """One JSON object {key: rows}, or one text line per row."""
    if as_json:
        emit({key: rows})
    else:
        for row in rows:
            print(line(row))
    return 0
