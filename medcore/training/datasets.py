"""Training inputs: labelled image folders decoded through the serving path and cached; class weights.

Listing a folder and splitting it by patient live in imaging.folders, shared with evaluation and the
candidate-against-production comparison.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcore.imaging.folders import ImageFolder, fingerprint, list_image_folder, split_by_patient
from medcore.imaging.io import read_radiograph
from medcore.imaging.preprocess import PREPROCESS_VERSION, to_model_input


def load_images(files: list[Path], image_size: int, workers: int = 4) -> np.ndarray:
    """Decode and preprocess files with the serving path: (n, size, size, 1) float16."""

    def one(path: Path) -> np.ndarray:
        return to_model_input(read_radiograph(path.read_bytes(), path.name).pixels, image_size)

    with ThreadPoolExecutor(workers) as pool:
        return np.stack(list(pool.map(one, files))).astype(np.float16)


def load_cached(folder: ImageFolder, image_size: int, cache_dir: Path, data_fingerprint: str | None = None
                ) -> np.ndarray:
    """load_images, cached on disk by data fingerprint (computed unless given) and preprocessing version."""
    data_fingerprint = data_fingerprint or fingerprint(folder.files, folder.labels)
    key = hashlib.sha256(f"{data_fingerprint}|{image_size}|{PREPROCESS_VERSION}".encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"images-{key}.npy"
    if cache.exists():
        return np.load(cache)
    images = load_images(folder.files, image_size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, images)
    tmp.replace(cache)
    return images


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
    train_idx, val_idx = split_by_patient(folder, options["val_fraction"], options["seed"])
    images = load_cached(folder, int(meta["image_size"]), cache_dir, data_fingerprint)
    return ModelSplit(images, folder.labels, train_idx, val_idx)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights so each class contributes equally to the loss."""
    counts = np.bincount(labels)
    return {i: float(len(labels) / (len(counts) * c)) for i, c in enumerate(counts) if c}
