"""What a film generator keeps about real patients, and how an administrator deletes it.

A generator version keeps the few generated films that came closest to a training film, each beside that training
film (64 px, no file name), so that an administrator can see what the memorization check measured. They are real
patients' films: an administrator can delete them (the admin page's Synthetic films tab); the version stays
registered and usable, its manifest updated, and the deletion is audited.
"""

from __future__ import annotations

from medcore import auth, registry
from medcore.gan.network import without_training_examples

GENERATOR_TASK = "xray_gan"


def delete_training_examples(version: str, user: auth.User) -> None:
    entry = registry.get(GENERATOR_TASK, version)
    registry.rewrite_files(GENERATOR_TASK, version, without_training_examples(entry.path), user,
                           "training-film examples deleted")
