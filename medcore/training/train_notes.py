"""Train, calibrate and package a case-note classifier from a CSV with `label` and `text` columns.

Recipe: stratified split (seed) -> an encoder fitted on the training part (TF-IDF n-grams, or a word index for
the sequence models) -> logistic regression (`--arch linear`, vocabulary and C by cross-validation), or a network
(`mlp`, `bigru`, `transformer`) with class weights, best epoch by validation macro-F1 (early stopping) -> a
calibration map chosen by cross-validation within validation -> the confidence below which the page says
"uncertain" -> metrics, next to a tuned TF-IDF + logistic regression baseline (notes_baseline) on the same split.
"""

from __future__ import annotations

import json
import platform
import secrets
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from medcore import conformal
from medcore.calibration import calibrate_logits, fit_temperature, fit_top_label, fit_vector_scaling, softmax
from medcore.metrics import confidence_threshold, multiclass_metrics
from medcore.notes.data import read_labelled_notes, split_notes
from medcore.notes.features import Featurizer
from medcore.training.notes_baseline import cross_validated_macro_f1, fit_baseline
from medcore.training.options import NotesTrainingOptions
from medcore.training.progress import ProgressFn, Stage, event

KEEPS_THE_DECISION = ("temperature", "top_label")  # vector scaling moves decisions towards frequent classes


def choose_calibration(logits: np.ndarray, y: np.ndarray, labels: list[str], seed: int, folds: int = 5
                       ) -> tuple[dict, dict]:
    """Temperature, vector or class-wise top-label scaling, judged by 5-fold cross-validation within validation.

    The map chosen is the one with the lowest cross-validated log-loss among those that keep the model's decision
    (its argmax): vector scaling, fitted for likelihood, shifts decisions towards frequent classes and costs
    macro-F1 (measured and reported, not chosen). Returns (calibration, report per method: cross-validated
    log-loss, top-label ECE and macro-F1).
    """
    from sklearn.model_selection import StratifiedKFold

    fitters = {"temperature": lambda lg, yy: {"method": "temperature", "temperature": fit_temperature(lg, yy)},
               "vector": lambda lg, yy: {"method": "vector", **fit_vector_scaling(lg, yy)},
               "top_label": fit_top_label}
    smallest = int(np.bincount(y, minlength=len(labels)).min())
    if smallest < 2:  # a class with one validation note (or none) cannot be cross-validated: one temperature
        return fitters["temperature"](logits, y), {}
    splitter = StratifiedKFold(min(folds, smallest), shuffle=True, random_state=seed)
    report = {}
    for method, fit in fitters.items():
        prob = np.zeros_like(logits, dtype=np.float64)
        for fit_idx, test_idx in splitter.split(logits, y):
            prob[test_idx] = calibrate_logits(logits[test_idx], fit(logits[fit_idx], y[fit_idx]))
        metrics = multiclass_metrics(y, prob, labels)
        report[method] = {"cv_log_loss": round(float(-np.mean(np.log(prob[np.arange(len(y)), y] + 1e-12))), 4),
                          "cv_ece": round(metrics["ece"], 4), "cv_macro_f1": round(metrics["macro_f1"], 4)}
    method = min(KEEPS_THE_DECISION, key=lambda m: report[m]["cv_log_loss"])
    return fitters[method](logits, y), report


def _train_linear(x_train, y_train: np.ndarray, x_val, y_val: np.ndarray, n_classes: int,
                  options: NotesTrainingOptions, started: float, progress: ProgressFn):
    """Logistic regression on the TF-IDF features, C by 5-fold CV on the training notes, carried in a Keras layer."""
    from sklearn.metrics import f1_score, log_loss

    from medcore.notes.model import build_linear_notes_network

    def classifier_for(c: float):
        return _logistic_regression(c, options)

    means = cross_validated_macro_f1(lambda fit_idx, test_idx: (x_train[fit_idx], x_train[test_idx]), y_train,
                                     LINEAR_C_GRID, classifier_for, options.seed)
    if not means:
        raise ValueError("Every class needs at least 2 training notes to choose the linear model's regularization.")
    best_c = max(means, key=means.get)
    classifier = classifier_for(best_c).fit(x_train, y_train)
    network = build_linear_notes_network(x_train.shape[1], n_classes)
    network.set_weights(_logit_weights(classifier, n_classes, x_train.shape[1]))
    val_f1 = float(f1_score(y_val, classifier.predict(x_val), average="macro"))
    row = {"epoch": 1, "epochs": 1, "loss": float(log_loss(y_train, classifier.predict_proba(x_train),
                                                           labels=classifier.classes_)),
           "val_macro_f1": val_f1, "elapsed_s": round(time.time() - started, 1), "eta_s": 0.0}
    progress(event(Stage.EPOCH, **row, best_epoch=1))
    return network, [row], 1, {"C": best_c, "cv_macro_f1": {str(c): round(v, 4) for c, v in means.items()},
                               "cv_best": round(means[best_c], 4)}


