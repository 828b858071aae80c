"""The installation's own secret, and what MedCore does with it: keyed digests and sealed values.

Why: the store must answer "who opened this patient's record" and "did MedCore itself write this result" without
holding patient ids, accession numbers or DICOM UIDs in clear. A plain SHA-256 of a patient id can be reversed by
trying every id a hospital issues; an HMAC with a secret that is *not in the database* cannot, so a copy of the
database alone reveals nothing. The same secret signs MedCore's structured reports, so a copy of one (into another
study, by any device that can write to the PACS) is recognised as not MedCore's.

The secret is 32 random bytes in a file outside the database: `MEDCORE_SECRET_FILE`, default
`<shared folder>/installation.key` (every app server, worker and watcher of one installation must read the same
file: it lies on the shared volume). It is created on first use (owner-only). Losing it means earlier digests can no
longer be matched and earlier reports no longer verify (they are then analysed again): back it up with the store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

from medcore import config

SECRET_BYTES = 32
_lock = threading.Lock()
_cache: dict[Path, bytes] = {}


class SecretUnavailable(RuntimeError):
    """The installation secret file exists but cannot be used."""


def secret_path() -> Path:
    return config.secret_file()


def secret() -> bytes:
    """The installation secret (created once, atomically, owner-only; read once per process and path)."""
    path = secret_path()
    with _lock:
        if path not in _cache:
            _cache[path] = _read_or_create(path)
        return _cache[path]


def _read_or_create(path: Path) -> bytes:
    if not path.exists():
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
    value = path.read_bytes()
    if len(value) < SECRET_BYTES:
        raise SecretUnavailable(f"The installation secret {path.name} is shorter than {SECRET_BYTES} bytes: it was "
                                "truncated or replaced. Restore it from the backup.")
    return value


def digest(purpose: str, value: str) -> str:
    """HMAC-SHA256 of one value under the installation secret, for one purpose (hex, 64 characters).

    The purpose separates uses ("patient", "accession", "film"...): the same id never gives the same digest in two
    columns, so one digest cannot be joined to another kind of record."""
    return hmac.new(secret(), f"{purpose}\x00{value.strip()}".encode(), hashlib.sha256).hexdigest()


def sign(purpose: str, *fields: object) -> str:
    """A signature over several fields (each written as text, separated unambiguously)."""
    return digest(purpose, "\x1f".join("" if field is None else str(field) for field in fields))


def verify(signature: str | None, purpose: str, *fields: object) -> bool:
    return bool(signature) and hmac.compare_digest(str(signature), sign(purpose, *fields))


def _fernet():
    from cryptography.fernet import Fernet

    key = hmac.new(secret(), b"medcore-sealing-key", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(text: str) -> str:
    """Authenticated encryption (Fernet) under a key derived from the secret: for values MedCore must use again
    (a confirmed film's UIDs, to fetch it for local validation) but must not keep in clear."""
    return _fernet().encrypt(text.encode()).decode()


def unseal(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()
