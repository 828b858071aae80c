"""Backup and restore of a whole installation's store: `medcore backup create DIR` / `medcore backup restore DIR`.

A backup is one folder: the database copied consistently while the app runs (backup.database), every registered
model version's files and the finished jobs' logs (backup.files), and a manifest with the schema revision, the
rows per table and a SHA-256 of every file (backup.manifest). A restore goes only into an empty store of the same
engine, refuses a damaged backup or one from a newer schema before writing anything, and then migrates the
restored store to this code's revision (backup.archive).

The installation secret (medcore.keyed) is not in a backup unless asked (`--include-secret`): it is what keeps a
copy of the database from naming anyone, so by default it is kept apart from the backups, and a restore of a store
that was used with one requires the same secret at MEDCORE_SECRET_FILE (its check value is in the manifest).
"""

from medcore.backup.archive import create, restore  # noqa: F401
from medcore.backup.manifest import BackupError  # noqa: F401
