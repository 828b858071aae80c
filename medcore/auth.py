"""Users, roles and sign-in: bcrypt hashes only, throttling of repeated failures, expiring sessions.

Roles: `clinician` (X-ray, case notes, model performance) and `admin` (also retraining, registry
and audit). There is no default account: the first admin comes from `medcore users add --admin
NAME` or, once, from MEDCORE_ADMIN_USER / MEDCORE_ADMIN_PASSWORD at first start.

Sign-in tells a stranger nothing: a wrong name, a wrong password and a disabled account get the same
message after the same bcrypt work. Failures slow down further tries with a growing delay, never a hard lock:
per (address, name) after a few failures, and per name across all addresses after many, except from an address
that signed that name in within the last 30 days, so that people behind one NAT or proxy are not locked out
together and a stranger elsewhere cannot slow an admin at their own desk. Every attempt is recorded before its
password is checked, in one step with the throttle's check, so parallel attempts count against each other. The
address is the browser's, or the one a configured proxy forwards (client_address).
Admin actions (promote, roll back, discard, start or cancel training) re-read the acting account when
they run, so an account disabled or demoted a moment ago cannot act through a page it still has open.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import bcrypt
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from medcore import config
from medcore.store import read, schema, serialize, write

USERS, FAILURES, KNOWN = schema.users, schema.sign_in_failures, schema.known_clients

ROLES = ("clinician", "admin")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; longer passwords are refused, not silently cut
PAIR_FREE_FAILURES = 5  # failed sign-ins for one name from one address before each try must wait
NAME_FREE_FAILURES = 20  # failed sign-ins for one name from all addresses together before each try must wait
PAIR_MAX_DELAY = 300.0  # seconds; the delay doubles with each further failure up to this
NAME_MAX_DELAY = 60.0  # shorter: anyone can add to it, and it must never become a lockout
FAILURE_WINDOW = 900.0  # failures older than this are forgotten
KNOWN_CLIENT_DAYS = 30  # an address that signed a name in within this many days skips the name-wide delay
BCRYPT_ROUNDS = 12
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
WRONG = "Wrong user name or password, or the account is disabled."
_dummy_hash: bytes | None = None  # made on first use, at the real cost: an unknown name costs the same work


class AuthError(ValueError):
    """A user operation refused, with the reason for the person who asked."""


class NotAllowed(PermissionError):
    """The acting user may not do this (not an admin, disabled, or no longer there)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool
    operator: bool = False  # someone at the server's shell (the CLI), not an app account
    issuer: str | None = None  # a hospital account (single sign-on, medcore.sso): its provider and subject
    subject: str | None = None
    display_name: str | None = None  # from the provider's claims; `name` stays MedCore's stable name

    @property
    def shown_name(self) -> str:
        return self.display_name or self.name

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def operator(name: str) -> User:
    """The person running the command line on the server: whoever has that shell administers MedCore."""
    return User(name, "admin", False, operator=True)


def require_admin(user: User) -> User:
    """The acting user as the account is now: it must still exist, be enabled and be an admin."""
    if user.operator:
        return user
    if user.issuer is not None:  # a hospital account: its role is the one its groups gave at its latest sign-in
        from medcore import sso

        current = sso.current_user(user.issuer, user.subject or "")
        if current is None or not current.is_admin:
            raise NotAllowed(f"{user.name} may not do this: the account is no longer an active administrator.")
        return current
    current = get_user(user.name)
    if current is None or current.disabled or not current.is_admin:
        raise NotAllowed(f"{user.name} may not do this: the account is no longer an active administrator.")
    return current


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
    try:
        with write() as db:
            db.execute(insert(USERS).values(name=name, role=role, password_hash=password_hash, created_at=time.time(),
                                            created_by=created_by))
    except IntegrityError:
        raise AuthError(f"User {name!r} already exists.") from None
    return User(name, role, False)


