"""Case-note classifier: TF-IDF features (notes.features) -> Keras MLP -> temperature-scaled softmax.

An artifact is a folder: `model.keras`, `featurizer.npz` (vocabulary and IDF), `meta.json` (task,
labels, temperature, validation and baseline metrics, data fingerprint, command) and
`validation.npz` (labels and probabilities, for every curve shown later).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy import sparse  # noqa: E402

from medcore.artifacts import ModelLoadError, save_network, write_atomically  # noqa: E402
from medcore.notes.features import Design, Featurizer  # noqa: E402
from medcore.training.calibrate import softmax  # noqa: E402

FEATURES_VERSION = "words12-chars35-sublinear-tfidf-v1"


def build_notes_network(n_features: int, n_classes: int, hidden: int = 128, dropout: float = 0.5) -> keras.Model:
    """One hidden layer over sparse TF-IDF; outputs logits (calibrated by a temperature)."""
    inputs = keras.Input((n_features,), sparse=True, name="tfidf")
    x = keras.layers.Dense(hidden, activation="relu", name="hidden")(inputs)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(n_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name="medcore_notes")


def to_sparse_tensor(matrix: sparse.spmatrix) -> tf.SparseTensor:
    coo = matrix.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
    return tf.sparse.reorder(tf.SparseTensor(indices, coo.data.astype(np.float32), coo.shape))


@dataclass
class NotesModel:
    network: keras.Model
    featurizer: Featurizer
    meta: dict[str, Any]
    path: Path | None = None

    def __post_init__(self) -> None:
        self._forward = tf.function(lambda x: self.network(x, training=False), reduce_retracing=True)

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unknown"))

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    def logits(self, features: sparse.spmatrix) -> np.ndarray:
        return self._forward(to_sparse_tensor(features)).numpy()

    def probabilities(self, features: sparse.spmatrix) -> np.ndarray:
        return softmax(self.logits(features), float(self.meta["temperature"]))

    def predict_words(self, documents: list[list[str]]) -> np.ndarray:
        return self.probabilities(self.featurizer.transform(documents))

    def masked_probabilities(self, design: Design, masks: np.ndarray) -> np.ndarray:
        return self.probabilities(self.featurizer.masked(design, masks))


def save_notes_model(folder: Path, model: NotesModel, validation: dict[str, np.ndarray], model_card: str = "") -> Path:
    """Write the model folder atomically."""

    def write(tmp: Path) -> None:
        save_network(model.network, tmp / "model.keras")
        np.savez_compressed(tmp / "featurizer.npz", vocabulary=np.array(model.featurizer.vocabulary),
                            idf=model.featurizer.idf)
        np.savez_compressed(tmp / "validation.npz", **validation)
        (tmp / "meta.json").write_text(json.dumps({**model.meta, "features_version": FEATURES_VERSION},
                                                  indent=2, sort_keys=True))
        if model_card:
            (tmp / "model_card.md").write_text(model_card)

    return write_atomically(folder, write)


def load_notes_model(folder: Path) -> NotesModel:
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        network = keras.models.load_model(folder / "model.keras", compile=False)
        with np.load(folder / "featurizer.npz") as npz:
            featurizer = Featurizer(npz["vocabulary"].tolist(), npz["idf"])
    except FileNotFoundError as exc:
        raise ModelLoadError(f"Model files missing in {folder}: {exc.filename}") from exc
    except Exception as exc:
        raise ModelLoadError(f"Model in {folder} cannot be loaded: {exc}") from exc
    if meta.get("features_version") != FEATURES_VERSION:
        raise ModelLoadError(f"Model in {folder} uses features {meta.get('features_version')!r}; "
                             f"this code makes {FEATURES_VERSION!r}.")
    return NotesModel(network, featurizer, meta, folder)
