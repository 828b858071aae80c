"""Case-note classifier: an encoder of the note's words -> a Keras network -> calibrated softmax.

Two encoders, one interface (`design`, `masked`, `transform`): TF-IDF n-gram features (notes.features) for the
linear model and the MLP, word ids (notes.sequence) for the BiGRU and the Transformer. An artifact is a folder:
`model.keras`, `featurizer.npz` (the encoder: vocabulary, and IDF for TF-IDF), `meta.json` (task, labels,
calibration, validation and baseline metrics, data fingerprint, command) and `validation.npz` (labels and
probabilities, for every curve shown later).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy import sparse  # noqa: E402

from medcore.artifacts import ModelInfo, read_model_folder, write_model_folder  # noqa: E402
from medcore.calibration import calibrate_logits  # noqa: E402
from medcore.model_card import ARCH_NAMES  # noqa: E402
from medcore.notes.features import Featurizer  # noqa: E402
from medcore.notes.sequence import WordIndex  # noqa: E402  (also registers the sequence networks' layers)

FEATURES_VERSION = "words12-chars35-sublinear-tfidf-v1"
SEQUENCE_VERSION = "word-ids-mask2-max512-v1"
Encoder = Featurizer | WordIndex
PREDICT_BATCH = 256  # notes per forward pass of a sequence network (bounds memory on a large CSV)


def build_notes_network(n_features: int, n_classes: int, hidden: int = 128, dropout: float = 0.5) -> keras.Model:
    """One hidden layer over sparse TF-IDF; outputs logits (calibrated by a temperature)."""
    inputs = keras.Input((n_features,), sparse=True, name="tfidf")
    x = keras.layers.Dense(hidden, activation="relu", name="hidden")(inputs)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(n_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name="medcore_notes")


def build_linear_notes_network(n_features: int, n_classes: int) -> keras.Model:
    """Multinomial logistic regression over sparse TF-IDF as a Keras layer: logits = X W + b.

    Fitted by scikit-learn (exact L-BFGS, regularization chosen by cross-validation) and carried in this
    layer, so a linear model is served, explained and versioned exactly like the MLP.
    """
    inputs = keras.Input((n_features,), sparse=True, name="tfidf")
    logits = keras.layers.Dense(n_classes, name="logits", dtype="float32")(inputs)
    return keras.Model(inputs, logits, name="medcore_notes_linear")


def to_sparse_tensor(matrix: sparse.spmatrix) -> tf.SparseTensor:
    coo = matrix.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
    return tf.sparse.reorder(tf.SparseTensor(indices, coo.data.astype(np.float32), coo.shape))


@dataclass
class NotesModel(ModelInfo):
    network: keras.Model
    encoder: Encoder
    meta: dict[str, Any]
    path: Path | None = None

    def __post_init__(self) -> None:
        self._forward = tf.function(lambda x: self.network(x, training=False), reduce_retracing=True)

    def logits(self, inputs: sparse.spmatrix | np.ndarray) -> np.ndarray:
        """Logits of encoded notes: TF-IDF rows (sparse) or word ids (an int array, in batches)."""
        if sparse.issparse(inputs):
            return self._forward(to_sparse_tensor(inputs)).numpy()
        return np.concatenate([self._forward(tf.constant(inputs[i:i + PREDICT_BATCH]))
                               for i in range(0, max(len(inputs), 1), PREDICT_BATCH)])

    def probabilities(self, inputs: sparse.spmatrix | np.ndarray) -> np.ndarray:
        """Calibrated by the model's own map: vector or temperature scaling (older models: a temperature)."""
        return calibrate_logits(self.logits(inputs), self.meta.get("calibration") or
                                {"temperature": self.meta["temperature"]})

    @property
    def architecture(self) -> str:
        """What a clinician reads for the model: "linear model", "MLP", "BiGRU" or "Transformer"."""
        return ARCH_NAMES.get(self.meta.get("options", {}).get("arch", "mlp"), "MLP")

    @property
    def figures_are_out_of_fold(self) -> bool:
        """True when the model was refitted on every note, so its stored figures are out-of-fold predictions."""
        return bool(self.meta.get("linear", {}).get("refit_on_all"))

    @property
    def confidence_threshold(self) -> float:
        """The top-class probability below which the finding is "uncertain" (0: older models always answer)."""
        return float(self.meta.get("confidence", {}).get("threshold", 0.0))

    def predict_words(self, documents: list[list[str]]) -> np.ndarray:
        return self.probabilities(self.encoder.transform(documents))

    def masked_probabilities(self, design: Any, masks: np.ndarray) -> np.ndarray:
        """Probabilities of the note (encoder.design of its words) with the words where masks == 0 removed."""
        return self.probabilities(self.encoder.masked(design, masks))


def save_notes_model(folder: Path, model: NotesModel, validation: dict[str, np.ndarray], model_card: str = "") -> Path:
    """Write the model folder atomically."""
    encoder = {"vocabulary": np.array(model.encoder.vocabulary)}
    if isinstance(model.encoder, Featurizer):
        encoder["idf"] = model.encoder.idf
    version = FEATURES_VERSION if isinstance(model.encoder, Featurizer) else SEQUENCE_VERSION
    return write_model_folder(folder, model.network, {**model.meta, "features_version": version},
                              {"featurizer": encoder, "validation": validation}, model_card)


def load_notes_model(folder: Path) -> NotesModel:
    network, meta, arrays = read_model_folder(folder, ("featurizer",), "features_version",
                                              (FEATURES_VERSION, SEQUENCE_VERSION))
    stored = arrays["featurizer"]
    if meta["features_version"] == SEQUENCE_VERSION:
        encoder = WordIndex(stored["vocabulary"].tolist())
    else:
        encoder = Featurizer(stored["vocabulary"].tolist(), stored["idf"])
    return NotesModel(network, encoder, meta, Path(folder))