def set_password(name: str, password: str) -> None:
    check_password_policy(name, password)
    password_hash = hash_password(password)
    with write() as db:
        if not db.execute(update(USERS).where(USERS.c.name == name).values(password_hash=password_hash)).rowcount:
            raise AuthError(f"No user {name!r}.")
        db.execute(delete(FAILURES).where(FAILURES.c.name == name))  # a new password lifts the throttle


def set_disabled(name: str, disabled: bool) -> None:
    with write() as db:
        if not db.execute(update(USERS).where(USERS.c.name == name)
                          .values(disabled_at=time.time() if disabled else None)).rowcount:
            raise AuthError(f"No user {name!r}.")


def get_user(name: str) -> User | None:
    with read() as db:
        row = db.execute(select(USERS.c.name, USERS.c.role, USERS.c.disabled_at).where(USERS.c.name == name)).first()
    return User(row.name, row.role, row.disabled_at is not None) if row else None


def list_users() -> list[User]:
    with read() as db:
        rows = db.execute(select(USERS.c.name, USERS.c.role, USERS.c.disabled_at).order_by(USERS.c.name)).all()
    return [User(r.name, r.role, r.disabled_at is not None) for r in rows]


def has_users() -> bool:
    with read() as db:
        return db.execute(select(USERS.c.name).limit(1)).first() is not None


def _dummy() -> bytes:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = bcrypt.hashpw(b"medcore-no-such-user", bcrypt.gensalt(BCRYPT_ROUNDS))
    return _dummy_hash


def _growing_delay(times: list[float], free: int, cap: float, now: float) -> float:
    """Seconds to wait after len(times) failures: none for the first `free`, then 1, 2, 4, ... s up to `cap`,
    counted from the last failure."""
    if len(times) < free:
        return 0.0
    return max(0.0, times[-1] + min(cap, 2.0 ** (len(times) - free)) - now)


def _throttled(db, client: str, name: str, now: float) -> float:
    """Seconds until `client` may try `name` again (0 when it may), from the attempts on record."""
    rows = db.execute(select(FAILURES.c.client, FAILURES.c.at).where(
        FAILURES.c.name == name, FAILURES.c.at > now - FAILURE_WINDOW).order_by(FAILURES.c.at)).all()
    from_here = [row.at for row in rows if row.client == client]
    pair = _growing_delay(from_here, PAIR_FREE_FAILURES, PAIR_MAX_DELAY, now)
    known = db.execute(select(KNOWN.c.client).where(
        KNOWN.c.name == name, KNOWN.c.client == client,
        KNOWN.c.last_success_at > now - KNOWN_CLIENT_DAYS * 86_400)).first()
    if known:  # the account's own workstation: strangers elsewhere cannot slow it down
        return pair
    return max(pair, _growing_delay([row.at for row in rows], NAME_FREE_FAILURES, NAME_MAX_DELAY, now))


def client_address(peer: str | None, forwarded_for: list[str] | str | None, trusted_proxies: list[str]) -> str:
    """The address a sign-in comes from. `peer` is the connection's (None on loopback); X-Forwarded-For (every line
    of it, in order) is believed only when the peer is a configured proxy, and then its rightmost address that is
    not itself a trusted proxy (what the outermost trusted proxy saw), since a browser can write anything to the
    left of it. Ports are dropped; a trusted-proxy entry that is not an address or network is ignored."""
    import ipaddress

    networks = []
    for entry in trusted_proxies:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue  # config.trusted_proxies() warns about it once

    def parsed(address: str) -> str | None:
        address = address.strip().strip('"')
        if address.startswith("["):  # [v6]:port
            address = address[1:].split("]")[0]
        elif address.count(":") == 1:  # v4:port
            address = address.split(":")[0]
        try:
            return str(ipaddress.ip_address(address))
        except ValueError:
            return None

    def trusted(address: str | None) -> bool:
        return address is not None and any(ipaddress.ip_address(address) in net for net in networks)

    address = parsed(peer or "") or "127.0.0.1"
    lines = [forwarded_for] if isinstance(forwarded_for, str) else list(forwarded_for or [])
    hops = [hop for line in lines for hop in line.split(",") if hop.strip()]
    if hops and trusted(address):
        for hop in reversed(hops):
            hop_address = parsed(hop)
            if hop_address is None:
                break  # garbage the proxies did not write: believe nothing further left
            if not trusted(hop_address):
                return f"ip:{hop_address}"
    return f"ip:{address}"


