"""The class-conditional film generator (a conditional DCGAN with a spectrally normalized projection discriminator)
and its artifact.

The generator and the discriminator see films through the classifier's preprocessing contract: a film
becomes the z-scored square of `imaging.preprocess`, and GAN_SCALE maps it into the generator's tanh range
(z = -3 -> -1, z = +3 -> +1, beyond clipped). A sampled film is turned back into pixels in [0, 1] the same way,
so real and generated films reach the classifier (and the quality measures) by one path.

A generator folder is self-describing like every model folder: `model.keras` (the generator only; the
discriminator is a training device and is not kept), `meta.json` (labels, image size, latent size,
preprocessing contract, quality and memorization figures, data, command, seed), `quality.npz` (the per-epoch
curves and the closest generated/training pairs) and `model_card.md`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from medcore.artifacts import ModelInfo, read_model_folder, write_model_folder  # noqa: E402
from medcore.imaging.preprocess import PREPROCESS_VERSION  # noqa: E402
from medcore.imaging.synthetic import mark_synthetic  # noqa: E402

GAN_SCALE = 3.0  # z-scored film / GAN_SCALE, clipped to [-1, 1], is what the GAN sees
GAN_CONTRACT = f"{PREPROCESS_VERSION}|tanh/{GAN_SCALE:g}"


def to_gan_range(model_inputs: np.ndarray) -> np.ndarray:
    """Preprocessed films (z-scored) -> the generator's [-1, 1] range."""
    return np.clip(np.asarray(model_inputs, np.float32) / GAN_SCALE, -1.0, 1.0)


