"""Writing model folders safely, shared by every model type.

A model folder is written beside its destination and swapped in by renames, so a crash mid-write
never leaves a half-written model where a good one was. Networks are saved without optimizer
state: inference needs only the weights, and Adam's moments would triple the file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np


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


def write_model_folder(folder: Path, network, meta: dict[str, Any], arrays: dict[str, dict[str, np.ndarray]],
                       model_card: str = "") -> Path:
    """model.keras + one NAME.npz per entry of arrays + meta.json (+ model_card.md), atomically."""

    def write(tmp: Path) -> None:
        save_network(network, tmp / "model.keras")
        for name, content in arrays.items():
            np.savez_compressed(tmp / f"{name}.npz", **content)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        if model_card:
            (tmp / "model_card.md").write_text(model_card)

    return write_atomically(folder, write)


def read_model_folder(folder: Path, arrays: tuple[str, ...], contract_key: str, contract: str
                      ) -> tuple[Any, dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """(network, meta, arrays) of a model folder; ModelLoadError with a clear reason if anything is off.

    contract_key names the meta field that must equal `contract` (the preprocessing or feature version
    the code implements): a model made for another contract is refused, never silently misread.
    """
    import keras

    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        network = keras.models.load_model(folder / "model.keras", compile=False)
        loaded = {}
        for name in arrays:
            with np.load(folder / f"{name}.npz") as npz:
                loaded[name] = {key: npz[key] for key in npz.files}
    except FileNotFoundError as exc:
        raise ModelLoadError(f"Model files missing in {folder}: {exc.filename}") from exc
    except Exception as exc:  # corrupt zip / json / h5
        raise ModelLoadError(f"Model in {folder} cannot be loaded: {exc}") from exc
    if meta.get(contract_key) != contract:
        raise ModelLoadError(f"Model in {folder} was made for {contract_key} {meta.get(contract_key)!r}; "
                             f"this code implements {contract!r}.")
    return network, meta, loaded
