"""Train, calibrate and package a chest X-ray model from a folder of class folders.

One call does the whole recipe so the shipped model, a CLI run and an admin retrain are the same
thing: patient-level split -> cached preprocessing (the serving path) -> CNN with class weights,
radiograph-safe augmentation and a warm-up + cosine learning-rate schedule -> best epoch by
validation AUC -> Platt calibration -> operating threshold -> out-of-distribution reference ->
artifact with its metrics and data fingerprint.
"""

from __future__ import annotations

import platform
import secrets
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from medcore import config
from medcore.artifacts import command_line
from medcore.calibration import apply_platt, fit_platt
from medcore.imaging import folders, quality
from medcore.imaging.intended_use import SHIPPED_TRAINING_DATA
from medcore.imaging.model import build_xray_ensemble, save_artifact
from medcore.imaging.preprocess import PREPROCESS_VERSION
from medcore.metrics import (
    binary_metrics,
    choose_threshold_for_each,
    expected_calibration_error,
)
from medcore.model_card import xray_model_card
from medcore.training import datasets, device, shift
from medcore.training.options import XrayTrainingOptions
from medcore.training.progress import ProgressFn, Stage, event

QUALITY_METHOD = ("Mahalanobis distance of pooled last-conv features + PCA residual of 32 px thumbnails; "
                  "each threshold = 1.25 x the 99.5th percentile on validation films. The drift monitor's feature "
                  "summary: 8 principal components of the standardised pooled features, fitted on the training "
                  "films, with the validation films' summaries as its reference")