def _network_for(arch: str, words: list[list[str]], train_idx: np.ndarray, val_idx: np.ndarray, y_train: np.ndarray,
                 n_classes: int, options: NotesTrainingOptions):
    """(compiled network, encoder, validation inputs, fit_epoch(epoch) -> mean training loss) for mlp or a sequence model."""
    import keras
    import tensorflow as tf

    from medcore.notes import sequence
    from medcore.notes.model import build_notes_network, to_sparse_tensor
    from medcore.training import datasets, device

    train_words = [words[i] for i in train_idx]
    weights = datasets.class_weights(y_train) if options.class_weighting else None
    with device.training_strategy(mixed_precision=False).scope():
        if arch == "mlp":
            encoder = Featurizer.fit(train_words, max_features=options.max_features or 20_000)
            network = build_notes_network(encoder.size, n_classes, options.hidden, options.dropout)
        elif arch in sequence.SEQUENCE_NETWORKS:
            encoder = sequence.WordIndex.fit(train_words, max_words=options.max_features or 20_000)
            network = sequence.SEQUENCE_NETWORKS[arch](encoder.size, n_classes, options.width)
        else:
            raise ValueError(f"Unknown notes architecture {arch!r}.")
        learning_rate = options.learning_rate or DEFAULT_LEARNING_RATES[arch]
        network.compile(optimizer=keras.optimizers.Adam(learning_rate),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if arch == "mlp":
        features = encoder.transform(words)
        x_train = to_sparse_tensor(features[train_idx])

        def fit_epoch(epoch: int) -> float:
            return network.fit(x_train, y_train, batch_size=options.batch_size, epochs=1, class_weight=weights,
                               verbose=0, shuffle=True).history["loss"][-1]

        return network, encoder, to_sparse_tensor(features[val_idx]), fit_epoch

    train_ids = [encoder.design(w) for w in train_words]
    lengths = np.array([len(ids) for ids in train_ids])
    sample_weight = np.array([weights[c] for c in y_train], dtype=np.float32) if weights else np.ones(len(y_train))

    def fit_epoch(epoch: int) -> float:
        rng = np.random.default_rng([options.seed, epoch])
        batches = sequence.length_batches(lengths, options.batch_size, rng)

        def feed():
            for batch in batches:
                ids = sequence.word_dropout(sequence.pad([train_ids[i] for i in batch]), options.word_dropout, rng)
                yield ids, y_train[batch].astype(np.int32), sample_weight[batch].astype(np.float32)

        signature = (tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None,), tf.int32),
                     tf.TensorSpec((None,), tf.float32))  # batches differ in length: declared, not guessed
        dataset = tf.data.Dataset.from_generator(feed, output_signature=signature)
        return network.fit(dataset, epochs=1, steps_per_epoch=len(batches), shuffle=False, verbose=0
                           ).history["loss"][-1]

    return network, encoder, tf.constant(encoder.transform([words[i] for i in val_idx])), fit_epoch


