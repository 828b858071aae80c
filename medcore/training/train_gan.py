"""Train a class-conditional film generator, judge it by numbers, and refuse it if it copies patients.

One call is the whole recipe (CLI, admin job and benchmark alike): films through the classifier's
preprocessing contract (cached) -> conditional DCGAN with a light differentiable augmentation in front of the
discriminator (translation, brightness, contrast: Zhao et al. 2020, for a few thousand films) -> every
`eval_every` epochs, Fréchet distance, precision and recall in the production classifier's feature space, per
class, against real films of other patients, and the share the quality gate accepts -> the epoch with the best
Fréchet ratio is kept -> memorization check against every training film -> artifact and model card.
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

from medcore import config
from medcore.gan import judge as judging
from medcore.gan import metrics
from medcore.gan.card import gan_model_card
from medcore.imaging import folders
from medcore.imaging.service import LoadedXrayModel
from medcore.training import datasets, device
from medcore.training.options import GanTrainingOptions
from medcore.training.progress import ProgressFn, Stage, event

CLOSEST_PAIRS = 8
AVERAGE_DECAY = 0.999  # the generator's running average: about the last 1,000 steps
RECIPE = ("conditional GAN: generator of nearest-neighbour upsampling and 3 x 3 convolutions with the class as planes "
          "in every block, films drawn from its running average (decay 0.999); spectrally normalized projection "
          "discriminator with a minibatch standard-deviation channel; hinge loss; discriminator learning rate twice "
          "the generator's; Adam beta1 0.5")


class MemorizedPatients(ValueError):
    """The generator makes films too close to training films: it is not registered."""


def _augment(images):
    """Differentiable, applied to real and generated films alike before the discriminator sees them."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    size = images.shape[1]
    brightness = tf.random.uniform((n, 1, 1, 1), -0.15, 0.15)
    contrast = tf.random.uniform((n, 1, 1, 1), 0.8, 1.25)
    mean = tf.reduce_mean(images, axis=(1, 2, 3), keepdims=True)
    images = (images - mean) * contrast + mean + brightness
    shift = tf.random.uniform((2,), -(size // 8), size // 8 + 1, dtype=tf.int32)
    return tf.roll(images, shift=shift, axis=(1, 2))


class GanTrainer:
    """The two networks, their optimizers, the generator's running average and one compiled training step.

    Hinge loss with a spectrally normalized projection discriminator (SNGAN), the discriminator's learning rate
    twice the generator's (Heusel et al. 2017); films are drawn from an exponential moving average of the
    generator's weights (Karras et al. 2018; Yazici et al. 2019), which is steadier than its last step.
    """

    def __init__(self, options: GanTrainingOptions, n_classes: int) -> None:
        import keras
        import tensorflow as tf

        from medcore.gan.network import build_discriminator, build_generator

        self.options = options
        self.generator = build_generator(options.image_size, n_classes, options.latent_dim, options.width)
        self.average = build_generator(options.image_size, n_classes, options.latent_dim, options.width)
        self.average.set_weights(self.generator.get_weights())
        self.discriminator = build_discriminator(options.image_size, n_classes, options.width)
        self.g_optimizer = keras.optimizers.Adam(options.learning_rate, beta_1=0.5, beta_2=0.999)
        self.d_optimizer = keras.optimizers.Adam(2 * options.learning_rate, beta_1=0.5, beta_2=0.999)
        steps = tf.Variable(0.0, trainable=False)
        latent = options.latent_dim

        @tf.function
        def step(real, labels):
            noise = tf.random.normal((tf.shape(real)[0], latent))
            with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
                fake = self.generator([noise, labels], training=True)
                real_score = self.discriminator([_augment(real), labels], training=True)
                fake_score = self.discriminator([_augment(fake), labels], training=True)
                d_loss = tf.reduce_mean(tf.nn.relu(1.0 - real_score)) + tf.reduce_mean(tf.nn.relu(1.0 + fake_score))
                g_loss = -tf.reduce_mean(fake_score)
            self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, self.discriminator.trainable_weights),
                                                 self.discriminator.trainable_weights))
            self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, self.generator.trainable_weights),
                                                 self.generator.trainable_weights))
            steps.assign_add(1.0)
            decay = tf.minimum(AVERAGE_DECAY, (1.0 + steps) / (10.0 + steps))  # short memory while it is young
            for averaged, current in zip(self.average.weights, self.generator.weights):
                averaged.assign(decay * averaged + (1.0 - decay) * current)
            return g_loss, d_loss, tf.reduce_mean(real_score), tf.reduce_mean(fake_score)

        self.step = step

    def epoch(self, dataset) -> dict[str, float]:
        """One pass; the losses and the discriminator's mean score of real and generated films."""
        rows = np.array([[float(v) for v in self.step(real, labels)] for real, labels in dataset])
        return dict(zip(("loss", "d_loss", "d_real", "d_fake"), rows.mean(axis=0).tolist()))

    def sample(self, label_index: int, n: int, seed: int) -> np.ndarray:
        """Pixels in [0, 1] of n films of one class from the averaged generator."""
        from medcore.gan.network import sample_films

        return sample_films(self.average, label_index, n, seed)


