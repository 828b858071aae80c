"""One hospital's Flower client: it reads only its own folder and sends only weights and aggregate statistics.

    python -m medcore.federated.client --site DIR --site-id site-1 --key KEY --ca CA.pem --server 127.0.0.1:PORT

The client trusts only the run's certificate authority (TLS), and proves its site id by signing the server's join
challenge with its own key (medcore.federated.credentials). Nothing it sends names its folder.

Local training is the central recipe's (same network, preprocessing, augmentation, class weighting, AdamW with
one warm-up epoch and cosine decay, spread over every round), for `local_epochs` per round; when the server sends `proximal_mu` > 0 (FedProx), the loss adds
mu/2 * ||w - w_global||^2, which keeps a small or skewed site from pulling the model far from the others.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from medcore.federated import credentials, wire  # noqa: E402
from medcore.imaging import folders, quality  # noqa: E402
from medcore.training import datasets, shift  # noqa: E402
from medcore.training.options import XrayTrainingOptions  # noqa: E402


class HospitalData:
    """A site's films, preprocessed by the serving path, split by patient into local training and validation."""

    def __init__(self, site_dir: Path, options: XrayTrainingOptions, cache_dir: Path) -> None:
        listed = folders.list_image_folder(Path(site_dir))
        loaded = datasets.load_cached(listed, options.image_size, cache_dir,
                                      folders.fingerprint(listed.files, listed.labels))
        folder, images, self.skipped = loaded.folder, loaded.images, loaded.skipped  # unreadable films stay here
        train_idx, val_idx = folders.split_by_patient(folder, options.val_fraction, options.seed)
        self.x_train, self.y_train = images[train_idx], folder.labels[train_idx]
        self.x_val, self.y_val = images[val_idx].astype(np.float32), folder.labels[val_idx]


