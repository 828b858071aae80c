"""A backup's manifest: what the backup holds (engine, schema revision, rows per table, the secret's check value)
and a SHA-256 of every file in it, so that a restore can refuse a damaged or incomplete backup before it writes
anything. The manifest carries its own checksum in `manifest.sha256` beside it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
FORMAT = 1  # the layout of a backup folder; a restore refuses a format it does not know
CHUNK = 1 << 20


class BackupError(RuntimeError):
    """A backup cannot be made or restored as asked; the message says why and what to do."""


@dataclass
class Manifest:
    engine: str  # "sqlite" or "postgresql": a backup restores into a store of the same engine
    revision: str | None  # the store's Alembic revision when it was copied
    created_at: float
    medcore_version: str
    database: str  # the database copy's path in the backup
    rows: dict[str, int]  # rows per table in the copy: checked again after a restore
    secret_check: str | None  # the check value of the installation secret the store was used with (never the key)
    secret_included: bool
    files: dict[str, str] = field(default_factory=dict)  # path in the backup -> SHA-256
    warnings: list[str] = field(default_factory=list)
    format: int = FORMAT


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def copy_with_sum(source: Path, destination: Path) -> str:
    """Copy one file (owner-only) and return the SHA-256 of the bytes written, read once."""
    destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(destination, "wb") as writer:
        while block := reader.read(CHUNK):
            digest.update(block)
            writer.write(block)
    destination.chmod(0o600)
    return digest.hexdigest()


def write(folder: Path, manifest: Manifest) -> None:
    text = json.dumps(asdict(manifest), indent=1, sort_keys=True)
    (folder / MANIFEST).write_text(text)
    (folder / MANIFEST_SUM).write_text(hashlib.sha256(text.encode()).hexdigest() + "\n")
    for name in (MANIFEST, MANIFEST_SUM):
        (folder / name).chmod(0o600)


def read_verified(folder: Path) -> Manifest:
    """The manifest, once it and every file it lists are intact and nothing unlisted lies beside them."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise BackupError(f"{folder} is not a MedCore backup: it has no {MANIFEST}.")
    text = (folder / MANIFEST).read_text()
    expected = (folder / MANIFEST_SUM).read_text().strip() if (folder / MANIFEST_SUM).is_file() else None
    if expected != hashlib.sha256(text.encode()).hexdigest():
        raise BackupError(f"The backup {folder} is damaged: its manifest does not match {MANIFEST_SUM}. Nothing was "
                          "restored; use another backup.")
    data = json.loads(text)
    if data.get("format") != FORMAT:
        raise BackupError(f"The backup {folder} has format {data.get('format')!r}; this MedCore reads format "
                          f"{FORMAT}. Restore it with the MedCore that made it.")
    manifest = Manifest(**data)
    damaged = []
    for name, digest in sorted(manifest.files.items()):
        path = folder / name
        if not _inside(folder, path) or not path.is_file():
            damaged.append(f"{name} (missing)")
        elif sha256_file(path) != digest:
            damaged.append(f"{name} (checksum differs)")
    listed = set(manifest.files) | {MANIFEST, MANIFEST_SUM}
    unlisted = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                      if p.is_file() and str(p.relative_to(folder)) not in listed)
    damaged += [f"{name} (not in the manifest)" for name in unlisted]
    if damaged:
        shown = ", ".join(damaged[:5]) + (f" and {len(damaged) - 5} more" if len(damaged) > 5 else "")
        raise BackupError(f"The backup {folder} is damaged: {shown}. Nothing was restored; use another backup.")
    return manifest


def _inside(folder: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
