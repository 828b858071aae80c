"""Labelled case notes (a CSV with `label` and `text` columns): reading, checking and the validation split.

Used by evaluation (serving), training and the candidate-against-production comparison, so "the same
held-out notes" is one function, `split_notes`, and the CSV is checked in one place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcore.notes.text import NoteRejected, prepare

MIN_NOTES_PER_CLASS = 5


@dataclass
class LabelledNotes:
    words: list[list[str]]
    labels: np.ndarray  # index into label_names
    label_names: list[str]
    dropped: int  # rows without usable text
    fingerprint: str


def _read_frame(path: Path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is not a CSV file.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types for a file that is not CSV
        raise ValueError(f"{path.name} cannot be read as CSV: {exc}") from exc
    missing = {"label", "text"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path.name} needs the columns 'label' and 'text'; missing: {sorted(missing)}")
    return frame


def read_labelled_notes(path: Path, label_names: list[str] | None = None) -> LabelledNotes:
    """Read and check a CSV; rows whose text is unusable are dropped and counted."""
    frame = _read_frame(path)
    names = label_names or sorted(frame["label"].unique())
    unknown = sorted(set(frame["label"]) - set(names))
    if unknown:
        raise ValueError(f"{Path(path).name} has labels the model does not know: {unknown[:5]}")
    words, labels, dropped = [], [], 0
    for label, text in zip(frame["label"], frame["text"]):
        try:
            words.append([t.text for t in prepare(text).tokens])
            labels.append(names.index(label))
        except NoteRejected:
            dropped += 1
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return LabelledNotes(words, np.asarray(labels), list(names), dropped, digest)


def split_notes(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): stratified by class, deterministic for a seed."""
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=val_fraction, stratify=labels,
                                          random_state=seed)
    return train_idx, val_idx


def describe_training_csv(path: Path, expected_labels: list[str] | None = None) -> str:
    """One line describing a CSV fit to retrain on, or ValueError saying what is wrong with it."""
    frame = _read_frame(path)
    found = sorted(frame["label"].unique())
    expected = sorted(expected_labels) if expected_labels else None
    if expected and found != expected:
        raise ValueError(f"{Path(path).name} must have exactly the classes of the production model "
                         f"({len(expected)}: {', '.join(expected[:6])}…); it has {len(found)}.")
    if frame["label"].value_counts().min() < MIN_NOTES_PER_CLASS:
        raise ValueError(f"{Path(path).name} needs at least {MIN_NOTES_PER_CLASS} notes per class.")
    return f"{len(frame)} notes in {len(found)} classes"