def augmenter(seed: int, zoom_in: float = 0.3):
    """Small rotations, shifts, zoom and exposure changes: what varies between real films.

    No horizontal flips: the heart is on the left, and a mirrored film is not a plausible input. Zooming in goes
    further than out, each axis on its own: a network trained with +/- 10 % read a tighter framing as pneumonia
    (validation normals cropped to 80 % moved from logit -6.4 to -1.5, where new patients' normals sit).
    """
    import keras
    import tensorflow as tf

    geometric = keras.Sequential([
        keras.layers.RandomRotation(0.02, fill_mode="reflect", seed=seed),  # +/- 7 degrees
        keras.layers.RandomTranslation(0.05, 0.05, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomZoom((-zoom_in, 0.1), (-zoom_in, 0.1), fill_mode="reflect", seed=seed + 2),
    ])

    def augment(images, labels):
        images = geometric(images, training=True)
        batch = tf.shape(images)[0]
        gain = tf.random.uniform((batch, 1, 1, 1), 0.85, 1.15)
        offset = tf.random.uniform((batch, 1, 1, 1), -0.15, 0.15)
        noise = tf.random.normal(tf.shape(images), stddev=0.03)
        return images * gain + offset + noise, labels

    return augment


def training_dataset(images: np.ndarray, labels: np.ndarray, options: XrayTrainingOptions, teacher=None):
    """Shuffled, batched, augmented (radiograph-safe) training films: central and federated training alike.

    With a teacher network, its logit on each augmented batch replaces the target's second column, so that the
    student learns what the teacher says of the very film it sees (a consistent teacher)."""
    import tensorflow as tf

    targets = labels.astype(np.float32)
    targets = targets[:, None] if targets.ndim == 1 else targets  # (label) or (label, teacher's logit)
    ds = tf.data.Dataset.from_tensor_slices((images, targets))
    shard = tf.data.Options()  # across workers each takes its share of every batch (the same shuffle everywhere)
    shard.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(shard).shuffle(len(images), seed=options.seed, reshuffle_each_iteration=True)
    ds = ds.batch(options.batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    if options.augmentation:
        ds = ds.map(augmenter(options.seed, options.zoom_in), num_parallel_calls=tf.data.AUTOTUNE)
    if teacher is not None:
        ds = ds.map(lambda x, y: (x, tf.concat([y[:, :1], tf.reshape(teacher(x, training=False), (-1, 1))], axis=1)))
    return ds.prefetch(tf.data.AUTOTUNE)


def fit_quality_reference(network, images: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> dict:
    """The out-of-distribution reference of a trained network, from its own training/validation split."""
    from medcore.imaging.gradcam import GradCam

    explain = GradCam(network)
    outputs = [explain(images[i:i + 256].astype(np.float32)) for i in range(0, len(images), 256)]
    cams, features = np.concatenate([o[1] for o in outputs]), np.concatenate([o[2] for o in outputs])
    thumbs = np.stack([quality.thumbnail_vector(x.astype(np.float32)) for x in images])
    reference = quality.fit_reference(thumbs[train_idx], thumbs[val_idx], features[train_idx], features[val_idx])
    # One heatmap scale for the model, so that heat means the same everywhere (see gradcam.normalise).
    reference["gradcam_scale"] = np.float32(np.percentile(cams[val_idx].max(axis=(1, 2)), 95))
    return reference


def refit_quality_reference(model_dir: Path, data_dir: Path, cache_dir: Path | None = None) -> dict:
    """Recompute a model's quality reference on the split it was trained with (weights untouched).

    Used when the quality gate's method changes: same data, same split, same network.
    """
    from medcore.imaging.model import load_artifact

    artifact = load_artifact(model_dir)
    split = datasets.model_split(artifact.meta, Path(data_dir), cache_dir or config.store_dir() / "cache")
    reference = fit_quality_reference(artifact.network, split.images, split.train_idx, split.val_idx)
    np.savez_compressed(Path(model_dir) / "quality.npz", **reference)
    return {k: float(v) for k, v in reference.items() if np.ndim(v) == 0}


def refit_calibration(model_dir: Path, data_dir: Path, command: str, cache_dir: Path | None = None) -> dict:
    """Refit an unregistered model's calibration and threshold on its own validation films by today's rule, weights
    untouched, as a new version (a new operating point must be told apart in the audit log). Returns the metadata.

    Used when the calibration or threshold rule changes: same data, same split, same network, same perturbed copies.
    Figures on new patients measured at the old threshold are dropped, to be recorded again.
    """
    import json

    from medcore.artifacts import EXTERNAL_FILE, VALIDATION_FILE
    from medcore.imaging.model import load_artifact
    from medcore.training.external import add_to_card, ensure_unregistered

    model_dir = ensure_unregistered(model_dir)
    artifact = load_artifact(model_dir)
    x_val, y_val = datasets.model_split(artifact.meta, Path(data_dir),
                                        cache_dir or config.store_dir() / "cache").validation()
    known = XrayTrainingOptions.__dataclass_fields__
    options = XrayTrainingOptions(**{k: v for k, v in artifact.meta["options"].items() if k in known})
    calibrated = calibrate_network(lambda batch: artifact.network.predict(batch, batch_size=256, verbose=0).ravel(),
                                   x_val, y_val, options)
    meta = json.loads(json.dumps(artifact.meta))
    refit = {"based_on": meta["version"], "command": command, "at": time.strftime("%Y-%m-%d %H:%M:%S"),
             "previous_threshold": meta["threshold"], "previous_rule": meta["threshold_rule"]}
    meta.update(version=time.strftime("xray-%Y%m%d-%H%M%S-") + secrets.token_hex(2),
                calibration=calibrated.calibration, threshold=calibrated.threshold,
                threshold_rule=calibrated.threshold_rule)
    meta["metrics"]["validation"] = {**calibrated.metrics, "members": meta["metrics"]["validation"].get("members", [])}
    meta.pop("external", None)
    (model_dir / EXTERNAL_FILE).unlink(missing_ok=True)
    np.savez_compressed(model_dir / VALIDATION_FILE, **calibrated.validation_arrays(y_val))
    (model_dir / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return add_to_card(model_dir, "refit", refit)  # writes the card from the metadata


@dataclass
class Calibrated:
    """A network's calibration map, operating threshold and the validation figures with them."""

    calibration: dict  # {"method": "platt", "a", "b", "fitted_on"}
    threshold: float
    threshold_rule: str
    val_logits: np.ndarray
    val_prob: np.ndarray
    metrics: dict

    def validation_arrays(self, y_val: np.ndarray) -> dict[str, np.ndarray]:
        """What an artifact keeps of its validation films (validation.npz): labels, probabilities, logits."""
        return {"y_true": y_val.astype(np.int8), "prob": self.val_prob.astype(np.float32),
                "logit": self.val_logits.astype(np.float32)}


def calibrate_and_choose_threshold(val_logits: np.ndarray, y_val: np.ndarray,
                                   shifted: tuple[np.ndarray, np.ndarray] | None, min_sensitivity: float,
                                   fitted_on: str) -> Calibrated:
    """Platt map fitted on the validation logits plus (when given) the (logits, labels) of their perturbed copies;
    the threshold keeps the sensitivity target on each of the two, not on their union (choose_threshold_for_each).

    Central and federated training share it. With copies, metrics["simulated_shift"] holds the copies' figures.
    """
    domains = [(val_logits, y_val)] + ([shifted] if shifted is not None else [])
    calibration = fit_platt(np.concatenate([d[0] for d in domains]), np.concatenate([d[1] for d in domains]))
    threshold = choose_threshold_for_each([(y, apply_platt(logits, calibration)) for logits, y in domains],
                                          min_sensitivity)
    rule = (f"highest threshold whose sensitivity keeps a one-sided 80 % Wilson lower bound of at least "
            f"{min_sensitivity} on the validation films" + (" and on their perturbed copies, each on its own (a "
                                                            "shift-aware rule: the target must hold on clean and "
                                                            "on perturbed films)" if shifted is not None else ""))
    val_prob = apply_platt(val_logits, calibration)
    metrics = binary_metrics(y_val, val_prob, threshold)
    metrics["ece_uncalibrated"] = expected_calibration_error(y_val, 1.0 / (1.0 + np.exp(-val_logits)))
    if shifted is not None:
        metrics["simulated_shift"] = {k: v for k, v in binary_metrics(
            shifted[1], apply_platt(shifted[0], calibration), threshold).items()
            if k in ("auc", "accuracy", "sensitivity", "specificity", "ece", "n")}
    return Calibrated({"method": "platt", **calibration, "fitted_on": fitted_on}, threshold, rule, val_logits, val_prob,
                      metrics)


def calibrate_network(predict: Callable[[np.ndarray], np.ndarray], x_val: np.ndarray, y_val: np.ndarray,
                      options: XrayTrainingOptions) -> Calibrated:
    """Calibration and threshold of a trained network from its validation films (and, by default, their perturbed
    copies: medcore.training.shift). Training and `medcore calibration-refit` both come here."""
    val_logits = predict(x_val)
    if options.shift_calibration:
        return calibrate_and_choose_threshold(val_logits, y_val, shift.perturbed_logits(predict, x_val, y_val,
                                              options.seed), options.min_sensitivity, shift.DESCRIPTION)
    return calibrate_and_choose_threshold(val_logits, y_val, None, options.min_sensitivity, "validation films")


def _train_member(member, index: int, options: XrayTrainingOptions, x_train: np.ndarray, y_train: np.ndarray,
                  x_val: np.ndarray, y_val: np.ndarray, strategy, started: float, history: list[dict],
                  progress: ProgressFn, should_stop: Callable[[], bool] | None, teacher=None) -> tuple[int, float]:
    """Train one ensemble member with its own seed; keep its best epoch by validation AUC; return (epoch, AUC)."""
    import keras

    seed = options.seed + 1000 * index
    keras.utils.set_random_seed(seed)
    steps_per_epoch = int(np.ceil(len(x_train) / options.batch_size))
    weights = datasets.class_weights(y_train if y_train.ndim == 1 else y_train[:, 0].astype(int)) \
        if options.class_weighting else None
    with strategy.scope():
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=options.learning_rate / 20, decay_steps=steps_per_epoch * options.epochs,
            warmup_target=options.learning_rate, warmup_steps=steps_per_epoch, alpha=0.01)
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=1e-4)
        if y_train.ndim == 2:  # distillation: the labels and the teacher's logits
            member.compile(optimizer=optimizer, loss=distillation_loss(options, weights),
                           metrics=[hard_label_auc()])
            weights = None  # inside the loss (fit's class_weight reads a one-column target)
        else:
            member.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(from_logits=True),
                           metrics=[keras.metrics.AUC(from_logits=True, name="auc")])
    best = {"auc": -1.0, "epoch": 0, "weights": None}
    total = options.epochs * options.members

    def end_of_epoch(epoch: int, loss: float, train_auc: float) -> bool:
        """Score, keep the best weights, report; True to stop (a cancel)."""
        val_auc = float(roc_auc_score(y_val, predict_logits(member, x_val)))
        elapsed = time.time() - started
        done = index * options.epochs + epoch + 1
        row = {"epoch": epoch + 1, "epochs": options.epochs, "member": index + 1, "members": options.members,
               "loss": float(loss), "auc": float(train_auc), "val_auc": val_auc,
               "elapsed_s": round(elapsed, 1), "eta_s": round(elapsed / done * (total - done), 1)}
        history.append(row)
        if val_auc > best["auc"]:
            best.update(auc=val_auc, epoch=epoch + 1, weights=member.get_weights())
        progress(event(Stage.EPOCH, **row, best_epoch=best["epoch"]))
        return should_stop is not None and should_stop()

    class EpochReport(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if end_of_epoch(epoch, logs["loss"], logs["auc"]):
                self.model.stop_training = True

    options_for_data = replace(options, seed=seed)
    dataset = training_dataset(x_train, y_train, options_for_data, teacher)
    if device.is_multi_worker(strategy):
        _fit_across_workers(member, optimizer, dataset, options.epochs, options.batch_size, weights, strategy,
                            end_of_epoch)
    else:
        member.fit(dataset, epochs=options.epochs, class_weight=weights, callbacks=[EpochReport()], verbose=0)
    if best["weights"] is not None:
        member.set_weights(best["weights"])
    return best["epoch"], best["auc"]


def distillation_loss(options: XrayTrainingOptions, class_weight: dict | None):
    """Knowledge distillation (Hinton et al. 2015) for one logit: alpha x the class-weighted cross-entropy with the
    label, plus (1 - alpha) x T^2 x the cross-entropy between the teacher's and the student's sigmoid at temperature
    T. The target is (label, teacher's logit) per film."""
    import tensorflow as tf

    alpha, temperature = options.distill_alpha, options.distill_temperature
    weights = tf.constant([class_weight[0], class_weight[1]] if class_weight else [1.0, 1.0], tf.float32)

    def loss(target, logit):
        label, teacher = target[:, :1], target[:, 1:2]
        sample = tf.gather(weights, tf.cast(label[:, 0], tf.int32))[:, None]
        hard = tf.nn.sigmoid_cross_entropy_with_logits(labels=label, logits=logit) * sample
        soft = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.sigmoid(teacher / temperature),
                                                       logits=logit / temperature) * temperature ** 2
        return tf.reduce_mean(alpha * hard + (1 - alpha) * soft)

    return loss


def hard_label_auc():
    """Training AUC against the labels alone, when the target also carries the teacher's logit."""
    import keras

    class HardLabelAUC(keras.metrics.AUC):
        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(y_true[:, :1], y_pred, sample_weight)

    return HardLabelAUC(from_logits=True, name="auc")


def teacher_targets(options: XrayTrainingOptions, x_train: np.ndarray, y_train: np.ndarray
                    ) -> tuple[np.ndarray, dict, object]:
    """(label, teacher's logit) per training film, what the model card records of the teacher, and the teacher's
    network when it is consistent (it then scores each augmented batch, and the logit column is filled there)."""
    from medcore.imaging.model import load_artifact

    teacher = load_artifact(Path(options.teacher))
    if teacher.image_size != options.image_size:
        raise ValueError(f"The teacher reads {teacher.image_size} px films; the student must too (--image-size).")
    if options.distill_consistent:  # the column is filled batch by batch (training_dataset): nothing to score now
        logits = np.zeros(len(x_train), np.float32)
        targets = ("the teacher's raw logits on the same augmented film the student sees, at every step "
                   "(consistent), softened by the temperature")
    else:
        logits = predict_logits(teacher.network, x_train)
        targets = "the teacher's raw logits on the training films (not augmented), softened by the temperature"
    return np.stack([y_train.astype(np.float32), logits.astype(np.float32)], axis=1), {
        "teacher": teacher.version, "alpha": options.distill_alpha, "temperature": options.distill_temperature,
        "consistent": options.distill_consistent, "targets": targets}, \
        teacher.network if options.distill_consistent else None


def predict_logits(network, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The network's logits, called directly in batches: the same on one process and across workers (where
    Keras's predict cannot run under MultiWorkerMirroredStrategy)."""
    return np.concatenate([np.asarray(network(images[i:i + batch_size].astype(np.float32), training=False)).ravel()
                           for i in range(0, len(images), batch_size)])


def _fit_across_workers(member, optimizer, dataset, epochs: int, batch_size: int, class_weight: dict | None,
                        strategy, end_of_epoch: Callable[[int, float, float], bool]) -> None:
    """The recipe's training loop for MultiWorkerMirroredStrategy, written out (Keras 3's fit does not run under it,
    keras-team/keras#20585): each worker takes its share of every global batch, gradients are summed across
    workers, the loss is the same class-weighted mean as fit's. Every worker runs every step and every epoch's
    scoring (collective operations must match); only the chief reports."""
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score as auc

    loss_fn = tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction="none")
    weights = tf.constant([class_weight[0], class_weight[1]] if class_weight else [1.0, 1.0], tf.float32)
    distributed = strategy.experimental_distribute_dataset(dataset)

    @tf.function
    def step(images, labels):
        def replica(images, labels):
            with tf.GradientTape() as tape:
                logits = member(images, training=True)
                sample = tf.gather(weights, tf.cast(labels[:, 0], tf.int32))
                loss = tf.reduce_sum(loss_fn(labels, logits) * sample) / batch_size
            gradients = tape.gradient(loss, member.trainable_variables)
            optimizer.apply_gradients(zip(gradients, member.trainable_variables))
            return loss, logits, labels
        loss, logits, labels = strategy.run(replica, args=(images, labels))
        return (strategy.reduce("SUM", loss, axis=None), strategy.gather(logits, axis=0),
                strategy.gather(labels, axis=0))

    for epoch in range(epochs):
        losses, seen_logits, seen_labels = [], [], []
        for images, labels in distributed:
            loss, logits, truth = step(images, labels)
            losses.append(float(loss))
            seen_logits.append(logits.numpy().ravel())
            seen_labels.append(truth.numpy().ravel())
        truth, scores = np.concatenate(seen_labels), np.concatenate(seen_logits)
        train_auc = float(auc(truth, scores)) if len(set(truth)) > 1 else float("nan")
        if end_of_epoch(epoch, float(np.mean(losses)), train_auc):
            break


def add_synthetic_films(x_train: np.ndarray, y_train: np.ndarray, generator_dir: Path, image_size: int, seed: int
                        ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Top up the smaller class with generated films (through the serving preprocessing) to the larger one's size."""
    from medcore.gan.network import load_generator
    from medcore.imaging.preprocess import to_model_input

    generator = load_generator(generator_dir)
    counts = np.bincount(y_train, minlength=len(folders.XRAY_CLASSES))
    minority = int(counts.argmin())
    needed = int(counts.max() - counts.min())
    label = folders.XRAY_CLASSES[minority]
    films = generator.sample(label, needed, seed=seed)
    extra = np.stack([to_model_input(film, image_size) for film in films]).astype(x_train.dtype) if needed else \
        np.zeros((0, *x_train.shape[1:]), x_train.dtype)
    return (np.concatenate([x_train, extra]), np.concatenate([y_train, np.full(needed, minority, y_train.dtype)]),
            {"generator": generator.version, "class": label, "films": needed, "generator_size": generator.image_size})


def train_xray(data_dir: Path, out_dir: Path, options: XrayTrainingOptions | None = None,
               progress: ProgressFn | None = None, cache_dir: Path | None = None,
               should_stop: Callable[[], bool] | None = None, task: str = "xray") -> dict:
    """Train and write a model artifact to out_dir; return its metadata (`task` is what it records)."""
    import keras
    import tensorflow as tf

    options = options or XrayTrainingOptions()
    progress = progress or (lambda event: None)
    started = time.time()
    keras.utils.set_random_seed(options.seed)

    listed = folders.list_image_folder(Path(data_dir))
    progress(event(Stage.LOADING, n_train=len(listed.files), n_val=0))
    data_fingerprint = folders.fingerprint(listed.files, listed.labels)
    loaded = datasets.load_cached(listed, options.image_size, cache_dir or config.store_dir() / "cache",
                                  data_fingerprint)
    folder, images = loaded.folder, loaded.images
    train_idx, val_idx = folders.split_by_patient(folder, options.val_fraction, options.seed)
    if loaded.describe_skipped():
        progress(event(Stage.LOADING, n_train=len(train_idx), n_val=len(val_idx), skipped=loaded.skipped))
    x_train, y_train = images[train_idx], folder.labels[train_idx]
    x_val, y_val = images[val_idx].astype(np.float32), folder.labels[val_idx]
    synthetic = None
    if options.synthetic_generator:
        x_train, y_train, synthetic = add_synthetic_films(x_train, y_train, Path(options.synthetic_generator),
                                                          options.image_size, options.seed)
        options = replace(options, class_weighting=False)  # the classes are balanced by the synthetic films

    distillation, teacher = None, None
    if options.teacher:
        y_train, distillation, teacher = teacher_targets(options, x_train, y_train)
    strategy = device.training_strategy()
    if distillation and device.is_multi_worker(strategy):
        raise ValueError("Distillation runs on one process (--teacher without --workers).")
    with strategy.scope():
        network, members = build_xray_ensemble(options.image_size, options.width, options.members)
    history: list[dict] = []
    best = []  # (epoch, validation AUC) of each member's kept checkpoint
    for index, member in enumerate(members):
        best.append(_train_member(member, index, options, x_train, y_train, x_val, y_val, strategy,
                                  started, history, progress, should_stop, teacher))
        if should_stop is not None and should_stop():
            break
    best_epochs = [epoch for epoch, _ in best]

    progress(event(Stage.CALIBRATING))

    def predict(batch: np.ndarray) -> np.ndarray:
        return predict_logits(network, batch)

    calibrated = calibrate_network(predict, x_val, y_val, options)
    metrics = calibrated.metrics
    metrics["members"] = [auc for _, auc in best] if len(members) > 1 else []

    reference = fit_quality_reference(network, images, train_idx, val_idx)

    meta = {
        "task": task,
        "version": time.strftime("xray-%Y%m%d-%H%M%S-") + secrets.token_hex(2),
        "labels": list(folders.XRAY_CLASSES),
        "positive_label": folders.XRAY_CLASSES[1],
        "image_size": options.image_size,
        "calibration": calibrated.calibration,
        "threshold": calibrated.threshold,
        "quality": {"method": QUALITY_METHOD},
        "threshold_rule": calibrated.threshold_rule,
        "intended_use": SHIPPED_TRAINING_DATA.as_meta(),  # the population of the training data (its README)
        "metrics": {"validation": metrics},
        "options": asdict(options),
        "data": {"source": str(Path(data_dir).resolve().name), "fingerprint": data_fingerprint,
                 "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
                 "train_counts": np.bincount(folder.labels[train_idx]).tolist(),
                 "val_counts": np.bincount(y_val).tolist(), "skipped": loaded.skipped,
                 **({"synthetic": synthetic} if synthetic else {})},
        **({"distillation": distillation} if distillation else {}),
        "training": {"command": command_line(),
                     "seconds": round(time.time() - started, 1), "device": device.describe(),
                     "best_epoch": best_epochs[0] if best_epochs else 0, "best_epochs": best_epochs,
                     "history": history, "parameters": network.count_params(),
                     "tensorflow": tf.__version__, "python": platform.python_version()},
    }
    save_artifact(Path(out_dir), network, meta, reference,
                  validation=calibrated.validation_arrays(y_val),
                  model_card=xray_model_card({**meta, "preprocess_version": PREPROCESS_VERSION}))
    progress(event(Stage.DONE, version=meta["version"], metrics=metrics))
    return meta
