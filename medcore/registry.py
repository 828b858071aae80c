"""Model registry: every version's files, metrics, options and data fingerprint; one production alias per task.

A small registry of our own over the store (see README, "Model registry"): a version is an immutable model
folder under <shared>/models/<task>/<version>/ plus one row recording a SHA-256 manifest of its files and the
summary from its meta.json. Production is a pointer per task, changed by one conditional UPDATE whose row count
says whether production was still what the caller expected, so promotion and rollback are atomic on SQLite and
PostgreSQL alike and a crash leaves either the old or the new pointer, never a half state. A version's folder is
complete (copied beside its final place, then renamed into it) before its row is inserted: another server, on the
same shared models folder, sees a version only once its files are all there; the manifest is checked at load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from medcore import audit, auth, config, tasks
from medcore.store import read, schema, serialize, write

log = logging.getLogger("medcore")
VERSIONS, PRODUCTION, PROMOTIONS = schema.versions, schema.production, schema.promotions

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
    return config.shared_dir() / "models"


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
            "seconds": meta.get("training", {}).get("seconds"),
            **({"intended_use": meta["intended_use"]} if meta.get("intended_use") else {})}


def register(task: str, folder: Path, created_by: str, origin: str = "retrained") -> ModelVersion:
    """Put a finished model folder into the models folder and record it as a candidate.

    The files are copied (or, on the same file system, moved) into a hidden folder beside their final place, then
    renamed into it in one step; the row is inserted last. A crash in between leaves an unregistered folder, never
    a registered version with missing files, and another server sees the version only once it is complete.
    """
    task = _key(task)
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    version = str(meta["version"])
    expected = tasks.get(task).name
    if meta.get("task") != expected:
        raise RegistryError(f"{folder} holds a {meta.get('task')!r} model, not {expected!r}.")
    destination = models_dir() / task / version
    try:
        with write() as db:  # one registration of this version at a time, on every server
            serialize(db, f"register:{task}:{version}")
            if db.execute(select(VERSIONS.c.version).where(VERSIONS.c.task == task,
                                                           VERSIONS.c.version == version)).first():
                raise RegistryError(f"{task} version {version} is already registered.")
            _place(folder, destination, move=origin != "shipped")
            db.execute(insert(VERSIONS).values(
                task=task, version=version, folder=str(destination.relative_to(config.shared_dir())),
                created_at=time.time(), created_by=created_by, origin=origin,
                manifest=json.dumps(file_manifest(destination)), summary=json.dumps(_summary(meta))))
    except IntegrityError:
        raise RegistryError(f"{task} version {version} is already registered.") from None
    return get(task, version)


def _place(folder: Path, destination: Path, move: bool) -> None:
    """The folder's files at `destination`, complete before the name appears (copy beside it, then rename)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(destination, ignore_errors=True)  # an unregistered leftover of a crashed run
    staging = destination.with_name(f".{destination.name}.incoming-{secrets.token_hex(4)}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if move:
            folder.rename(staging)  # the same file system: nothing to copy
        else:
            raise OSError("copy")
    except OSError:
        shutil.copytree(folder, staging)
        if move:
            shutil.rmtree(folder, ignore_errors=True)
    staging.rename(destination)


def ensure_defaults() -> None:
    """Install each task's shipped model, and follow a new release where the installation kept the shipped one.

    Called once when the app or the CLI starts, never on a page run: serving does not write.
    - Earlier shipped defaults (assets/models/earlier/<task>/*) are registered, so a release can be rolled back.
    - A task with no production version gets the earliest shipped default, then follows the releases as below, so
      a new installation has the same history as an upgraded one (and rollback works the same in both).
    - A task whose production is an earlier shipped default that the system put there (nobody promoted or rolled
      back since) moves to the new shipped default, as "install shipped model"; a rollback returns to the earlier
      one. A version an admin chose stays: the new default is registered beside it as a candidate.
    A shipped model that cannot be read is skipped with a warning in the server log; serving then reports it.
    """
    for task in tasks.KEYS:
        try:
            _install_shipped(task)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: the shipped models cannot be installed (%s: %s)", task, type(exc).__name__, exc)


def _shipped_version(folder: Path) -> str:
    return str(json.loads((folder / "meta.json").read_text())["version"])


def _register_shipped(task: str, folder: Path) -> str:
    version = _shipped_version(folder)
    with read() as db:
        known = db.execute(select(VERSIONS.c.version).where(VERSIONS.c.task == task,
                                                            VERSIONS.c.version == version)).first()
    if known is None:
        try:
            register(task, folder, "system", origin="shipped")
        except RegistryError:
            pass  # registered by a concurrent process
    return version


def _install_shipped(task: str) -> None:
    entry = tasks.get(task)
    earlier = [_register_shipped(task, folder) for folder in entry.earlier_shipped_dirs]
    version = _register_shipped(task, entry.shipped_dir)
    fresh = _set_production(task, (earlier or [version])[0], "system", "install shipped model",
                            only_if_unset=True) is None
    with read() as db:
        current = db.execute(select(PRODUCTION.c.version).where(PRODUCTION.c.task == task)).scalar()
        last = db.execute(select(PROMOTIONS.c.action, PROMOTIONS.c.actor).where(PROMOTIONS.c.task == task)
                          .order_by(PROMOTIONS.c.id.desc()).limit(1)).first()
    kept_by_system = last is not None and tuple(last) == ("install shipped model", "system")
    if current != version and current in earlier and kept_by_system:
        try:
            _set_production(task, version, "system", "install shipped model", expected_production=current)
        except RegistryError:
            return  # another server moved it first
        (log.info if fresh else log.warning)(
            "%s: production moved from %s to the new shipped default %s (rollback returns to it)",
            task, current, version)


def _row_to_version(row, production: str | None, promoted: set[str]) -> ModelVersion:
    return ModelVersion(task=row.task, version=row.version, path=config.shared_dir() / row.folder,
                        created_at=row.created_at, created_by=row.created_by, origin=row.origin,
                        manifest=json.loads(row.manifest), summary=json.loads(row.summary),
                        discarded=row.discarded_at is not None, is_production=row.version == production,
                        ever_promoted=row.version in promoted)


def list_versions(task: str) -> list[ModelVersion]:
    """All versions of a task, newest first."""
    task = _key(task)
    with read() as db:
        rows = db.execute(select(VERSIONS).where(VERSIONS.c.task == task)
                          .order_by(VERSIONS.c.created_at.desc())).all()
        production = db.execute(select(PRODUCTION.c.version).where(PRODUCTION.c.task == task)).scalar()
        promoted = set(db.execute(select(PROMOTIONS.c.version).where(
            PROMOTIONS.c.task == task, PROMOTIONS.c.action.in_(PRODUCTION_ACTIONS))).scalars())
    return [_row_to_version(r, production, promoted) for r in rows]


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
    with read() as db:
        history = list(db.execute(select(PROMOTIONS.c.version).where(
            PROMOTIONS.c.task == task, PROMOTIONS.c.action.in_(PRODUCTION_ACTIONS)).order_by(
            PROMOTIONS.c.id.desc())).scalars())
    order = [v for v in versions.values() if v.is_production]
    for version in history:
        entry = versions.get(version)
        if entry and entry not in order and not entry.discarded:
            order.append(entry)
    return order


def history(task: str) -> list[dict]:
    task = _key(task)
    with read() as db:
        rows = db.execute(select(PROMOTIONS.c.id, PROMOTIONS.c.task, PROMOTIONS.c.version, PROMOTIONS.c.previous,
                                 PROMOTIONS.c.at, PROMOTIONS.c.actor.label("by"), PROMOTIONS.c.action)
                          .where(PROMOTIONS.c.task == task).order_by(PROMOTIONS.c.id.desc())).mappings().all()
    return [dict(r) for r in rows]


ANY = object()  # expected_production not checked (the CLI, scripts); a page passes the version it showed


def _set_production(task: str, version: str, user: str, action: str, only_if_unset: bool = False,
                    expected_production: object = ANY) -> str | None:
    """Point production at `version`; return the previous version.

    One conditional statement moves the pointer (UPDATE ... WHERE version = the expected one, or an INSERT that a
    primary key refuses when a pointer exists), so two servers acting at once cannot both win, on either engine.
    expected_production: the version the acting admin was looking at; if production changed since (another
    admin promoted or rolled back), nothing changes and RegistryError says so.
    """
    with write() as db:
        discarded = db.execute(select(VERSIONS.c.discarded_at).where(  # the row is locked (PostgreSQL) against a
            VERSIONS.c.task == task, VERSIONS.c.version == version).with_for_update()).first()  # discard meanwhile
        if discarded is None:
            raise RegistryError(f"{task} has no version {version!r}.")
        if discarded[0] is not None:
            raise RegistryError(f"{task} version {version} was discarded and cannot go to production.")
        previous = db.execute(select(PRODUCTION.c.version).where(PRODUCTION.c.task == task)).scalar()
        if previous is not None and only_if_unset:
            return previous
        if expected_production is not ANY and previous != expected_production:
            raise RegistryError(f"Production of {task} changed to {previous} since this page was drawn (it showed "
                                f"{expected_production}); nothing was changed. Look again before deciding.")
        if previous == version:
            raise RegistryError(f"{task} version {version} is already in production.")
        if previous is None:
            moved = _insert_if_absent(db, task, version)
        else:
            moved = db.execute(update(PRODUCTION).where(PRODUCTION.c.task == task, PRODUCTION.c.version == previous)
                               .values(version=version)).rowcount == 1
        if not moved:  # another server moved it between our read and our write
            if only_if_unset:
                return db.execute(select(PRODUCTION.c.version).where(PRODUCTION.c.task == task)).scalar()
            raise RegistryError(f"Production of {task} changed while this was being done; nothing was changed. "
                                "Look again before deciding.")
        db.execute(insert(PROMOTIONS).values(task=task, version=version, previous=previous, at=time.time(),
                                             actor=user, action=action))
    return previous


def _insert_if_absent(db, task: str, version: str) -> bool:
    """The first production pointer of a task; False when another server inserted one first."""
    nested = db.begin_nested()
    try:
        db.execute(insert(PRODUCTION).values(task=task, version=version))
    except IntegrityError:
        nested.rollback()
        return False
    nested.commit()
    return True


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
    with write() as db:
        for name, content in files.items():
            temporary = entry.path / f".{name}.rewrite"
            temporary.write_bytes(content)
            temporary.replace(entry.path / name)
            manifest[name] = hashlib.sha256(content).hexdigest()
        db.execute(update(VERSIONS).where(VERSIONS.c.task == task, VERSIONS.c.version == version)
                   .values(manifest=json.dumps(manifest)))
    audit.record(user.name, f"rewrite:{task}", reason, version, files=",".join(sorted(files)))


def discard(task: str, version: str, user: auth.User) -> None:
    """Mark a candidate as not to be used; its files stay for the record."""
    user = auth.require_admin(user)
    task = _key(task)
    with write() as db:
        db.execute(select(VERSIONS.c.version).where(VERSIONS.c.task == task, VERSIONS.c.version == version)
                   .with_for_update())  # against a promotion of this version meanwhile (PostgreSQL)
        current = db.execute(select(PRODUCTION.c.version).where(PRODUCTION.c.task == task)).scalar()
        if current == version:
            raise RegistryError(f"{task} version {version} is in production; promote or roll back to another first.")
        updated = db.execute(update(VERSIONS).where(VERSIONS.c.task == task, VERSIONS.c.version == version,
                                                    VERSIONS.c.discarded_at.is_(None))
                             .values(discarded_at=time.time())).rowcount
        if not updated:
            raise RegistryError(f"{task} has no candidate {version!r} to discard.")
        db.execute(insert(PROMOTIONS).values(task=task, version=version, previous=None, at=time.time(),
                                             actor=user.name, action="discard"))
    audit.record(user.name, f"discard:{task}", "discarded", version)
