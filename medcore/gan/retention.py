"""What a film generator keeps about real patients, and how an administrator deletes it.

A generator version keeps the few generated films that came closest to a training film, each beside that training
film (64 px, no file name), so that an administrator can see what the memorization check measured. They are real
patients' films: an administrator can delete them (the admin page's Synthetic films tab); the version stays
registered and usable, its manifest updated, and the deletion is audited.
"""

from __future__ import annotations

import hashlib

from medcore import auth, registry
from medcore.gan.network import without_training_examples

GENERATOR_TASK = "xray_gan"


def delete_training_examples(version: str, user: auth.User) -> None:
    """The new files are made from bytes checked against the version's manifest (read once, then checked), so a
    file swapped on disk meanwhile cannot be blessed into the manifest."""
    entry = registry.get(GENERATOR_TASK, version)
    current = {name: (entry.path / name).read_bytes() for name in ("quality.npz", "meta.json")}
    for name, content in current.items():
        if hashlib.sha256(content).hexdigest() != entry.manifest.get(name):
            raise registry.RegistryError(f"{GENERATOR_TASK} version {version}: {name} differs from the one registered; "
                                         "nothing was changed.")
    registry.rewrite_files(GENERATOR_TASK, version, without_training_examples(current), user,
                           "training-film examples deleted")
