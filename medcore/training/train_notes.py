"""Train, calibrate and package a case-note classifier from a CSV with `label` and `text` columns.

Recipe: stratified split (seed) -> TF-IDF features fitted on the training part -> MLP with class
weights, best epoch by validation macro-F1 (early stopping) -> temperature scaling on validation
logits -> metrics, next to a TF-IDF(1-2-gram) + logistic-regression baseline on the same split.
"""

from __future__ import annotations

import hashlib
import platform
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from medcore.notes.features import Featurizer
from medcore.notes.text import NoteRejected, prepare
from medcore.training.calibrate import fit_temperature, softmax
from medcore.training.evaluate import multiclass_metrics

ProgressFn = Callable[[dict], None]


@dataclass
class NotesTrainingOptions:
    epochs: int = 40
    patience: int = 8
    hidden: int = 128
    dropout: float = 0.5
    learning_rate: float = 1e-3
    batch_size: int = 32
    max_features: int = 20_000
    val_fraction: float = 0.2
    seed: int = 42
    class_weighting: bool = True


@dataclass
class LabelledNotes:
    words: list[list[str]]
    labels: np.ndarray  # index into label_names
    label_names: list[str]
    dropped: int  # rows without usable text
    fingerprint: str


def read_notes_csv(path: Path, label_names: list[str] | None = None) -> LabelledNotes:
    """Read and validate a CSV; rows whose text is unusable are dropped and counted."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"label", "text"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} needs the columns 'label' and 'text'; missing: {sorted(missing)}")
    names = label_names or sorted(frame["label"].unique())
    unknown = sorted(set(frame["label"]) - set(names))
    if unknown:
        raise ValueError(f"{path} has labels the model does not know: {unknown[:5]}")
    words, labels, dropped = [], [], 0
    for label, text in zip(frame["label"], frame["text"]):
        try:
            words.append([t.text for t in prepare(text).tokens])
            labels.append(names.index(label))
        except NoteRejected:
            dropped += 1
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return LabelledNotes(words, np.asarray(labels), list(names), dropped, digest)


def baseline_metrics(train_texts: list[str], train_y: np.ndarray, val_texts: list[str], val_y: np.ndarray,
                     labels: list[str]) -> dict:
    """The reference a deep model must beat: TF-IDF(1-2-gram) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectoriser = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    classifier = LogisticRegression(C=4.0, max_iter=3000)
    classifier.fit(vectoriser.fit_transform(train_texts), train_y)
    prob = classifier.predict_proba(vectoriser.transform(val_texts))
    full = np.zeros((len(val_y), len(labels)))
    full[:, classifier.classes_] = prob
    return multiclass_metrics(val_y, full, labels)


def train_notes(task: str, csv_path: Path, out_dir: Path, options: NotesTrainingOptions | None = None,
                progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    import keras
    import tensorflow as tf
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    from medcore.model_card import notes_model_card
    from medcore.notes.model import (
        NotesModel,
        build_notes_network,
        save_notes_model,
        to_sparse_tensor,
    )
    from medcore.training import datasets, device

    options = options or NotesTrainingOptions()
    progress = progress or (lambda event: None)
    started = time.time()
    keras.utils.set_random_seed(options.seed)
    data = read_notes_csv(Path(csv_path))
    indices = np.arange(len(data.labels))
    train_idx, val_idx = train_test_split(indices, test_size=options.val_fraction, stratify=data.labels,
                                          random_state=options.seed)
    progress({"stage": "features", "n_train": len(train_idx), "n_val": len(val_idx)})
    featurizer = Featurizer.fit([data.words[i] for i in train_idx], max_features=options.max_features)
    features = featurizer.transform(data.words)
    x_train, x_val = to_sparse_tensor(features[train_idx]), to_sparse_tensor(features[val_idx])
    y_train, y_val = data.labels[train_idx], data.labels[val_idx]

    n_classes = len(data.label_names)
    with device.training_strategy(mixed_precision=False).scope():
        network = build_notes_network(featurizer.size, n_classes, options.hidden, options.dropout)
        network.compile(optimizer=keras.optimizers.Adam(options.learning_rate),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    counts = np.bincount(y_train, minlength=n_classes)
    weights = datasets.class_weights(y_train) if options.class_weighting else None
    forward = tf.function(lambda x: network(x, training=False))
    best = {"f1": -1.0, "epoch": 0, "weights": None}
    history = []
    for epoch in range(1, options.epochs + 1):
        fit = network.fit(x_train, y_train, batch_size=options.batch_size, epochs=1, class_weight=weights,
                          verbose=0, shuffle=True)
        val_f1 = float(f1_score(y_val, forward(x_val).numpy().argmax(1), average="macro"))
        elapsed = time.time() - started
        row = {"epoch": epoch, "epochs": options.epochs, "loss": float(fit.history["loss"][-1]),
               "val_macro_f1": val_f1, "elapsed_s": round(elapsed, 1),
               "eta_s": round(elapsed / epoch * (options.epochs - epoch), 1)}  # at most: early stopping may end sooner
        history.append(row)
        if val_f1 > best["f1"]:
            best.update(f1=val_f1, epoch=epoch, weights=network.get_weights())
        progress({"stage": "epoch", **row, "best_epoch": best["epoch"]})
        if epoch - best["epoch"] >= options.patience or (should_stop and should_stop()):
            break
    network.set_weights(best["weights"])

    val_logits = forward(x_val).numpy()
    temperature = fit_temperature(val_logits, y_val)
    val_prob = softmax(val_logits, temperature)
    metrics = multiclass_metrics(y_val, val_prob, data.label_names)
    metrics["ece_uncalibrated"] = multiclass_metrics(y_val, softmax(val_logits), data.label_names)["ece"]
    texts = [" ".join(words) for words in data.words]
    baseline = baseline_metrics([texts[i] for i in train_idx], y_train, [texts[i] for i in val_idx], y_val,
                                data.label_names)
    meta = {
        "task": task,
        "version": time.strftime(f"notes-{task}-%Y%m%d-%H%M%S-") + secrets.token_hex(2),
        "labels": data.label_names,
        "temperature": temperature,
        "metrics": {"validation": metrics, "baseline_validation": baseline},
        "options": asdict(options),
        "data": {"source": Path(csv_path).name, "fingerprint": data.fingerprint, "n_train": int(len(train_idx)),
                 "n_val": int(len(val_idx)), "dropped_rows": data.dropped,
                 "train_counts": counts.tolist()},
        "training": {"command": " ".join(["medcore"] + sys.argv[1:]), "seconds": round(time.time() - started, 1),
                     "device": device.describe(), "best_epoch": best["epoch"], "history": history,
                     "parameters": network.count_params(), "n_features": featurizer.size,
                     "tensorflow": tf.__version__, "python": platform.python_version()},
    }
    model = NotesModel(network, featurizer, meta)
    save_notes_model(Path(out_dir), model, {"y_true": y_val.astype(np.int16), "prob": val_prob.astype(np.float32)},
                     model_card=notes_model_card(meta))
    progress({"stage": "done", "version": meta["version"], "metrics": metrics})
    return meta
