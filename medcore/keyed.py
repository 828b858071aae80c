"""The installation's own secret, and what MedCore does with it: keyed digests and sealed values.

Why: the store must answer "who opened this patient's record" and "did MedCore itself write this result" without
holding patient ids, accession numbers or DICOM UIDs in clear. A plain SHA-256 of a patient id can be reversed by
trying every id a hospital issues; an HMAC with a secret that is *not in the database* cannot, so a copy of the
database alone reveals nothing. The same secret signs MedCore's structured reports, so a copy of one (into another
study, by any device that can write to the PACS) is recognised as not MedCore's.

The secret is 32 random bytes in a file outside the database (config.secret_file: MEDCORE_SECRET_FILE; by default
beside the store folder, not in it, so a copy of the store folder alone names no one). Every app server, worker and
watcher of one installation must read the same file. It is created on first use, owner-only, and the store records
a check value of it: a server that finds no secret file, or another one, on a store that was used with a secret
refuses to work (SecretUnavailable) instead of silently making a new one, which would leave every earlier digest
unmatched ("nobody opened this patient") and every earlier report unverified. Back it up apart from the store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path

from sqlalchemy import Connection, insert, select

from medcore import config

SECRET_BYTES = 32
CHECK_KEY = "installation_secret_check"  # the settings table's row: which secret this store was used with
_lock = threading.Lock()
_cache: dict[tuple[Path, str], bytes] = {}


class SecretUnavailable(RuntimeError):
    """The installation secret is missing, weak, readable by others, or not the one this store was used with."""


def secret_path() -> Path:
    return config.secret_file()


def secret(connection: Connection | None = None) -> bytes:
    """The installation secret, checked against the store (read once per process, path and store).
    connection: the store's, when the caller holds one (a migration); otherwise a read of its own."""
    from medcore import store

    path, where = secret_path(), store.database_url()
    with _lock:
        if (path, where) in _cache:
            return _cache[(path, where)]
    value = _load(path, connection)
    with _lock:
        _cache[(path, where)] = value
    return value


def _load(path: Path, connection: Connection | None) -> bytes:
    recorded = _recorded_check(connection)
    if not path.exists():
        if recorded is not None:
            raise SecretUnavailable(
                f"The installation secret {path} is missing, but this store was used with one. Restore it from the "
                "backup (or set MEDCORE_SECRET_FILE to where it is); MedCore does not make a new one, which would "
                "leave every earlier access record unmatched and every earlier report unverified.")
        _create(path)
    value = _checked(path)
    check = check_value(value)
    if recorded is None:
        _record_check(check, connection)
    elif not hmac.compare_digest(recorded, check):
        raise SecretUnavailable(f"The installation secret {path} is not the one this store was used with: set "
                                "MEDCORE_SECRET_FILE to this installation's secret (every server must read the same).")
    return value


def check_value(value: bytes) -> str:
    """What the store records of a secret (settings, CHECK_KEY): enough to tell two secrets apart, nothing of it."""
    return hmac.new(value, b"medcore-installation-check", hashlib.sha256).hexdigest()[:32]


def checked_file(path: Path) -> bytes:
    """The bytes of a secret file, if fit to be one (owner-only, long enough, random-looking); else
    SecretUnavailable. For a backup, which copies or requires it without opening the store's engine."""
    return _checked(path)


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(SECRET_BYTES))
    try:
        os.link(tmp, path)  # fails if another process made it first: theirs wins, everyone reads one secret
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _checked(path: Path) -> bytes:
    """The file's bytes, if it is fit to be the secret: owner-only, long enough, not one byte repeated."""
    if path.stat().st_mode & 0o077:
        raise SecretUnavailable(f"The installation secret {path} is readable by others: `chmod 600` it (and check "
                                "who may have read it).")
    value = path.read_bytes()
    if len(value) < SECRET_BYTES or len(set(value)) < 8:
        raise SecretUnavailable(f"The installation secret {path} is shorter than {SECRET_BYTES} bytes or not random: "
                                "it was truncated or replaced. Restore it from the backup.")
    return value


def _recorded_check(connection: Connection | None) -> str | None:
    from medcore.store import read, schema

    query = select(schema.settings.c.value).where(schema.settings.c.key == CHECK_KEY)
    if connection is not None:
        return connection.execute(query).scalar()
    with read() as db:
        return db.execute(query).scalar()


def _record_check(check: str, connection: Connection | None) -> None:
    from medcore.store import schema, write

    row = {"key": CHECK_KEY, "value": check, "changed_at": time.time(), "changed_by": "medcore"}
    if connection is not None:
        connection.execute(insert(schema.settings).values(**row))
        return
    with write() as db:
        if db.execute(select(schema.settings.c.value).where(schema.settings.c.key == CHECK_KEY)).scalar() is None:
            db.execute(insert(schema.settings).values(**row))
    if _recorded_check(None) != check:  # another server recorded another secret at the same moment
        raise SecretUnavailable("Two servers made different installation secrets at once: give them the same "
                                "MEDCORE_SECRET_FILE.")


def digest(purpose: str, value: str, connection: Connection | None = None) -> str:
    """HMAC-SHA256 of one value under the installation secret, for one purpose (hex, 64 characters).

    The purpose separates uses ("patient", "accession", "film"...): the same id never gives the same digest in two
    columns, so one digest cannot be joined to another kind of record."""
    return hmac.new(secret(connection), f"{purpose}\x00{value.strip()}".encode(), hashlib.sha256).hexdigest()


def sign(purpose: str, *fields: object) -> str:
    """A signature over several fields (each written as text, separated unambiguously)."""
    return digest(purpose, "\x1f".join("" if field is None else str(field) for field in fields))


def verify(signature: str | None, purpose: str, *fields: object) -> bool:
    return bool(signature) and hmac.compare_digest(str(signature), sign(purpose, *fields))


def _fernet(connection: Connection | None = None):
    from cryptography.fernet import Fernet

    key = hmac.new(secret(connection), b"medcore-sealing-key", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(text: str, connection: Connection | None = None) -> str:
    """Authenticated encryption (Fernet) under a key derived from the secret: for values MedCore must use again
    (a confirmed film's UIDs, to fetch it for local validation) but must not keep in clear."""
    return _fernet(connection).encrypt(text.encode()).decode()


def unseal(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()
