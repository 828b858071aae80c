"""Unexpected errors: a short incident id for the person, the details for the server log and the audit log.

The browser never sees a traceback or a server path. The server log gets the exception type and the stack
(file, line, function); the exception's message is left out of both logs, since it can quote what a
clinician uploaded or typed. The audit log gets the incident id, the type and where it happened.
"""

from __future__ import annotations

import logging
import secrets
import traceback

from medcore import audit

log = logging.getLogger("medcore")


def report(exc: BaseException, user: str, where: str, message_is_safe: bool = False) -> str:
    """Record an unexpected error; return its incident id (8 hex characters).

    message_is_safe: the exception's message holds no patient content (e.g. a model folder that cannot be
    loaded), so the server log may keep it for the administrator.
    """
    incident = secrets.token_hex(4)
    stack = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
    message = str(exc) if message_is_safe else "message withheld: it may hold patient content"
    log.error("incident %s in %s: %s (%s)\n%s", incident, where, type(exc).__name__, message, stack)
    try:
        audit.record(user, "incident", type(exc).__name__, incident=incident, where=where)
    except Exception as audit_error:  # the audit store may be what broke; the server log still has it
        log.error("incident %s could not be audited: %s", incident, type(audit_error).__name__)
    return incident


def message(incident: str) -> str:
    """What the person sees: what happened, that nothing is lost, and what to quote."""
    return (f"Something went wrong on our side (incident {incident}). What you entered is kept: try again, "
            "and if it happens again give your administrator this incident id.")
