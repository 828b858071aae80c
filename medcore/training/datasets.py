"""Training inputs: labelled image folders decoded through the serving path and cached; class weights.

Listing a folder and splitting it by patient live in imaging.folders, shared with evaluation and the
candidate-against-production comparison.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcore.imaging.folders import ImageFolder, fingerprint, list_image_folder, split_by_patient
from medcore.imaging.io import SyntheticFilm, UnreadableImage, read_radiograph
from medcore.imaging.preprocess import PREPROCESS_VERSION, to_model_input


SKIPPED_REASONS = {"unreadable": "unreadable (corrupt, truncated or not an image)",
                   "synthetic": "synthetic (MedCore's SYNTHETIC mark)"}


def load_images(files: list[Path], image_size: int, workers: int = 4) -> tuple[np.ndarray, dict[int, str]]:
    """Decode and preprocess files with the serving path: ((n_readable, size, size, 1) float16, {index: reason} of
    the files skipped). One bad film is skipped and counted, never the end of a training run."""

    def one(path: Path) -> np.ndarray | str:
        try:
            return to_model_input(read_radiograph(path.read_bytes(), path.name).pixels, image_size)
        except SyntheticFilm:
            return "synthetic"
        except (UnreadableImage, OSError):
            return "unreadable"

    with ThreadPoolExecutor(workers) as pool:
        decoded = list(pool.map(one, files))
    skipped = {i: x for i, x in enumerate(decoded) if isinstance(x, str)}
    kept = [x for x in decoded if not isinstance(x, str)]
    if not kept:
        raise ValueError(f"None of the {len(files)} images could be read.")
    return np.stack(kept).astype(np.float16), skipped


@dataclass
class LoadedFolder:
    """A labelled folder's readable films, preprocessed: what every trainer and loader works on."""

    folder: ImageFolder  # the readable films only (files, labels, patients)
    images: np.ndarray  # (n, size, size, 1) float16, in folder order
    skipped: dict[str, int]  # reason -> number of files left out

    def describe_skipped(self) -> str:
        return ", ".join(f"{n} {SKIPPED_REASONS[reason]}" for reason, n in self.skipped.items() if n)


def load_cached(folder: ImageFolder, image_size: int, cache_dir: Path, data_fingerprint: str | None = None
                ) -> LoadedFolder:
    """load_images, cached on disk by data fingerprint (computed unless given) and preprocessing version, with
    the files it had to skip (so a run on the cache leaves out exactly what the first run left out)."""
    data_fingerprint = data_fingerprint or fingerprint(folder.files, folder.labels)
    key = hashlib.sha256(f"{data_fingerprint}|{image_size}|{PREPROCESS_VERSION}|readable".encode()).hexdigest()[:16]
    cache, skipped_file = Path(cache_dir) / f"images-{key}.npy", Path(cache_dir) / f"images-{key}.skipped.json"
    if cache.exists() and skipped_file.exists():
        images, skipped = np.load(cache), {int(i): r for i, r in json.loads(skipped_file.read_text()).items()}
    else:
        images, skipped = load_images(folder.files, image_size)
        cache.parent.mkdir(parents=True, exist_ok=True)
        skipped_file.write_text(json.dumps(skipped))
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, images)
        tmp.replace(cache)
    kept = [i for i in range(len(folder.files)) if i not in skipped]
    readable = ImageFolder([folder.files[i] for i in kept], folder.labels[kept], [folder.groups[i] for i in kept])
    return LoadedFolder(readable, images, {reason: sum(r == reason for r in skipped.values())
                                           for reason in SKIPPED_REASONS})


@dataclass
class ModelSplit:
    """A trained model's own data, split as it was at training: its films at its input size, labels and indices."""

    images: np.ndarray
    labels: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """(float32 validation films, their labels)."""
        return self.images[self.val_idx].astype(np.float32), self.labels[self.val_idx]


def model_split(meta: dict, data_dir: Path, cache_dir: Path) -> ModelSplit:
    """The training folder of a model (checked by fingerprint) through the cache, split by its own options:
    what quality refits and benchmarks that score a model on its own validation films need."""
    folder = list_image_folder(Path(data_dir))
    data_fingerprint = fingerprint(folder.files, folder.labels)
    if data_fingerprint != meta["data"]["fingerprint"]:
        raise ValueError(f"{data_dir} is not the data set this model was trained on (fingerprint differs).")
    options = meta["options"]
    loaded = load_cached(folder, int(meta["image_size"]), cache_dir, data_fingerprint)
    train_idx, val_idx = split_by_patient(loaded.folder, options["val_fraction"], options["seed"])
    return ModelSplit(loaded.images, loaded.folder.labels, train_idx, val_idx)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights so each class contributes equally to the loss."""
    counts = np.bincount(labels)
    return {i: float(len(labels) / (len(counts) * c)) for i, c in enumerate(counts) if c}
