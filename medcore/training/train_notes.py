"""Train, calibrate and package a case-note classifier from a CSV with `label` and `text` columns.

Recipe: stratified split (seed) -> TF-IDF features fitted on the training part -> MLP with class
weights, best epoch by validation macro-F1 (early stopping) -> temperature scaling on validation
logits -> metrics, next to a TF-IDF(1-2-gram) + logistic-regression baseline on the same split.
"""

from __future__ import annotations

import platform
import secrets
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from medcore.calibration import fit_temperature, softmax
from medcore.metrics import multiclass_metrics
from medcore.notes.data import read_labelled_notes, split_notes
from medcore.notes.features import Featurizer
from medcore.training.options import NotesTrainingOptions
from medcore.training.progress import ProgressFn, Stage, event


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


def train_notes(csv_path: Path, out_dir: Path, options: NotesTrainingOptions | None = None, *, task: str,
                progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Train and write a model folder to out_dir; return its metadata (`task` is what it records)."""
    import keras
    import tensorflow as tf
    from sklearn.metrics import f1_score

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
    data = read_labelled_notes(Path(csv_path))
    train_idx, val_idx = split_notes(data.labels, options.val_fraction, options.seed)
    progress(event(Stage.FEATURES, n_train=len(train_idx), n_val=len(val_idx)))
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
        progress(event(Stage.EPOCH, **row, best_epoch=best["epoch"]))
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
    progress(event(Stage.DONE, version=meta["version"], metrics=metrics))
    return meta
