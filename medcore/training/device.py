"""GPU when present, CPU otherwise, and one worker or several: the one place that decides."""

from __future__ import annotations

import json

import tensorflow as tf

from medcore import config as medcore_config

_strategy: tf.distribute.Strategy | None = None


def gpus() -> list:
    return tf.config.list_physical_devices("GPU")


def cluster() -> dict | None:
    """TF_CONFIG's cluster when it names more than one worker (training across processes or machines), else None."""
    try:
        config = json.loads(medcore_config.tf_config() or "{}")
    except ValueError:
        return None
    workers = config.get("cluster", {}).get("worker", [])
    return config if len(workers) > 1 else None


def is_chief() -> bool:
    """The worker that writes the model and reports progress: worker 0, or the only process."""
    config = cluster()
    return config is None or int(config.get("task", {}).get("index", 0)) == 0


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def training_strategy(mixed_precision: bool = True) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers; MirroredStrategy (+ mixed precision) on
    GPUs; the default strategy (CPU) otherwise. Made once per process: a multi-worker strategy must exist before
    TensorFlow runs anything else, so the entry point of a worker asks for it first (training.multiworker).

    Mixed precision is set globally before the model is built, so the layers compute in
    float16 and the final logit layer (dtype float32) keeps the loss numerically stable.
    Models whose work is a sparse matmul (the notes MLP) gain nothing from it and opt out.
    """
    global _strategy
    if _strategy is not None:
        return _strategy
    if gpus():
        import keras
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    if cluster() is not None:
        _strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return _strategy
    return tf.distribute.MirroredStrategy() if gpus() else tf.distribute.get_strategy()


def describe() -> str:
    found = gpus()
    workers = len(cluster()["cluster"]["worker"]) if cluster() else 1
    where = f"{len(found)} GPU(s), mixed precision" if found else "CPU"
    return where + (f", {workers} workers (MultiWorkerMirroredStrategy)" if workers > 1 else "")