def make_client(site_dir: Path, options: XrayTrainingOptions, cache_dir: Path, site_id: str, key_file: Path):
    """A flwr NumPyClient for one site (built here so that importing this module needs no Flower)."""
    import flwr
    import keras
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    from medcore.imaging.gradcam import GradCam
    from medcore.imaging.model import build_xray_ensemble
    from medcore.training.train_xray import training_dataset

    data = HospitalData(site_dir, options, cache_dir)
    keras.utils.set_random_seed(options.seed)
    network, _ = build_xray_ensemble(options.image_size, options.width, options.members)
    optimizer = None  # made at the first round, when the run's length is known
    weights = datasets.class_weights(data.y_train) if options.class_weighting else {0: 1.0, 1: 1.0}
    class_weight = tf.constant([weights[0], weights[1]], tf.float32)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True, reduction="none")

    def make_optimizer(epochs: int):
        """The central recipe's AdamW and schedule (one warm-up epoch, cosine decay) over all of this site's steps.

        The optimizer lives as long as the client, so its step count, and with it the schedule, runs on across rounds.
        """
        steps_per_epoch = int(np.ceil(len(data.y_train) / options.batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=options.learning_rate / 20, decay_steps=steps_per_epoch * epochs,
            warmup_target=options.learning_rate, warmup_steps=steps_per_epoch, alpha=0.01)
        return keras.optimizers.AdamW(schedule, weight_decay=1e-4)

    @tf.function(reduce_retracing=True)
    def step(images, labels, anchor, mu):
        with tf.GradientTape() as tape:
            logits = network(images, training=True)
            sample = tf.gather(class_weight, tf.cast(labels[:, 0], tf.int32))
            loss = tf.reduce_mean(loss_fn(labels, logits) * sample)
            proximal = tf.add_n([tf.reduce_sum(tf.square(w - a)) for w, a in zip(network.trainable_weights, anchor)])
            total = loss + mu / 2.0 * proximal
        grads = tape.gradient(total, network.trainable_weights)
        optimizer.apply_gradients(zip(grads, network.trainable_weights))
        return loss

    def val_logits() -> np.ndarray:
        return network.predict(data.x_val, batch_size=256, verbose=0).ravel()

    class HospitalClient(flwr.client.NumPyClient):
        def get_properties(self, config):
            """The join challenge: the site's id and its signature, proving it holds the site's key."""
            challenge = str(config.get("challenge", ""))
            return {"site": site_id, "signature": credentials.sign_challenge(key_file, site_id, challenge)}

        def get_parameters(self, config):
            return network.get_weights()

        def fit(self, parameters, config):
            nonlocal optimizer
            if optimizer is None:
                optimizer = make_optimizer(int(config.get("rounds", options.epochs)) *
                                           int(config.get("local_epochs", 1)))
            network.set_weights(parameters)
            anchor = [tf.identity(w) for w in network.trainable_weights]  # the global weights this round
            mu = tf.constant(float(config.get("proximal_mu", 0.0)), tf.float32)
            losses = []
            for _ in range(int(config.get("local_epochs", 1))):
                for images, labels in training_dataset(data.x_train, data.y_train, options):
                    losses.append(float(step(images, labels, anchor, mu)))
            return network.get_weights(), len(data.y_train), {"loss": float(np.mean(losses))}

        def evaluate(self, parameters, config):
            network.set_weights(parameters)
            stage = str(config.get("stage", "validation"))
            if stage == "moments":
                return 0.0, len(data.y_train), _moments(GradCam(network), data.x_train)
            if stage == "scores":
                reference = {key: wire.from_bytes(config[key]) for key in QUALITY_KEYS}
                return 0.0, len(data.y_val), _score_histograms(GradCam(network), data.x_val, reference)
            logits = val_logits()
            loss = float(np.mean(np.logaddexp(0, logits) - data.y_val * logits))
            auc = float(roc_auc_score(data.y_val, logits)) if len(set(data.y_val)) > 1 else float("nan")
            found = {"auc": auc,
                     "histogram": wire.to_bytes(wire.logit_histogram(logits, data.y_val))}
            if config.get("last") and options.shift_calibration:  # the central recipe's perturbed copies, binned
                shifted, labels = shift.perturbed_logits(
                    lambda batch: network.predict(batch, batch_size=256, verbose=0).ravel(), data.x_val,
                    data.y_val, seed=options.seed)
                found["shift_histogram"] = wire.to_bytes(wire.logit_histogram(shifted, labels))
            return loss, len(data.y_val), found

    return HospitalClient()


QUALITY_KEYS = ("mean", "components", "feature_mean", "feature_precision")


def _features(explain, images: np.ndarray) -> np.ndarray:
    return np.concatenate([explain(images[i:i + 256].astype(np.float32))[2] for i in range(0, len(images), 256)])


def _moments(explain, images: np.ndarray) -> dict[str, bytes]:
    """Sums and scatter matrices of thumbnails and network features: enough for a pooled mean and covariance."""
    thumbs = np.stack([quality.thumbnail_vector(x.astype(np.float32)) for x in images]).astype(np.float64)
    features = _features(explain, images).astype(np.float64)
    return {"thumb_sum": wire.to_bytes(thumbs.sum(0)), "thumb_scatter": wire.to_bytes(thumbs.T @ thumbs),
            "feature_sum": wire.to_bytes(features.sum(0)), "feature_scatter": wire.to_bytes(features.T @ features)}


def _score_histograms(explain, images: np.ndarray, reference: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Binned quality scores of the site's validation films under the pooled reference."""
    thumbs = np.stack([quality.thumbnail_vector(x.astype(np.float32)) for x in images])
    errors = quality.reconstruction_error(thumbs, reference)
    outputs = [explain(images[i:i + 256].astype(np.float32)) for i in range(0, len(images), 256)]
    distances = quality.feature_distance(np.concatenate([o[2] for o in outputs]), reference)
    peaks = np.concatenate([o[1] for o in outputs]).max(axis=(1, 2))  # the heatmap scale, as central training
    return {name: wire.to_bytes(wire.score_histogram(values))
            for name, values in (("reconstruction", errors), ("distance", distances), ("gradcam_peak", peaks))}


def main() -> None:
    parser = argparse.ArgumentParser(description="One hospital's Flower client (reads only --site).")
    parser.add_argument("--site", required=True)
    parser.add_argument("--site-id", required=True, help="the pseudonym the server knows this site by")
    parser.add_argument("--key", required=True, help="this site's private key (owner-only)")
    parser.add_argument("--ca", required=True, help="the run's CA certificate: the only server this client trusts")
    parser.add_argument("--server", required=True)
    parser.add_argument("--options", default="{}", help="XrayTrainingOptions fields as JSON")
    parser.add_argument("--cache", default=None, help="preprocessing cache (default: <site>/.cache)")
    args = parser.parse_args()
    from flwr.compat.client.app import start_client

    options = XrayTrainingOptions(**json.loads(args.options))
    site = Path(args.site)
    client = make_client(site, options, Path(args.cache) if args.cache else site / ".cache", args.site_id,
                         Path(args.key))
    start_client(server_address=args.server, client=client.to_client(), root_certificates=Path(args.ca).read_bytes(),
                 insecure=False, max_retries=30, max_wait_time=120)


if __name__ == "__main__":
    main()