def to_pixels(gan_images: np.ndarray) -> np.ndarray:
    """Films in the generator's range, (n, s, s, 1) or (n, s, s) -> pixels in [0, 1], (n, s, s)."""
    images = np.asarray(gan_images, np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    return np.clip((images + 1.0) / 2.0, 0.0, 1.0)


def _class_planes(label_code, size: int):
    """The one-hot class as constant image planes of size x size, so every block sees the class."""
    planes = keras.layers.Reshape((1, 1, label_code.shape[-1]))(label_code)
    return keras.layers.UpSampling2D(size)(planes)


def build_generator(image_size: int = 64, n_classes: int = 2, latent_dim: int = 64, width: int = 32) -> keras.Model:
    """(noise, class index) -> film in [-1, 1]: a dense 4 x 4 seed, then nearest-neighbour upsampling and 3 x 3
    convolutions doubling it. Not transposed convolutions: they left a checkerboard on the first full run's films.
    The class enters the seed and every block as constant planes, because a class given only at the input was
    ignored (the first run drew pneumonia-like films for both classes)."""
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"The generator's image size must be a power of two of at least 8, not {image_size}.")
    steps = int(np.log2(image_size // 4))
    noise = keras.Input((latent_dim,), name="noise")
    label = keras.Input((1,), dtype="int32", name="label")
    one_hot = keras.layers.Flatten()(keras.layers.Embedding(n_classes, n_classes, name="label_code",
                                                            embeddings_initializer="identity",
                                                            trainable=False)(label))
    x = keras.layers.Concatenate()([noise, one_hot])
    # Half the discriminator's width: a 3 x 3 convolution after upsampling costs four times a transposed one at
    # the same width, and this keeps a training step about as fast as the first run's on 2 CPU cores.
    channels = width * 2 ** (steps - 2)
    x = keras.layers.Dense(4 * 4 * channels, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Reshape((4, 4, channels))(x)
    size = 4
    for step in range(steps):
        channels = max(channels // 2, width // 4)
        size *= 2
        x = keras.layers.UpSampling2D(2)(x)
        x = keras.layers.Concatenate()([x, _class_planes(one_hot, size)])
        x = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    film = keras.layers.Conv2D(1, 3, padding="same", activation="tanh", dtype="float32", name="film")(x)
    return keras.Model([noise, label], film, name="medcore_film_generator")


def sample_films(generator: keras.Model, label_index: int, n: int, seed: int, batch_size: int = 256) -> np.ndarray:
    """n films of one class as pixels in [0, 1], (n, s, s): the noise comes from `seed`, so a seed names the films."""
    latent_dim, size = generator.input_shape[0][-1], generator.output_shape[1]
    noise = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
    labels = np.full((n, 1), label_index, np.int32)
    out = [generator([noise[i:i + batch_size], labels[i:i + batch_size]], training=False).numpy()
           for i in range(0, n, batch_size)]
    return to_pixels(np.concatenate(out) if out else np.zeros((0, size, size, 1)))


class MinibatchStddev(keras.layers.Layer):
    """Appends the batch's mean feature standard deviation as one more channel (Karras et al. 2018): a
    discriminator that sees how varied a batch is punishes a generator that draws one film for every noise."""

    def call(self, x):
        spread = keras.ops.mean(keras.ops.std(x, axis=0))
        shape = keras.ops.shape(x)
        return keras.ops.concatenate([x, keras.ops.ones((shape[0], shape[1], shape[2], 1), x.dtype) * spread], -1)


def build_discriminator(image_size: int = 64, n_classes: int = 2, width: int = 32) -> keras.Model:
    """(film, class index) -> score "real film of this class", for the hinge loss.

    Spectral normalization on every weight layer keeps the discriminator smooth (Miyato et al. 2018); the class
    enters by projection (Miyato & Koyama 2018): score = w . h + embed(class) . h, a stronger conditioning than
    class planes at the input, which the first run's generator learned to ignore."""
    steps = int(np.log2(image_size // 4))
    film = keras.Input((image_size, image_size, 1), name="film")
    label = keras.Input((1,), dtype="int32", name="label")
    x = film
    channels = width
    for step in range(steps):
        x = keras.layers.SpectralNormalization(keras.layers.Conv2D(channels, 4, strides=2, padding="same"))(x)
        x = keras.layers.LeakyReLU(0.2)(x)
        channels *= 2
    x = MinibatchStddev()(x)
    features = keras.layers.Flatten()(x)  # 4 x 4 cells: where a finding sits matters on a chest film
    unconditional = keras.layers.SpectralNormalization(keras.layers.Dense(1))(features)
    class_vector = keras.layers.Flatten()(keras.layers.Embedding(n_classes, features.shape[-1],
                                                                 name="class_projection")(label))
    projection = keras.layers.Dot(axes=1)([class_vector, features])
    score = keras.layers.Add(dtype="float32", name="score")([unconditional, projection])
    return keras.Model([film, label], score, name="medcore_film_discriminator")


@dataclass
class GeneratorArtifact(ModelInfo):
    """A loaded generator with what is needed to sample from it and to judge it."""

    network: keras.Model
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    path: Path

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def quality(self) -> dict[str, Any]:
        """Fréchet ratio, precision, recall and gate acceptance at the kept epoch, with their per-class rows."""
        return self.meta["metrics"]["validation"]

    @property
    def judged_by(self) -> str:
        """The X-ray classifier version in whose feature space the quality was measured."""
        return str(self.meta["feature_model"])

    @property
    def data_source(self) -> str:
        return str(self.meta["data"]["source"])

    @property
    def history(self) -> list[dict]:
        """One row per training epoch (losses; quality where it was measured)."""
        return list(self.meta["training"]["history"])

    @property
    def memorization(self) -> dict[str, Any]:
        return self.meta["memorization"]

    def closest_pairs(self) -> list[dict[str, Any]]:
        """The generated films nearest to a training film, each beside that film: what an admin inspects (none once
        an admin deleted them)."""
        if "pair_training" not in self.arrays:
            return []
        rows = self.memorization["closest"]
        return [{"generated_class": row["generated_class"], "ratio": row["ratio"],
                 "generated": self.arrays["pair_generated"][i].astype(np.float32),
                 "training": self.arrays["pair_training"][i].astype(np.float32)} for i, row in enumerate(rows)]

    def sample(self, label: str, n: int, seed: int) -> np.ndarray:
        """n films of class `label` as pixels in [0, 1], (n, s, s); the same seed gives the same films."""
        if label not in self.labels:
            raise ValueError(f"Unknown class {label!r}; this generator makes {', '.join(self.labels)}.")
        return self.sample_index(self.labels.index(label), n, seed)

    def sample_index(self, label_index: int, n: int, seed: int) -> np.ndarray:
        return sample_films(self.network, label_index, n, seed)


EXAMPLE_ARRAYS = ("pair_generated", "pair_training", "pair_ratio")


def without_training_examples(current: dict[str, bytes]) -> dict[str, bytes]:
    """The generator folder's files that change when its training-film examples are deleted, as new contents made
    from the current ones (`quality.npz`, `meta.json`): quality.npz without the pairs' pixels, meta.json without
    their rows (and without file names, which older generators kept), model_card.md saying they were deleted."""
    import io
    import json

    from medcore.gan.card import gan_model_card

    with np.load(io.BytesIO(current["quality.npz"])) as npz:
        kept = {key: npz[key] for key in npz.files if key not in EXAMPLE_ARRAYS}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **kept)
    meta = json.loads(current["meta.json"])
    meta["memorization"]["closest"] = []
    meta["memorization"]["examples_deleted"] = True
    return {"quality.npz": buffer.getvalue(), "meta.json": json.dumps(meta, indent=2, sort_keys=True).encode(),
            "model_card.md": gan_model_card(meta).encode()}


def marked_film(pixels: np.ndarray, generator: str) -> bytes:
    """A generated film enlarged for the eye, as PNG bytes with the visible SYNTHETIC mark and the file tag."""
    return mark_synthetic(np.clip(pixels, 0, 1), generator)


def save_generator(folder: Path, generator: keras.Model, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                   model_card: str) -> Path:
    """Write the generator folder atomically (see artifacts.write_model_folder)."""
    return write_model_folder(folder, generator, {**meta, "gan_contract": GAN_CONTRACT}, {"quality": arrays},
                              model_card)


def load_generator(folder: Path) -> GeneratorArtifact:
    """Load and check a generator folder; ModelLoadError with a clear reason."""
    network, meta, arrays = read_model_folder(folder, ("quality",), "gan_contract", GAN_CONTRACT)
    return GeneratorArtifact(network, meta, arrays["quality"], Path(folder))
