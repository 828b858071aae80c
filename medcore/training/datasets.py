"""Labelled image folders -> arrays, with a deterministic validation split by patient.

A data set is a folder with one sub-folder per class (`NORMAL/`, `PNEUMONIA/`). Several images can
come from one child, so the split groups files by patient id (the `personN` / `IM-NNNN` part of the
name) and stratifies by class; otherwise validation figures would be optimistic.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcore.imaging.io import read_radiograph
from medcore.imaging.preprocess import PREPROCESS_VERSION, to_model_input

XRAY_CLASSES = ("NORMAL", "PNEUMONIA")  # index 1 is the positive class
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".dcm")


@dataclass(frozen=True)
class ImageFolder:
    files: list[Path]
    labels: np.ndarray  # int, index into XRAY_CLASSES
    groups: list[str]  # patient id per file


def patient_id(path: Path) -> str:
    """`person1000_bacteria_2931.jpeg` -> `person1000`; `IM-0115-0001.jpeg` -> `IM-0115`."""
    stem = path.stem
    match = re.match(r"(person\d+)_", stem)
    if match:
        return match.group(1)
    return re.sub(r"-\d+$", "", stem)


def list_image_folder(root: Path, classes: tuple[str, ...] = XRAY_CLASSES) -> ImageFolder:
    """Find the labelled files; raise a clear error if the layout is not class folders."""
    root = Path(root)
    missing = [name for name in classes if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} must hold one folder per class {list(classes)}; "
                                f"missing: {missing}")
    files, labels = [], []
    for index, name in enumerate(classes):
        found = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [index] * len(found)
    if not files:
        raise FileNotFoundError(f"No images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return ImageFolder(files, np.asarray(labels, dtype=np.int64), [patient_id(f) for f in files])


def split_by_patient(folder: ImageFolder, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): whole patients go to one side; each class is split separately."""
    rng = np.random.default_rng(seed)
    val_groups: set[str] = set()
    for label in np.unique(folder.labels):
        groups = sorted({g for g, y in zip(folder.groups, folder.labels) if y == label})
        rng.shuffle(groups)
        val_groups.update(groups[: max(1, round(len(groups) * val_fraction))])
    in_val = np.array([g in val_groups for g in folder.groups])
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def fingerprint(files: list[Path], labels: np.ndarray) -> str:
    """A hash of every file's name, size, label and content: the identity of a training set."""
    digest = hashlib.sha256()
    for path, label in zip(files, labels):
        digest.update(f"{path.parent.name}/{path.name}:{int(label)}:".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights so each class contributes equally to the loss."""
    counts = np.bincount(labels)
    return {i: float(len(labels) / (len(counts) * c)) for i, c in enumerate(counts) if c}
