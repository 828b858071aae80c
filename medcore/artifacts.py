"""Writing model folders safely, shared by every model type.

A model folder is written beside its destination and swapped in by renames, so a crash mid-write
never leaves a half-written model where a good one was. Networks are saved without optimizer
state: inference needs only the weights, and Adam's moments would triple the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable


class ModelLoadError(RuntimeError):
    """A model artifact is missing, corrupt or made for another preprocessing contract."""


def save_network(network, path: Path) -> None:
    # Rebuilt from its config the network is uncompiled (clone_model would carry the optimizer along).
    clean = network.__class__.from_config(network.get_config())
    clean.set_weights(network.get_weights())
    clean.save(path)


def write_atomically(folder: Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_folder), then replace `folder` with it."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder
