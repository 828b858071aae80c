"""Users, roles and sign-in: bcrypt hashes only, lock-out after repeated failures, expiring sessions.

Roles: `clinician` (X-ray, case notes, model performance) and `admin` (also retraining, registry
and audit). There is no default account: the first admin comes from `medcore users add --admin
NAME` or, once, from MEDCORE_ADMIN_USER / MEDCORE_ADMIN_PASSWORD at first start.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import bcrypt

from medcore import config
from medcore.store import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('clinician', 'admin')),
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    disabled_at REAL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0
);
"""

ROLES = ("clinician", "admin")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; longer passwords are refused, not silently cut
MAX_FAILURES = 5
LOCKOUT_SECONDS = 300
BCRYPT_ROUNDS = 12
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
# Checked when the name is unknown, so that a wrong name and a wrong password take the same time.
_DUMMY_HASH = bcrypt.hashpw(b"medcore-no-such-user", bcrypt.gensalt(4))


class AuthError(ValueError):
    """A user operation refused, with the reason for the person who asked."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def check_password_policy(name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(f"The password needs at least {MIN_PASSWORD_CHARS} characters.")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise AuthError(f"The password may have at most {MAX_PASSWORD_BYTES} bytes.")
    if name.lower() in password.lower():
        raise AuthError("The password must not contain the user name.")


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(BCRYPT_ROUNDS)).decode("ascii")


def add_user(name: str, password: str, role: str, created_by: str) -> User:
    if not NAME_PATTERN.match(name):
        raise AuthError("A user name is 2-32 characters: lower-case letters, digits, '.', '_' or '-'.")
    if role not in ROLES:
        raise AuthError(f"Role must be one of {', '.join(ROLES)}.")
    check_password_policy(name, password)
    password_hash = hash_password(password)
    with connect("users", SCHEMA) as db:
        if db.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
            raise AuthError(f"User {name!r} already exists.")
        db.execute("INSERT INTO users (name, role, password_hash, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                   (name, role, password_hash, time.time(), created_by))
    return User(name, role, False)


def set_password(name: str, password: str) -> None:
    check_password_policy(name, password)
    password_hash = hash_password(password)
    with connect("users", SCHEMA) as db:
        if not db.execute("UPDATE users SET password_hash=?, failed_attempts=0, locked_until=0 WHERE name=?",
                          (password_hash, name)).rowcount:
            raise AuthError(f"No user {name!r}.")


def set_disabled(name: str, disabled: bool) -> None:
    with connect("users", SCHEMA) as db:
        if not db.execute("UPDATE users SET disabled_at=? WHERE name=?",
                          (time.time() if disabled else None, name)).rowcount:
            raise AuthError(f"No user {name!r}.")


def get_user(name: str) -> User | None:
    with connect("users", SCHEMA) as db:
        row = db.execute("SELECT name, role, disabled_at FROM users WHERE name=?", (name,)).fetchone()
    return User(row["name"], row["role"], row["disabled_at"] is not None) if row else None


def list_users() -> list[User]:
    with connect("users", SCHEMA) as db:
        rows = db.execute("SELECT name, role, disabled_at FROM users ORDER BY name").fetchall()
    return [User(r["name"], r["role"], r["disabled_at"] is not None) for r in rows]


def has_users() -> bool:
    with connect("users", SCHEMA) as db:
        return db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None


def authenticate(name: str, password: str, now: float | None = None) -> tuple[User | None, str]:
    """(user, "") on success; (None, reason) otherwise. The reason never says which part was wrong."""
    now = time.time() if now is None else now
    wrong = "Wrong user name or password."
    with connect("users", SCHEMA) as db:
        row = db.execute("SELECT * FROM users WHERE name=?", (name,)).fetchone()
        if row is None:
            bcrypt.checkpw(password.encode("utf-8")[:MAX_PASSWORD_BYTES], _DUMMY_HASH)
            return None, wrong
        if row["locked_until"] > now:
            return None, f"Too many failed attempts; try again in {int(row['locked_until'] - now) // 60 + 1} min."
        ok = bcrypt.checkpw(password.encode("utf-8")[:MAX_PASSWORD_BYTES], row["password_hash"].encode("ascii"))
        if not ok:
            failures = row["failed_attempts"] + 1
            locked_until = now + LOCKOUT_SECONDS if failures >= MAX_FAILURES else 0
            db.execute("UPDATE users SET failed_attempts=?, locked_until=? WHERE name=?",
                       (0 if locked_until else failures, locked_until, name))
            return None, wrong
        db.execute("UPDATE users SET failed_attempts=0 WHERE name=?", (name,))
    if row["disabled_at"] is not None:
        return None, "This account is disabled; ask an administrator."
    return User(row["name"], row["role"], False), ""


def create_admin_from_environment() -> str | None:
    """At first start only (no admin yet): create the admin named in MEDCORE_ADMIN_USER, if set.

    Once any admin exists the variables are ignored, so a leaked or stale value cannot add another.
    """
    name, password = config.first_admin()
    if not name or not password or any(user.is_admin for user in list_users()):
        return None
    add_user(name, password, "admin", "environment")
    return name


def session_expired(signed_in_at: float, last_seen: float, now: float | None = None) -> str | None:
    """Why a session has ended (idle too long, or too old), or None while it is valid."""
    now = time.time() if now is None else now
    if now - last_seen > config.session_idle_seconds():
        return f"Your session ended after {config.session_idle_seconds() / 60:.0f} minutes without activity."
    if now - signed_in_at > config.session_max_seconds():
        return f"Your session ended after {config.session_max_seconds() / 3600:.0f} hours."
    return None
