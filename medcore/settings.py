"""Settings an administrator changes while MedCore runs (kept in the store, so every server sees them at once).

Each change is an audit row. Unknown keys are refused: a typo must not silently change nothing.
"""

from __future__ import annotations

import time

from sqlalchemy import insert, select, update

from medcore import audit, auth
from medcore.imaging.intended_use import ALLOW_OUTSIDE_AGE
from medcore.store import read, schema, write

SETTINGS = schema.settings
DEFAULTS = {ALLOW_OUTSIDE_AGE: "off"}  # the safe choice is the default: a film outside the validated ages is refused
CHOICES = {ALLOW_OUTSIDE_AGE: ("on", "off")}


def get(key: str) -> str:
    if key not in DEFAULTS:
        raise ValueError(f"No setting {key!r}.")
    with read() as db:
        value = db.execute(select(SETTINGS.c.value).where(SETTINGS.c.key == key)).scalar()
    return DEFAULTS[key] if value is None else value


def set_value(key: str, value: str, user: auth.User) -> None:
    """Change a setting and record who did; the account must still be an active administrator (checked here, at
    the moment of the change, not when the page was drawn)."""
    actor = auth.require_admin(user).name
    if key not in DEFAULTS:
        raise ValueError(f"No setting {key!r}.")
    if value not in CHOICES[key]:
        raise ValueError(f"{key} is one of {', '.join(CHOICES[key])}, not {value!r}.")
    previous = get(key)
    with write() as db:
        values = {"value": value, "changed_at": time.time(), "changed_by": actor}
        if not db.execute(update(SETTINGS).where(SETTINGS.c.key == key).values(**values)).rowcount:
            db.execute(insert(SETTINGS).values(key=key, **values))
    audit.record(actor, "setting_changed", value, setting=key, previous=previous)


def allow_outside_age() -> bool:
    """May the X-ray model score a patient whose age lies outside its intended use (with a warning)? Default no."""
    return get(ALLOW_OUTSIDE_AGE) == "on"
