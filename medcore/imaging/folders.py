"""Labelled image folders (one sub-folder per class) and their deterministic validation split by patient.

Used by evaluation (serving), training and the candidate-against-production comparison, so "the same
held-out films" is one function, `split_by_patient`. Several images can come from one child, so the
split groups files by patient id (the `personN` / `IM-NNNN` part of the name) and stratifies by class;
otherwise validation figures would be optimistic.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

XRAY_CLASSES = ("NORMAL", "PNEUMONIA")  # index 1 is the positive class
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".dcm")
MIN_PATIENTS_PER_CLASS = 4


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


def describe_training_folder(path: Path, expected_labels: list[str] | None = None) -> str:
    """One line describing a folder fit to retrain on, or ValueError saying what is wrong with it."""
    try:
        folder = list_image_folder(Path(path))
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    counts = [int((folder.labels == k).sum()) for k in (0, 1)]
    patients = [len({g for g, y in zip(folder.groups, folder.labels) if y == k}) for k in (0, 1)]
    if min(patients) < MIN_PATIENTS_PER_CLASS:
        raise ValueError(f"{path} needs images of at least {MIN_PATIENTS_PER_CLASS} patients per class to hold "
                         f"some out (found {patients[0]} NORMAL, {patients[1]} PNEUMONIA).")
    return f"{counts[0]} NORMAL and {counts[1]} PNEUMONIA images from {sum(patients)} patients"
