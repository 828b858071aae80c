"""Model registry: every version's files, metrics, options and data fingerprint; one production alias per task.

A small SQLite registry of our own (see README, "Model registry"): a version is an immutable model
folder under <store>/models/<task>/<version>/ plus one row recording a SHA-256 manifest of its
files and the summary from its meta.json. Production is a pointer per task, changed in one SQL
transaction, so promotion and rollback are atomic and a crash leaves either the old or the new
pointer, never a half state. Files are written and verified before a version is registered, so a
registered version is always complete; the manifest is checked again at load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from medcore import audit, auth, config, tasks
from medcore.store import connect, read

log = logging.getLogger("medcore")

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    task TEXT NOT NULL,
    version TEXT NOT NULL,
    folder TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    origin TEXT NOT NULL,
    manifest TEXT NOT NULL,
    summary TEXT NOT NULL,
    discarded_at REAL,
    PRIMARY KEY (task, version)
);
CREATE TABLE IF NOT EXISTS production (
    task TEXT PRIMARY KEY,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS promotions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    version TEXT NOT NULL,
    previous TEXT,
    at REAL NOT NULL,
    by TEXT NOT NULL,
    action TEXT NOT NULL
);
"""

PRODUCTION_ACTIONS = ("install shipped model", "promote", "rollback")  # rows that moved the pointer


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown version, discarded, wrong task)."""


@dataclass(frozen=True)
class ModelVersion:
    task: str
    version: str
    path: Path
    created_at: float
    created_by: str
    origin: str  # "shipped", "retrained", "federated" or "local calibration"
    manifest: dict[str, str]
    summary: dict
    discarded: bool
    is_production: bool = False
    ever_promoted: bool = False

    @property
    def status(self) -> str:
        if self.is_production:
            return "production"
        if self.discarded:
            return "discarded"
        return "previous production" if self.ever_promoted else "candidate"


def models_dir() -> Path:
    return config.store_dir() / "models"


def _key(task: str) -> str:
    """The task's key, for a key or an alias (`medical_abstracts` -> `notes_medical_abstracts`)."""
    try:
        return tasks.get(task).key
    except tasks.UnknownTask as exc:
        raise RegistryError(str(exc)) from None


def file_manifest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def verify(version: ModelVersion) -> None:
    """Raise ModelLoadError if any registered file is missing or changed since registration."""
    from medcore.artifacts import ModelLoadError

    for name, digest in version.manifest.items():
        path = version.path / name
        if not path.is_file():
            raise ModelLoadError(f"{version.task} version {version.version}: file {name} is missing.")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ModelLoadError(f"{version.task} version {version.version}: file {name} is corrupt "
                                 "(its checksum differs from the one recorded at registration).")


def _summary(meta: dict) -> dict:
    """What the registry keeps from meta.json: enough to list, compare and trace a version."""
    return {"metrics": meta.get("metrics", {}), "options": meta.get("options", {}), "data": meta.get("data", {}),
            "labels": meta.get("labels", []), "threshold": meta.get("threshold"),
            "seconds": meta.get("training", {}).get("seconds")}


def register(task: str, folder: Path, created_by: str, origin: str = "retrained") -> ModelVersion:
    """Move a finished model folder into the store and record it as a candidate.

    The folder is renamed (same file system) or copied into <store>/models/<task>/<version> first;
    the row is inserted last, so a crash in between leaves an unregistered folder, never a
    registered version with missing files.
    """
    task = _key(task)
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    version = str(meta["version"])
    expected = tasks.get(task).name
    if meta.get("task") != expected:
        raise RegistryError(f"{folder} holds a {meta.get('task')!r} model, not {expected!r}.")
    destination = models_dir() / task / version
    with connect("registry", SCHEMA) as db:
        if db.execute("SELECT 1 FROM versions WHERE task=? AND version=?", (task, version)).fetchone():
            raise RegistryError(f"{task} version {version} is already registered.")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(destination, ignore_errors=True)  # an unregistered leftover of a crashed run
        if origin == "shipped":
            shutil.copytree(folder, destination)
        else:
            folder.rename(destination)
        db.execute("INSERT INTO versions (task, version, folder, created_at, created_by, origin, manifest, summary)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (task, version, str(destination.relative_to(config.store_dir())), time.time(), created_by,
                    origin, json.dumps(file_manifest(destination)), json.dumps(_summary(meta))))
    return get(task, version)


