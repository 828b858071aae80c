"""Chest X-ray speed: one study (predict + Grad-CAM) and batch throughput, on this machine.

Usage: python benchmarks/bench_xray.py [--rounds 5] [--calls 30]
Prints medians over rounds (each round's figure is itself a median of --calls timed calls) and the
ratio against a Keras DenseNet121 (random weights, 224 px) predict-only, measured in the same run,
so figures from noisy machines stay comparable.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from timing import median_ms  # noqa: E402

from medcore.imaging.preprocess import to_model_input  # noqa: E402
from medcore.imaging.service import analyse_file, load_xray_model  # noqa: E402


def synthetic_jpeg(model, size: int = 224, seed: int = 0) -> bytes:
    """A training-like 224 px RGB-encoded grayscale JPEG built from the model's eigen-chest."""
    reference = model.artifact.quality_reference
    rng = np.random.default_rng(seed)
    vector = reference["mean"] + rng.normal(0, 2, 8) @ reference["components"][:8]
    thumb = vector.reshape(32, 32)
    thumb = (thumb - thumb.min()) / (thumb.max() - thumb.min())
    image = Image.fromarray((thumb * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()

    model = load_xray_model()
    size = model.artifact.image_size
    jpeg = synthetic_jpeg(model)
    one_input = to_model_input(np.zeros((224, 224), np.float32) + np.linspace(0, 1, 224), size)[None]
    batch_jpegs = [synthetic_jpeg(model, seed=i) for i in range(args.batch)]
    from tests.synthetic import (  # a full-size 12-bit DICOM, as a scanner sends it
        chest_like,
        make_dicom,
    )
    dicom = make_dicom((chest_like(model.artifact.quality_reference, 2500, 2048) * 4095).astype(np.uint16), bits=12)

    densenet = keras.applications.DenseNet121(weights=None, input_shape=(224, 224, 3), classes=1,
                                              classifier_activation=None)
    densenet_fn = tf.function(lambda x: densenet(x, training=False))
    dense_input = tf.random.uniform((1, 224, 224, 3))

    def end_to_end_batch() -> None:
        with ThreadPoolExecutor(2) as pool:
            inputs = list(pool.map(lambda b: to_model_input(
                np.asarray(Image.open(io.BytesIO(b)).convert("L"), np.float32) / 255, size), batch_jpegs))
        model.predict_inputs(np.stack(inputs), batch_size=128)

    batch_inputs = np.repeat(one_input, args.batch, axis=0)
    tasks = {
        "study_ms": lambda: analyse_file(model, jpeg, "bench.jpeg"),  # decode+quality+predict+Grad-CAM
        "study_dicom_2500x2048_ms": lambda: analyse_file(model, dicom, "bench.dcm"),
        "network_gradcam_ms": lambda: model.explainer(one_input),
        "densenet121_predict_ms": lambda: densenet_fn(dense_input),
    }
    for fn in tasks.values():  # warm-up: tracing and first-call allocations
        for _ in range(3):
            fn()
    end_to_end_batch()

    rounds: dict[str, list[float]] = {name: [] for name in tasks}
    rounds["batch_images_per_s"], rounds["batch_network_images_per_s"] = [], []
    for _ in range(args.rounds):
        for name, fn in tasks.items():
            rounds[name].append(median_ms(fn, args.calls))
        start = time.perf_counter()
        end_to_end_batch()
        rounds["batch_images_per_s"].append(args.batch / (time.perf_counter() - start))
        start = time.perf_counter()
        model.predict_inputs(batch_inputs, batch_size=128)
        rounds["batch_network_images_per_s"].append(args.batch / (time.perf_counter() - start))

    result = {name: round(statistics.median(values), 2) for name, values in rounds.items()}
    result["study_vs_densenet121_ratio"] = round(result["study_ms"] / result["densenet121_predict_ms"], 3)
    result.update(model_version=model.artifact.version, image_size=size, rounds=args.rounds, calls=args.calls,
                  batch=args.batch, cpu_threads=os.cpu_count())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