def train_gan(data_dir: Path, out_dir: Path, options: GanTrainingOptions | None = None,
              progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
              task: str = "xray_gan", cache_dir: Path | None = None,
              classifier: LoadedXrayModel | None = None) -> dict:
    """Train, judge and write a generator folder to out_dir; return its metadata.

    classifier: whose eyes judge the films (default: the production X-ray model). MemorizedPatients, and
    nothing written, if too many generated films are closer to a training film than patients are to one another.
    """
    import keras
    import tensorflow as tf

    from medcore.gan.network import save_generator, to_gan_range, to_pixels

    options = options or GanTrainingOptions()
    progress = progress or (lambda values: None)
    should_stop = should_stop or (lambda: False)
    started = time.time()
    keras.utils.set_random_seed(options.seed)
    if classifier is None:
        from medcore import production

        classifier = production.load("xray").model

    listed = folders.list_image_folder(Path(data_dir))
    data_fingerprint = folders.fingerprint(listed.files, listed.labels)
    progress(event(Stage.LOADING, n_train=len(listed.files), n_val=0))
    loaded = datasets.load_cached(listed, options.image_size, cache_dir or config.store_dir() / "cache",
                                  data_fingerprint)
    folder, films = loaded.folder, to_gan_range(loaded.images)
    labels = folder.labels.astype(np.int32)
    patients = np.array([folders.patient_id(path) for path in folder.files])
    class_names = list(folders.XRAY_CLASSES)
    real_pixels = to_pixels(films)  # the films as the generator's output would look: the judge's and memorization's input

    reference = judging.RealReference.of(classifier, real_pixels, labels, patients, class_names,
                                         options.eval_films, options.seed)

    def measure(trainer: GanTrainer) -> dict:
        return reference.measure(lambda c, n: trainer.sample(c, n, seed=options.seed + 7))

    trainer = GanTrainer(options, len(class_names))
    dataset = (tf.data.Dataset.from_tensor_slices((films, labels[:, None]))
               .shuffle(len(films), seed=options.seed, reshuffle_each_iteration=True)
               .batch(options.batch_size, drop_remainder=len(films) > options.batch_size)
               .prefetch(tf.data.AUTOTUNE))
    history: list[dict] = []
    best = {"fd_ratio": np.inf, "epoch": 0, "weights": None, "quality": None}
    for epoch in range(1, options.epochs + 1):
        row = {"epoch": epoch, "epochs": options.epochs, **trainer.epoch(dataset)}
        elapsed = time.time() - started
        out_of_time = elapsed / 60 >= options.max_minutes
        last = epoch == options.epochs or out_of_time or should_stop()
        if epoch % options.eval_every == 0 or last:
            quality = measure(trainer)
            row.update({k: quality[k] for k in ("fd", "fd_floor", "fd_ratio", "precision", "recall", "gate_accepted")},
                       fd_ratio_per_class={name: q["fd_ratio"] for name, q in quality["per_class"].items()})
            score = quality["fd_ratio"] if np.isfinite(quality["fd_ratio"]) else 1e12
            if best["weights"] is None or score < best["fd_ratio"]:
                best.update(fd_ratio=score, epoch=epoch, weights=trainer.average.get_weights(),
                            quality=quality)
        elapsed = time.time() - started
        row.update(elapsed_s=round(elapsed, 1), eta_s=round(elapsed / epoch * (options.epochs - epoch), 1),
                   best_epoch=best["epoch"])
        history.append(row)
        progress(event(Stage.EPOCH, gan=True, **row))
        if last:
            break
    if should_stop():
        return {}
    trainer.average.set_weights(best["weights"])

    progress(event(Stage.CALIBRATING, step="memorization"))
    generated = np.concatenate([trainer.sample(c, options.eval_films, seed=options.seed + 11)
                                for c in range(len(class_names))])
    generated_labels = np.repeat(np.arange(len(class_names)), options.eval_films)
    check = metrics.memorization_check(judging.thumbnails(real_pixels, options.image_size), patients,
                                       judging.thumbnails(generated, options.image_size))
    if not check.passed:
        raise MemorizedPatients(
            f"Not registered: {check.share:.1%} of {len(generated)} generated films are closer to a training film "
            f"than {100 - metrics.MEMORIZATION_PERCENTILE:g} % of training films are to another patient's film "
            f"(limit {metrics.MAX_SUSPICIOUS_SHARE:.0%}): the generator may be copying patients.")
    pairs = check.closest(CLOSEST_PAIRS)

    version = time.strftime("gan-%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    meta = {
        "task": task, "version": version, "labels": class_names, "image_size": options.image_size,
        "latent_dim": options.latent_dim,
        "metrics": {"validation": best["quality"]},
        "quality_method": ("features: pooled last-conv activations of the production X-ray classifier "
                           f"{classifier.version} (what its quality gate reads), projected on the first "
                           f"{judging.FEATURE_DIMS} principal axes of the real films' features; per class, {options.eval_films} "
                           "generated films against real half B, real half A against B as the floor (halves of "
                           "disjoint patients); precision/recall with k = 3 (Kynkäänniemi et al. 2019)"),
        "feature_model": classifier.version,
        "memorization": {**check.summary(), "n_generated": int(len(generated)),
                         "space": "32 px standardized thumbnails (the quality gate's)",
                         "closest": [{"generated_class": class_names[generated_labels[g]], "ratio": ratio}
                                     for g, _, ratio in pairs]},  # no file names: only the pixels, until deleted
        "options": asdict(options),
        "data": {"source": str(Path(data_dir).resolve().name), "fingerprint": data_fingerprint,
                 "n_train": int(len(labels)), "train_counts": np.bincount(labels).tolist(), "skipped": loaded.skipped},
        "training": {"command": " ".join(["medcore"] + sys.argv[1:]) if sys.argv else "",
                     "seconds": round(time.time() - started, 1), "device": device.describe(),
                     "epochs_run": len(history), "best_epoch": best["epoch"], "recipe": RECIPE, "history": history,
                     "parameters": trainer.average.count_params(), "tensorflow": tf.__version__,
                     "python": platform.python_version()},
    }
    arrays = {"pair_generated": np.stack([generated[g] for g, _, _ in pairs]).astype(np.float16),
              "pair_training": np.stack([real_pixels[t] for _, t, _ in pairs]).astype(np.float16),
              "pair_ratio": np.array([ratio for _, _, ratio in pairs], np.float32),
              "nearest_distance": check.distance.astype(np.float32), "between_threshold": np.float32(check.threshold)}
    save_generator(Path(out_dir), trainer.average, meta, arrays, gan_model_card(meta))
    progress(event(Stage.DONE, version=version, metrics=meta["metrics"]["validation"]))
    return meta
