"""The files a store keeps beside its database: each registered model version's folder (exactly the files its
registry manifest names) and each finished training job's log, copied after the database snapshot.

Why after: a version's folder is complete before its row is inserted and never changes afterwards (a rewrite
updates the manifest in the same transaction as the files), so every version in the snapshot has its files on
disk by the time we copy them, and a file that no longer matches the snapshot's manifest is reported, not hidden.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path, PurePosixPath

from medcore import config
from medcore.backup.manifest import BackupError, copy_with_sum

MODELS = "models"
JOBS = "jobs"
JOB_LOG = "log.txt"


def _safe_relative(value: str) -> PurePosixPath:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BackupError(f"The registry names a folder outside the shared folder ({value!r}); not backed up.")
    return path


def copy_versions(versions: list[dict], folder: Path) -> tuple[dict[str, str], list[str]]:
    """Copy each version's manifest files; ({path in backup: sha256}, warnings for missing or changed files)."""
    sums, warnings = {}, []
    shared = config.shared_dir()
    for version in versions:
        relative = _safe_relative(version["folder"])
        for name, expected in sorted(json.loads(version["manifest"]).items()):
            source = shared / relative / name
            if not source.is_file():
                warnings.append(f"{version['task']} {version['version']}: {name} is missing in the store")
                continue
            target = str(relative / name)
            sums[target] = copy_with_sum(source, folder / target)
            if sums[target] != expected:
                warnings.append(f"{version['task']} {version['version']}: {name} differs from its registered "
                                "checksum (copied as it is; the registry refuses it here and after a restore)")
    return sums, warnings


def copy_job_logs(jobs: list[dict], folder: Path) -> dict[str, str]:
    """The logs of finished jobs (a running job's log is still growing; its row says how far it got)."""
    from medcore.jobs.store import ACTIVE, JOB_ID, jobs_dir

    sums = {}
    for job in jobs:
        source = jobs_dir() / job["id"] / JOB_LOG
        if job["status"] in ACTIVE or not JOB_ID.fullmatch(job["id"]) or not source.is_file():
            continue
        target = f"{JOBS}/{job['id']}/{JOB_LOG}"
        sums[target] = copy_with_sum(source, folder / target)
    return sums


def check_no_models() -> None:
    models = config.shared_dir() / MODELS
    if models.is_dir() and any(models.iterdir()):
        raise BackupError(f"The models folder {models} is not empty: a backup is restored only into a new store.")


def place(folder: Path, files: list[str]) -> list[Path]:
    """Put the backup's model folders and job logs into the shared folder; the paths made (to undo on failure).
    The models folder appears whole: it is assembled under a hidden name and renamed into place."""
    shared = config.shared_dir()
    made: list[Path] = []
    model_files = [name for name in files if name.startswith(f"{MODELS}/")]
    if model_files:
        staging = shared / f".{MODELS}-restoring-{secrets.token_hex(4)}"
        made.append(staging)
        for name in model_files:
            target = staging / PurePosixPath(name).relative_to(MODELS)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copy2(folder / name, target)
        destination = shared / MODELS
        if destination.is_dir():
            destination.rmdir()  # empty (checked before): replaced by the restored one
        staging.rename(destination)
        made[-1] = destination
    for name in files:
        if name.startswith(f"{JOBS}/"):
            target = shared / name
            if target.exists():
                continue
            if not target.parent.exists():
                target.parent.mkdir(mode=0o700, parents=True)
                made.append(target.parent)
            shutil.copy2(folder / name, target)
    return made


def undo(made: list[Path]) -> None:
    """Remove what a failed restore placed (only paths it made), so that it can be run again."""
    for path in reversed(made):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
