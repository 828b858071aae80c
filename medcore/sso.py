"""Hospital accounts through the hospital's OpenID Provider (single sign-on): the identity and role an ID token gives.

The sign-in itself (authorization-code flow with state, nonce and PKCE, the token exchange, the ID token's signature,
issuer, audience and expiry) is Streamlit's `st.login`, which uses Authlib; `identity` checks the claims it hands
over once more, as MedCore needs them:
- the issuer is the configured provider's and the audience names MedCore's client;
- the ID token is fresh (issued in the last few minutes): a MedCore session starts only from a sign-in at the provider
  that just happened, never from an identity cookie kept from earlier (it lives 30 days), so the groups, and with them
  the role, are read at every sign-in;
- the role comes from the groups claim (config.sso_groups): admin groups first, then clinician groups; someone in
  neither is refused, with a message that says so.
An account is keyed by issuer + subject, never by e-mail; its display name comes from the claims and may change. The
account's row (sso_accounts) keeps the role of its latest sign-in, so admin actions re-check it as they do for local
accounts. No token is ever stored or logged here: only issuer, subject, display name and role.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from medcore import config
from medcore.auth import User
from medcore.store import read, schema, serialize, write

ACCOUNTS = schema.sso_accounts
FRESH_SECONDS = 300.0  # a MedCore session starts only from an ID token issued this recently (or the idle limit)
CLOCK_SKEW = 60.0  # seconds the provider's clock may be ahead of ours
METADATA_SUFFIX = "/.well-known/openid-configuration"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Refused(Exception):
    """A sign-in that does not open MedCore: `code` for the audit log, `message` for the person."""

    def __init__(self, code: str, message: str, issuer: str | None = None, subject: str | None = None):
        super().__init__(message)
        self.code, self.message, self.issuer, self.subject = code, message, issuer, subject


@dataclass(frozen=True)
class Identity:
    issuer: str
    subject: str
    display_name: str
    role: str | None  # None: in no MedCore group
    issued_at: float


def expected_issuer(server_metadata_url: str) -> str:
    """The issuer a provider's discovery document must name (OpenID Connect Discovery: metadata URL = issuer + suffix)."""
    url = server_metadata_url.strip()
    return url[: -len(METADATA_SUFFIX)] if url.endswith(METADATA_SUFFIX) else url.rstrip("/")


def role_for(groups: list[str] | tuple[str, ...], settings: Mapping | None = None) -> str | None:
    """The MedCore role the provider's groups give: admin, clinician, or None (in neither)."""
    settings = settings or config.sso_groups()
    member = set(groups)
    if member & set(settings["admin"]):
        return "admin"
    if member & set(settings["clinician"]):
        return "clinician"
    return None


def account_name(issuer: str, subject: str) -> str:
    """MedCore's stable name for a hospital account (the audit log's user): `sso:<subject>`, or a digest of issuer and
    subject when the subject is long or unusual."""
    if re.fullmatch(r"[A-Za-z0-9._@|:-]{1,56}", subject):
        return f"sso:{subject}"
    return "sso:" + hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:24]


def _clean(text: object, limit: int = 256) -> str:
    return _CONTROL.sub("", str(text)).strip()[:limit]


def identity(claims: Mapping, *, issuer: str, client_id: str, now: float | None = None,
             fresh_seconds: float | None = None, settings: Mapping | None = None) -> Identity:
    """The identity and role an ID token's claims give, or Refused (with a code for the audit and a message)."""
    now = time.time() if now is None else now
    fresh = min(FRESH_SECONDS, config.session_idle_seconds()) if fresh_seconds is None else fresh_seconds
    settings = settings or config.sso_groups()
    token_issuer, subject = claims.get("iss"), claims.get("sub")
    subject = subject if isinstance(subject, str) and subject else None
    said = {"issuer": token_issuer if isinstance(token_issuer, str) else None, "subject": subject}
    if token_issuer != issuer:
        raise Refused("wrong_issuer", "The sign-in came from another identity provider than the hospital's.", **said)
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    if client_id not in audiences or (len(audiences) > 1 and claims.get("azp", client_id) != client_id):
        raise Refused("wrong_audience", "The sign-in was meant for another application than MedCore.", **said)
    if subject is None:
        raise Refused("no_subject", "The hospital's sign-in did not say who you are.", **said)
    issued, expires = claims.get("iat"), claims.get("exp")
    if not isinstance(expires, (int, float)) or expires < now - CLOCK_SKEW:
        raise Refused("expired", "Your hospital sign-in has expired.", **said)
    if not isinstance(issued, (int, float)) or issued > now + CLOCK_SKEW or now - issued > fresh:
        raise Refused("stale", "Your hospital sign-in is no longer fresh.", **said)
    groups = claims.get(settings["claim"])
    if groups is None:
        raise Refused("no_groups_claim", f"The hospital's sign-in did not say which groups you are in (no "
                                         f"'{settings['claim']}' claim), so MedCore cannot give you a role. Ask IT to "
                                         "send the groups claim to MedCore.", **said)
    groups = [groups] if isinstance(groups, str) else [str(group) for group in groups if group is not None]
    display = next((_clean(claims[key]) for key in ("name", "preferred_username", "email")
                    if isinstance(claims.get(key), str) and _clean(claims[key])), _clean(subject))
    return Identity(token_issuer, subject, display, role_for(groups, settings), float(issued))


def record_sign_in(person: Identity, now: float | None = None) -> User | None:
    """The account as this sign-in leaves it (created on first sign-in; display name and role as the provider says
    now). None when the person has no role, or when the account was disabled in MedCore."""
    now = time.time() if now is None else now
    name = account_name(person.issuer, person.subject)
    key = (ACCOUNTS.c.issuer == person.issuer) & (ACCOUNTS.c.subject == person.subject)
    with write() as db:
        serialize(db, f"sso:{name}")
        row = db.execute(select(ACCOUNTS.c.disabled_at).where(key)).first()
        values = {"display_name": person.display_name, "role": person.role, "last_sign_in_at": now, "name": name}
        if row is None:
            db.execute(insert(ACCOUNTS).values(issuer=person.issuer, subject=person.subject, first_sign_in_at=now,
                                               **values))
        else:
            db.execute(update(ACCOUNTS).where(key).values(**values))
    if person.role is None or (row is not None and row.disabled_at is not None):
        return None
    return User(name, person.role, False, issuer=person.issuer, subject=person.subject,
                display_name=person.display_name)


def current_user(issuer: str, subject: str) -> User | None:
    """The hospital account as it is now (role of its latest sign-in), or None if it has no role or is disabled."""
    with read() as db:
        row = db.execute(select(ACCOUNTS).where(ACCOUNTS.c.issuer == issuer, ACCOUNTS.c.subject == subject)).first()
    if row is None or row.role is None or row.disabled_at is not None:
        return None
    return User(row.name, row.role, False, issuer=issuer, subject=subject, display_name=row.display_name)


def list_accounts() -> list[dict]:
    with read() as db:
        rows = db.execute(select(ACCOUNTS).order_by(ACCOUNTS.c.name)).mappings().all()
    return [dict(row) for row in rows]


def set_disabled(name: str, disabled: bool) -> bool:
    """Switch a hospital account off (or on) in MedCore, whatever its groups say; False if there is no such account."""
    with write() as db:
        return bool(db.execute(update(ACCOUNTS).where(ACCOUNTS.c.name == name)
                               .values(disabled_at=time.time() if disabled else None)).rowcount)
