"""GPU when present, CPU otherwise: the one place that decides."""

from __future__ import annotations

import tensorflow as tf


def gpus() -> list:
    return tf.config.list_physical_devices("GPU")


def training_strategy(mixed_precision: bool = True) -> tf.distribute.Strategy:
    """MirroredStrategy (+ mixed precision) on GPUs; the default strategy (CPU) otherwise.

    Mixed precision is set globally before the model is built, so the layers compute in
    float16 and the final logit layer (dtype float32) keeps the loss numerically stable.
    Models whose work is a sparse matmul (the notes MLP) gain nothing from it and opt out.
    """
    if gpus():
        import keras
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def describe() -> str:
    found = gpus()
    return f"{len(found)} GPU(s), mixed precision" if found else "CPU"