def _train_with_early_stopping(network, fit_epoch: Callable[[int], float], val_logits: Callable[[], np.ndarray],
                               y_val: np.ndarray, options: NotesTrainingOptions, started: float, progress: ProgressFn,
                               should_stop: Callable[[], bool] | None) -> tuple[list[dict], int]:
    """Epochs until validation macro-F1 stops improving (patience); the network keeps its best epoch's weights."""
    from sklearn.metrics import f1_score

    best = {"f1": -1.0, "epoch": 0, "weights": None}
    history = []
    for epoch in range(1, options.epochs + 1):
        loss = fit_epoch(epoch)
        val_f1 = float(f1_score(y_val, val_logits().argmax(1), average="macro"))
        elapsed = time.time() - started
        row = {"epoch": epoch, "epochs": options.epochs, "loss": float(loss), "val_macro_f1": val_f1,
               "elapsed_s": round(elapsed, 1),
               "eta_s": round(elapsed / epoch * (options.epochs - epoch), 1)}  # at most: early stopping may end sooner
        history.append(row)
        if val_f1 > best["f1"]:
            best.update(f1=val_f1, epoch=epoch, weights=network.get_weights())
        progress(event(Stage.EPOCH, **row, best_epoch=best["epoch"]))
        if epoch - best["epoch"] >= options.patience or (should_stop and should_stop()):
            break
    network.set_weights(best["weights"])
    return history, best["epoch"]



def _logistic_regression(c: float, options: NotesTrainingOptions):
    """The linear model's classifier: the same for choosing C, for the split model and for the refit on all notes."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000, class_weight="balanced" if options.class_weighting else None)


def _logit_weights(classifier, n_classes: int, n_features: int) -> list[np.ndarray]:
    """A fitted LogisticRegression as the Dense layer's [kernel, bias], one logit per class (classes it never saw
    get 0; with two classes scikit-learn keeps one row, the second class's logit against a first fixed at 0)."""
    coef, intercept = np.zeros((n_classes, n_features)), np.zeros(n_classes)
    if len(classifier.classes_) == 2:
        coef[classifier.classes_[1]], intercept[classifier.classes_[1]] = classifier.coef_[0], classifier.intercept_[0]
    else:
        coef[classifier.classes_], intercept[classifier.classes_] = classifier.coef_, classifier.intercept_
    return [coef.T.astype(np.float32), intercept.astype(np.float32)]


def _refit_linear_on_all(words: list[list[str]], labels: np.ndarray, n_classes: int, max_features: int, c: float,
                         options: NotesTrainingOptions):
    """The chosen linear model refitted on every note, with every note's out-of-fold logits for calibration.

    As scikit-learn's CalibratedClassifierCV(ensemble=False): the map is fitted on cross-validated predictions and
    the served model on all the data. On symptom2disease (768 -> 960 notes) this gained 0.0085 +/- 0.0072
    macro-F1 per fold over the split-only model in 5-fold cross-validation.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from medcore.notes.model import build_linear_notes_network

    encoder = Featurizer.fit(words, max_features=max_features)
    features = encoder.transform(words)
    classifier = _logistic_regression(c, options)
    folds = StratifiedKFold(min(5, int(np.bincount(labels).min())), shuffle=True, random_state=options.seed)
    out_of_fold = cross_val_predict(classifier, features, labels, cv=folds, method="decision_function")
    if out_of_fold.ndim == 1:  # two classes: the second class's logit against the first's 0
        out_of_fold = np.stack([np.zeros_like(out_of_fold), out_of_fold], axis=1)
    classifier.fit(features, labels)
    network = build_linear_notes_network(encoder.size, n_classes)
    network.set_weights(_logit_weights(classifier, n_classes, encoder.size))
    return encoder, network, out_of_fold.astype(np.float32)


# Measured by 5-fold cross-validation on symptom2disease (macro-F1): BiGRU 0.757 +/- 0.103 at 1e-3, 0.895 +/- 0.015
# at 3e-3; Transformer 0.948 +/- 0.021 at 1e-3, 0.932 +/- 0.010 at 3e-3.
DEFAULT_LEARNING_RATES = {"mlp": 1e-3, "bigru": 3e-3, "transformer": 1e-3}
LINEAR_C_GRID = (0.25, 1.0, 4.0, 16.0, 64.0, 256.0)
LINEAR_VOCABULARIES = (20_000, 150_000)


def prediction_set_record(fit_prob: np.ndarray, fit_y: np.ndarray, label_names: list[str], seed: int,
                          fitted_on: str) -> dict:
    """The model's prediction sets: the level chosen by conformal.LEVEL_RULE on the held-out notes alone, each
    class's quantile at it, and the half-split check at that level."""
    level, tried = conformal.choose_level(fit_prob, fit_y, label_names, seed=seed)
    return {"level": level, "target": conformal.TARGET, "level_rule": conformal.LEVEL_RULE, "levels_tried": tried,
            "method": "split conformal, class-conditional (Mondrian), score 1 - p",
            "quantiles": conformal.class_quantiles(fit_prob, fit_y, len(label_names), level).round(6).tolist(),
            "fitted_on": fitted_on, "n_per_class": np.bincount(fit_y, minlength=len(label_names)).tolist(),
            "held_out_check": conformal.split_check(fit_prob, fit_y, label_names, level, seed=seed)}


