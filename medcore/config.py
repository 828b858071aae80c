"""Paths, limits and settings in one place, each overridable by an environment variable (MEDCORE_*).

Nothing else in the package reads the environment, so a test or a deployment changes behaviour
by setting a variable, never by editing code. Values are read when asked for, so a test can set a
variable and see it take effect.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent


def _path(var: str, default: Path) -> Path:
    return Path(os.environ.get(var, str(default))).expanduser()


def _float(var: str, default: float) -> float:
    return float(os.environ.get(var, str(default)))


def data_dir() -> Path:
    """Where the labelled training data lives (read-only; never copied into the repo)."""
    return _path("MEDCORE_DATA_DIR", REPO_ROOT.parent / "shared" / "data")


def store_dir() -> Path:
    """One directory for everything the app writes: registry and model versions, jobs, users, audit log, caches.

    Owner-only (0700): other accounts on the server can read nothing in it, whatever the files' own modes.
    """
    path = _path("MEDCORE_STORE_DIR", REPO_ROOT / "medcore_store")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = path.stat()
    if status.st_mode & 0o077 and status.st_uid == os.getuid():  # an older store, or one made by hand
        path.chmod(0o700)
    return path


def shared_dir() -> Path:
    """MEDCORE_SHARED_DIR: what every app server and worker must see alike (model versions, uploaded data sets, job
    folders): a mounted volume when there are several machines. Default: the store directory."""
    value = os.environ.get("MEDCORE_SHARED_DIR")
    if not value:
        return store_dir()
    path = Path(value).expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def assets_dir() -> Path:
    """Shipped default models (trained by `medcore train`, with model cards)."""
    return _path("MEDCORE_ASSETS_DIR", REPO_ROOT / "assets")


def model_pin(task_key: str) -> Path | None:
    """A model folder pinned for a task by MEDCORE_<TASK KEY>_MODEL (bypasses the registry), or None.

    E.g. MEDCORE_XRAY_MODEL, MEDCORE_NOTES_MEDICAL_ABSTRACTS_MODEL.
    """
    value = os.environ.get(f"MEDCORE_{task_key.upper()}_MODEL")
    return Path(value).expanduser() if value else None


def session_idle_seconds() -> float:
    return _float("MEDCORE_SESSION_IDLE_MINUTES", 30) * 60


def session_max_seconds() -> float:
    return _float("MEDCORE_SESSION_MAX_HOURS", 12) * 3600


def first_admin() -> tuple[str | None, str | None]:
    """(name, password) for the first admin account, from MEDCORE_ADMIN_USER / MEDCORE_ADMIN_PASSWORD."""
    return os.environ.get("MEDCORE_ADMIN_USER") or None, os.environ.get("MEDCORE_ADMIN_PASSWORD") or None


def new_password_from_environment() -> str | None:
    """MEDCORE_NEW_PASSWORD: lets scripts set a password with `medcore users add|password`."""
    return os.environ.get("MEDCORE_NEW_PASSWORD") or None


def mlflow_tracking_uri() -> str | None:
    """MEDCORE_MLFLOW_TRACKING_URI: mirror every registered version to this MLflow server."""
    return os.environ.get("MEDCORE_MLFLOW_TRACKING_URI") or None


# Upload limits. A chest radiograph DICOM is typically 5-30 MB; anything far larger is refused
# before it is decoded, and a decoded image may not exceed MAX_PIXELS (decompression bombs).
MAX_UPLOAD_BYTES = int(os.environ.get("MEDCORE_MAX_UPLOAD_MB", "64")) * 1024 * 1024
MAX_PIXELS = int(os.environ.get("MEDCORE_MAX_PIXELS", str(50_000_000)))
MIN_SIDE = 64  # smaller images carry too little detail to read a chest film


_SECRET_WORDS = ("PASSWORD", "PASSWD", "PASS", "PWD", "SECRET", "TOKEN", "CREDENTIAL", "KEY", "AUTH",
                 "CONNECTION_STRING", "COOKIE", "SESSION")
_JOB_NEEDS = ("MEDCORE_DATABASE_URL", "MEDCORE_MLFLOW_TRACKING_URI")  # a training job reaches the store and MLflow
_JOB_NEEDS_PREFIXES = ("MLFLOW_", "AWS_")  # MLflow's own credentials and its artifact store's


def child_environment(with_medcore: bool = True) -> dict[str, str]:
    """The environment for a process MedCore starts: this one's, without anything that looks like a secret
    (passwords, keys, tokens, credentials, connection strings) and without the first-admin account.

    with_medcore=True (a training job): the store's and MLflow's settings it needs stay, credentials included.
    with_medcore=False (a Flower server or client): every MEDCORE_* setting goes too; it reads only its arguments.
    """
    def needed_by_a_job(name: str) -> bool:
        return with_medcore and (name in _JOB_NEEDS or name.startswith(_JOB_NEEDS_PREFIXES))

    def secret(name: str) -> bool:
        return any(word in name.upper() for word in _SECRET_WORDS) or name.startswith("MEDCORE_ADMIN_")

    return {name: value for name, value in os.environ.items()
            if needed_by_a_job(name) or (not secret(name) and (with_medcore or not name.startswith("MEDCORE_")))}


def forget_first_admin_password() -> None:
    """Once the first start has used (or ignored) MEDCORE_ADMIN_PASSWORD, it leaves this process's environment:
    nothing started later can read it, not even from /proc."""
    os.environ.pop("MEDCORE_ADMIN_PASSWORD", None)


def data_roots() -> list[Path]:
    """MEDCORE_DATA_ROOTS: the folders (separated by ':') under which the admin page may read a data set given as a
    path on the server. Default: the data folder. Uploads (in the store) are always allowed."""
    value = os.environ.get("MEDCORE_DATA_ROOTS")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p] if value else [data_dir()]


def trusted_proxies() -> list[str]:
    """MEDCORE_TRUSTED_PROXIES: addresses or networks (comma-separated, e.g. `127.0.0.1,10.0.0.0/8`) of the reverse
    proxies in front of the app, whose X-Forwarded-For header is believed. Default: none."""
    import ipaddress
    import logging

    entries = [p.strip() for p in os.environ.get("MEDCORE_TRUSTED_PROXIES", "").split(",") if p.strip()]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            logging.getLogger("medcore").warning("MEDCORE_TRUSTED_PROXIES: %r is not an address or network; ignored",
                                                 entry)
    return entries


def database_url() -> str | None:
    """MEDCORE_DATABASE_URL: a PostgreSQL database shared by several app servers and workers
    (postgresql://user:password@host:port/name); unset, the store's own SQLite file is used."""
    return os.environ.get("MEDCORE_DATABASE_URL") or None


def server_name() -> str:
    """MEDCORE_SERVER_NAME: which app server, worker or command line wrote an audit row (several share a store).
    Default: this machine's name and the process id."""
    import socket

    return os.environ.get("MEDCORE_SERVER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def job_queue() -> str:
    """MEDCORE_JOB_QUEUE: `local` (default: a training job runs as a process on the server that started it) or
    `procrastinate` (jobs wait in PostgreSQL for `medcore worker` on any machine)."""
    value = os.environ.get("MEDCORE_JOB_QUEUE", "local").strip().lower() or "local"
    if value not in ("local", "procrastinate"):
        raise ValueError(f"MEDCORE_JOB_QUEUE must be 'local' or 'procrastinate', not {value!r}.")
    return value


def job_lease_seconds() -> float:
    """MEDCORE_JOB_LEASE_SECONDS: how long a running job may go without renewing its lease before it counts as
    dead (its process, worker or machine gone). Default 30; it renews every sixth of it."""
    return _float("MEDCORE_JOB_LEASE_SECONDS", 30.0)


def _config_file() -> dict:
    """MEDCORE_CONFIG_FILE: a TOML file for settings that some deployments keep out of the environment ([pacs])."""
    path = os.environ.get("MEDCORE_CONFIG_FILE")
    if not path:
        return {}
    import tomllib

    return tomllib.loads(Path(path).expanduser().read_text())


def pacs_settings() -> dict[str, str | None]:
    """The PACS's DICOMweb root and credentials: MEDCORE_PACS_URL, MEDCORE_PACS_USER, MEDCORE_PACS_PASSWORD,
    MEDCORE_PACS_CA_BUNDLE (https with a hospital CA), or the [pacs] table of MEDCORE_CONFIG_FILE (url, user,
    password, ca_bundle). Never shown on a page or written to a log. url None: no PACS configured."""
    from_file = _config_file().get("pacs", {})
    return {key: os.environ.get(f"MEDCORE_PACS_{key.upper()}") or from_file.get(key)
            for key in ("url", "user", "password", "ca_bundle")}


def pacs_poll_seconds() -> float:
    """MEDCORE_PACS_POLL_SECONDS: how often `medcore pacs watch` asks the PACS for new studies (default 2)."""
    return _float("MEDCORE_PACS_POLL_SECONDS", 2.0)


def pacs_lookback_days() -> int:
    """MEDCORE_PACS_LOOKBACK_DAYS: the watcher lists this many days before its cursor too (default 7), so a study
    that reaches the PACS days after its StudyDate (a late send, a transfer) is still triaged."""
    return max(0, int(os.environ.get("MEDCORE_PACS_LOOKBACK_DAYS", "7")))


def pacs_watch_in_app() -> bool:
    """MEDCORE_PACS_WATCH=1: the app server also runs the PACS watcher (one machine, no separate process)."""
    return os.environ.get("MEDCORE_PACS_WATCH", "").strip().lower() in ("1", "true", "yes")


def secret_file() -> Path:
    """MEDCORE_SECRET_FILE: the installation's secret (keyed digests of patient ids, signatures of MedCore's reports),
    kept outside the database and outside the store folder. Default: with MEDCORE_SHARED_DIR (several servers on
    PostgreSQL), `installation.key` in the shared folder, which every server reads and which holds no database;
    otherwise (one machine, SQLite in the store folder) `<store folder>.key` beside the store folder, so that a copy
    of the store folder alone holds no key."""
    value = os.environ.get("MEDCORE_SECRET_FILE")
    if value:
        return Path(value).expanduser()
    if os.environ.get("MEDCORE_SHARED_DIR"):
        return shared_dir() / "installation.key"
    store = store_dir()
    return store.with_name(store.name + ".key")


def pacs_watcher_stale_seconds() -> float:
    """MEDCORE_PACS_WATCHER_STALE_SECONDS: a watcher that has not polled for this long counts as stopped, and the
    worklist says its studies have not been triaged (default: 60 s, or ten polls when polling is slower)."""
    return _float("MEDCORE_PACS_WATCHER_STALE_SECONDS", max(60.0, 10 * pacs_poll_seconds()))


WORKLIST_MAX_DAYS = 31  # a worklist lists at most this many days of studies at once


def worklist_page_size() -> int:
    """MEDCORE_WORKLIST_PAGE_SIZE: how many studies a worklist page shows (and records as seen), 10 to 500;
    default 50."""
    return min(500, max(10, int(os.environ.get("MEDCORE_WORKLIST_PAGE_SIZE", "50"))))


def tf_config() -> str:
    """TF_CONFIG: TensorFlow's cluster description for training across worker processes or machines ('' if unset)."""
    return os.environ.get("TF_CONFIG", "")


def postgres_bin_dir() -> Path | None:
    """MEDCORE_PG_BIN_DIR: where `pg_dump` and `pg_restore` are for `medcore backup` on PostgreSQL. Default: the
    newest /usr/lib/postgresql/*/bin at least as new as the server (Debian's layout), else the PATH."""
    value = os.environ.get("MEDCORE_PG_BIN_DIR")
    return Path(value).expanduser() if value else None


def metrics_cache_seconds() -> float:
    """MEDCORE_METRICS_CACHE_SECONDS: how long `medcore metrics serve` reuses what it read from the store (default
    10), so that several Prometheus servers scraping it do not multiply the store's work."""
    return _float("MEDCORE_METRICS_CACHE_SECONDS", 10.0)


def metrics_drift_seconds() -> float:
    """MEDCORE_METRICS_DRIFT_SECONDS: how long the drift checks' result is reused by the metrics (default 300): they
    read 30 days of the audit log."""
    return _float("MEDCORE_METRICS_DRIFT_SECONDS", 300.0)


def _names(value) -> tuple[str, ...]:
    """A list from the configuration file, or a comma-separated string (environment or file), as clean names."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


def sso_groups() -> dict:
    """Which groups of the hospital's OpenID Provider give which MedCore role: MEDCORE_OIDC_ADMIN_GROUPS and
    MEDCORE_OIDC_CLINICIAN_GROUPS (group names or ids, comma-separated), MEDCORE_OIDC_GROUPS_CLAIM (the ID token's
    claim that lists them; default `groups`), or `admin_groups`, `clinician_groups`, `groups_claim` in the [oidc] table
    of MEDCORE_CONFIG_FILE. The environment wins."""
    from_file = _config_file().get("oidc", {})

    def setting(key: str):
        return os.environ.get(f"MEDCORE_OIDC_{key.upper()}") or from_file.get(key)

    return {"admin": _names(setting("admin_groups")), "clinician": _names(setting("clinician_groups")),
            "claim": str(setting("groups_claim") or "groups").strip() or "groups"}


def local_accounts() -> bool:
    """MEDCORE_LOCAL_ACCOUNTS=off (or `local = "off"` in the [accounts] table of MEDCORE_CONFIG_FILE): MedCore's own
    accounts are switched off; only a break-glass admin (break_glass_admins) may still use the local form."""
    value = os.environ.get("MEDCORE_LOCAL_ACCOUNTS") or str(_config_file().get("accounts", {}).get("local", "on"))
    return value.strip().lower() not in ("off", "0", "false", "no")


def break_glass_admins() -> tuple[str, ...]:
    """MEDCORE_BREAK_GLASS_ADMINS (or `break_glass_admins` in the [accounts] table): the local admin accounts that may
    still sign in with the local form when local accounts are off (for when the hospital's provider is down)."""
    value = os.environ.get("MEDCORE_BREAK_GLASS_ADMINS") or _config_file().get("accounts", {}).get("break_glass_admins")
    return tuple(name.lower() for name in _names(value))
