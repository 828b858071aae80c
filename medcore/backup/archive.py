"""`create(DIR)` and `restore(DIR)`: a whole installation's store in one folder, and back.

A backup is written under a hidden name beside DIR and renamed to DIR when complete, so a folder named DIR is
always a finished backup. A restore verifies the manifest and every checksum, the engine, the schema revision, the
emptiness of the target and the installation secret before it writes anything; if placing the files or the
database fails, what it placed is removed again, so it can be run again.
"""

from __future__ import annotations

import secrets
import time
from importlib import metadata
from pathlib import Path

from medcore import keyed
from medcore.backup import database, files
from medcore.backup.manifest import BackupError, Manifest, copy_with_sum, discard, read_verified, write

SECRET = "secret/installation.key"


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from medcore.store import migrations

    return {script.revision for script in ScriptDirectory(str(migrations.FOLDER)).walk_revisions()}


def _version() -> str:
    try:
        return metadata.version("medcore")
    except metadata.PackageNotFoundError:
        return "unknown"


def create(target: Path, include_secret: bool = False) -> dict:
    """Back up the configured store into `target` (absent or empty) while the app runs; a summary."""
    target = Path(target).expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} exists and is not an empty folder: a backup is written only into a new one.")
    started = time.perf_counter()
    staging = target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")
    staging.mkdir(mode=0o700, parents=True)
    try:
        relative, snapshot = database.copy(staging)
        if snapshot.revision is not None and snapshot.revision not in _known_revisions():
            raise BackupError(f"The store is at schema revision {snapshot.revision}, made by a newer MedCore: back "
                              "it up with that version.")
        sums = {relative: _sum(staging / relative)}
        model_sums, warnings = files.copy_versions(snapshot.versions, staging)
        sums.update(model_sums)
        sums.update(files.copy_job_logs(snapshot.jobs, staging))
        if include_secret:
            sums[SECRET] = _copy_secret(staging, snapshot.secret_check)
        manifest = Manifest(engine=database.engine_name(), revision=snapshot.revision, created_at=time.time(),
                            medcore_version=_version(), database=relative, rows=snapshot.rows,
                            secret_check=snapshot.secret_check, secret_included=include_secret, files=sums,
                            warnings=warnings)
        write(staging, manifest)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        discard(staging)
        raise
    return {"backup": str(target), "engine": manifest.engine, "revision": manifest.revision,
            "rows": manifest.rows, "files": len(sums), "bytes": sum((target / n).stat().st_size for n in sums),
            "versions": len(snapshot.versions), "secret_included": include_secret,
            "secret_required": snapshot.secret_check is not None and not include_secret,
            "warnings": warnings, "seconds": round(time.perf_counter() - started, 3)}


def _sum(path: Path) -> str:
    from medcore.backup.manifest import sha256_file

    return sha256_file(path)


def _copy_secret(staging: Path, recorded: str | None) -> str:
    path = keyed.secret_path()
    if not path.is_file():
        raise BackupError(f"--include-secret: there is no installation secret at {path}.")
    value = keyed.checked_file(path)
    if recorded is not None and keyed.check_value(value) != recorded:
        raise BackupError(f"--include-secret: {path} is not the secret this store was used with.")
    return copy_with_sum(path, staging / SECRET)


def restore(source: Path) -> dict:
    """Restore the backup in `source` into the configured, empty store; then migrate it to this code's revision."""
    from medcore import store
    from medcore.store import migrations

    source = Path(source).expanduser().absolute()
    started = time.perf_counter()
    manifest = read_verified(source)
    if manifest.engine != database.engine_name():
        raise BackupError(f"This backup holds a {manifest.engine} store, but the store configured here is "
                          f"{database.engine_name()} (MEDCORE_DATABASE_URL decides): restore into the same engine.")
    if manifest.revision is not None and manifest.revision not in _known_revisions():
        raise BackupError(f"The backup is at schema revision {manifest.revision}, made by a newer MedCore than this "
                          "one: restore it with that version (or newer).")
    database.check_empty()
    files.check_no_models()
    secret_to_place = _secret_plan(source, manifest)
    store.forget_engines()
    made: list[Path] = []
    try:
        if secret_to_place is not None:
            made.append(_place_secret(source))
        made += files.place(source, sorted(manifest.files))
        restored = database.restore(source, manifest.database)
    except BaseException:
        files.undo(made)
        raise
    if restored.rows != manifest.rows:
        raise BackupError(f"The restored database's rows {restored.rows} differ from the backup's {manifest.rows}.")
    store.forget_engines()
    store.engine()  # upgrades an older backup's schema to this code's revision, under the store's lock
    with store.read() as connection:
        revision = migrations.current(connection)
    return {"restored": str(source), "engine": manifest.engine, "revision_in_backup": manifest.revision,
            "revision": revision, "rows": manifest.rows, "files_verified": len(manifest.files),
            "secret": "restored" if secret_to_place else ("present" if manifest.secret_check else "not used"),
            "warnings": manifest.warnings, "seconds": round(time.perf_counter() - started, 3)}


def _secret_plan(source: Path, manifest: Manifest) -> bool | None:
    """True: the backup's secret is to be placed; None: nothing to place (the right one is there, or none used).
    Refuses a restore whose sealed values and signatures would be unreadable."""
    if manifest.secret_check is None:
        return None
    path = keyed.secret_path()
    if path.exists():
        if keyed.check_value(keyed.checked_file(path)) != manifest.secret_check:
            raise BackupError(f"The installation secret at {path} is not the one this backup's store was used with: "
                              "set MEDCORE_SECRET_FILE to that installation's secret (or remove this one, if the "
                              "backup holds the secret).")
        return None
    if not manifest.secret_included:
        raise BackupError(f"This store was used with an installation secret, which the backup does not hold: copy "
                          f"the installation's secret (from where you keep it apart from backups) to {path}, or set "
                          "MEDCORE_SECRET_FILE to it, then restore again. Without it sealed values and signatures "
                          "are unreadable.")
    return True


def _place_secret(source: Path) -> Path:
    import os

    path = keyed.secret_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write((source / SECRET).read_bytes())
    return path