def ensure_defaults() -> None:
    """Register and promote the shipped model of every task that has no production version yet.

    Called once when the app or the CLI starts, never on a page run: serving does not write. A shipped
    model that cannot be read is skipped with a warning in the server log; serving then reports it.
    """
    for task in tasks.KEYS:
        with read("registry", SCHEMA) as db:
            if db.execute("SELECT 1 FROM production WHERE task=?", (task,)).fetchone():
                continue
        source = tasks.get(task).shipped_dir
        try:
            version = str(json.loads((source / "meta.json").read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: the shipped model in %s cannot be installed (%s: %s)", task, source,
                        type(exc).__name__, exc)
            continue
        try:
            register(task, source, "system", origin="shipped")
        except RegistryError:
            pass  # registered by a concurrent process, or earlier without promotion
        _set_production(task, version, "system", "install shipped model", only_if_unset=True)


def _row_to_version(row, production: str | None, promoted: set[str]) -> ModelVersion:
    return ModelVersion(task=row["task"], version=row["version"], path=config.store_dir() / row["folder"],
                        created_at=row["created_at"], created_by=row["created_by"], origin=row["origin"],
                        manifest=json.loads(row["manifest"]), summary=json.loads(row["summary"]),
                        discarded=row["discarded_at"] is not None, is_production=row["version"] == production,
                        ever_promoted=row["version"] in promoted)


def list_versions(task: str) -> list[ModelVersion]:
    """All versions of a task, newest first."""
    task = _key(task)
    with read("registry", SCHEMA) as db:
        rows = db.execute("SELECT * FROM versions WHERE task=? ORDER BY created_at DESC", (task,)).fetchall()
        production = db.execute("SELECT version FROM production WHERE task=?", (task,)).fetchone()
        promoted = {r[0] for r in db.execute(
            f"SELECT version FROM promotions WHERE task=? AND action IN {PRODUCTION_ACTIONS}", (task,))}
    return [_row_to_version(r, production[0] if production else None, promoted) for r in rows]


def get(task: str, version: str) -> ModelVersion:
    for candidate in list_versions(task):
        if candidate.version == version:
            return candidate
    raise RegistryError(f"{task} has no version {version!r}; `medcore models list` shows them.")


def production(task: str) -> ModelVersion | None:
    return next((v for v in list_versions(task) if v.is_production), None)


def fallback_order(task: str) -> list[ModelVersion]:
    """Production first, then earlier production versions, most recently promoted first."""
    task = _key(task)
    versions = {v.version: v for v in list_versions(task)}
    with read("registry", SCHEMA) as db:
        history = [r[0] for r in db.execute(
            f"SELECT version FROM promotions WHERE task=? AND action IN {PRODUCTION_ACTIONS} ORDER BY id DESC", (task,))]
    order = [v for v in versions.values() if v.is_production]
    for version in history:
        entry = versions.get(version)
        if entry and entry not in order and not entry.discarded:
            order.append(entry)
    return order


def history(task: str) -> list[dict]:
    task = _key(task)
    with read("registry", SCHEMA) as db:
        rows = db.execute("SELECT * FROM promotions WHERE task=? ORDER BY id DESC", (task,)).fetchall()
    return [dict(r) for r in rows]


ANY = object()  # expected_production not checked (the CLI, scripts); a page passes the version it showed


def _set_production(task: str, version: str, user: str, action: str, only_if_unset: bool = False,
                    expected_production: object = ANY) -> str | None:
    """Point production at `version` in one transaction; return the previous version.

    expected_production: the version the acting admin was looking at; if production changed since (another
    admin promoted or rolled back), nothing changes and RegistryError says so.
    """
    with connect("registry", SCHEMA) as db:
        row = db.execute("SELECT discarded_at FROM versions WHERE task=? AND version=?", (task, version)).fetchone()
        if row is None:
            raise RegistryError(f"{task} has no version {version!r}.")
        if row[0] is not None:
            raise RegistryError(f"{task} version {version} was discarded and cannot go to production.")
        current = db.execute("SELECT version FROM production WHERE task=?", (task,)).fetchone()
        if current and only_if_unset:
            return current[0]
        previous = current[0] if current else None
        if expected_production is not ANY and previous != expected_production:
            raise RegistryError(f"Production of {task} changed to {previous} since this page was drawn (it showed "
                                f"{expected_production}); nothing was changed. Look again before deciding.")
        if previous == version:
            raise RegistryError(f"{task} version {version} is already in production.")
        db.execute("INSERT INTO production (task, version) VALUES (?, ?) "
                   "ON CONFLICT(task) DO UPDATE SET version=excluded.version", (task, version))
        db.execute("INSERT INTO promotions (task, version, previous, at, by, action) VALUES (?, ?, ?, ?, ?, ?)",
                   (task, version, previous, time.time(), user, action))
    return previous


def promote(task: str, version: str, user: auth.User, expected_production: object = ANY) -> str | None:
    """Make a version production (after verifying its files); return the version it replaced.

    The acting user is checked now (an active admin, or an operator at the server), not when a page opened.
    """
    user = auth.require_admin(user)
    task = _key(task)
    verify(get(task, version))
    previous = _set_production(task, version, user.name, "promote", expected_production=expected_production)
    audit.record(user.name, f"promote:{task}", "promoted", version, previous=previous)
    return previous


def rollback(task: str, user: auth.User, to: str | None = None, expected_production: object = ANY) -> str:
    """Put an earlier version back in production: `to`, or the version the current one replaced.

    Without `to`, repeated rollbacks walk back along the chain of promotions.
    """
    user = auth.require_admin(user)
    task = _key(task)
    if to is None:
        current = production(task)
        promoted = [h for h in history(task) if current and h["version"] == current.version
                    and h["action"] in ("promote", "install shipped model")]
        to = promoted[0]["previous"] if promoted else None
        if to is None:
            raise RegistryError(f"{task} has no earlier production version to roll back to.")
    verify(get(task, to))
    previous = _set_production(task, to, user.name, "rollback", expected_production=expected_production)
    audit.record(user.name, f"rollback:{task}", "rolled back", to, previous=previous)
    return to


def put_in_production(task: str, version: str, user: auth.User, expected_production: str | None) -> None:
    """The admin page's one decision on a version it showed: promote a candidate, or roll back to an earlier
    production version, but only while production is still `expected_production` (what the page showed).

    Both arguments come from the click itself, never from a re-read of the registry at click time, so the
    version acted on is the one the admin saw; any mismatch is refused and nothing changes.
    """
    if get(task, version).ever_promoted:
        rollback(task, user, to=version, expected_production=expected_production)
    else:
        promote(task, version, user, expected_production=expected_production)


def rewrite_files(task: str, version: str, files: dict[str, bytes], user: auth.User, reason: str) -> None:
    """Replace files of a registered version (e.g. delete data it kept about training films), keeping its
    manifest true: each file is written beside the old one and renamed over it, and the manifest row is updated in
    the same transaction. Only files already in the manifest; audited with the reason. Weights never change this
    way: model.keras is refused.
    """
    user = auth.require_admin(user)
    task = _key(task)
    entry = get(task, version)
    verify(entry)  # a version that was already tampered with is not blessed by a rewrite
    unknown = sorted(set(files) - set(entry.manifest)) + (["model.keras"] if "model.keras" in files else [])
    if unknown:
        raise RegistryError(f"{task} version {version}: {', '.join(unknown)} cannot be rewritten.")
    manifest = dict(entry.manifest)
    with connect("registry", SCHEMA) as db:
        for name, content in files.items():
            temporary = entry.path / f".{name}.rewrite"
            temporary.write_bytes(content)
            temporary.replace(entry.path / name)
            manifest[name] = hashlib.sha256(content).hexdigest()
        db.execute("UPDATE versions SET manifest=? WHERE task=? AND version=?", (json.dumps(manifest), task, version))
    audit.record(user.name, f"rewrite:{task}", reason, version, files=",".join(sorted(files)))


def discard(task: str, version: str, user: auth.User) -> None:
    """Mark a candidate as not to be used; its files stay for the record."""
    user = auth.require_admin(user)
    task = _key(task)
    with connect("registry", SCHEMA) as db:
        current = db.execute("SELECT version FROM production WHERE task=?", (task,)).fetchone()
        if current and current[0] == version:
            raise RegistryError(f"{task} version {version} is in production; promote or roll back to another first.")
        updated = db.execute("UPDATE versions SET discarded_at=? WHERE task=? AND version=? AND discarded_at IS NULL",
                             (time.time(), task, version)).rowcount
        if not updated:
            raise RegistryError(f"{task} has no candidate {version!r} to discard.")
        db.execute("INSERT INTO promotions (task, version, previous, at, by, action) VALUES (?, ?, NULL, ?, ?, ?)",
                   (task, version, time.time(), user.name, "discard"))
    audit.record(user.name, f"discard:{task}", "discarded", version)