def refit_prediction_sets(model_dir: Path, command: str) -> dict:
    """A notes model's prediction sets fitted again by today's rule from its stored out-of-fold notes (weights and
    calibration untouched); the model card is rewritten. Returns the new record."""
    from medcore.training.external import add_to_card

    meta = json.loads((Path(model_dir) / "meta.json").read_text())
    stored = np.load(Path(model_dir) / "validation.npz")
    if "fit_prob" not in stored:
        raise ValueError(f"{model_dir} keeps no out-of-fold probabilities: retrain it (medcore train notes).")
    previous = meta.get("conformal", {})
    record = prediction_set_record(stored["fit_prob"], stored["fit_y"].astype(int), meta["labels"],
                                   meta["options"]["seed"], previous.get("fitted_on", "the held-out notes"))
    record["refit"] = {"command": command, "at": time.strftime("%Y-%m-%d %H:%M"),
                       "previous_level": previous.get("level")}
    if record["quantiles"] != previous.get("quantiles"):  # other sets: another version (versions never change)
        meta["version"] = f"{meta['version'].split('-sets')[0]}-sets{round(record['level'] * 100)}"
        (Path(model_dir) / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return add_to_card(Path(model_dir), "conformal", record)["conformal"]


def train_notes(csv_path: Path, out_dir: Path, options: NotesTrainingOptions | None = None, *, task: str,
                progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Train and write a model folder to out_dir; return its metadata (`task` is what it records)."""
    import keras
    import tensorflow as tf

    from medcore.model_card import notes_model_card
    from medcore.notes.model import NotesModel, save_notes_model, to_sparse_tensor
    from medcore.training import device

    options = options or NotesTrainingOptions()
    progress = progress or (lambda event: None)
    started = time.time()
    keras.utils.set_random_seed(options.seed)
    data = read_labelled_notes(Path(csv_path))
    train_idx, val_idx = split_notes(data.labels, options.val_fraction, options.seed)
    progress(event(Stage.FEATURES, n_train=len(train_idx), n_val=len(val_idx)))
    y_train, y_val = data.labels[train_idx], data.labels[val_idx]
    n_classes = len(data.label_names)
    counts = np.bincount(y_train, minlength=n_classes)
    train_words = [data.words[i] for i in train_idx]
    if options.arch == "linear":
        # The vocabulary size is chosen with C by cross-validation on the training notes (a short-symptom corpus
        # and an abstracts corpus want different sizes); the chosen features serve, the others are dropped.
        sizes = (options.max_features,) if options.max_features else LINEAR_VOCABULARIES
        tried = []
        for size in sizes:
            encoder = Featurizer.fit(train_words, max_features=size)
            features = encoder.transform(data.words)
            tried.append((encoder, features, *_train_linear(features[train_idx], y_train, features[val_idx], y_val,
                                                            n_classes, options, started, progress)))
            if encoder.size < size:  # the corpus has fewer features than this cap: larger caps change nothing
                break
        chosen = max(range(len(tried)), key=lambda i: tried[i][-1]["cv_best"])
        encoder, features, network, history, best_epoch, linear = tried[chosen]
        linear["vocabulary_cv"] = {str(t[0].size): t[-1]["cv_best"] for t in tried}
        forward = tf.function(lambda x: network(x, training=False))
        val_logits = forward(to_sparse_tensor(features[val_idx])).numpy()
        fit_logits, fit_y = val_logits, y_val
        if options.refit_all and np.bincount(data.labels).min() >= 2:
            progress(event(Stage.FEATURES, n_train=len(data.labels), n_val=len(val_idx), refit_on_all=True))
            encoder, network, out_of_fold = _refit_linear_on_all(data.words, data.labels, n_classes, sizes[chosen],
                                                                 linear["C"], options)
            linear.update(refit_on_all=True, out_of_fold_folds=min(5, int(np.bincount(data.labels).min())))
            fit_logits, fit_y, val_logits = out_of_fold, data.labels, out_of_fold[val_idx]
    else:
        linear = None
        network, encoder, x_val, fit_epoch = _network_for(options.arch, data.words, train_idx, val_idx, y_train,
                                                           n_classes, options)
        forward = tf.function(lambda x: network(x, training=False), reduce_retracing=True)
        history, best_epoch = _train_with_early_stopping(network, fit_epoch, lambda: forward(x_val).numpy(), y_val,
                                                         options, started, progress, should_stop)
        val_logits = forward(x_val).numpy()
        fit_logits, fit_y = val_logits, y_val
    progress(event(Stage.CALIBRATING))
    # The calibration map and the "uncertain" threshold are fitted on held-out logits: the validation notes', or,
    # for a linear model refitted on all notes, every note's out-of-fold logits.
    calibration, calibration_report = choose_calibration(fit_logits, fit_y, data.label_names, options.seed)
    val_prob = calibrate_logits(val_logits, calibration)
    metrics = multiclass_metrics(y_val, val_prob, data.label_names)
    metrics["ece_uncalibrated"] = multiclass_metrics(y_val, softmax(val_logits), data.label_names)["ece"]
    metrics["calibration_cv"] = calibration_report
    fit_prob = calibrate_logits(fit_logits, calibration)
    confidence = {**confidence_threshold(fit_y, fit_prob, options.min_precision),
                  "min_precision": options.min_precision}
    conformal_record = prediction_set_record(
        fit_prob, fit_y, data.label_names, options.seed,
        "every note's out-of-fold calibrated probabilities" if linear and linear.get("refit_on_all")
        else "the validation notes' calibrated probabilities")
    texts = [" ".join(words) for words in data.words]
    baseline_predict, baseline_description = fit_baseline([texts[i] for i in train_idx], y_train,
                                                          len(data.label_names), options.seed)
    baseline = multiclass_metrics(y_val, baseline_predict([texts[i] for i in val_idx]), data.label_names)
    meta = {
        "task": task,
        "version": time.strftime(f"notes-{task}-%Y%m%d-%H%M%S-") + secrets.token_hex(2),
        "labels": data.label_names,
        "temperature": calibration.get("temperature", 1.0),
        "calibration": calibration,
        "confidence": confidence,
        "conformal": conformal_record,
        "baseline": baseline_description,
        **({"linear": linear} if linear else {}),
        "metrics": {"validation": metrics, "baseline_validation": baseline},
        "options": asdict(options),
        "data": {"source": Path(csv_path).name, "fingerprint": data.fingerprint,
                 "n_train": int(len(data.labels) if linear and linear.get("refit_on_all") else len(train_idx)),
                 "n_val": int(len(val_idx)), "dropped_rows": data.dropped,
                 "train_counts": counts.tolist()},
        "training": {"command": " ".join(["medcore"] + sys.argv[1:]), "seconds": round(time.time() - started, 1),
                     "device": device.describe(), "best_epoch": best_epoch, "history": history,
                     "learning_rate": options.learning_rate or DEFAULT_LEARNING_RATES.get(options.arch),
                     "parameters": network.count_params(), "n_features": encoder.size,
                     "tensorflow": tf.__version__, "python": platform.python_version()},
    }
    model = NotesModel(network, encoder, meta)
    save_notes_model(Path(out_dir), model, {"y_true": y_val.astype(np.int16), "prob": val_prob.astype(np.float32),
                                            "fit_y": fit_y.astype(np.int16), "fit_prob": fit_prob.astype(np.float32)},
                     model_card=notes_model_card(meta))
    progress(event(Stage.DONE, version=meta["version"], metrics=metrics))
    return meta