def authenticate(name: str, password: str, client: str = "local", now: float | None = None
                 ) -> tuple[User | None, str]:
    """(user, "") on success; (None, reason) otherwise. The reason never says which part was wrong.

    `client` identifies where the attempt comes from (client_address); failures slow further tries of this name
    from this client, and of this name from everywhere, by a growing delay, never a lock. No transaction is open
    during bcrypt.
    """
    now = time.time() if now is None else now
    secret = password.encode("utf-8")[:MAX_PASSWORD_BYTES]
    with write() as db:  # the check and the attempt's record are one step: parallel attempts see each other
        serialize(db, f"sign-in:{name}")
        wait = _throttled(db, client, name, now)
        if wait <= 0:  # counted as a failure until bcrypt says otherwise
            attempt = db.execute(insert(FAILURES).values(client=client, name=name, at=now)).inserted_primary_key[0]
    if wait > 0:
        bcrypt.checkpw(secret, _dummy())  # the same work whether or not the name exists
        return None, f"Too many failed sign-ins; try again in {int(wait) + 1} s."
    with read() as db:
        row = db.execute(select(USERS).where(USERS.c.name == name)).first()
    stored = row.password_hash.encode("ascii") if row else _dummy()
    ok = bcrypt.checkpw(secret, stored) and row is not None and row.disabled_at is None
    with write() as db:
        if ok:
            db.execute(delete(FAILURES).where(FAILURES.c.client == client, FAILURES.c.name == name))
            serialize(db, f"known:{name}")
            if db.execute(update(KNOWN).where(KNOWN.c.name == name, KNOWN.c.client == client)
                          .values(last_success_at=now)).rowcount == 0:
                db.execute(insert(KNOWN).values(name=name, client=client, last_success_at=now))
        else:
            db.execute(delete(FAILURES).where(FAILURES.c.at < now - FAILURE_WINDOW, FAILURES.c.id != attempt))
    if not ok:
        return None, WRONG
    return User(row.name, row.role, False), ""


def local_sign_in_allowed(name: str) -> bool:
    """Whether `name` may use the local sign-in form: anyone while local accounts are on; with MEDCORE_LOCAL_ACCOUNTS=off
    only a named break-glass admin (config.break_glass_admins), and only while that account is an admin."""
    if config.local_accounts():
        return True
    if name not in config.break_glass_admins():
        return False
    user = get_user(name)
    return user is not None and user.is_admin and not user.disabled


def create_admin_from_environment() -> str | None:
    """At first start only (no admin yet): create the admin named in MEDCORE_ADMIN_USER, if set.

    Once any admin exists the variables are ignored, so a leaked or stale value cannot add another.
    """
    name, password = config.first_admin()
    try:
        if not name or not password or any(user.is_admin for user in list_users()):
            return None
        try:
            add_user(name, password, "admin", "environment")
        except AuthError:
            if any(user.is_admin for user in list_users()):  # another server, started at the same moment, made it
                return None
            raise
        return name
    finally:
        config.forget_first_admin_password()


def session_expired(signed_in_at: float, last_seen: float, now: float | None = None) -> str | None:
    """Why a session has ended (idle too long, or too old), or None while it is valid."""
    now = time.time() if now is None else now
    if now - last_seen > config.session_idle_seconds():
        return f"Your session ended after {config.session_idle_seconds() / 60:g} minutes without activity."
    if now - signed_in_at > config.session_max_seconds():
        return f"Your session ended after {config.session_max_seconds() / 3600:.0f} hours."
    return None
